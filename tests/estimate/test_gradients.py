"""Gradients of the I_local estimator (and of specific surprise) against ground truth.

Truth: central finite differences of the exact grid engine (``jaxdecomp.exact``) between
neighbouring grid points (in ``x``) or between two rebuilt populations (in a tuning parameter).
The engine is accurate to 1e-7..1e-4 relative and the finite-difference error is O(h^2 I''') with
h <= 0.07, well below the Monte Carlo error of the estimator, so the truth is taken as exact.

Tolerance logic: every estimated gradient is the mean of ``N_REP`` = 128 independent replicate
gradients (independent keys); its standard error (SE) is their SD / sqrt(128). For Gaussian
replicates the error in SE units is t-distributed with 127 degrees of freedom: |t| > 5 has
probability 2e-6 per comparison. The per-draw gradient terms are heavy-tailed (a score times the
integrand: sample kurtosis in the hundreds at some noise levels), so the replicate SE is itself
noisy and somewhat optimistic; the 5-SE bound (``Z_TOL``) leaves room for that: even an SE
underestimated by 25% gives a per-comparison miss probability of 6e-5, i.e. < 5e-4 per test (at
most 8 comparisons; 2e-5 per test with an accurate SE). With 32 replicates and 3 SE this was 2-3% per test under other keys; 4x the
replicates halves the SE, so 5 new SE = 2.5 old SE: the absolute tolerance is tighter than before.
To have power, the tests require the SE to be below 8% of the gradient; measured, it is 1-4%
(replicate kurtosis <= 5, max |z| = 3.0 over two other base keys), so a relative error of ~20% fails.
Keys are fixed, so the tests are deterministic, but they do not rely on it.

Compilation is a large part of the run time on CPU (~5-10 s per compiled gradient), so each test
compiles one function and runs all its replicates in one call.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdecomp import estimate as E
from jaxdecomp import exact
from jaxdecomp import neurons as N
from jaxdecomp.diffusion import GridDenoiser, gmm_denoiser, grid_denoiser
from jaxdecomp.diffusion import schedules as S

N_REP = 128
Z_TOL = 5.0


def _mean_se(g):
    g = np.asarray(g)
    return g.mean(0), g.std(0, ddof=1) / np.sqrt(g.shape[0])


def _replicates(fn, arg, seed):
    """``N_REP`` independent evaluations of ``fn(arg, key)`` (one key each), compiled once.
    Replicates run one after another (``lax.map``): one huge vmapped graph can wedge XLA's CPU
    thread pool (a known XLA issue), and memory stays bounded."""
    keys = jax.random.split(jax.random.PRNGKey(seed), N_REP)
    return jax.jit(lambda a, ks: jax.lax.map(lambda k: fn(a, k), ks))(arg, keys)


# ------------------------------------------------------------------ 1-D linear-Gaussian
def _mixture_1d():
    """Bimodal prior, two linear-Gaussian neurons (the oracle case of tests/test_estimate.py)."""
    D = gmm_denoiser([0.4, 0.6], [[-1.0], [1.2]], [0.15, 0.3], [[1.5], [-0.8]], [0.5, 0.4])
    return D, exact.mixture_grid([-1.0, 1.2], [0.15, 0.3], [0.4, 0.6], m=401)


@functools.lru_cache(maxsize=None)
def _exact_mixture_1d():
    D, grid = _mixture_1d()
    return np.asarray(grid.points), np.asarray(exact.ilocal(grid, D.population))


def _fd_on_grid(pts, values, targets):
    """Grid indices nearest to ``targets`` and central differences of ``values`` there."""
    idx = np.array([np.argmin(np.abs(pts - t)) for t in targets])
    return idx, (values[idx + 1] - values[idx - 1]) / (pts[idx + 1] - pts[idx - 1])


@pytest.mark.heavy
def test_grad_x_linear_gaussian_1d():
    """d I_local(x)/dx with exact Gaussian-mixture denoisers and exact posterior draws."""
    D, _ = _mixture_1d()
    pts, ref = _exact_mixture_1d()
    idx, fd = _fd_on_grid(pts, ref, [-1.3, -0.7, 0.5])
    xs = jnp.asarray(pts[idx])[:, None]
    lv = S.levels("gauss_legendre", -10.0, 14.0, 24)

    def total(x, k):
        return E.ilocal(k, D, D.population, x, levels=lv, n_samples=512, chunk=512).total.sum()

    g = _replicates(jax.grad(total), xs, 0)
    m, se = _mean_se(g[..., 0])
    z = (m - fd) / se
    assert np.all(np.abs(z) < Z_TOL), (m, se, fd, z)
    assert np.all(se < 0.08 * np.abs(fd)), (se, fd)   # power: a 30% error would fail


# ------------------------------------------------------------------ 1-D Poisson, grid denoiser
def _poisson_pop(c0=-0.8):
    """Two Poisson neurons with Gaussian-bump tuning; ``c0`` is the first neuron's centre."""
    centers = jnp.stack([jnp.asarray(c0, dtype=jnp.result_type(float)), jnp.asarray(0.8, jnp.result_type(float))])
    return N.poisson_population(N.gaussian_bumps(centers, widths=0.6, amplitudes=6.0, baseline=0.5))


