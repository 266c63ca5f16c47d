"""Trained Flax NNX denoisers against ground truth (issue 3's accuracy targets, on this CPU).

Runs the two cases of ``experiments/trained_vs_exact.py`` at their default settings
(10,000 training pairs, 8,000 steps, about 20 s of training each on 2 CPU cores).
"""

import jax
import numpy as np
import pytest

from experiments import trained_vs_exact as T
from jaxdecomp import estimate as E
from jaxdecomp.diffusion import gaussian_denoiser
from jaxdecomp.diffusion.training import TrainConfig


@pytest.mark.parametrize("make, seed", [(T.case_gmm, 0),
                                        pytest.param(T.case_poisson, 1, marks=pytest.mark.slow)])  # 78 s
def test_trained_network_matches_truth(make, seed):
    case = make(jax.random.PRNGKey(100 + seed))
    row = T.run_case(case, 8000, jax.random.PRNGKey(200 + seed))
    assert row["train_seconds"] < 300
    # population MI on held-out pairs within 5% of the truth (gap form)
    assert abs(row["mi_gap_relative_error"]) < 0.05, row["mi_gap_relative_error"]
    # I_local(x) at 20 held-out stimuli: median relative error within 10%
    assert row["ilocal_median_abs_relative_error"] < 0.10, row["ilocal_median_abs_relative_error"]


@pytest.mark.slow  # 52 s; estimate(x, r) against a known MI also in test_estimate_mi.py
def test_estimate_from_data_only():
    # Gaussian prior N(0, I_3), r = A x + 0.5 n: I = 1/2 log det(I + A A^T / 0.25)
    rng = np.random.default_rng(0)
    A = rng.normal(size=(2, 3)) * 0.7
    D = gaussian_denoiser(np.zeros(3), np.ones(3), A, 0.5)
    truth = 0.5 * np.linalg.slogdet(np.eye(2) + A @ A.T / 0.25)[1]
    x = D.prior_sample(jax.random.PRNGKey(0), 5000)
    r = jax.vmap(D.population.sample)(jax.random.split(jax.random.PRNGKey(1), 5000), x)
    cfg = TrainConfig(steps=3000, batch_size=256, warmup_steps=200, progress=False)
    est = E.estimate(x, r, config=cfg)
    assert isinstance(est, E.Estimate)
    value, info = est.value, est.info
    assert abs(value - truth) / truth < 0.1, (value, truth)
    # cross-fitted (the default): every one of the 5000 pairs evaluated once, by the member that did not see it
    assert info["crossfit"] and info["n_heldout"] == 5000 and est.stderr > 0
    assert sorted(np.concatenate(info["folds"])) == list(range(5000))


def test_estimate_bad_input():
    x, r = np.zeros((10, 3)), np.zeros((9, 2))
    with pytest.raises(ValueError, match="x and r"):
        E.estimate(x, r)
    with pytest.raises(ValueError, match="x: contains NaN"):
        E.estimate(np.full((10, 3), np.nan), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="too few"):
        E.estimate(np.zeros((4, 3)), np.zeros((4, 2)))
