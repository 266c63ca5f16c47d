"""decompose_dataset: chunked, sharded, resumable I_local maps of a data set.

The problem (``tests/_dataset_worker.py``): a 3-d Gaussian task with exact denoisers, 10 stimuli in
chunks of 2. A subprocess runs it on 4 forced CPU devices and is killed (SIGKILL) after 2 chunks while
this process computes the uninterrupted 1-device reference; the store is then resumed here. The
2-process x 2-device run is in ``tests/test_multihost.py``.
"""

import json
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from tests._fakes import fake_train

from jaxdecomp import estimate, tasks
from jaxdecomp.diffusion.schedules import network_levels
from jaxdecomp.estimate import _dataset
from tests import _dataset_worker as worker
from tests._subproc import forced_devices_env

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "_dataset_worker.py"
FIELDS = ("ilocal", "ilocal_total", "ilocal_se", "fisher")
N_CHUNKS = worker.N // worker.CHUNK


def _env(n_devices=1):
    return forced_devices_env(n_devices)


def _start(out, *args, n_devices=1):
    return subprocess.Popen([sys.executable, str(WORKER), str(out), *map(str, args)], env=_env(n_devices),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _assert_maps_close(a, b, rtol=1e-5, atol=1e-7):
    for f in FIELDS:
        np.testing.assert_allclose(a[f], b[f], rtol=rtol, atol=atol, err_msg=f)


def _chunk_bytes(store):
    return {p.name: p.read_bytes() for p in sorted(Path(store).glob("chunk_*.npz"))}


@pytest.fixture(scope="module")
def ref():
    """The uninterrupted 1-device maps of the worker's problem (no store)."""
    return worker.run()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, request):
    """A run on 4 forced CPU devices in a subprocess, killed (SIGKILL) once it has written 2 of the 5
    chunks of its store; meanwhile this process computes the uninterrupted 1-device reference."""
    tmp = tmp_path_factory.mktemp("dataset")
    killed = _start(tmp / "killed.npz", "--store", tmp / "store", "--stall-after", 2, n_devices=4)
    try:
        ref = request.getfixturevalue("ref")
        lines = []
        for line in killed.stdout:          # blocks until the worker prints; it stalls after 2 chunks
            lines.append(json.loads(line))
            if "stalled" in lines[-1]:
                break
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=60)
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait()
    assert [d["chunk"] for d in lines if "chunk" in d] == [0, 1], (lines, killed.stderr.read()[-3000:])
    assert lines[0]["devices"] == 4
    return dict(ref=ref, store=tmp / "store")


@pytest.mark.heavy
def test_four_devices_match_one(runs):
    """The chunks written on 4 devices (2 stimuli per chunk, padded to 4) equal the 1-device maps."""
    for k in (0, 1):
        with np.load(runs["store"] / f"chunk_{k:06d}.npz") as z:
            sl = slice(k * worker.CHUNK, (k + 1) * worker.CHUNK)
            _assert_maps_close({f: z[f] for f in FIELDS}, {f: runs["ref"][f][sl] for f in FIELDS})


@pytest.mark.heavy
def test_sigkill_then_resume_recomputes_only_unfinished_chunks(runs):
    """Resumed here on 1 device: only chunks 2-4 are computed, chunks 0-1 are untouched, and the
    store equals the uninterrupted run's maps."""
    store = runs["store"]
    before = _chunk_bytes(store)
    assert sorted(before) == ["chunk_000000.npz", "chunk_000001.npz"]
    assert not json.loads((store / "manifest.json").read_text())["complete"]
    with pytest.raises(ValueError, match="chunk 2 .* is missing"):
        estimate.load_dataset_maps(store)
    (store / ".chunk_000002.npz.tmp-12345").write_bytes(b"half a chunk")     # what a kill mid-write leaves
    computed = []
    maps = worker.run(store, computed.append)
    assert computed == [2, 3, 4]
    after = _chunk_bytes(store)
    assert all(after[k] == v for k, v in before.items())                    # finished chunks untouched
    assert sorted(after) == [f"chunk_{k:06d}.npz" for k in range(N_CHUNKS)]
    assert not list(store.glob(".chunk_*"))
    assert json.loads((store / "manifest.json").read_text())["complete"]
    _assert_maps_close(maps, runs["ref"])
    _assert_maps_close(estimate.load_dataset_maps(store), runs["ref"])
    again = []
    np.testing.assert_array_equal(worker.run(store, again.append)["ilocal"], maps["ilocal"])
    assert again == []                                                      # a finished store: nothing to do


