"""``jaxdecomp fit`` and ``decompose --encoder``: fit an encoder to recordings, decompose with it."""

import json

import jax
import numpy as np
import pytest
from tests._fakes import fake_train

from jaxdecomp import cli, diffusion, estimate, neurons


def _recordings(path, n=300, repeats=2, shape=(8, 8)):
    """White-noise images and Poisson counts of a known LNP population (4 neurons)."""
    pop = neurons.lnp_population(shape, grid=2, extent=0.5, rf_sigma=0.25, gain=10.0, slope=0.15, offset=0.0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (n,) + shape).astype(np.float32)
    f = np.asarray(jax.vmap(pop.rate)(x))
    r = rng.poisson(f[:, None, :], (n, repeats, f.shape[1])).astype(np.float32)
    np.savez(path, x=x, r=r)
    return pop, x, r


_fake_train = fake_train


def _fake_maps(key, denoiser, population, x, **kw):
    # the population handed to the estimator must be the fitted encoder
    _fake_maps.population = population
    z = np.zeros(x.shape, np.float32)
    return dict(ilocal=z, ilocal_total=np.zeros(len(x)), ilocal_se=np.zeros(len(x)), fisher=z)


@pytest.mark.heavy
def test_fit_then_decompose_with_encoder(tmp_path, capsys, monkeypatch):
    pop, x, r = _recordings(tmp_path / "rec.npz")
    enc = tmp_path / "enc"
    assert cli.main(["fit", "--data", str(tmp_path / "rec.npz"), "--out", str(enc), "--nonlinearity", "sigmoid",
                     "--lr", "0.05", "--steps", "400"]) == 0
    out = capsys.readouterr().out
    assert "bits/spike" in out and "FEV" in out and "--encoder" in out
    info = neurons.encoder_info(enc)
    assert info["spec"]["n_neurons"] == 4 and info["metadata"]["config"]["repeats"] == 2
    assert info["metadata"]["validation_metrics"]["bits_per_spike_pooled"] > 0.1
    fitted = neurons.load_encoder(enc)
    c = [np.corrcoef(np.asarray(fitted.rates.W)[i], np.asarray(pop.rates.W)[i])[0, 1] for i in range(4)]
    assert min(c) > 0.9
    # never silently overwritten
    assert cli.main(["fit", "--data", str(tmp_path / "rec.npz"), "--out", str(enc), "--steps", "25"]) == 2
    assert "--out" in capsys.readouterr().err
    # a denoiser trained on the recordings: decompose refuses without --encoder, naming it ...
    monkeypatch.setattr(diffusion, "train", _fake_train)
    monkeypatch.setattr(estimate, "pixel_maps", _fake_maps)
    cli.run_train(tmp_path / "rec.npz", tmp_path / "run", r_key="r", steps=3, batch=4, channels=(4,))
    assert cli.main(["decompose", "--data", str(tmp_path / "rec.npz"), "--model", str(tmp_path / "run"),
                     "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--encoder" in err and "jaxdecomp fit" in err and "recorded responses" in err
    # ... and uses the fitted encoder with it
    assert cli.main(["decompose", "--data", str(tmp_path / "rec.npz"), "--model", str(tmp_path / "run"),
                     "--out", str(tmp_path / "o"), "--encoder", str(enc), "--n-images", "2"]) == 0
    assert isinstance(_fake_maps.population, neurons.PoissonPopulation)
    assert isinstance(_fake_maps.population.rates, neurons.GLMRates)
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["neurons"].startswith("fitted encoder")
    # --encoder with --neurons, or with a denoiser trained on simulated responses, is refused
    assert cli.main(["decompose", "--data", str(tmp_path / "rec.npz"), "--model", str(tmp_path / "run"),
                     "--out", str(tmp_path / "o"), "--encoder", str(enc), "--neurons", "lnp"]) == 2
    assert "--encoder, --neurons" in capsys.readouterr().err
    # a corrupt encoder folder is a clear error naming --encoder
    (enc / "weights.npz").write_bytes(b"PK garbage")
    assert cli.main(["decompose", "--data", str(tmp_path / "rec.npz"), "--model", str(tmp_path / "run"),
                     "--out", str(tmp_path / "o"), "--encoder", str(enc)]) == 2
    assert "--encoder" in capsys.readouterr().err


@pytest.mark.parametrize(
    "edit, flag",
    [
        (lambda x, r: (x, -r), "--r-key 'r': Poisson responses must be non-negative"),
        (lambda x, r: (x, r + 0.25), "--r-key 'r': Poisson responses must be integer"),
        (lambda x, r: (x, r[:10]), "--r-key 'r': expected one response row per stimulus"),
        (lambda x, r: (np.where(x > 0.99, np.nan, x), r), "--x-key 'x': contains NaN"),
        (lambda x, r: (x[:2], r[:2]), "--x-key: 2 stimuli are too few"),
    ],
)
def test_fit_bad_data_names_the_flags(tmp_path, capsys, edit, flag):
    _, x, r = _recordings(tmp_path / "ok.npz", n=20)
    x, r = edit(x, r)
    np.savez(tmp_path / "bad.npz", x=x, r=r)
    assert cli.main(["fit", "--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "enc"), "--steps", "1"]) == 2
    assert flag in capsys.readouterr().err
    assert not (tmp_path / "enc").exists()


def test_fit_missing_key_and_bad_setting(tmp_path, capsys):
    _recordings(tmp_path / "rec.npz", n=20)
    assert cli.main(["fit", "--data", str(tmp_path / "rec.npz"), "--out", str(tmp_path / "e"), "--r-key", "y"]) == 2
    assert "--r-key" in capsys.readouterr().err
    assert cli.main(["fit", "--data", str(tmp_path / "rec.npz"), "--out", str(tmp_path / "e"),
                     "--val-fraction", "1.5"]) == 2
    assert "--val-fraction" in capsys.readouterr().err


@pytest.mark.heavy
def test_train_with_encoder_then_decompose_uses_and_checks_it(tmp_path, capsys, monkeypatch):
    """``train --encoder ENC`` simulates the training responses with a fitted encoder and records it;
    ``decompose`` then uses that encoder, and refuses another one, --neurons, or a vanished folder."""
    _, x, r = _recordings(tmp_path / "rec.npz", n=60)
    fit_a = neurons.fit_encoder(jax.random.PRNGKey(0), x, r, nonlinearity="sigmoid", steps=30, learning_rate=0.05)
    fit_b = neurons.fit_encoder(jax.random.PRNGKey(1), x, r, nonlinearity="sigmoid", steps=30, learning_rate=0.05)
    enc, other = neurons.save_encoder(tmp_path / "enc", fit_a.encoder), neurons.save_encoder(tmp_path / "b", fit_b.encoder)
    monkeypatch.setattr(diffusion, "train", _fake_train)
    monkeypatch.setattr(estimate, "pixel_maps", _fake_maps)
    data, run = str(tmp_path / "rec.npz"), str(tmp_path / "run")
    # one source of responses only
    assert cli.main(["train", "--data", data, "--out", run, "--encoder", str(enc), "--r-key", "r"]) == 2
    assert "--encoder, --r-key, --neurons" in capsys.readouterr().err
    cli.run_train(tmp_path / "rec.npz", tmp_path / "run", encoder_dir=enc, steps=3, batch=4, channels=(4,), copies=1)
    meta = diffusion.model_info(tmp_path / "run" / "denoiser")["metadata"]
    assert meta["neurons"] is None and meta["encoder"]["path"] == str(enc.resolve())
    assert meta["encoder"]["weights_sha256"] == neurons.encoder_info(enc)["weights_sha256"]
    # decompose without --encoder takes the recorded one
    assert cli.main(["decompose", "--data", data, "--model", run, "--out", str(tmp_path / "o"), "--n-images", "2"]) == 0
    np.testing.assert_allclose(np.asarray(_fake_maps.population.rates.W), np.asarray(fit_a.encoder.rates.W))
    # another encoder, or --neurons, is refused
    assert cli.main(["decompose", "--data", data, "--model", run, "--out", str(tmp_path / "o"),
                     "--encoder", str(other)]) == 2
    assert "--encoder" in (err := capsys.readouterr().err) and "not the encoder" in err
    assert cli.main(["decompose", "--data", data, "--model", run, "--out", str(tmp_path / "o"), "--neurons", "lnp"]) == 2
    assert "--neurons" in capsys.readouterr().err
    # the recorded folder gone: a clear error naming --encoder
    enc.rename(tmp_path / "moved")
    assert cli.main(["decompose", "--data", data, "--model", run, "--out", str(tmp_path / "o")]) == 2
    assert "--encoder" in (err := capsys.readouterr().err) and "no longer there" in err
