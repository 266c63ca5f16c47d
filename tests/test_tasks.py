"""Ground-truth tasks (``jaxdecomp.tasks``) against independent truths.

Statistical assertions use margins of at least 4.5 standard errors (failure probability per
assertion < 1e-4 for Gaussian errors, < 1e-3 with the t-tails of standard errors estimated
from >= 24 draws), and each checks that its standard error is small enough for the test to bite.
"""

import jax
import numpy as np
import pytest

from jaxdecomp import exact, tasks
from jaxdecomp import neurons as N
from jaxdecomp.estimate import Estimate, MapResult


# ----------------------------------------------------------------------------- Gaussian
def test_gaussian_closed_form_matches_exact_engine_1d():
    s, a, sigma = 1.0, 1.0, 0.5
    gt = tasks.gaussian([0.0], s, [[a]], sigma)
    truth = 0.5 * np.log(1 + a * a * s / sigma**2)
    assert gt.mutual_information().value == pytest.approx(truth, rel=1e-12)
    assert gt.stimulus_shape == (1,) and gt.n_neurons == 1
    res = gt.ilocal(None, np.array([[0.0], [2.5]]))
    np.testing.assert_allclose(np.asarray(res.total), truth, rtol=1e-6)      # the same at every x
    np.testing.assert_allclose(np.asarray(res.map)[:, 0], truth, rtol=1e-6)
    grid = tasks.on_grid(exact.gaussian_grid(0.0, s), N.gaussian_population(N.linear([a]), sigma))
    il = grid.ilocal_on_grid()
    inside = np.abs(grid.points[:, 0]) < 3 * np.sqrt(s)
    np.testing.assert_allclose(il[inside], truth, rtol=1e-5)
    assert grid.mutual_information().value == pytest.approx(truth, rel=1e-6)
    off = grid.ilocal(None, np.array([[0.123], [-1.7]]))                       # between grid points
    np.testing.assert_allclose(np.asarray(off.total), truth, rtol=1e-5)
    c = grid.completeness()
    assert abs(c["difference"].value) < 1e-5 * truth


def test_gaussian_tensor_trace_is_the_mutual_information():
    rng = np.random.default_rng(1)
    L = rng.normal(size=(5, 5))
    cov = L @ L.T / 5 + 0.1 * np.eye(5)
    A = rng.normal(size=(3, 5))
    sigma = np.array([0.3, 0.6, 1.0])
    gt = tasks.gaussian(rng.normal(size=5), cov, A, sigma)
    G = gt.ilocal_tensor()
    C = np.diag(sigma**2)
    mi = 0.5 * (np.linalg.slogdet(A @ cov @ A.T + C)[1] - np.linalg.slogdet(C)[1])
    assert np.trace(G) == pytest.approx(mi, rel=1e-8)
    assert gt.mutual_information().value == pytest.approx(mi, rel=1e-10)
    np.testing.assert_allclose(G, G.T, atol=1e-12)
    assert np.linalg.eigvalsh(G).min() > -1e-10                         # positive semi-definite
    # an uninformative direction gets nothing: neurons blind to coordinate 0, prior independent
    A0 = A.copy()
    A0[:, 0] = 0.0
    cov0 = cov.copy()
    cov0[0, 1:] = cov0[1:, 0] = 0.0
    g0 = tasks.gaussian(np.zeros(5), cov0, A0, sigma).ilocal_tensor()
    assert abs(g0[0, 0]) < 1e-10 and np.diag(g0)[1:].min() > 0


@pytest.mark.heavy
def test_gaussian_estimator_with_exact_denoisers_d3():
    """The estimator with exact denoisers at 32 prior stimuli: the total and every pixel of the map
    agree with the closed form (the truth is the same at every x, so the 32 estimates are
    independent draws around it)."""
    gt = tasks.gaussian_linear(dim=3, n_neurons=2, seed=0)
    truth = gt.ilocal(None, np.zeros(3))
    x = gt.sample_prior(jax.random.PRNGKey(0), 32)
    est = gt.ilocal_estimate(jax.random.PRNGKey(1), x, n_samples=64)
    tot, maps = np.asarray(est.total, np.float64), np.asarray(est.map, np.float64)
    se = tot.std(ddof=1) / np.sqrt(len(tot))
    assert se < 0.02 * float(truth.total)
    assert abs(tot.mean() - float(truth.total)) < 4.5 * se, (tot.mean(), float(truth.total), se)
    se_pix = maps.std(0, ddof=1) / np.sqrt(len(maps))
    assert np.all(np.abs(maps.mean(0) - np.asarray(truth.map)) < 5.0 * se_pix), (maps.mean(0), truth.map, se_pix)