def test_interrupted_run_resumes_exactly(ref, tmp_path):
    """An exception after chunk 1 (of 5) and a rerun: the same store as an uninterrupted run, bit for bit."""
    store = tmp_path / "store"

    def boom(k):
        if k == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        worker.run(store, boom)
    assert sorted(p.name for p in store.glob("chunk_*")) == ["chunk_000000.npz", "chunk_000001.npz"]
    computed = []
    maps = worker.run(store, computed.append)
    assert computed == [2, 3, 4]
    for f in FIELDS:
        np.testing.assert_array_equal(maps[f], ref[f], err_msg=f)
    uninterrupted = tmp_path / "uninterrupted"
    worker.run(uninterrupted, return_maps=False)
    assert _chunk_bytes(store) == _chunk_bytes(uninterrupted)


@pytest.mark.heavy
def test_each_stimulus_is_ilocal_with_its_folded_key(ref):
    """Stimulus i is ilocal(fold_in(key, i), x[i]); fisher is fisher_diag. (Other chunkings: the 4-device
    chunks above are padded to 4 stimuli per call, against 2 here, and agree.)"""
    key, den, pop, x = worker.problem()
    s = worker.SETTINGS
    for i in (0, 7):
        one = estimate.ilocal(jax.random.fold_in(key, i), den, pop, x[i], levels=network_levels(s["n_levels"]),
                              n_samples=s["n_samples"], response_sampler=s["response_sampler"],
                              fisher_correction=False, score_gradient=False)
        np.testing.assert_allclose(ref["ilocal"][i], one.map, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(ref["ilocal_se"][i], one.stderr, rtol=1e-5)
        np.testing.assert_allclose(ref["fisher"][i], pop.fisher_diag(x[i]), rtol=1e-6)
    assert np.all(ref["ilocal"] >= 0) and np.all(ref["ilocal_se"] > 0)


@pytest.mark.heavy
def test_gaussian_truth_with_default_sampler():
    """Exact posterior draws and the Fisher tail (the defaults): mean I_local = I(R;X) of the Gaussian task,
    and the mean map is the diagonal of its I_local tensor."""
    task = tasks.gaussian_linear(dim=3, n_neurons=2)
    x = np.asarray(task.sample_prior(jax.random.PRNGKey(3), 8))
    maps = estimate.decompose_dataset(jax.random.PRNGKey(4), task.denoiser, task.encoder, x, chunk=4, n_levels=16,
                                      n_samples=16, progress=False)
    truth = task.exact_mutual_information()
    mean, se = maps["ilocal_total"].mean(), np.sqrt(np.sum(maps["ilocal_se"] ** 2)) / len(x)
    assert abs(mean - truth) < 4 * se + 0.02 * truth, (mean, se, truth)
    np.testing.assert_allclose(maps["ilocal"].mean(0), np.diag(task.ilocal_tensor()), rtol=0.15, atol=0.02)


def test_mismatched_store_is_refused_and_overwrite_replaces_it(ref, tmp_path):
    store = tmp_path / "store"
    worker.run(store, return_maps=False)
    manifest = (store / "manifest.json").read_bytes()
    files = _chunk_bytes(store)
    key, den, pop, x = worker.problem()
    other_x = x.copy()
    other_x[3, 0] += 0.5
    cases = [(dict(n_samples=8), "n_samples: 8 now, 4 in the store"),
             (dict(chunk=5), "chunk: 5 now, 2 in the store"),
             (dict(n_levels=7), "levels: 7 nodes"),
             (dict(response_sampler="clean"), "response_sampler"),
             (dict(fisher=False), "fisher: false now, true in the store")]
    for kw, said in cases:
        with pytest.raises(estimate.StoreMismatch, match="nothing was changed") as err:
            worker.run(store, **kw)
        assert any(said in d for d in err.value.differences), (kw, err.value.differences)
    opts = dict(worker.SETTINGS, chunk=worker.CHUNK)
    with pytest.raises(estimate.StoreMismatch, match="different values") as err:
        estimate.decompose_dataset(key, den, pop, other_x, store, **opts)
    with pytest.raises(estimate.StoreMismatch, match="key: a different PRNG key"):
        estimate.decompose_dataset(jax.random.PRNGKey(6), den, pop, x, store, **opts)
    other_task = tasks.gaussian_linear(dim=3, n_neurons=2, sigma=0.4)
    with pytest.raises(estimate.StoreMismatch, match="denoiser: same type .* different parameters"):
        estimate.decompose_dataset(key, other_task.denoiser, other_task.encoder, x, store, **opts)
    with pytest.raises(FileExistsError, match="resume='never'"):
        worker.run(store, resume="never")
    assert (store / "manifest.json").read_bytes() == manifest and _chunk_bytes(store) == files   # untouched
    # overwrite: a different key replaces the store (same compiled program: the key is an argument)
    computed = []
    with pytest.warns(UserWarning, match="deleting the maps"):
        new = estimate.decompose_dataset(jax.random.PRNGKey(6), den, pop, x, store, overwrite=True,
                                         _on_chunk=computed.append, **opts)
    assert computed == list(range(N_CHUNKS))
    assert not np.allclose(new["ilocal"], ref["ilocal"])
    # a matching store with overwrite=True (resume="auto") is continued, not deleted
    computed.clear()
    estimate.decompose_dataset(jax.random.PRNGKey(6), den, pop, x, store, overwrite=True, _on_chunk=computed.append,
                               **opts)
    assert computed == []


def test_resume_modes_and_lock(tmp_path):
    empty = tmp_path / "empty"
    with pytest.raises(FileNotFoundError, match="resume='must'"):
        worker.run(empty, resume="must")
    with pytest.raises(ValueError, match="resume, overwrite"):
        worker.run(empty, resume="must", overwrite=True)
    with pytest.raises(ValueError, match="resume: expected one of"):
        worker.run(empty, resume="yes")
    lock = _dataset._Lock(empty, "store")
    try:
        with pytest.raises(estimate.StoreLocked, match="in use by another decompose_dataset run"):
            worker.run(empty)
    finally:
        lock.release()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="store: .* is not a directory"):
        worker.run(tmp_path / "afile")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        worker.run(bad)
    with pytest.raises(FileNotFoundError, match="holds no manifest"):
        estimate.load_dataset_maps(empty)


