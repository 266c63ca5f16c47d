"""No lost checkpoint: a checkpoint of another run is refused, never renamed; only real corruption
is moved aside; one run per directory (lock); unwritable directories fail before any work; no
asyncio traceback flood; the CLI refuses to train over another run's checkpoints.

All runs are tiny MLP denoisers of a few steps (tests/_train_worker.py)."""

import dataclasses
import errno
import gc
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from flax import nnx

from jaxdecomp import cli, diffusion
from jaxdecomp.diffusion import checkpoint as ckpt
from jaxdecomp.diffusion import training
from jaxdecomp.diffusion.checkpoint import CheckpointLocked, CheckpointMismatch
from jaxdecomp.diffusion.networks import MLPDenoiser
from jaxdecomp.diffusion.training import train, train_ensemble

from tests import _train_worker as worker

ROOT = Path(__file__).resolve().parents[2]
STEPS = 10            # the base run: checkpoints at steps 5 and 10


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A finished 10-step run of the worker's model (checkpoints 5 and 10) and its result."""
    ck = tmp_path_factory.mktemp("base") / "ck"
    x, r = worker.data()
    res = train(worker.make_model(), x, r, worker.config(STEPS), checkpoint_dir=ck)
    assert sorted(int(p.name) for p in ck.iterdir() if p.name.isdigit()) == [5, 10]
    return ck, res


@pytest.fixture
def ck(base_run, tmp_path):
    """A private copy of the base run's checkpoint directory."""
    dst = tmp_path / "ck"
    shutil.copytree(base_run[0], dst)
    return dst


def _snapshot(directory: Path) -> dict:
    """Every file under ``directory`` (relative path -> bytes), to prove nothing changed."""
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != ckpt.LOCK_FILE}


def _refused(ck, *args, match, **kw):
    """``train`` on ``ck`` raises CheckpointMismatch matching ``match`` and changes nothing."""
    before = _snapshot(ck)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)            # a mismatch is no corruption: no "unreadable" warnings
        with pytest.raises(CheckpointMismatch, match=match) as info:
            train(*args, checkpoint_dir=ck, **kw)
    assert _snapshot(ck) == before, "a refused resume must not touch the directory"
    assert not any(".corrupt" in p.name for p in ck.iterdir())
    msg = str(info.value)
    assert str(ck.absolute()) in msg and "checkpoint_dir" in msg and "overwrite=True" in msg
    return info.value


def _weights(model):
    return [np.asarray(v) for v in jax.tree.leaves(nnx.state(model))]


# ----------------------------------------------------------------------------- mismatches are refused
def test_same_run_resumes_and_returns_the_same_model(ck, base_run):
    x, r = worker.data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        res = train(worker.make_model(), x, r, worker.config(STEPS), checkpoint_dir=ck)
    assert res.resumed_from == STEPS and res.step == STEPS
    for a, b in zip(_weights(res.model), _weights(base_run[1].model)):
        np.testing.assert_array_equal(a, b)


def test_mismatched_model_is_refused_not_renamed(ck):
    x, r = worker.data()
    other = MLPDenoiser((3,), n_neurons=2, hidden=16, depth=1, emb_dim=16, n_fourier=4, rngs=nnx.Rngs(7))
    err = _refused(ck, other, x, r, worker.config(STEPS), match=r"model hidden: 16 now, 32 in the checkpoint")
    assert err.step == STEPS and err.directory == ck.absolute()
    # the library call without a run fingerprint: structure alone, still no renaming
    template = training._to_ckpt(training.init_train_state(other, worker.config(STEPS), r=r))
    with pytest.raises(CheckpointMismatch, match=r"array '.*': shape \(32,?.*\) in the checkpoint, \(16"):
        ckpt.latest_good(ck, template=template)
    assert sorted(p.name for p in ck.iterdir() if p.name[0].isdigit()) == ["10", "5"]


