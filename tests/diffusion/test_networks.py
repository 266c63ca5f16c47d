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


@pytest.mark.heavy
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


@pytest.mark.heavy
@pytest.mark.parametrize("shape", [(32, 32), (64, 64), (32, 32, 3)])
def test_unet_large_images_shapes(shape):
    net = _unet(shape, channels=(8, 16, 16, 32))
    z, a, r = _inputs(shape, b=2)
    out = jax.eval_shape(lambda z, a, r: net(z, a, r), z, a, r)
    assert out.shape == z.shape and out.dtype == jnp.float32


@pytest.mark.heavy
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


@pytest.mark.heavy
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


@pytest.mark.heavy
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


@pytest.mark.heavy
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


@pytest.mark.heavy
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


@pytest.mark.heavy
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


@pytest.mark.heavy
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


# ----------------------------------------------------------------------------- specs and model files
from jaxdecomp.diffusion import (  # noqa: E402
    build_denoiser,
    denoiser_spec,
    load_model,
    model_info,
    model_spec,
    save_model,
)
from jaxdecomp.diffusion.checkpoint import Checkpointer  # noqa: E402


def _same_variables(a, b):
    la, lb = jax.tree_util.tree_leaves_with_path(nnx.state(a)), jax.tree_util.tree_leaves_with_path(nnx.state(b))
    return [(jax.tree_util.keystr(k), v.shape, v.dtype) for k, v in la] == \
        [(jax.tree_util.keystr(k), v.shape, v.dtype) for k, v in lb]


def test_denoiser_spec_builds_and_model_spec_round_trips():
    spec = denoiser_spec((8, 8), 3, (4, 8))
    assert spec == dict(kind="unet", shape=[8, 8], n_neurons=3, channels=[4, 8])
    net = nnx.eval_shape(lambda: build_denoiser(spec, seed=0))     # abstract: no eager initialisers on CPU
    assert isinstance(net, UNetDenoiser) and net.shape == (8, 8) and net.n_neurons == 3
    assert _same_variables(net, nnx.eval_shape(lambda: UNetDenoiser((8, 8), n_neurons=3, channels=(4, 8),
                                                                    rngs=nnx.Rngs(0))))
    assert isinstance(nnx.eval_shape(lambda: build_denoiser(denoiser_spec((5,), None, kind="mlp"))), MLPDenoiser)
    # the full spec read off a network rebuilds its architecture, including non-default settings
    nets = [nnx.eval_shape(f) for f in (
        lambda: UNetDenoiser((8, 12), n_neurons=2, channels=(6, 8), n_res=2, groups=8, emb_dim=8, n_fourier=3,
                             dtype=jnp.bfloat16, rngs=nnx.Rngs(0)),
        lambda: MLPDenoiser((4, 2), n_neurons=None, hidden=16, depth=3, emb_dim=8, n_fourier=4, rngs=nnx.Rngs(0)),
        lambda: MLPDenoiser((4, 2), n_neurons=2, hidden=8, depth=1, rngs=nnx.Rngs(1)))]
    nets.append(PairDenoiser(nets[1], nets[2]))
    for net in nets:
        spec = model_spec(net)
        rebuilt = nnx.eval_shape(lambda: build_denoiser(spec))
        assert type(rebuilt) is type(net) and _same_variables(rebuilt, net)
    assert model_spec(nets[0])["groups"] == 8 and model_spec(nets[0])["dtype"] == "bfloat16"


def test_build_denoiser_bad_spec_names_the_argument():
    with pytest.raises(TypeError, match="spec"):
        build_denoiser([("kind", "unet")])
    with pytest.raises(ValueError, match="kind"):
        build_denoiser(dict(kind="transformer", shape=[8, 8]))
    with pytest.raises(ValueError, match="shape"):
        build_denoiser(dict(kind="unet", n_neurons=3))
    with pytest.raises(ValueError, match="unknown keys.*chanels"):
        build_denoiser(dict(kind="unet", shape=[8, 8], chanels=[4]))
    with pytest.raises(ValueError, match="dtype"):
        build_denoiser(dict(kind="mlp", shape=[3], dtype="float33"))
    with pytest.raises(ValueError, match="kind"):
        denoiser_spec((8, 8), 3, kind="cnn")
    with pytest.raises(TypeError, match="model"):
        model_spec(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))