def test_bad_input_names_the_argument(tmp_path):
    key, den, pop, x = worker.problem()
    opts = dict(progress=False)
    for kw, exc, name in [(dict(chunk=0), ValueError, "chunk"), (dict(n_samples=1), ValueError, "n_samples"),
                          (dict(response_sampler="mean"), ValueError, "response_sampler"),
                          (dict(fisher="yes"), TypeError, "fisher"), (dict(overwrite=1), TypeError, "overwrite")]:
        with pytest.raises(exc, match=f"^{name}:"):
            estimate.decompose_dataset(key, den, pop, x, None, **opts, **kw)
    with pytest.raises(ValueError, match="^x: expected a batch"):
        estimate.decompose_dataset(key, den, pop, x[0], None, **opts)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="^x: contains NaN"):
        estimate.decompose_dataset(key, den, pop, bad, None, **opts)
    with pytest.raises(TypeError, match="^store:"):
        estimate.decompose_dataset(key, den, pop, x, 3, **opts)
    with pytest.raises(TypeError, match="^key:"):
        estimate.decompose_dataset(0, den, pop, x, None, **opts)
    assert not list(tmp_path.iterdir())


_fake_train = fake_train


class _LinearNet:
    """Stands in for a trained network in the wiring test: ``eps_hat = 0.1 z (+ 0.01 mean r)``."""

    def __init__(self, shape, n_neurons):
        self.shape, self.n_neurons = shape, n_neurons

    def __call__(self, z, a, r):
        return 0.1 * z if r is None else 0.1 * z + 0.01 * r.mean()