def test_changed_data_is_refused(ck):
    x, r = worker.data()
    _refused(ck, worker.make_model(), x + 0.01, r, worker.config(STEPS),
             match=r"data x: same shape \(200, 3\) but different values")
    _refused(ck, worker.make_model(), x[:150], r[:150], worker.config(STEPS), match=r"data x: shape \(150, 3\) now")
    r2 = r.copy()
    r2[0, 0] += 1
    _refused(ck, worker.make_model(), x, r2, worker.config(STEPS), match=r"data r: same shape")


def test_changed_config_or_key_is_refused(ck):
    x, r = worker.data()
    cfg = worker.config(STEPS)
    _refused(ck, worker.make_model(), x, r, dataclasses.replace(cfg, learning_rate=1e-2),
             match=r"config.learning_rate: 0.01 now, 0.003 in the checkpoint")
    _refused(ck, worker.make_model(), x, r, cfg, key=jax.random.PRNGKey(99), match=r"key: a different PRNG key")
    # settings that do not change the updates may change between sessions
    quiet = dataclasses.replace(cfg, log_every=2, checkpoint_every=3, keep_checkpoints=5)
    assert train(worker.make_model(), x, r, quiet, checkpoint_dir=ck).resumed_from == STEPS


def test_smaller_steps_is_refused_larger_steps_continue(ck, base_run):
    x, r = worker.data()
    _refused(ck, worker.make_model(), x, r, worker.config(5),
             match=r"steps: the checkpoint is at step 10, beyond config.steps=5")
    with pytest.warns(UserWarning, match=r"run of 10 steps and now continues to config.steps=15.*schedule"):
        res = train(worker.make_model(), x, r, worker.config(15), checkpoint_dir=ck)
    assert res.resumed_from == STEPS and res.step == 15
    np.testing.assert_array_equal(res.losses[:, 0], [5, 10, 15])
    np.testing.assert_array_equal(res.losses[:2], base_run[1].losses)


def test_ensemble_into_a_single_run_is_refused(ck):
    x, r = worker.data()
    before = _snapshot(ck)
    with pytest.raises(CheckpointMismatch, match=r"ensemble members: 2 now, None in the checkpoint"):
        train_ensemble([worker.make_model(), worker.make_model()], x, r, worker.config(STEPS), checkpoint_dir=ck)
    assert _snapshot(ck) == before


def test_resume_and_overwrite_choices(ck, tmp_path):
    x, r = worker.data()
    cfg = worker.config(STEPS)
    with pytest.raises(FileExistsError, match=r"checkpoint_dir: .* already holds checkpoints.*overwrite=True"):
        train(worker.make_model(), x, r, cfg, checkpoint_dir=ck, resume="never")
    with pytest.raises(FileNotFoundError, match=r"checkpoint_dir: resume='must' but .* holds no checkpoint"):
        train(worker.make_model(), x, r, cfg, checkpoint_dir=tmp_path / "empty", resume="must")
    assert train(worker.make_model(), x, r, cfg, checkpoint_dir=ck, resume="must").resumed_from == STEPS
    for kw, err, match in [(dict(resume="sometimes"), ValueError, "resume: expected one of"),
                           (dict(overwrite="yes"), TypeError, "overwrite: expected a bool"),
                           (dict(resume="must", overwrite=True), ValueError, "resume, overwrite"),
                           (dict(resume="must", checkpoint_dir=None), ValueError, "resume: 'must' needs")]:
        kw.setdefault("checkpoint_dir", ck)
        with pytest.raises(err, match=match):
            train(worker.make_model(), x, r, cfg, **kw)
    # a different run with overwrite=True: the old checkpoints are deleted (loudly) and it starts afresh
    (ck / "5.corrupt").mkdir()                       # steps set aside as corrupt are kept
    with pytest.warns(UserWarning, match=r"deleted the checkpoints \(steps \[5, 10\]\).*different run"):
        res = train(worker.make_model(), x + 0.01, r, cfg, checkpoint_dir=ck, overwrite=True)
    assert res.resumed_from is None and res.step == STEPS and (ck / "5.corrupt").is_dir()
    # ... and that run is now the one continued
    assert train(worker.make_model(), x + 0.01, r, cfg, checkpoint_dir=ck).resumed_from == STEPS


