"""The jaxdecomp command: help, bad input, and the quick demo end to end."""

import json
import subprocess
import sys

import numpy as np
import pytest

from jaxdecomp import cli


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
    assert "denoiser.json" in capsys.readouterr().err


def test_quick_demo_end_to_end(tmp_path):
    res = cli.run_demo(tmp_path, quick=True, steps=400)
    assert (tmp_path / "figure.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "results.json").read_text())
    comp = saved["completeness"]
    assert comp["n_digits"] == 16 and comp["reference_form"] == "gap"
    assert comp["agrees_with_reference_within_2_se"] == (abs(comp["z_gap"]) < 2)
    maps = np.asarray(saved["panel"]["ilocal"])
    assert maps.shape == (4, 16, 16) and np.all(np.isfinite(maps))
    # Fisher maps are exact: their totals equal the population's Fisher trace
    assert np.all(np.asarray(res["fisher_totals"]) > 0)
    # I_local is non-negative per pixel up to Monte Carlo noise (it is a mean of squares)
    assert np.all(maps >= 0)
    # checkpoints were written and can be resumed
    assert any((tmp_path / "checkpoints").iterdir())