def _cli_decompose_all(tmp_path, capsys, monkeypatch, fake_model: bool):
    """`jaxdecomp decompose --all` on 5 images in chunks of 2, interrupted after one chunk and rerun."""
    from jaxdecomp import cli, diffusion, neurons

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "imgs.npz", x=rng.uniform(-1, 1, (5, 8, 8)).astype(np.float32))
    if fake_model:        # the wiring only: no network to build, train or compile
        pop = neurons.image_population("linear_gaussian", (8, 8))
        net = _LinearNet((8, 8), int(jax.eval_shape(pop.sample, jax.random.PRNGKey(0), np.zeros((8, 8))).shape[0]))
        (tmp_path / "run" / "denoiser").mkdir(parents=True)
        (tmp_path / "run" / "denoiser" / "model.json").write_text("{}")
        monkeypatch.setattr(diffusion, "model_info", lambda path: {"metadata": {"neurons": "linear_gaussian"}})
        monkeypatch.setattr(diffusion, "load_model", lambda path: net)
    else:
        monkeypatch.setattr(diffusion, "train", _fake_train)
        cli.run_train(tmp_path / "imgs.npz", tmp_path / "run", neurons_name="gabor", steps=1, batch=4,
                      channels=(4,), copies=1)
    real = estimate.decompose_dataset
    calls = []

    def tiny(*args, **kw):
        calls.append(dict(kw))
        kw.update(n_levels=2, n_samples=2, n_steps=1)
        return real(*args, **kw)

    argv = ["decompose", "--all", "--chunk", "2", "--data", str(tmp_path / "imgs.npz"), "--model",
            str(tmp_path / "run"), "--out", str(tmp_path / "maps"), "--n-images", "3"]

    def stop_after_first(*args, **kw):
        kw["_on_chunk"] = lambda k: (_ for _ in ()).throw(KeyboardInterrupt)
        return tiny(*args, **kw)

    monkeypatch.setattr(estimate, "decompose_dataset", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        cli.main(argv)
    monkeypatch.setattr(estimate, "decompose_dataset", tiny)
    assert cli.main(argv) == 0
    assert calls[-1]["chunk"] == 2 and calls[-1]["resume"] == "auto" and not calls[-1]["overwrite"]
    store = tmp_path / "maps" / "store"
    assert sorted(p.name for p in store.glob("chunk_*.npz")) == [f"chunk_{k:06d}.npz" for k in range(3)]
    with np.load(tmp_path / "maps" / "maps.npz") as z:
        assert z["ilocal"].shape == (5, 8, 8) and np.all(np.isfinite(z["ilocal"]))
        np.testing.assert_array_equal(z["ilocal"], estimate.load_dataset_maps(store)["ilocal"])
    res = json.loads((tmp_path / "maps" / "results.json").read_text())
    assert res["n_images"] == 5 and len(res["ilocal_total"]) == 5
    assert (tmp_path / "maps" / "figure.png").exists()
    # another seed: the store is refused, naming --out and --overwrite; --overwrite replaces it
    assert cli.main(argv + ["--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "--out:" in err and "key: a different PRNG key" in err and "--overwrite" in err
    assert cli.main(argv + ["--seed", "1", "--overwrite"]) == 0
    assert calls[-1]["resume"] == "never" and calls[-1]["overwrite"]
    n_calls = len(calls)
    assert cli.main([a for a in argv if a != "--all"] + ["--resume"]) == 2       # a store needs --all
    assert "pass --all" in capsys.readouterr().err
    assert cli.main(argv[:3] + ["0"] + argv[4:]) == 2
    assert "--chunk: expected a positive int" in capsys.readouterr().err
    assert len(calls) == n_calls


@pytest.mark.heavy
def test_cli_decompose_all_wiring(tmp_path, capsys, monkeypatch):
    _cli_decompose_all(tmp_path, capsys, monkeypatch, fake_model=True)


@pytest.mark.slow
def test_cli_decompose_all_with_a_unet(tmp_path, capsys, monkeypatch):
    _cli_decompose_all(tmp_path, capsys, monkeypatch, fake_model=False)
