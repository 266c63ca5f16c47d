"""Training with a known encoder: fresh responses r ~ p(r | x) drawn inside every step
(``train(..., population=...)``, ``make_train_step(..., population=...)``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdecomp import neurons
from jaxdecomp.diffusion import checkpoint as ckpt
from jaxdecomp.diffusion.networks import MLPDenoiser
from jaxdecomp.diffusion.training import (RESPONSE_KEY_TAG, TrainConfig, init_train_state, make_train_step,
                                          train, train_ensemble)


def _setup(n=64, d=2):
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (n, d)), np.float32)
    pop = neurons.gaussian_population(neurons.linear(np.eye(d)[:2] if d >= 2 else [1.0]), 0.5)
    net = MLPDenoiser((d,), n_neurons=2, hidden=16, depth=1, rngs=nnx.Rngs(0))
    return x, pop, net


@pytest.mark.slow
def test_step_draws_the_documented_responses():
    """A step with population and no r equals the plain step fed r = vmap(sample)(split(fold_in(fold_in(key,
    s), TAG), B), x): the noise / log-SNR / dropout draws are unchanged, the responses come from their own key."""
    x, pop, net = _setup()
    cfg = TrainConfig(steps=10, batch_size=16, progress=False)
    state = init_train_state(net, cfg, r=np.ones((4, 2), np.float32))
    key = jax.random.PRNGKey(3)
    fresh = jax.jit(make_train_step(net, cfg, log_snr_loc=0.0, population=pop))
    plain = jax.jit(make_train_step(net, cfg, log_snr_loc=0.0))
    xb = jnp.asarray(x[:16])
    s_a, s_b = state, state
    for _ in range(2):      # two steps: step s uses its own response key
        kr = jax.random.fold_in(jax.random.fold_in(key, s_a.step), RESPONSE_KEY_TAG)
        rb = jax.vmap(pop.sample)(jax.random.split(kr, 16), xb).astype(jnp.float32)
        s_a, m_a = fresh(s_a, (xb, None), key)
        s_b, m_b = plain(s_b, (xb, rb), key)
        np.testing.assert_array_equal(np.asarray(m_a["loss"]), np.asarray(m_b["loss"]))
    for a, b in zip(jax.tree.leaves(s_a.params), jax.tree.leaves(s_b.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a batch that brings its own responses ignores the population
    s_c, m_c = fresh(state, (xb, rb), key)
    s_d, m_d = plain(state, (xb, rb), key)
    np.testing.assert_array_equal(np.asarray(m_c["loss"]), np.asarray(m_d["loss"]))


@pytest.mark.slow
def test_train_with_population_runs_resumes_and_refuses_another(tmp_path):
    x, pop, net = _setup()
    cfg = TrainConfig(steps=6, batch_size=16, progress=False, log_every=3, checkpoint_every=3)
    res = train(net, x, config=cfg, key=jax.random.PRNGKey(0), population=pop, checkpoint_dir=tmp_path / "c")
    assert res.step == 6 and np.all(np.isfinite(res.losses[:, 1]))
    # response standardisation from the pilot draw: near the per-neuron mean / std of r = x[:, :2] + 0.5 n
    assert np.allclose(np.asarray(res.model.r_shift[...]), x[:, :2].mean(0), atol=0.3)
    assert np.allclose(np.asarray(res.model.r_scale[...]), np.sqrt(x[:, :2].var(0) + 0.25), rtol=0.35)
    # differs from training on one fixed set of pairs
    _, r_fixed = neurons.simulate_responses(jax.random.PRNGKey(9), pop, x)
    fixed = train(net, x, r_fixed, cfg, key=jax.random.PRNGKey(0))
    assert not all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                   zip(jax.tree.leaves(nnx.state(res.raw_model, nnx.Param)),
                       jax.tree.leaves(nnx.state(fixed.raw_model, nnx.Param))))
    # same run: resumes (nothing left to do); another population: a different run, refused
    again = train(net, x, config=cfg, key=jax.random.PRNGKey(0), population=pop, checkpoint_dir=tmp_path / "c")
    np.testing.assert_array_equal(again.losses, res.losses)
    other = neurons.gaussian_population(neurons.linear(np.eye(2)), 0.7)
    with pytest.raises(ckpt.CheckpointMismatch, match="population"):
        train(net, x, config=cfg, key=jax.random.PRNGKey(0), population=other, checkpoint_dir=tmp_path / "c")


def test_population_bad_input_names_the_argument():
    x, pop, net = _setup()
    cfg = TrainConfig(steps=2, batch_size=16, progress=False)
    with pytest.raises(ValueError, match="population, r"):
        train(net, x, np.zeros((len(x), 2), np.float32), cfg, population=pop)
    with pytest.raises(TypeError, match="population"):
        train(net, x, config=cfg, population=object())
    unconditional = MLPDenoiser((2,), n_neurons=None, hidden=8, depth=1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unconditional"):
        train(unconditional, x, config=cfg, population=pop)
    three = neurons.gaussian_population(neurons.linear(np.ones((3, 2))), 0.5)
    with pytest.raises(ValueError, match="population: draws responses of shape"):
        train(net, x, config=cfg, population=three)


def test_train_ensemble_with_population_matches_train_for_member_zero():
    """``train_ensemble(population=...)``: member 0 is ``train(models[0], key=keys[0], population=...)`` (the
    pilot draw that sets the response scaling comes from keys[0]); the members draw different responses."""
    x, pop, net = _setup()
    other = MLPDenoiser((2,), n_neurons=2, hidden=16, depth=1, rngs=nnx.Rngs(1))
    cfg = TrainConfig(steps=5, batch_size=16, progress=False, log_every=1)
    keys = [jax.random.PRNGKey(0), jax.random.PRNGKey(1)]
    ens = train_ensemble([net, other], x, config=cfg, keys=keys, population=pop)
    one = train(net, x, config=cfg, key=keys[0], population=pop)
    np.testing.assert_allclose(ens[0].losses, one.losses, rtol=1e-4)
    assert not np.allclose(ens[0].losses[:, 1], ens[1].losses[:, 1])
    with pytest.raises(ValueError, match="population, r"):
        train_ensemble([net, other], x, np.zeros((len(x), 2), np.float32), cfg, population=pop)
    with pytest.raises(TypeError, match="population"):
        train_ensemble([net, other], x, config=cfg, population=object())