@functools.lru_cache(maxsize=None)
def _poisson_grid():
    return exact.gaussian_grid(0.0, 1.0, m=121, lo=-4.0, hi=4.0)


def _grid_levels(grid):
    """Levels for a discrete prior of spacing h: up to g_min = 0.75 h^2 (the exact engine's cut-off),
    beyond which the estimator's exact Fisher tail takes over as the engine's small-noise piece does."""
    h = float(np.diff(np.asarray(grid.points))[0])
    return S.levels("gauss_legendre", -8.0, float(-np.log(0.75 * h * h)), 24)


@functools.lru_cache(maxsize=None)
def _exact_poisson(c0=-0.8):
    return np.asarray(exact.ilocal(_poisson_grid(), _poisson_pop(c0)))


@pytest.mark.heavy
def test_grid_denoiser_ilocal_matches_exact_engine():
    """A discrete prior is the exact analogue of the engine's grid: same I_local at grid points."""
    grid, pop = _poisson_grid(), _poisson_pop()
    ref = _exact_poisson()
    pts = np.asarray(grid.points)
    idx = np.array([np.argmin(np.abs(pts - v)) for v in [-1.5, -0.6, 0.5, 1.3]])
    G = grid_denoiser(grid, pop)
    # 2 x 8192 draws: 4.2 SE (= 2.97 SE of 8192 draws, tighter than the former 3) plus the 0.5%
    # quadrature allowance (~1.3 SE here) is a ~5.5-SE margin: P < 1e-6 for the 4 points
    est = E.ilocal(jax.random.PRNGKey(3), G, pop, jnp.asarray(pts[idx])[:, None], levels=_grid_levels(grid),
                   n_samples=16384, chunk=8192)
    tot, se = np.asarray(est.total), np.asarray(est.stderr)
    assert np.all(np.abs(tot - ref[idx]) < 4.2 * se + 0.005 * ref[idx]), (tot, ref[idx], se)
    assert np.all(se < 0.01 * ref[idx])


@pytest.mark.heavy
def test_grad_x_poisson_needs_the_score_term():
    """d I_local(x)/dx for Poisson neurons (exact grid denoiser): right with the score-function term,
    and measurably wrong without it (the pathwise-only gradient of the old estimator)."""
    grid, pop = _poisson_grid(), _poisson_pop()
    pts, ref = np.asarray(grid.points), _exact_poisson()
    idx, fd = _fd_on_grid(pts, ref, [-1.4, -0.5, 0.45])
    xs = jnp.asarray(pts[idx])[:, None]
    G, lv = grid_denoiser(grid, pop), _grid_levels(grid)

    def total(x, k, score):
        return E.ilocal(k, G, pop, x, levels=lv, n_samples=128, chunk=128, score_gradient=score).total.sum()

    g, g0 = _replicates(lambda x, k: (jax.grad(lambda y: total(y, k, True))(x),
                                      jax.grad(lambda y: total(y, k, False))(x)), xs, 1)
    m, se = _mean_se(g[..., 0])
    z = (m - fd) / se
    assert np.all(np.abs(z) < Z_TOL), (m, se, fd, z)
    assert np.all(se < 0.08 * np.abs(fd)), (se, fd)
    m0, se0 = _mean_se(g0[..., 0])
    z0 = (m0 - fd) / np.hypot(se0, se)
    assert np.all(np.abs(z0) > 5.0), (m0, fd, z0)   # without the score term: biased at every point