@pytest.mark.heavy
@pytest.mark.parametrize("kind", ["unet", "pair"])
def test_save_load_round_trip_without_template(tmp_path, kind):
    if kind == "unet":
        net, shape = _unet((8, 8)), (8, 8)
        net.r_shift[...] = jnp.array([0.5, -1.0, 2.0])
    else:
        net, shape = PairDenoiser(_mlp((5,), n_neurons=None), _mlp((5,))), (5,)
    path = save_model(tmp_path / "m", net, metadata=dict(neurons="lnp", trained_steps=7))
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "weights"]
    info = model_info(path)
    assert info["metadata"] == dict(neurons="lnp", trained_steps=7) and info["spec"] == model_spec(net)
    loaded = load_model(path)
    assert type(loaded) is type(net)
    z, a, r = _inputs(shape)
    for rr in (r, None) if kind == "pair" else (r,):      # one UNet compile is enough
        np.testing.assert_array_equal(np.asarray(_apply(loaded, z, a, rr)), np.asarray(_apply(net, z, a, rr)))
    # a template is still accepted
    np.testing.assert_array_equal(np.asarray(_apply(load_model(path, nnx.eval_shape(lambda: net)), z, a, r)),
                                  np.asarray(_apply(net, z, a, r)))
    # overwrite replaces a saved model in place
    with pytest.raises(FileExistsError, match="path"):
        save_model(path, net)
    save_model(path, net, overwrite=True, metadata=dict(trained_steps=8))
    assert model_info(path)["metadata"] == dict(trained_steps=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]      # no temporary directories left