# ----------------------------------------------------------------------------- corruption vs no template
def test_latest_good_without_template_never_renames(ck):
    names = sorted(p.name for p in ck.iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        got = ckpt.latest_good(ck)                    # verified against the per-array digests
    assert got.step == STEPS and got.meta["step"] == STEPS
    assert sorted(p.name for p in ck.iterdir()) == names
    # a really corrupt step is reported and skipped, but left in place without a template
    meta = ck / "10" / "meta" / "metadata"
    text = meta.read_text()
    key = next(iter(got.meta["leaves"]))
    meta.write_text(text.replace(got.meta["leaves"][key], "0" * 32))
    with pytest.warns(UserWarning, match=r"step 10 .* unreadable .*digest.*left in place.*falling back to step 5"):
        got = ckpt.latest_good(ck)
    assert got.step == 5
    assert sorted(p.name for p in ck.iterdir()) == names


def test_corrupt_latest_step_is_moved_aside_and_previous_used(ck):
    """Real corruption (a step of the right structure whose arrays fail their digests) is still
    moved aside and the previous step used (through train(): tests/test_training.py)."""
    meta = ck / "10" / "meta" / "metadata"
    got = ckpt.latest_good(ck)
    key = next(iter(got.meta["leaves"]))
    meta.write_text(meta.read_text().replace(got.meta["leaves"][key], "0" * 32))
    x, r = worker.data()
    template = training._to_ckpt(training.init_train_state(worker.make_model(), worker.config(STEPS), r=r))
    with pytest.warns(UserWarning, match=r"step 10 .* unreadable.*moved to '10.corrupt'.*falling back to step 5"):
        got = ckpt.latest_good(ck, template=template)
    assert got.step == 5 and (ck / "10.corrupt").is_dir() and not (ck / "10").exists()


def test_checkpoints_of_earlier_versions_still_resume(ck):
    """Checkpoints written before run fingerprints and per-array digests (meta without
    ``fingerprint`` / ``leaves``) resume, with a warning, and are still checked for key/config."""
    import hashlib
    import json

    for step in (5, 10):
        f = ck / str(step) / "meta" / "metadata"
        meta = json.loads(f.read_text())
        del meta["fingerprint"], meta["leaves"]
        f.write_text(json.dumps(meta))
    x, r = worker.data()
    with pytest.warns(UserWarning, match="predates run fingerprints"):
        assert train(worker.make_model(), x, r, worker.config(STEPS), checkpoint_dir=ck).resumed_from == STEPS
    _refused(ck, worker.make_model(), x, r, worker.config(STEPS), key=jax.random.PRNGKey(3), match="key")
    with pytest.warns(UserWarning, match="not verified"):
        assert ckpt.latest_good(ck).step == STEPS
    # the whole-state digest is the one earlier versions wrote (0-d leaves keep their shape "()")
    tree = {"s": jax.numpy.asarray(3, jax.numpy.int32), "w": np.arange(3.0, dtype=np.float32)}
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        arr = np.asarray(leaf)
        for part in (jax.tree_util.keystr(path), str(arr.dtype), str(arr.shape)):
            h.update(part.encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    assert ckpt.tree_digest(tree) == h.hexdigest()


# ----------------------------------------------------------------------------- one run per directory
_HOLDER = """
import sys, time
from jaxdecomp.diffusion.checkpoint import Checkpointer
c = Checkpointer(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def test_second_run_on_a_directory_is_refused(ck):
    x, r = worker.data()
    cfg = worker.config(STEPS)
    with ckpt.Checkpointer(ck):                       # a second lock holder in this process
        with pytest.raises(CheckpointLocked, match=r"checkpoint_dir: '.*ck' is in use by another training run"):
            train(worker.make_model(), x, r, cfg, checkpoint_dir=ck)
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(ck)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked", proc.stderr.read()[-2000:]
        with pytest.raises(CheckpointLocked, match=rf"in use by another training run \(pid {proc.pid} "):
            train(worker.make_model(), x, r, cfg, checkpoint_dir=ck)
    finally:
        proc.kill()
        proc.wait()
    # the lock goes with its holder; errors release it too
    with pytest.raises(CheckpointMismatch):
        train(worker.make_model(), x, r, worker.config(5), checkpoint_dir=ck)
    assert train(worker.make_model(), x, r, cfg, checkpoint_dir=ck).resumed_from == STEPS


# ----------------------------------------------------------------------------- unwritable locations
def _no_work(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("training work started before the directory was checked")
    monkeypatch.setattr(training, "init_train_state", boom)


def test_unwritable_directory_fails_before_any_work(tmp_path, monkeypatch):
    x, r = worker.data()
    cfg = worker.config(STEPS)
    _no_work(monkeypatch)
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ValueError, match=r"checkpoint_dir: '.*file' exists and is not a directory"):
        train(worker.make_model(), x, r, cfg, checkpoint_dir=tmp_path / "file")
    with pytest.raises(ValueError, match=r"checkpoint_dir: cannot create the directory '.*file/ck'"):
        train(worker.make_model(), x, r, cfg, checkpoint_dir=tmp_path / "file" / "ck")
    # a read-only directory. As root chmod does not stop writes, so the write probe is made to fail the
    # way a read-only mount fails (EROFS); the real chmod case runs below when not root.
    real_open = os.open

    def read_only(path, *a, **k):
        if ".write-test-" in os.fspath(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_open(path, *a, **k)

    (tmp_path / "ro").mkdir()
    with monkeypatch.context() as m:
        m.setattr(os, "open", read_only)
        with pytest.raises(ValueError, match=r"checkpoint_dir: the directory '.*ro' is read-only"):
            train(worker.make_model(), x, r, cfg, checkpoint_dir=tmp_path / "ro")
    assert list((tmp_path / "ro").iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_by_permissions(tmp_path, monkeypatch):
    x, r = worker.data()
    _no_work(monkeypatch)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ValueError, match=r"checkpoint_dir: the directory '.*ro' is read-only"):
            train(worker.make_model(), x, r, worker.config(STEPS), checkpoint_dir=ro)
    finally:
        ro.chmod(0o755)


# ----------------------------------------------------------------------------- no asyncio flood
def test_mismatch_prints_no_asyncio_tracebacks(ck, capfd):
    """Restoring arrays of the wrong shape made orbax abandon its in-flight TensorStore reads; their
    completion callbacks then hit a closed event loop ('Event loop is closed', one traceback per
    array). The structure is now compared from metadata first, so no restore is attempted."""
    x, r = worker.data()
    other = MLPDenoiser((3,), n_neurons=2, hidden=16, depth=3, emb_dim=16, n_fourier=4, rngs=nnx.Rngs(7))
    capfd.readouterr()
    with pytest.raises(CheckpointMismatch):
        train(other, x, r, worker.config(STEPS), checkpoint_dir=ck)
    time.sleep(0.5)
    gc.collect()
    err = capfd.readouterr().err
    assert "Event loop is closed" not in err and "Exception ignored" not in err and "Traceback" not in err, err[:2000]


# ----------------------------------------------------------------------------- the command line
def _tiny_builder(spec, seed=0):
    return MLPDenoiser(tuple(spec["shape"]), n_neurons=spec["n_neurons"], hidden=8, depth=1, emb_dim=8,
                       n_fourier=2, rngs=nnx.Rngs(seed))


def _spy_train(calls):
    def fake(net, x, r, config, **kw):
        calls.append(kw)
        return SimpleNamespace(model=net, step=config.steps, losses=np.zeros((1, 2)))
    return fake


def test_cli_train_into_another_runs_folder_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(diffusion, "build_denoiser", _tiny_builder)     # a tiny MLP instead of the UNet
    rng = np.random.default_rng(0)
    for name in ("a", "b"):     # responses in the file (--r-key): no neuron simulation
        np.savez(tmp_path / f"{name}.npz", x=rng.uniform(-1, 1, (6, 4, 4)).astype(np.float32),
                 r=rng.poisson(2.0, (6, 3)).astype(np.float32))
    m = tmp_path / "m"
    common = ["--out", str(m), "--r-key", "r", "--batch", "4"]
    assert cli.main(["train", "--data", str(tmp_path / "a.npz"), *common, "--steps", "2"]) == 0
    before, model_json = _snapshot(m / "checkpoints"), (m / "denoiser" / "model.json").read_bytes()
    capsys.readouterr()

    # other data (and fewer steps) into the same --out: refused, says what differs and what to do
    assert cli.main(["train", "--data", str(tmp_path / "b.npz"), *common, "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "--overwrite" in err and "--resume" in err and str(m / "checkpoints") in err, err
    assert "data x" in err and "data r" in err and "beyond config.steps=1" in err and "nothing was changed" in err
    assert _snapshot(m / "checkpoints") == before and (m / "denoiser" / "model.json").read_bytes() == model_json
    with pytest.raises(SystemExit):
        cli.main(["train", "--data", str(tmp_path / "b.npz"), *common, "--resume", "--overwrite"])
    assert "not allowed with" in capsys.readouterr().err
    # the flags reach train() as resume / overwrite
    calls = []
    monkeypatch.setattr(diffusion, "train", _spy_train(calls))
    for flag in ([], ["--resume"], ["--overwrite"]):
        assert cli.main(["train", "--data", str(tmp_path / "b.npz"), *common, *flag]) == 0
    assert [(c["checkpoint_dir"], c["resume"], c["overwrite"]) for c in calls] == [
        (m / "checkpoints", "auto", False), (m / "checkpoints", "must", False), (m / "checkpoints", "never", True)]


def test_cli_unwritable_or_busy_out(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(diffusion, "build_denoiser", _tiny_builder)
    np.savez(tmp_path / "a.npz", x=np.zeros((6, 4, 4), np.float32), r=np.ones((6, 3), np.float32))
    (tmp_path / "file").write_text("x")
    assert cli.main(["train", "--data", str(tmp_path / "a.npz"), "--out", str(tmp_path / "file")]) == 2
    assert "--out" in capsys.readouterr().err
    assert cli.main(["demo", "--out", str(tmp_path / "file")]) == 2
    assert "--out" in capsys.readouterr().err
    with ckpt.Checkpointer(tmp_path / "m" / "checkpoints"):
        assert cli.main(["train", "--data", str(tmp_path / "a.npz"), "--out", str(tmp_path / "m"), "--r-key", "r",
                         "--steps", "1", "--batch", "4"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "in use by another training run" in err


@pytest.mark.heavy
def test_cli_demo_passes_the_flags_and_explains_a_mismatch(tmp_path, capsys, monkeypatch):
    """The demo into a folder left by a run with other settings: train() refuses (tested above
    with real checkpoints); here the demo's flags and its error message."""
    calls = []

    def refuse(net, x, r, config, **kw):
        calls.append((kw["checkpoint_dir"], kw["resume"], kw["overwrite"]))
        raise CheckpointMismatch(kw["checkpoint_dir"], 800, ["steps: the checkpoint is at step 800, beyond "
                                                             "config.steps=400"], name="checkpoint_dir")

    monkeypatch.setattr(diffusion, "train", refuse)
    monkeypatch.setattr(diffusion, "build_denoiser", _tiny_builder)
    for flag in ([], ["--resume"], ["--overwrite"]):
        assert cli.main(["demo", "--out", str(tmp_path), "--quick", "--steps", "400", *flag]) == 2
        err = capsys.readouterr().err
        assert err.startswith("jaxdecomp demo: error: --out:") and "--overwrite" in err and "step 800" in err
    assert calls == [(tmp_path / "checkpoints", "auto", False), (tmp_path / "checkpoints", "must", False),
                     (tmp_path / "checkpoints", "never", True)]