@pytest.mark.heavy
def test_grad_tuning_parameter_poisson():
    """d I_local(x)/d c0 for the centre c0 of one neuron; the grid denoiser is rebuilt from c0,
    so the gradient flows through the conditional denoiser, the score of the responses and the
    Fisher tail. Truth: central differences of the exact engine at c0 +- 0.05."""
    grid, c0, dc = _poisson_grid(), -0.8, 0.05
    pts = np.asarray(grid.points)
    idx = np.array([np.argmin(np.abs(pts - v)) for v in [-1.4, -0.5, 0.3]])
    fd = (_exact_poisson(c0 + dc)[idx] - _exact_poisson(c0 - dc)[idx]) / (2 * dc)
    xs = jnp.asarray(pts[idx])[:, None]
    lv = _grid_levels(grid)

    def totals(c, k, score):
        pop = _poisson_pop(c)
        return E.ilocal(k, grid_denoiser(grid, pop), pop, xs, levels=lv, n_samples=128, chunk=128,
                        score_gradient=score).total

    g, g0 = _replicates(lambda c, k: (jax.jacfwd(lambda b: totals(b, k, True))(c),
                                      jax.jacfwd(lambda b: totals(b, k, False))(c)), jnp.asarray(c0), 2)
    m, se = _mean_se(g)
    z = (m - fd) / se
    assert np.all(np.abs(z) < Z_TOL), (m, se, fd, z)
    assert np.all(se < 0.08 * np.abs(fd)), (se, fd)
    m0, se0 = _mean_se(g0)
    assert np.any(np.abs(m0 - fd) > 5.0 * np.hypot(se0, se)), (m0, fd)


# ------------------------------------------------------------------ per pixel, d = 2
@pytest.mark.heavy
def test_per_pixel_gradient_2d():
    """Jacobian of the pixel map, d I_i(x)/dx_j, for a d=2 Gaussian mixture whose two stimulus
    dimensions are independent and seen by separate neurons (two on x1, one on x2). Then
    I_1(x) is the 1-D I_local of x1 (exact engine) and I_2(x) is the constant
    1/2 log(1 + s/sigma^2): truth d I_1/dx_1 = finite differences in 1-D, all other entries 0."""
    pts, ref = _exact_mixture_1d()
    idx, fd = _fd_on_grid(pts, ref, [-1.3, 0.8])
    D = gmm_denoiser([0.4, 0.6], [[-1.0, 0.0], [1.2, 0.0]], [[0.15, 0.5], [0.3, 0.5]],
                     [[1.5, 0.0], [-0.8, 0.0], [0.0, 1.0]], [0.5, 0.4, 0.6])
    xs = jnp.stack([jnp.asarray(pts[idx]), jnp.array([0.7, -0.4])], axis=1)     # (2 stimuli, 2 pixels)
    lv = S.levels("gauss_legendre", -10.0, 14.0, 24)

    def pixel_map(x, k):
        return E.ilocal(k, D, D.population, x, levels=lv, n_samples=256, chunk=256).map

    def jac_and_total_grad(x, k):
        tot = jax.grad(lambda y: E.ilocal(k, D, D.population, y, levels=lv, n_samples=256, chunk=256).total)
        return jax.vmap(jax.jacrev(pixel_map), in_axes=(0, None))(x, k), jax.vmap(tot)(x)

    J, gt = _replicates(jac_and_total_grad, xs, 4)     # J: (rep, stim, i, j)
    # the pixel gradients sum to the gradient of the total, replicate by replicate
    np.testing.assert_allclose(np.asarray(J.sum(2)), np.asarray(gt), rtol=1e-4, atol=1e-5)
    m, se = _mean_se(J)
    truth = np.zeros_like(m)
    truth[:, 0, 0] = fd
    z = (m - truth) / se
    assert np.all(np.abs(z) < Z_TOL), (m, se, truth, z)
    assert np.all(se[:, 0, 0] < 0.08 * np.abs(fd)), (se, fd)


# ------------------------------------------------------------------ responses drawn at the clean stimulus
@pytest.mark.heavy
@pytest.mark.parametrize("measure", ["specific_surprise", "kong2"])
def test_grad_clean_response_measures_1d(measure):
    """d/dx of specific surprise and of Kong-2 (responses r ~ p(r|x): the score term is
    grad_x log p(r|x)) against central differences of the exact engine's values."""
    D, grid = _mixture_1d()
    pts = np.asarray(grid.points)
    ref = np.asarray(getattr(exact, measure)(grid, D.population))
    idx, fd = _fd_on_grid(pts, ref, [-0.7, 0.5])
    xs = jnp.asarray(pts[idx])[:, None]
    fn = getattr(E, measure)

    def total(x, k):
        return fn(k, D, D.population, x, n_samples=256, chunk=256).total.sum()

    g = _replicates(jax.grad(total), xs, 5)
    m, se = _mean_se(g[..., 0])
    z = (m - fd) / se
    assert np.all(np.abs(z) < Z_TOL), (m, se, fd, z)
    assert np.all(se < 0.08 * np.abs(fd)), (se, fd)