def _weight_files(path):
    return sorted((f for f in (path / "weights").rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)


def test_corrupt_model_files_give_clear_errors(tmp_path):
    net = _mlp((5,))
    for name in ("flip", "trunc", "gone", "json", "digest"):
        save_model(tmp_path / name, net)
    big = _weight_files(tmp_path / "flip")[-1]
    data = bytearray(big.read_bytes())
    data[len(data) // 2] ^= 0xFF
    big.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"path: saved model at .*flip.* is corrupt: weight file 'weights/"):
        load_model(tmp_path / "flip")
    big = _weight_files(tmp_path / "trunc")[-1]
    big.write_bytes(big.read_bytes()[:10])
    with pytest.raises(ValueError, match="corrupt.*truncated or altered"):
        load_model(tmp_path / "trunc")
    _weight_files(tmp_path / "gone")[-1].unlink()
    with pytest.raises(ValueError, match="incomplete.*missing"):
        load_model(tmp_path / "gone")
    js = tmp_path / "json" / "model.json"
    js.write_text(js.read_text()[:40])
    with pytest.raises(ValueError, match="model.json.* corrupt or truncated"):
        load_model(tmp_path / "json")
    js = tmp_path / "digest" / "model.json"
    js.write_text(js.read_text().replace(model_info(tmp_path / "digest")["digest"], "0" * 64))
    with pytest.raises(ValueError, match="do not match the digest"):
        load_model(tmp_path / "digest")


def test_wrong_kind_of_directory_gives_clear_errors(tmp_path):
    net = _mlp((5,))
    with pytest.raises(FileNotFoundError, match="path"):
        load_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a model saved by save_model"):
        load_model(tmp_path / "empty")
    with Checkpointer(tmp_path / "ckpt") as c:
        c.save(3, {"w": np.arange(3.0)})
    with pytest.raises(ValueError, match="training checkpoint directory"):
        load_model(tmp_path / "ckpt")
    (tmp_path / "file").write_text("hello")
    with pytest.raises(ValueError, match="is a file"):
        load_model(tmp_path / "file")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "model.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a jaxdecomp model"):
        load_model(tmp_path / "foreign")
    # a directory holding other files is never replaced, even with overwrite=True
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a saved model"):
        save_model(tmp_path / "mine", net, overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    # a template of another architecture is refused clearly
    save_model(tmp_path / "m", net)
    with pytest.raises(ValueError, match="model_template: does not match"):
        load_model(tmp_path / "m", _mlp((6,)))


def test_save_model_bad_arguments(tmp_path):
    net = _mlp((5,))
    with pytest.raises(TypeError, match="model"):
        save_model(tmp_path / "a", {"w": 1})
    with pytest.raises(ValueError, match="spec"):
        save_model(tmp_path / "b", net, spec=denoiser_spec((6,), 3, kind="mlp"))
    with pytest.raises(TypeError, match="metadata"):
        save_model(tmp_path / "c", net, metadata=dict(x=object()))
    # a module the package cannot describe saves without a spec; loading it needs a template
    lin = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    save_model(tmp_path / "lin", lin)
    assert model_info(tmp_path / "lin")["spec"] is None
    with pytest.raises(ValueError, match="model_template"):
        load_model(tmp_path / "lin")
    back = load_model(tmp_path / "lin", nnx.Linear(2, 3, rngs=nnx.Rngs(1)))
    np.testing.assert_array_equal(np.asarray(back.kernel[...]), np.asarray(lin.kernel[...]))
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_legacy_weights_only_directory_loads_with_template(tmp_path):
    import orbax.checkpoint as ocp

    net = _mlp((5,))
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save((tmp_path / "old").absolute(), nnx.state(net))
        ckptr.wait_until_finished()
    loaded = load_model(tmp_path / "old", nnx.eval_shape(lambda: _mlp((5,))))
    z, a, r = _inputs((5,))
    np.testing.assert_array_equal(np.asarray(_apply(loaded, z, a, r)), np.asarray(_apply(net, z, a, r)))
    with pytest.raises(ValueError, match="not a model saved by save_model"):
        load_model(tmp_path / "old")


def _moment_matched(mean, cov, n, seed=0):
    """``n`` samples whose SAMPLE mean and (1/n) covariance equal ``mean`` / ``cov`` exactly."""
    g = np.random.default_rng(seed).standard_normal((n, len(mean)))
    g -= g.mean(0)
    g = g @ np.linalg.inv(np.linalg.cholesky(g.T @ g / n)).T          # sample covariance exactly I
    return mean + g @ np.linalg.cholesky(cov).T


def test_gaussian_baseline_is_the_exact_gaussian_denoiser():
    """Fitted on samples whose moments equal the population's, an untrained network with a Gaussian
    baseline (output layer zero) IS the exact denoiser of a Gaussian prior with a linear-Gaussian
    population: conditional, unconditional and dropped rows, to float32 precision."""
    from jaxdecomp.diffusion import fit_gaussian_baseline
    from jaxdecomp.diffusion.analytic import gaussian_denoiser
    d, n, sd = 4, N_NEURONS, 0.7
    rng = np.random.default_rng(3)
    L = rng.normal(size=(d, d))
    S, mu, A = L @ L.T / d + 0.2 * np.eye(d), rng.normal(size=d), rng.normal(size=(n, d))
    joint = np.block([[S, S @ A.T], [A @ S, A @ S @ A.T + sd ** 2 * np.eye(n)]])
    xr = _moment_matched(np.concatenate([mu, A @ mu]), joint, 500)
    net = MLPDenoiser((d,), n_neurons=n, hidden=16, depth=1, emb_dim=8, n_fourier=4, gaussian_baseline=True,
                      rngs=nnx.Rngs(0))
    fit_gaussian_baseline(net, xr[:, :d], xr[:, d:], ridge=False)    # least squares: the sample moments
    exact = gaussian_denoiser(mu, S, A, sd)
    z, a, r = _inputs((d,), b=6)
    a = jnp.linspace(-8.0, 10.0, 6)
    want_c = np.stack([np.asarray(exact(z[i], a[i], r[i])) for i in range(6)])
    want_u = np.stack([np.asarray(exact(z[i], a[i])) for i in range(6)])
    np.testing.assert_allclose(np.asarray(_apply(net, z, a, r)), want_c, atol=2e-4, rtol=1e-3)
    np.testing.assert_allclose(np.asarray(_apply(net, z, a)), want_u, atol=2e-4, rtol=1e-3)
    drop = jnp.array([True, False, True, False, False, True])
    np.testing.assert_allclose(np.asarray(_apply(net, z, a, r, drop)),
                               np.where(np.asarray(drop)[:, None], want_u, want_c), atol=2e-4, rtol=1e-3)
    # unfitted: the denoiser of N(0, I) data independent of r, eps_hat = sigma z
    fresh = MLPDenoiser((d,), n_neurons=n, hidden=16, depth=1, gaussian_baseline=True, rngs=nnx.Rngs(1))
    sigma = np.sqrt(np.asarray(jax.nn.sigmoid(-a)))[:, None]
    np.testing.assert_allclose(np.asarray(_apply(fresh, z, a, r)), sigma * np.asarray(z), atol=1e-5)


def test_gaussian_baseline_spec_and_bad_input(tmp_path):
    from jaxdecomp.diffusion import fit_gaussian_baseline, load_model, save_model
    from jaxdecomp.diffusion.models import build_denoiser, model_spec
    net = MLPDenoiser((3,), n_neurons=2, hidden=8, depth=1, gaussian_baseline=True, rngs=nnx.Rngs(0))
    spec = model_spec(net)
    assert spec["gaussian_baseline"] is True and build_denoiser(spec).gaussian_baseline
    assert "gaussian_baseline" not in model_spec(MLPDenoiser((3,), n_neurons=2, hidden=8, depth=1, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(0)
    x, r = rng.normal(size=(50, 3)), rng.normal(size=(50, 2))
    fit_gaussian_baseline(net, x, r)
    loaded = load_model(save_model(tmp_path / "m", net))     # the fitted moments travel with the weights
    z, a, _ = _inputs((3,))
    np.testing.assert_array_equal(np.asarray(_apply(loaded, z, a, r[:3])), np.asarray(_apply(net, z, a, r[:3])))
    with pytest.raises(ValueError, match="r:"):
        fit_gaussian_baseline(net, x)
    with pytest.raises(ValueError, match="x:"):
        fit_gaussian_baseline(net, x[:, :2], r)
    with pytest.raises(ValueError, match="x:"):
        fit_gaussian_baseline(net, np.where(x > 1, np.nan, x), r)
    with pytest.raises(ValueError, match="r:"):
        fit_gaussian_baseline(net, x, r[:40])
    with pytest.raises(ValueError, match="model"):
        fit_gaussian_baseline(MLPDenoiser((3,), n_neurons=2, hidden=8, depth=1, rngs=nnx.Rngs(0)), x, r)


def test_unet_gaussian_baseline_matches_the_mlp_one():
    """The UNet's baseline is the same Gaussian denoiser (both output layers start at zero)."""
    from jaxdecomp.diffusion import fit_gaussian_baseline
    from jaxdecomp.diffusion.models import build_denoiser, model_spec
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 4, 4)) @ rng.normal(size=(4, 4))
    r = x.reshape(300, -1)[:, :N_NEURONS] + rng.normal(size=(300, N_NEURONS))
    unet = UNetDenoiser((4, 4), n_neurons=N_NEURONS, channels=(8,), groups=4, emb_dim=8, n_fourier=4,
                        gaussian_baseline=True, rngs=nnx.Rngs(0))
    mlp = MLPDenoiser((4, 4), n_neurons=N_NEURONS, hidden=8, depth=1, gaussian_baseline=True, rngs=nnx.Rngs(0))
    fit_gaussian_baseline(unet, x, r)
    fit_gaussian_baseline(mlp, x, r)
    z, a, rr = _inputs((4, 4))
    for cond in (rr, None):
        np.testing.assert_allclose(np.asarray(_apply(unet, z, a, cond)), np.asarray(_apply(mlp, z, a, cond)),
                                   atol=1e-5)
    assert not np.allclose(np.asarray(_apply(unet, z, a, rr)), np.asarray(_apply(unet, z, a, None)))
    assert model_spec(unet)["gaussian_baseline"] is True and build_denoiser(model_spec(unet)).gaussian_baseline


def test_gaussian_baseline_ridge_predicts_new_pairs_better_than_least_squares():
    """60 responses, 100 training pairs: least squares fits noise (expected excess error about
    p / (N - p) = 150% of the residual variance); the leave-one-out ridge must do better on 20,000
    new pairs, and its residual covariance (the generalised-cross-validation one) must estimate the
    error on new pairs (within 25%), where the in-sample one of least squares is far below it."""
    from jaxdecomp.diffusion import fit_gaussian_baseline
    rng = np.random.default_rng(7)
    d, p = 5, 60
    B = rng.normal(size=(d, p)) * 0.15

    def draw(n):
        r = rng.normal(size=(n, p))
        return r @ B.T + rng.normal(size=(n, d)), r

    x, r = draw(100)
    xn, rn = draw(20_000)
    err = {}
    for ridge in (True, False):
        net = MLPDenoiser((d,), n_neurons=p, hidden=8, depth=1, gaussian_baseline=True, rngs=nnx.Rngs(0))
        fit_gaussian_baseline(net, x, r, ridge=ridge)
        g = net.baseline
        pred = np.asarray(g.mean[...]) + (rn - np.asarray(g.r_mean[...])) @ np.asarray(g.coef[...]).T
        err[ridge] = (np.mean((xn - pred) ** 2), float(np.mean(np.asarray(g.cvals[...]))))
    assert err[True][0] < 0.7 * err[False][0], err
    assert 0.8 < err[True][1] / err[True][0] < 1.25, err
    assert err[False][1] < 0.6 * err[False][0], err
