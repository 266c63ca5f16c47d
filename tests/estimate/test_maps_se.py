"""pixel_maps: the same maps as ilocal, plus per-pixel standard errors that describe the spread."""

import jax
import numpy as np
import pytest

from jaxdecomp import estimate, tasks
from jaxdecomp.diffusion.schedules import network_levels


def _task():
    rng = np.random.default_rng(0)
    return tasks.gaussian_mixture(np.full(2, 0.5), rng.normal(size=(2, 2, 3)), 0.3, rng.normal(size=(3, 6)) * 0.8, 0.5)


@pytest.mark.slow     # 15 s on the shared 2-core CPU (two compiles)
def test_pixel_maps_match_ilocal_and_carry_pixel_se():
    task = _task()
    x = np.asarray(task.sample_prior(jax.random.PRNGKey(1), 3))
    key = jax.random.PRNGKey(2)
    maps = estimate.pixel_maps(key, task.denoiser, task.encoder, x, n_levels=8, n_samples=8, progress=False)
    ref = estimate.ilocal(key, task.denoiser, task.encoder, x, levels=network_levels(8), n_samples=8, n_steps=16,
                          chunk=2048)
    np.testing.assert_allclose(maps["ilocal"], np.asarray(ref.map), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(maps["ilocal_total"], np.asarray(ref.total), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(maps["ilocal_se"], np.asarray(ref.stderr), rtol=1e-5, atol=1e-7)
    pse = maps["ilocal_pixel_se"]
    assert pse.shape == x.shape and np.all(pse > 0) and np.all(np.isfinite(pse))
    # pixel SEs never add to less than... the total's SE is at most the sum of the pixel SEs (triangle inequality)
    assert np.all(maps["ilocal_se"] <= pse.reshape(3, -1).sum(1) * (1 + 1e-6))
    assert maps["ilocal_pixel_snr"].shape == (3,) and np.all(maps["ilocal_pixel_snr"] > 0)


@pytest.mark.slow
def test_pixel_se_describes_the_spread():
    task = _task()
    x = np.asarray(task.sample_prior(jax.random.PRNGKey(1), 1))
    # the SE describes the spread: 4 independent keys, per-pixel spread vs the mean reported SE (loose)
    runs = [estimate.pixel_maps(jax.random.PRNGKey(10 + i), task.denoiser, task.encoder, x[:1], n_levels=8,
                                n_samples=8, progress=False) for i in range(6)]
    spread = np.std([r["ilocal"] for r in runs], axis=0, ddof=1)
    se = np.mean([r["ilocal_pixel_se"] for r in runs], axis=0)
    ratio = np.median(spread / se)
    assert 0.4 < ratio < 2.0, ratio