# ------------------------------------------------------------------ the grid denoiser itself
@pytest.mark.heavy
def test_grid_denoiser_is_exact_and_differentiable():
    grid, pop = _poisson_grid(), _poisson_pop()
    G = grid_denoiser(grid, pop)
    assert isinstance(G, GridDenoiser) and G.shape == (1,) and G.population is pop
    pts, w = np.asarray(grid.points), np.asarray(grid.weights)
    a, xg = 0.7, 0.35
    g = np.exp(-a)
    z = S.to_variance_preserving(jnp.array([xg]), a)
    r = jnp.array([3.0, 1.0])
    # posterior over the points, computed independently in float64 numpy
    lik = np.array([float(pop.log_prob(r, jnp.array([p]))) for p in pts])
    post_u = w * np.exp(-0.5 * (xg - pts) ** 2 / g)
    post_u /= post_u.sum()
    post_c = post_u * np.exp(lik - lik.max())
    post_c /= post_c.sum()
    np.testing.assert_allclose(float(G.posterior_mean(z, a)[0]), post_u @ pts, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(G(z, a, r)[0]), (xg - post_c @ pts) / np.sqrt(g), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(G.log_prob_response_given_blurred(r, jnp.array([xg]), a)),
                               np.log(post_u @ np.exp(lik)), rtol=1e-4)
    # exact posterior draws: their mean is the posterior mean
    # (80000 draws, 5 SE: P = 6e-7, and tighter than the former 4 SE of 20000 draws)
    n = 80000
    draws = jax.vmap(lambda k: G.posterior_sample(k, z, a, r))(jax.random.split(jax.random.PRNGKey(0), n))
    sd = np.sqrt(post_c @ pts**2 - (post_c @ pts) ** 2)
    assert abs(np.asarray(draws, np.float64).mean() - post_c @ pts) < 5 * sd / np.sqrt(n)
    # differentiable in the population's parameters: autodiff matches a central difference
    f = lambda c: grid_denoiser(grid, _poisson_pop(c))(z, a, r)[0]  # noqa: E731
    d = 1e-2
    np.testing.assert_allclose(float(jax.grad(f)(-0.8)), (float(f(-0.8 + d)) - float(f(-0.8 - d))) / (2 * d),
                               rtol=2e-2)


def test_grid_denoiser_bad_input():
    grid, pop = _poisson_grid(), _poisson_pop()
    with pytest.raises(ValueError, match="weights"):
        grid_denoiser(np.linspace(-1, 1, 5), np.ones(4), pop)
    with pytest.raises(ValueError, match="weights"):
        grid_denoiser(np.linspace(-1, 1, 5), -np.ones(5), pop)
    with pytest.raises(ValueError, match="points"):
        grid_denoiser(np.full(5, np.nan), np.ones(5), pop)
    with pytest.raises(TypeError, match="population"):
        grid_denoiser(grid, population=object())
    G = grid_denoiser(grid, pop)
    with pytest.raises(ValueError, match="x_noisy"):
        G(jnp.zeros(2), 0.0)
    with pytest.raises(ValueError, match="population"):
        _ = grid_denoiser(grid.points, grid.weights).population


def test_score_gradient_needs_log_prob():
    """A population without log_prob cannot give the score term: a clear TypeError, not a wrong gradient."""
    D, _ = _mixture_1d()
    pop = N.transform_response(D.population, jnp.sinh)   # no log_prob
    # A plain callable: the analytic denoiser itself would (rightly) refuse a population other than its own.
    den = lambda z, a, r=None: D(z, a, r)  # noqa: E731
    with pytest.raises(TypeError, match="score_gradient=False"):
        E.ilocal(jax.random.PRNGKey(0), den, pop, jnp.array([0.1]), n_samples=4, response_sampler="clean",
                 fisher_correction=False)
    est = E.ilocal(jax.random.PRNGKey(0), den, pop, jnp.array([0.1]), n_samples=4, response_sampler="clean",
                   fisher_correction=False, score_gradient=False, stimulus_shape=(1,))
    assert np.isfinite(float(est.total))


@pytest.mark.heavy
def test_gradient_is_finite_when_poisson_rates_underflow():
    """Regression: with an untrained network the posterior mean at low SNR is far outside the
    image range, LNP rates underflow to 0 and log p(r|x_r) was -inf, giving a NaN score-function
    gradient (posterior_mean sampler). Rates are now floored inside the log."""
    from flax import nnx

    from jaxdecomp import neurons
    from jaxdecomp.diffusion import UNetDenoiser, schedules

    pop = neurons.lnp_population((8, 8))
    net = UNetDenoiser((8, 8), n_neurons=49, channels=(8, 16), rngs=nnx.Rngs(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (8, 8), minval=-1, maxval=1)
    lv = schedules.levels("gauss_legendre", -10, 8, 8)
    g = jax.grad(lambda x: E.ilocal(jax.random.PRNGKey(0), net, pop, x, levels=lv, n_samples=4,
                                    response_sampler="posterior_mean").total)(x)
    assert np.all(np.isfinite(np.asarray(g)))
    assert float(jnp.linalg.norm(g)) > 0
