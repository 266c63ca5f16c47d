"""The jaxdecomp command: help, bad input, and the quick demo end to end."""

import json
import subprocess
import sys

import numpy as np
import pytest
from tests._fakes import fake_train

from jaxdecomp import cli, diffusion, estimate


@pytest.mark.heavy
def test_help_lists_commands_and_models():
    out = subprocess.run([sys.executable, "-m", "jaxdecomp", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for word in ("demo", "train", "decompose"):
        assert word in out.stdout
    out = subprocess.run([sys.executable, "-m", "jaxdecomp", "train", "--help"], capture_output=True, text=True)
    assert "lnp" in out.stdout and "cnn_retina" in out.stdout


def test_unknown_neuron_model_lists_choices(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--data", "x.npz", "--out", "o", "--neurons", "retina9"])
    err = capsys.readouterr().err
    assert "invalid choice" in err and "lnp" in err and "gabor" in err


def test_bad_files_give_clear_errors(tmp_path, capsys):
    assert cli.main(["train", "--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.npz" in capsys.readouterr().err
    np.savez(tmp_path / "imgs.npz", x=np.full((4, 8, 8), 3.0, np.float32))
    assert cli.main(["train", "--data", str(tmp_path / "imgs.npz"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "[-1" in err or "range" in err
    np.savez(tmp_path / "ok.npz", x=np.zeros((4, 8, 8), np.float32))
    assert cli.main(["decompose", "--data", str(tmp_path / "ok.npz"), "--model", str(tmp_path),
                     "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--model" in err and "model.json" in err and "jaxdecomp train" in err


_fake_train = fake_train


def _fake_maps(key, denoiser, population, x, **kw):
    z = np.zeros(x.shape, np.float32)
    return dict(ilocal=z, ilocal_total=np.zeros(len(x)), ilocal_se=np.zeros(len(x)), ilocal_pixel_se=z,
                ilocal_pixel_snr=np.zeros(len(x)), fisher=z)


def _train_and_decompose(tmp_path, capsys, n_levels=32, n_samples=16, n_steps=16):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "imgs.npz", x=rng.uniform(-1, 1, (6, 8, 8)).astype(np.float32),
             y=rng.uniform(-1, 1, (2, 4, 4)).astype(np.float32))
    cli.run_train(tmp_path / "imgs.npz", tmp_path / "run", neurons_name="gabor", steps=3, batch=4, channels=(4,),
                  copies=1)
    info = diffusion.model_info(tmp_path / "run" / "denoiser")
    assert info["metadata"]["neurons"] == "gabor" and info["metadata"]["trained_steps"] == 3
    assert info["spec"]["kind"] == "unet" and info["spec"]["shape"] == [8, 8] and info["spec"]["channels"] == [4]
    # one model directory (besides the training checkpoints), nothing beside it
    assert {p.name for p in (tmp_path / "run").iterdir()} - {"checkpoints"} == {"denoiser"}
    # decompose rebuilds the network from the model directory alone, with the neuron model it was trained on
    res = cli.run_decompose(tmp_path / "imgs.npz", tmp_path / "run", tmp_path / "maps", n_images=2,
                            n_levels=n_levels, n_samples=n_samples, n_steps=n_steps)
    assert res["neurons"] == "gabor" and res["ilocal"].shape == (2, 8, 8) and np.all(np.isfinite(res["ilocal"]))
    assert (tmp_path / "maps" / "maps.npz").exists() and (tmp_path / "maps" / "figure.png").exists()
    # a 3-step model is flagged, with the fix, in the results and in results.json (with field descriptions)
    assert res["verdict"].startswith("NOT trustworthy: train longer") and "3 steps" in res["verdict"]
    saved = json.loads((tmp_path / "maps" / "results.json").read_text())
    assert saved["verdict"] == res["verdict"] and "nats per pixel" in saved["fields"]["ilocal"]
    assert saved["diagnostics"]["training_steps"]["passed"] is False
    assert "verdict: NOT trustworthy" in capsys.readouterr().out
    # the model folder itself is accepted too; wrong image size, wrong neuron count and corrupt weights
    # are clear errors naming the flag
    assert cli.main(["decompose", "--data", str(tmp_path / "imgs.npz"), "--x-key", "y",
                     "--model", str(tmp_path / "run" / "denoiser"), "--out", str(tmp_path / "o")]) == 2
    assert "--data" in capsys.readouterr().err
    assert cli.main(["decompose", "--data", str(tmp_path / "imgs.npz"), "--neurons", "lnp",
                     "--model", str(tmp_path / "run"), "--out", str(tmp_path / "o")]) == 2
    assert "--neurons" in capsys.readouterr().err
    weights = sorted((f for f in (tmp_path / "run" / "denoiser" / "weights").rglob("*") if f.is_file()),
                     key=lambda f: f.stat().st_size)[-1]
    weights.write_bytes(weights.read_bytes()[:-7])
    assert cli.main(["decompose", "--data", str(tmp_path / "imgs.npz"), "--model", str(tmp_path / "run"),
                     "--out", str(tmp_path / "o")]) == 2
    assert "corrupt" in capsys.readouterr().err


@pytest.mark.heavy
def test_train_then_decompose_wiring(tmp_path, capsys, monkeypatch):
    """run_train saves one model directory (architecture, weights, neuron model); decompose needs only it."""
    monkeypatch.setattr(diffusion, "train", _fake_train)
    monkeypatch.setattr(estimate, "pixel_maps", _fake_maps)
    _train_and_decompose(tmp_path, capsys)


def test_decompose_refuses_a_model_trained_on_recorded_responses(tmp_path, capsys, monkeypatch):
    """A denoiser trained on recorded responses (--r-key) cannot be decomposed with a simulated neuron
    model: decompose refuses, naming --model and the recorded responses, instead of simulating lnp."""
    monkeypatch.setattr(diffusion, "train", _fake_train)
    monkeypatch.setattr(estimate, "pixel_maps", _fake_maps)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rec.npz", x=rng.uniform(-1, 1, (6, 8, 8)).astype(np.float32),
             r=rng.poisson(3.0, (6, 49)).astype(np.float32))
    cli.run_train(tmp_path / "rec.npz", tmp_path / "run", r_key="r", steps=3, batch=4, channels=(4,), copies=1)
    for extra in ([], ["--neurons", "lnp"]):
        assert cli.main(["decompose", "--data", str(tmp_path / "rec.npz"), "--model", str(tmp_path / "run"),
                         "--out", str(tmp_path / "o"), *extra]) == 2
        err = capsys.readouterr().err
        assert "--model" in err and "recorded responses" in err
    assert not (tmp_path / "o" / "maps.npz").exists()


@pytest.mark.slow
def test_train_then_decompose_for_real(tmp_path, capsys):
    _train_and_decompose(tmp_path, capsys, n_levels=2, n_samples=2, n_steps=1)


@pytest.mark.heavy
def test_quick_demo_end_to_end(tmp_path):
    res = cli.run_demo(tmp_path, quick=True, steps=400)
    assert (tmp_path / "figure.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "results.json").read_text())
    comp = saved["completeness"]
    assert comp["n_digits"] == 16 and comp["reference_form"] == "gap"
    assert comp["agrees_with_reference_within_2_se"] == (abs(comp["z_gap"]) < 2)
    assert saved["verdict"].startswith(("trustworthy", "NOT trustworthy: "))
    assert saved["diagnostics"]["completeness_vs_gap_mi"]["passed"] == (abs(comp["z_gap"]) < 2)
    assert np.asarray(saved["panel"]["ilocal_pixel_se"]).shape == (4, 16, 16)
    maps = np.asarray(saved["panel"]["ilocal"])
    assert maps.shape == (4, 16, 16) and np.all(np.isfinite(maps))
    # Fisher maps are exact: their totals equal the population's Fisher trace
    assert np.all(np.asarray(res["fisher_totals"]) > 0)
    # I_local is non-negative per pixel up to Monte Carlo noise (it is a mean of squares)
    assert np.all(maps >= 0)
    # checkpoints were written and can be resumed
    assert any((tmp_path / "checkpoints").iterdir())


@pytest.mark.parametrize("content, flag, extra", [
    (b"hello\n", "--data", []),                  # a text file named .npz: not the misleading allow_pickle message
    (None, "--x-key", ["--x-key", "nope"]),      # a missing key names the flag, not the argument `key`
    (None, "--r-key", ["--r-key", "nope"]),
])
def test_cli_data_errors_name_the_flags(tmp_path, capsys, content, flag, extra):
    f = tmp_path / "d.npz"
    if content is None:
        np.savez(f, x=np.zeros((4, 8, 8), np.float32))
    else:
        f.write_bytes(content)
    assert cli.main(["train", "--data", str(f), "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert f"error: {flag}:" in err and "allow_pickle" not in err and "path:" not in err


def _keyed_maps(key, denoiser, population, x, **kw):
    """Stands in for ``estimate.pixel_maps``: the image's square plus key-dependent noise, so two runs with
    other seeds give correlated but different maps of the same digit."""
    import jax

    noise = np.asarray(jax.random.uniform(key, x.shape), np.float32)
    m = np.asarray(x, np.float32) ** 2 + 0.5 * noise
    tot = m.reshape(len(x), -1).sum(1)
    return dict(ilocal=m, ilocal_total=tot, ilocal_se=0.1 * tot, ilocal_pixel_se=0.1 * m + 1e-3,
                ilocal_pixel_snr=np.full(len(x), 10.0), fisher=m)


def _fake_mi(key, denoiser, x, r, *, form="orthogonal", **kw):
    one = estimate.Estimate(np.float32(3.0), np.float32(0.1))
    if form == "both":
        return {"orthogonal": one, "gap": one, "difference": estimate.Estimate(np.float32(0.0), np.float32(0.05))}
    return one


def test_demo_compare_reports_map_stability_between_seeds(tmp_path, capsys, monkeypatch):
    """--compare: the same test digits for every --seed, the per-digit map correlation with the other run
    (checked against map_correlations of the saved maps), in results.json and the verdict; bad --compare
    targets are refused before any training."""
    monkeypatch.setattr(diffusion, "train", _fake_train)
    monkeypatch.setattr(estimate, "pixel_maps", _keyed_maps)
    monkeypatch.setattr(estimate, "mutual_information", _fake_mi)
    monkeypatch.setitem(cli.DEMO_SETTINGS, True, dict(cli.DEMO_SETTINGS[True], channels=(4,), steps=600, n_complete=6,
                                                     n_mi=8, panel=2))
    a = cli.run_demo(tmp_path / "a", quick=True, seed=0)
    assert a["stability"]["note"].startswith("not measured")
    b = cli.run_demo(tmp_path / "b", quick=True, seed=3, compare=tmp_path / "a")
    np.testing.assert_array_equal(a["test_digits"], b["test_digits"])      # the split does not follow --seed
    st = b["stability"]
    saved = json.loads((tmp_path / "b" / "results.json").read_text())
    want = estimate.map_correlations(np.asarray(a["ilocal_maps"]), np.asarray(b["ilocal_maps"]))
    np.testing.assert_allclose(saved["stability"]["correlations"], want, rtol=1e-6)
    assert st["n_digits"] == 6 and st["other_seed"] == 0 and np.isclose(st["median_correlation"], np.median(want))
    assert 0 < st["median_correlation"] < 1        # other seeds' noise: correlated, not identical
    d = saved["diagnostics"]["stability_between_runs"]
    assert d["passed"] == (np.median(want) >= cli.MIN_STABILITY)
    assert ("maps change between independent runs" in saved["verdict"]) == (not d["passed"])
    assert "stability:" in capsys.readouterr().out
    # refused before training: same seed, no results, an old results.json, another image size
    monkeypatch.setattr(diffusion, "train", lambda *a, **k: pytest.fail("trained despite a bad --compare"))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text(json.dumps({"settings": {"size": 16, "seed": 1}}))
    (tmp_path / "junk.json").write_text("{not json")
    for target, words in ((tmp_path / "a", "another --seed"), (tmp_path / "nothing", "no results.json"),
                          (tmp_path / "old", "older version"), (tmp_path / "junk.json", "not a readable")):
        assert cli.main(["demo", "--quick", "--out", str(tmp_path / "c"), "--compare", str(target)]) == 2
        err = capsys.readouterr().err
        assert "error: --compare:" in err and words in err, err
    bad = json.loads((tmp_path / "a" / "results.json").read_text())
    bad["settings"]["size"], bad["settings"]["seed"] = 8, 5
    (tmp_path / "size.json").write_text(json.dumps(bad))
    assert cli.main(["demo", "--quick", "--out", str(tmp_path / "c"), "--compare", str(tmp_path / "size.json")]) == 2
    assert "8x8" in capsys.readouterr().err


def test_map_correlations_against_numpy_and_bad_input():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 4, 3)), rng.normal(size=(5, 4, 3))
    b[0] = 2 * a[0] + 1
    want = [np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b)]
    np.testing.assert_allclose(estimate.map_correlations(a, b), want, rtol=1e-12)
    assert estimate.map_correlations(a, b)[0] == pytest.approx(1.0)
    for x, y, words in ((a, b[:, :3], "one shape"), (a[:0], b[:0], "empty"), (np.full_like(a, np.nan), b, "NaN"),
                        (np.ones_like(a), b, "constant")):
        with pytest.raises(ValueError, match=words):
            estimate.map_correlations(x, y)
