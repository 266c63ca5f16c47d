"""Image encoders: the paper's LNP formula computed independently, resolution
invariance, closed-form Fisher diagonals against Monte Carlo score variances,
Fisher concentration inside receptive fields, the CNN retina (gradients, save/load,
bad parameters), the registry and input validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdecomp import neurons as N


def _smooth_image(shape):
    """A smooth continuous image sampled at the pixel centres (linspace(-1, 1))."""
    p = N.pixel_coordinates(shape)
    return jnp.asarray(0.8 * np.sin(2.5 * p[..., 0] + 0.5) * np.cos(2.0 * p[..., 1]) + 0.1, jnp.float32)


def _seg_dist(p, a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b - a
    t = np.clip(((p - a) @ d) / (d @ d), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * d), axis=-1)


def _digit_seven(shape=(32, 32)):
    """A blurred '7' (background -1, stroke +1, stroke SD 0.08)."""
    p = N.pixel_coordinates(shape)
    dist = np.minimum(_seg_dist(p, (-0.5, -0.4), (-0.5, 0.4)), _seg_dist(p, (-0.5, 0.4), (0.6, -0.1)))
    return jnp.asarray(-1.0 + 2.0 * np.exp(-0.5 * (dist / 0.08) ** 2), jnp.float32)


# ----------------------------------------------------------------------------- LNP


def test_lnp_matches_paper_formula_at_32x32():
    pop = N.lnp_population()
    model = pop.rates
    x = jax.random.uniform(jax.random.PRNGKey(3), (32, 32), minval=-1.0, maxval=1.0)
    # independent numpy: pixel centres on linspace(-1, 1), 7x7 centres on linspace(-0.7, 0.7)
    g = np.linspace(-1, 1, 32)
    P = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    c1 = np.linspace(-0.7, 0.7, 7)
    C = np.stack(np.meshgrid(c1, c1, indexing="ij"), -1).reshape(-1, 2)
    Wn = np.exp(-((P[None] - C[:, None]) ** 2).sum(-1) / (2 * 0.1**2))
    u = Wn @ (np.asarray(x, np.float64).ravel() + 0.1)
    expected = 40.0 / (1.0 + np.exp(-0.4 * u))
    f = np.asarray(pop.rate(x))
    assert f.shape == (49,) and pop.n_neurons(x) == 49
    assert model.W.shape == (49, 1024) and model.centers.shape == (49, 2)
    np.testing.assert_allclose(model.centers, C, atol=1e-6)
    np.testing.assert_allclose(f, expected, rtol=2e-5, atol=1e-5)


def test_lnp_resolution_invariance():
    rates = {s: np.asarray(N.lnp_population((s, s)).rate(_smooth_image((s, s)))) for s in (16, 32, 64)}
    assert rates[32].min() > 1.0  # relative errors below are meaningful
    for s in (16, 64):
        rel = np.max(np.abs(rates[s] - rates[32]) / rates[32])
        assert rel < 0.02, (s, rel)
    # without the pixel-area scaling the 16x16 drive would be ~4x smaller: a real difference
    w16 = N.gaussian_rf_weights((16, 16), N.lattice_centers(), 0.1, scale=False)
    w32 = N.gaussian_rf_weights((32, 32), N.lattice_centers(), 0.1, scale=False)
    assert w32.sum() / w16.sum() == pytest.approx(N.resolution_scale((16, 16)), rel=0.02)


def test_lnp_fisher_concentrates_inside_receptive_fields():
    """Statistic: share of the Fisher-diagonal total on pixels within k * rf_sigma of the
    nearest RF centre, against the share of pixels there (k = 1, 2), on a blurred '7'."""
    pop = N.lnp_population((32, 32))
    F = np.asarray(pop.fisher_diag(_digit_seven()))
    assert np.all(F >= 0) and F.sum() > 0
    p = N.pixel_coordinates((32, 32))
    c = np.asarray(pop.rates.centers)
    dmin = np.min(np.linalg.norm(p[:, :, None, :] - c[None, None], axis=-1), axis=-1)
    inside2 = dmin <= 2 * 0.1
    frac_f2, frac_px2 = F[inside2].sum() / F.sum(), inside2.mean()  # ~0.999 vs 0.75
    assert frac_f2 > 0.98 and frac_f2 > frac_px2 + 0.2
    inside1 = dmin <= 0.1
    frac_f1, frac_px1 = F[inside1].sum() / F.sum(), inside1.mean()  # ~0.70 vs 0.37
    assert frac_f1 > 1.6 * frac_px1


# ----------------------------------------------------------------------------- Fisher vs Monte Carlo

_MC_MODELS = {
    "lnp": dict(),
    "gabor": dict(),
    "energy": dict(),
    "cnn_retina": dict(key=jax.random.PRNGKey(7), channels=(4, 4), kernel=(5, 3)),
    "linear_gaussian": dict(gain=0.3, sigma=2.0),
}


@pytest.mark.heavy
@pytest.mark.parametrize("name", sorted(_MC_MODELS))
def test_fisher_diag_matches_monte_carlo_score_variance(name):
    shape = (12, 12)
    pop = N.image_population(name, shape, **_MC_MODELS[name])
    p = N.pixel_coordinates(shape)
    # a stimulus with structure at every position and orientation
    x = jnp.asarray(0.6 * np.sin(9.0 * p[..., 0] + 4.0 * p[..., 1]) + 0.3 * np.cos(7.0 * p[..., 1]), jnp.float32)
    exact = np.asarray(pop.fisher_diag(x))
    assert exact.shape == shape and np.all(exact >= 0)
    n_mc = 20000
    # jit only for speed (x was validated by the eager fisher_diag call above)
    r = jax.jit(jax.vmap(pop.sample, in_axes=(0, None)))(jax.random.split(jax.random.PRNGKey(11), n_mc), x)
    score = jax.jit(jax.vmap(jax.grad(lambda xx, rr: pop.log_prob(rr, xx)), in_axes=(None, 0)))(x, r)
    sq = np.asarray(score, np.float64).reshape(n_mc, -1) ** 2
    flat = exact.ravel()
    idx = list(np.argsort(flat)[-3:]) + [int(np.argsort(flat)[flat.size // 2])]
    for i in idx:
        mc, se = sq[:, i].mean(), sq[:, i].std() / np.sqrt(n_mc)
        assert abs(mc - flat[i]) < 4.5 * se + 1e-4 * flat.max(), (name, i, mc, flat[i], se)


# ----------------------------------------------------------------------------- Gabor / linear


def test_gabor_orientation_selectivity_and_energy_phase_invariance():
    shape = (32, 32)
    p = N.pixel_coordinates(shape)
    simple = N.gabor_population(shape, grid=1, n_orientations=4, kind="simple")
    energy = N.image_population("energy", shape, grid=1, n_orientations=4)
    assert simple.rates.even.shape == (4, 1024)
    k = 2 * np.pi / 0.25
    resp = []
    for phase in (0.0, np.pi / 2, np.pi):
        x = jnp.asarray(np.cos(k * p[..., 1] + phase), jnp.float32)  # varies along columns: theta=0
        resp.append(np.asarray(energy.rate(x)))
        if phase == 0.0:
            fs = np.asarray(simple.rate(x))
            assert np.argmax(fs) == 0 and fs[0] > 3 * fs[2]
    resp = np.array(resp)
    assert np.all(np.argmax(resp, axis=1) == 0)
    # energy of the preferred neuron barely depends on the grating's phase
    assert np.ptp(resp[:, 0]) < 0.1 * (resp[:, 0].mean() - 0.5)
    assert resp[0, 0] > 0.5 + 10 * 0.3  # well above baseline


def test_linear_gaussian_shares_lnp_fields_and_closed_form_fisher():
    shape = (16, 16)
    pop = N.linear_gaussian_population(shape, gain=0.5, sigma=2.0)
    A = np.asarray(pop.rates.A)
    np.testing.assert_allclose(A, 0.5 * np.asarray(N.lnp_population(shape).rates.W), rtol=1e-6, atol=1e-12)
    x = _smooth_image(shape)
    np.testing.assert_allclose(pop.rate(x), A @ np.asarray(x).ravel(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pop.fisher_diag(x).ravel(), (A**2).sum(0) / 4.0, rtol=1e-5, atol=1e-9)


# ----------------------------------------------------------------------------- CNN retina


@pytest.fixture(scope="module")
def retina():
    return N.cnn_retina_population((16, 16), key=jax.random.PRNGKey(1))


@pytest.mark.heavy
def test_cnn_retina_shapes_positive_and_differentiable(retina):
    m = retina.rates
    assert isinstance(m, N.CNNRetina)
    assert m.conv1_kernel.shape == (9, 9, 1, 8) and m.conv2_kernel.shape == (5, 5, 8, 8)
    assert m.mask.shape == (49, 16, 16) and m.features.shape == (49, 8)
    np.testing.assert_allclose(m.mask.sum((1, 2)), 1.0, rtol=1e-5)
    x = _smooth_image((16, 16))
    f = retina.rate(x)
    assert f.shape == (49,) and bool(jnp.all(f > 0))
    assert 0.5 < float(f.mean()) < 10.0
    r = retina.sample(jax.random.PRNGKey(2), x)
    g = jax.grad(lambda pop: pop.log_prob(r, x))(retina)
    leaves = jax.tree_util.tree_leaves(g)
    assert all(bool(jnp.all(jnp.isfinite(l))) for l in leaves)
    assert float(jnp.abs(g.rates.conv1_kernel).max()) > 0
    gx = jax.grad(lambda xx: retina.log_prob(r, xx))(x)
    assert gx.shape == (16, 16) and bool(jnp.all(jnp.isfinite(gx))) and float(jnp.abs(gx).max()) > 0
    # the custom JVP (reverse-mode Jacobian) agrees with plain reverse mode
    J = jax.jacrev(m._forward)(x)
    np.testing.assert_allclose(retina.fisher_diag(x), jnp.tensordot(1.0 / f, J**2, axes=1), rtol=1e-4, atol=1e-7)


def test_cnn_retina_save_load_round_trip(retina, tmp_path):
    path = N.save_retina_params(tmp_path / "retina", retina)
    params = N.load_retina_params(path)
    loaded = N.cnn_retina_population((16, 16), params=params)
    x = _smooth_image((16, 16))
    np.testing.assert_array_equal(loaded.rate(x), retina.rate(x))
    assert N.load_retina_params(tmp_path / "retina")["mask"].shape == (49, 16, 16)
    with pytest.raises(ValueError, match="mask"):
        N.cnn_retina_population((32, 32), params=params)
    with pytest.raises(ValueError, match="key"):
        N.cnn_retina_population((16, 16), params=params, key=jax.random.PRNGKey(0))


def test_cnn_retina_bad_params(retina):
    params = retina.rates.params()
    bad = dict(params, conv2_kernel=np.zeros((5, 5, 3, 8), np.float32))
    with pytest.raises(ValueError, match=r"params\['conv2_kernel'\].*\(5, 5, 3, 8\)"):
        N.cnn_retina_population((16, 16), params=bad)
    bad = dict(params, features=np.zeros((48, 8), np.float32))
    with pytest.raises(ValueError, match=r"params\['features'\]"):
        N.cnn_retina_population((16, 16), params=bad)
    missing = {k: v for k, v in params.items() if k != "gain"}
    with pytest.raises(ValueError, match="missing.*gain"):
        N.cnn_retina_population((16, 16), params=missing)


# ----------------------------------------------------------------------------- registry and validation


@pytest.mark.heavy
def test_registry_builds_every_model_and_lists_choices():
    assert set(N.IMAGE_MODELS) == {"lnp", "gabor", "energy", "cnn_retina", "linear_gaussian"}
    x = jnp.zeros((8, 8))
    for name in N.IMAGE_MODELS:
        assert N.image_population(name, (8, 8)).rate(x).ndim == 1
    with pytest.raises(ValueError) as err:
        N.image_population("retina", (8, 8))
    for name in N.IMAGE_MODELS:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="kind"):
        N.image_population("energy", (8, 8), kind="simple")
    with pytest.raises(ValueError, match="shape"):
        N.image_population("lnp", (8,))


@pytest.mark.parametrize("name", ["lnp", "gabor", "energy", "cnn_retina", "linear_gaussian"])
def test_bad_images_raise_and_jit_skips_value_check(name):
    pop = N.image_population(name, (8, 8))
    with pytest.raises(ValueError, match=r"x: expected an image of shape \(8, 8\), got shape \(8, 9\)"):
        pop.rate(jnp.zeros((8, 9)))
    with pytest.raises(ValueError, match=r"x: .*\[-1, 1\]"):
        pop.rate(jnp.full((8, 8), 1.5))
    with pytest.raises(ValueError, match=r"x: .*\[-1, 1\]"):
        pop.fisher_diag(jnp.full((8, 8), -1.01))
    with pytest.raises(ValueError, match="x: contains NaN"):
        pop.rate(jnp.full((8, 8), jnp.nan))
    pop.rate(jnp.full((8, 8), 1.0 + 5e-4))  # within tolerance
    # under jit the values are unknown: no check, a finite answer
    out = jax.jit(pop.rate)(jnp.full((8, 8), 1.5))
    assert bool(jnp.all(jnp.isfinite(out)))
    with pytest.raises(ValueError, match="x: expected an image"):
        jax.jit(pop.rate)(jnp.zeros((4, 4)))