@pytest.mark.slow
def test_gaussian_pixel_split_matches_exact_engine_2d():
    cov = np.array([[1.0, 0.3], [0.3, 0.5]])
    A = np.array([[1.0, 0.5]])
    gt = tasks.gaussian(np.zeros(2), cov, A, 0.5)
    grid = tasks.on_grid(exact.gaussian_grid_2d((0, 0), cov, m=41, width=6.0),
                         N.gaussian_population(N.linear(A), 0.5))
    v = grid.ilocal_on_grid(per_dim=True)
    inside = np.sum(grid.points**2, 1) < 1.0
    np.testing.assert_allclose(v[inside], np.broadcast_to(np.diag(gt.ilocal_tensor()), v[inside].shape), rtol=5e-3)


def test_grid_task_interpolates_bilinearly_in_2d():
    """Between the points of a 2-D tensor grid, :meth:`GridTask.ilocal` interpolates the exact values
    bilinearly: exact for values bilinear in the coordinates (checked on such values), and at grid
    points it returns the engine's values."""
    xs, ys = np.linspace(-1, 1, 5), np.linspace(-2, 2, 7)
    pop = N.gaussian_population(N.linear(np.array([[1.0, 0.5]])), 1.0)
    task = tasks.on_grid(exact.grid_2d(xs, ys, np.ones(35)), pop)
    p = task.points
    values = np.stack([1 + 2 * p[:, 0] - p[:, 1] + 0.5 * p[:, 0] * p[:, 1], p[:, 1] ** 0], 1)
    q = np.array([[0.1, 0.3], [-0.95, 1.9], [1.0, -2.0]])
    want = np.stack([1 + 2 * q[:, 0] - q[:, 1] + 0.5 * q[:, 0] * q[:, 1], np.ones(3)], 1)
    np.testing.assert_allclose(task._interpolate(values, q), want, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- mixtures
@pytest.mark.heavy
def test_mixture_completeness():
    rng = np.random.default_rng(0)
    mt = tasks.gaussian_mixture([0.2, 0.3, 0.5], rng.normal(size=(3, 2)) * 1.5, [0.3, 0.5, 0.8],
                                rng.normal(size=(2, 2)), 0.5)
    c = mt.completeness(jax.random.PRNGKey(1), 300, n_samples=8, mi_kw=dict(n_samples=40_000, n_batches=10))
    mi = c["mutual_information"]
    assert isinstance(mi, Estimate) and mi.stderr > 0
    assert c["difference"].stderr < 0.02 * mi.value
    assert abs(c["z"]) < 4.5, c


def test_mixture_log_prior_matches_scipy():
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(2)
    L = rng.normal(size=(2, 3, 3))
    covs = np.einsum("kij,klj->kil", L, L) / 3 + 0.2 * np.eye(3)
    w, means = np.array([0.3, 0.7]), rng.normal(size=(2, 3))
    mt = tasks.gaussian_mixture(w, means, covs, rng.normal(size=(2, 3)), 0.5)
    x, r = mt.sample(jax.random.PRNGKey(0), 4)
    assert x.shape == (4, 3) and r.shape == (4, 2) and mt.n_neurons == 2
    for xi in np.asarray(x, np.float64):
        dens = sum(wk * multivariate_normal(mk, ck).pdf(xi) for wk, mk, ck in zip(w, means, covs))
        assert float(mt.log_prob_prior(xi)) == pytest.approx(np.log(dens), abs=1e-4)


@pytest.mark.slow
def test_digits_mixture_task():
    mt = tasks.digits_mixture(8)
    assert mt.stimulus_shape == (8, 8) and mt.n_neurons == 49
    np.testing.assert_allclose(mt.A.sum(1), 3.0, rtol=1e-12)      # rows of the RF weights sum to the gain
    x, r = mt.sample(jax.random.PRNGKey(0), 3)
    assert x.shape == (3, 8, 8) and r.shape == (3, 49)
    assert np.all(np.isfinite(np.asarray(jax.vmap(mt.log_prob_prior)(x))))


# ----------------------------------------------------------------------------- discrete priors
def _bumps_1d():
    grid = exact.mixture_grid([-1.0, 1.0], 0.2, [0.5, 0.5], m=41)
    pop = N.poisson_population(N.gaussian_bumps(np.array([-1.5, 0.0, 1.5]), 0.7, 5.0, 0.3))
    return grid, pop


@pytest.mark.heavy
def test_empirical_mutual_information_matches_exact_engine():
    """On a discrete prior (the 41 points of a grid with their masses) the exact engine's MI is the
    exact MI of the discrete prior (sums over the points and the enumerated Poisson counts)."""
    grid, pop = _bumps_1d()
    et = tasks.empirical(np.asarray(grid.points)[:, None], pop, grid.weights)
    truth = float(exact.mutual_information(grid, pop))
    mi = et.mutual_information(jax.random.PRNGKey(0), n_per_stimulus=400)
    assert mi.stderr < 0.01 * truth
    assert abs(mi.value - truth) < 4.5 * mi.stderr, (mi, truth)


@pytest.mark.heavy
def test_empirical_completeness_1d():
    grid, pop = _bumps_1d()
    et = tasks.empirical(np.asarray(grid.points)[:, None], pop, grid.weights)
    c = et.completeness(jax.random.PRNGKey(1), n_samples=64, mi_kw=dict(n_per_stimulus=200))
    assert c["difference"].stderr < 0.03 * c["mutual_information"].value
    assert abs(c["z"]) < 4.5, c


@pytest.mark.heavy
def test_digits_lnp_completeness():
    """The paper's LNP Poisson population on 24 digits (8x8) with the empirical prior: I_local from
    the exact denoisers at every stored digit, weighted by the prior, against the exact-density MI."""
    et = tasks.digits_lnp(size=8, n_stimuli=24, gain=2.0)
    assert et.stimulus_shape == (8, 8) and et.n_neurons == 49 and et.n_stimuli == 24
    c = et.completeness(jax.random.PRNGKey(3), n_samples=32, mi_kw=dict(n_per_stimulus=64))
    mi = c["mutual_information"].value
    assert mi < np.log(24) + 4.5 * c["mutual_information"].stderr       # I(R;X) <= H(X)
    assert c["difference"].stderr < 0.04 * mi
    assert abs(c["z"]) < 4.5, c


def test_empirical_ilocal_map_is_positive_and_sums_to_total():
    et = tasks.empirical(np.linspace(-1, 1, 7)[:, None] * np.ones((1, 2)), N.poisson_population(
        N.gaussian_bumps(np.array([[-0.5, 0.0], [0.5, 0.2]]), 0.5, 4.0, 0.2)))
    res = et.ilocal(jax.random.PRNGKey(0), et.stimuli[:3], n_samples=8)
    assert isinstance(res, MapResult) and res.map.shape == (3, 2)
    assert np.all(np.asarray(res.map) >= 0)
    np.testing.assert_allclose(np.asarray(res.map).sum(1), np.asarray(res.total), rtol=1e-5)


# ----------------------------------------------------------------------------- bad input
def test_bad_input():
    gt = tasks.gaussian_linear(dim=3, n_neurons=2)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="x: expected one stimulus of shape"):
        gt.ilocal(None, np.zeros(4))
    with pytest.raises(ValueError, match="x: contains NaN"):
        gt.ilocal(None, np.full(3, np.nan))
    with pytest.raises(ValueError, match="x: expected one stimulus"):
        gt.ilocal_estimate(key, np.zeros((2, 4)))
    with pytest.raises(TypeError, match="key: expected a PRNG key"):
        gt.sample(0, 4)
    with pytest.raises(ValueError, match="n: expected an int >= 1"):
        gt.sample(key, 0)
    with pytest.raises(ValueError, match="n_stimuli"):
        gt.completeness(key, 1)
    with pytest.raises(TypeError, match="unexpected keyword"):
        gt.ilocal(None, np.zeros(3), n_samples=4)
    with pytest.raises(ValueError, match="A: expected shape"):
        tasks.gaussian(np.zeros(3), 1.0, np.ones((2, 4)), 0.5)
    with pytest.raises(ValueError, match="sigma: must be positive"):
        tasks.gaussian(np.zeros(3), 1.0, np.ones((2, 3)), 0.0)
    with pytest.raises(ValueError, match="cov: expected"):
        tasks.gaussian(np.zeros(3), np.ones(2), np.ones((2, 3)), 0.5)
    with pytest.raises(ValueError, match="means: expected"):
        tasks.gaussian_mixture([1.0], np.zeros(3), 1.0, np.ones((2, 3)), 0.5)
    with pytest.raises(ValueError, match="dim"):
        tasks.gaussian_linear(dim=0)
    grid, pop = _bumps_1d()
    with pytest.raises(TypeError, match="grid: expected a jaxdecomp.exact.Grid"):
        tasks.on_grid(np.zeros(5), pop)
    with pytest.raises(TypeError, match="encoder: expected"):
        tasks.on_grid(grid, object())
    gt1 = tasks.on_grid(grid, pop)
    with pytest.raises(ValueError, match="x: stimuli must lie inside"):
        gt1.ilocal(None, np.array([100.0]))
    with pytest.raises(ValueError, match="stimuli: expected at least 2"):
        tasks.empirical(np.zeros((1, 3)), pop)
    with pytest.raises(ValueError, match="weights: expected shape"):
        tasks.empirical(np.zeros((4, 1)), pop, np.ones(3))
    with pytest.raises(ValueError, match="weights: must be non-negative"):
        tasks.empirical(np.zeros((3, 1)), pop, [1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="n_per_stimulus"):
        tasks.empirical(np.zeros((3, 1)), pop).mutual_information(key, n_per_stimulus=1)
    with pytest.raises(ValueError, match="n_stimuli: at most"):
        tasks.digits_lnp(size=8, n_stimuli=5000)
    with pytest.raises(ValueError, match="size"):
        tasks.digits_lnp(size=4)
    with pytest.raises(ValueError, match="noise_sd"):
        tasks.digits_mixture(8, noise_sd=-1.0)
