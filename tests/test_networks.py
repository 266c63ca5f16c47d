"""Denoiser networks: shapes, single vs batched calls, null embedding, jit/vmap, validation, dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdecomp.diffusion.networks import (
    MLPDenoiser,
    PairDenoiser,
    UNetDenoiser,
    fit_response_scaling,
)

N_NEURONS = 3


@jax.jit
def _apply(net, z, a, r=None, drop=None):
    """Jitted call (eager NNX dispatch is slow on CPU; jit is what the estimators use)."""
    return net(z, a, r, drop=drop)


def _randomize(model, seed=0, scale=0.3):
    """Give every parameter random values (the output layers start at zero, which would make
    every output equal and every equality test vacuous). Uses numpy: eager jax.random would
    compile once per parameter shape."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda p: jnp.asarray(scale * rng.standard_normal(p.shape), p.dtype), params)
    return nnx.merge(graphdef, params, rest)


def _build(cls, *args, **kw):
    """Random-weight network built without eager initialisers (``nnx.eval_shape``, then numpy values)."""
    abstract = nnx.eval_shape(lambda: cls(*args, rngs=nnx.Rngs(0), **kw))
    graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
    params = jax.tree.map(lambda p: jnp.zeros(p.shape, p.dtype), params)
    rest = jax.tree.map(lambda p: jnp.ones(p.shape, p.dtype), rest)      # r_scale = 1 (r_shift set below)
    net = nnx.merge(graphdef, params, rest)
    if getattr(net, "n_neurons", None) is not None:
        net.r_shift[...] = jnp.zeros_like(net.r_shift[...])
    return _randomize(net, seed=kw.get("n_fourier", 0))


def _mlp(shape, n_neurons=N_NEURONS, **kw):
    return _build(MLPDenoiser, shape, n_neurons=n_neurons, hidden=16, depth=2, emb_dim=8, n_fourier=4, **kw)


def _unet(shape, n_neurons=N_NEURONS, channels=(8, 16), **kw):
    net = _build(UNetDenoiser, shape, n_neurons=n_neurons, channels=channels, emb_dim=8, n_fourier=4, groups=4, **kw)
    return _randomize(net, scale=0.2)


def _inputs(shape, b=3, seed=1):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    z = jax.random.normal(k1, (b,) + tuple(shape))
    a = jax.random.uniform(k2, (b,), minval=-8.0, maxval=10.0)
    r = jax.random.poisson(k3, 3.0, (b, N_NEURONS)).astype(jnp.float32)
    return z, a, r


NETS = [("mlp", (5,)), ("mlp", (4, 4, 2)), ("unet", (16, 16)), ("unet", (8, 8, 3))]   # (8, 8) in the tests below


def _make(kind, shape, **kw):
    return _mlp(shape, **kw) if kind == "mlp" else _unet(shape, **kw)


@pytest.mark.parametrize("kind,shape", NETS)
def test_shapes_single_and_batched(kind, shape):
    net = _make(kind, shape)
    z, a, r = _inputs(shape)
    out = _apply(net, z, a, r)
    assert out.shape == z.shape and out.dtype == jnp.float32
    assert _apply(net, z[0], a[0], r[0]).shape == tuple(shape)
    assert _apply(net, z, a, None).shape == z.shape
    assert _apply(net, z, 1.5, r).shape == z.shape          # scalar log-SNR broadcast over the batch
    assert np.all(np.isfinite(out))
    assert net.shape == tuple(shape) and net.n_neurons == N_NEURONS


@pytest.mark.parametrize("shape", [(32, 32), (64, 64), (32, 32, 3)])
def test_unet_large_images_shapes(shape):
    net = _unet(shape, channels=(8, 16, 16, 32))
    z, a, r = _inputs(shape, b=2)
    out = jax.eval_shape(lambda z, a, r: net(z, a, r), z, a, r)
    assert out.shape == z.shape and out.dtype == jnp.float32


