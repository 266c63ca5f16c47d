"""``diffusion.denoising_loss``: the held-out eps-MSE with its SE, and its bad-input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdecomp import neurons
from jaxdecomp.diffusion import build_denoiser, denoiser_spec, denoising_loss


def _zero_output(n_neurons):
    """A denoiser whose weights are all zero: it predicts eps = 0, so its loss is E[eps^2] = 1 exactly."""
    net = build_denoiser(denoiser_spec((4, 4), n_neurons, (4,)), 0)
    nnx.update(net, jax.tree.map(jnp.zeros_like, nnx.state(net, nnx.Param)))
    return net


def test_zero_predictor_has_unit_loss_within_its_se():
    x = np.random.default_rng(0).uniform(0, 1, (300, 4, 4)).astype(np.float32)
    pop = neurons.lnp_population((4, 4), grid=2)
    n = pop.sample(jax.random.PRNGKey(0), jnp.asarray(x[0])).shape[0]
    est = denoising_loss(jax.random.PRNGKey(1), _zero_output(n), x, population=pop, log_snr_loc=0.0)
    # mean of 300 x 4 x 16 squared standard normals: 1 with SE sqrt(2 / 64) / sqrt(300) per stimulus mean
    assert abs(float(est.value) - 1.0) < 4 * float(est.stderr)
    assert 0.005 < float(est.stderr) < 0.05
    unc = denoising_loss(jax.random.PRNGKey(1), _zero_output(None), x, log_snr_loc=0.0, draws=2)
    assert abs(float(unc.value) - 1.0) < 4 * float(unc.stderr)


def test_trained_shape_and_bad_inputs():
    x = np.random.default_rng(1).uniform(0, 1, (8, 4, 4)).astype(np.float32)
    net = build_denoiser(denoiser_spec((4, 4), 3, (4,)), 0)
    r = np.ones((8, 3), np.float32)
    est = denoising_loss(jax.random.PRNGKey(0), net, x, r)
    assert est.info["per_stimulus"].shape == (8,) and np.isfinite(float(est.value))
    with pytest.raises(ValueError, match="^r: the model is conditional"):
        denoising_loss(jax.random.PRNGKey(0), net, x)
    with pytest.raises(ValueError, match="^x: expected shape"):
        denoising_loss(jax.random.PRNGKey(0), net, x[:, :3], r)
    with pytest.raises(ValueError, match="^x, r: different numbers"):
        denoising_loss(jax.random.PRNGKey(0), net, x, r[:5])
    with pytest.raises(ValueError, match="^x: contains 1 NaN"):
        denoising_loss(jax.random.PRNGKey(0), net, np.where(np.arange(128).reshape(8, 4, 4) == 5, np.nan, x), r)
    with pytest.raises(ValueError, match="^x: need at least 2"):
        denoising_loss(jax.random.PRNGKey(0), net, x[:1], r[:1])
    with pytest.raises(ValueError, match="^draws:"):
        denoising_loss(jax.random.PRNGKey(0), net, x, r, draws=0)
    with pytest.raises(ValueError, match="^log_snr_loc:"):
        denoising_loss(jax.random.PRNGKey(0), net, x, r, log_snr_loc=float("nan"))
    with pytest.raises(ValueError, match="^r: the model is unconditional"):
        denoising_loss(jax.random.PRNGKey(0), _zero_output(None), x, r)