@pytest.mark.parametrize("kind,shape", [("mlp", (4, 4)), ("unet", (8, 8))])
def test_vmap_of_single_equals_batched(kind, shape):
    net = _make(kind, shape)
    z, a, r = _inputs(shape, b=4)
    batched = _apply(net, z, a, r)
    mapped = jax.jit(jax.vmap(lambda m, zi, ai, ri: m(zi, ai, ri), in_axes=(None, 0, 0, 0)))(net, z, a, r)
    np.testing.assert_allclose(mapped, batched, rtol=1e-5, atol=1e-5)
    single = jnp.stack([_apply(net, z[i], a[i], r[i]) for i in range(4)])
    np.testing.assert_allclose(single, batched, rtol=1e-5, atol=1e-5)
    uncond = jax.jit(jax.vmap(lambda m, zi, ai: m(zi, ai, None), in_axes=(None, 0, 0)))(net, z, a)
    np.testing.assert_allclose(uncond, _apply(net, z, a, None), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,shape", [("mlp", (5,)), ("unet", (8, 8))])
def test_null_embedding_and_drop_mask(kind, shape):
    net = _make(kind, shape)
    z, a, r = _inputs(shape, b=4)
    uncond = _apply(net, z, a, None)
    np.testing.assert_allclose(_apply(net, z, a, r, jnp.ones(4, bool)), uncond, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_apply(net, z, a, r, jnp.asarray(True)), uncond, rtol=1e-6, atol=1e-6)
    cond = _apply(net, z, a, r)
    assert np.max(np.abs(cond - uncond)) > 1e-3, "the response must change the output"
    np.testing.assert_allclose(_apply(net, z, a, r, jnp.zeros(4, bool)), cond, rtol=1e-6, atol=1e-6)
    mixed = _apply(net, z, a, r, jnp.array([True, False, True, False]))
    np.testing.assert_allclose(mixed[0::2], uncond[0::2], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mixed[1::2], cond[1::2], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind,shape", [("mlp", (5,)), ("unet", (8, 8))])
def test_jit_with_module_argument(kind, shape):
    net = _make(kind, shape)
    z, a, r = _inputs(shape)
    f = jax.jit(lambda m, z, a, r: m(z, a, r))
    ref = net if kind == "mlp" else (lambda *args: _apply(net, *args))    # eager UNet calls are slow on CPU
    np.testing.assert_allclose(f(net, z, a, r), ref(z, a, r), rtol=1e-5, atol=1e-5)
    g = jax.jit(jax.vmap(lambda m, zi, ai: m(zi, ai, None), in_axes=(None, 0, 0)))
    np.testing.assert_allclose(g(net, z, a), ref(z, a, None), rtol=1e-5, atol=1e-5)
    # a changed parameter value is seen by the jitted function (the module is an argument, not a constant)
    before = f(net, z, a, r)
    net2 = _randomize(net, seed=5)
    assert np.max(np.abs(f(net2, z, a, r) - before)) > 1e-3


@pytest.mark.parametrize("kind,shape", [("mlp", (5,)), ("unet", (8, 8))])
def test_bad_shapes_name_the_argument(kind, shape):
    net = _make(kind, shape)
    z, a, r = _inputs(shape)
    with pytest.raises(ValueError, match="x_noisy"):
        net(z[..., :-1], a, r)
    with pytest.raises(ValueError, match="x_noisy"):
        net(z[None], a, r)
    with pytest.raises(ValueError, match="log_snr"):
        net(z, a[:2], r)
    with pytest.raises(ValueError, match="log_snr"):
        net(z[0], a, r[0])
    with pytest.raises(ValueError, match="r"):
        net(z, a, r[:, :2])
    with pytest.raises(ValueError, match="r"):
        net(z[0], a[0], r)
    with pytest.raises(TypeError, match="drop"):
        net(z, a, r, drop=jnp.zeros(3))
    with pytest.raises(ValueError, match="drop"):
        net(z, a, r, drop=jnp.zeros(2, bool))
    with pytest.raises(TypeError, match="x_noisy"):
        net(jnp.zeros(z.shape, jnp.int32), a, r)
    uncond = _make(kind, shape, n_neurons=None)
    assert uncond(z, a).shape == z.shape
    with pytest.raises(ValueError, match="r: this network is unconditional"):
        uncond(z, a, r)


def test_real_initialisation():
    """Networks built normally: zero-initialised output layers give eps_hat = 0 at first; finite."""
    mlp = MLPDenoiser((5,), n_neurons=2, hidden=8, depth=1, emb_dim=4, n_fourier=2, rngs=nnx.Rngs(0))
    unet = UNetDenoiser((8, 8), n_neurons=2, channels=(4,), emb_dim=4, n_fourier=2, groups=2, rngs=nnx.Rngs(0))
    for net, shape in ((mlp, (5,)), (unet, (8, 8))):
        out = _apply(net, jnp.ones((2,) + shape), jnp.zeros(2), jnp.ones((2, 2)))
        np.testing.assert_array_equal(out, 0.0)
        assert np.all(np.isfinite(np.asarray(net.cond.null[...])))
        np.testing.assert_array_equal(net.r_shift[...], 0.0)
        np.testing.assert_array_equal(net.r_scale[...], 1.0)


def test_constructor_validation():
    with pytest.raises(ValueError, match="divisible"):
        UNetDenoiser((10, 10), channels=(8, 16, 32), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="divisible"):
        UNetDenoiser((8, 6), channels=(8, 16, 32), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="shape"):
        UNetDenoiser((8,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="n_neurons"):
        MLPDenoiser((3,), n_neurons=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="hidden"):
        MLPDenoiser((3,), hidden=0, rngs=nnx.Rngs(0))
    nnx.eval_shape(lambda: UNetDenoiser((12, 12), channels=(8, 16, 16), rngs=nnx.Rngs(0)))  # 12 % 4 == 0: fine


def test_pair_denoiser_routes():
    shape = (6,)
    uncond = _build(MLPDenoiser, shape, hidden=16, depth=1, emb_dim=8)
    cond = _mlp(shape)
    pair = PairDenoiser(uncond, cond)
    assert pair.shape == shape and pair.n_neurons == N_NEURONS
    z, a, r = _inputs(shape)
    np.testing.assert_array_equal(_apply(pair, z, a, None), _apply(uncond, z, a, None))
    np.testing.assert_array_equal(_apply(pair, z, a, r), _apply(cond, z, a, r))
    assert np.max(np.abs(_apply(pair, z, a, r) - _apply(pair, z, a, None))) > 1e-3
    np.testing.assert_allclose(jax.vmap(lambda zi, ai, ri: pair(zi, ai, ri))(z, a, r), cond(z, a, r),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.jit(lambda p, z, a: p(z, a, None))(pair, z, a), uncond(z, a), rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(ValueError, match="unconditional, conditional"):
        PairDenoiser(_mlp((5,), n_neurons=None), cond)
    with pytest.raises(ValueError, match="conditional"):
        PairDenoiser(uncond, uncond)


@pytest.mark.parametrize("kind,shape", [("mlp", (5,)), ("unet", (8, 8))])
def test_bfloat16_compute_gives_float32_output(kind, shape):
    net = _make(kind, shape, dtype=jnp.bfloat16)
    z, a, r = _inputs(shape)
    out = _apply(net, z, a, r)
    assert out.dtype == jnp.float32 and np.all(np.isfinite(out))
    params = nnx.state(net, nnx.Param)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    ref = _apply(_make(kind, shape), z, a, r)          # same random weights in float32
    assert np.max(np.abs(out - ref)) < 0.1 * np.max(np.abs(ref)) + 0.1


def test_response_scaling():
    net = _mlp((5,))
    rng = np.random.default_rng(0)
    r = np.stack([rng.poisson(4.0, 500), np.zeros(500), 10 + 0.01 * rng.standard_normal(500)], 1)
    fit_response_scaling(net, r)
    np.testing.assert_allclose(net.r_shift[...], r.mean(0), rtol=1e-5)
    std = r.std(0)
    np.testing.assert_allclose(net.r_scale[...], np.maximum(std, 1e-3 * std.max()), rtol=1e-5)
    assert net.r_scale[...][1] > 0      # silent neuron: floored, not zero
    with pytest.raises(ValueError, match="unconditional"):
        fit_response_scaling(_mlp((5,), n_neurons=None), r)
    with pytest.raises(ValueError, match="r"):
        fit_response_scaling(net, r[:, :2])
    # the statistics are used: shifting r and r_shift together leaves the output unchanged
    z, a, rr = _inputs((5,))
    before = _apply(net, z, a, rr)
    net.r_shift[...] = net.r_shift[...] + 2.0
    np.testing.assert_allclose(_apply(net, z, a, rr + 2.0), before, rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(_apply(net, z, a, rr) - before)) > 1e-4
