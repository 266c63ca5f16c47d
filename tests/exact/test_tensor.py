"""The I_local tensor G(x) (docs/ilocal.md §8): exact engine and denoiser estimator.

Closed form: a Gaussian prior N(m, S) with r = A x + sigma n has J(x_g) = M_g^T A^T C_g^-1 A M_g,
constant in x, so G is the same at every x (``tasks.GaussianTask.ilocal_tensor``, float64).

Failure probabilities of the Monte Carlo checks (fixed keys, so the tests are deterministic; the
numbers say how unlucky a key would have to be): d = 2, 3 distinct entries at 4 SE (two-sided
Gaussian tail 6.3e-5 each): < 2e-4. d = 8, 36 distinct entries at 4.5 SE (6.8e-6 each, union
bound): < 2.5e-4; the eigenvector angle at 4 first-order SE (a bound, so conservative): < 1e-4.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdecomp import diffusion, estimate, exact, tasks
from jaxdecomp import neurons as N

S2 = np.array([[1.0, 0.6], [0.6, 0.8]])        # correlated prior covariance (d = 2)
A2 = np.array([[1.0, 0.3], [-0.4, 1.2]])
SIG2 = 1.0


# ----------------------------------------------------------------------------- exact engine


def _quiet(fn, *args, **kw):
    """check=False: the engine's accuracy checks warn instead of raising; these grids are kept
    small for speed (the comparisons below carry their own tolerances)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, check=False, **kw)


@pytest.mark.heavy
def test_exact_tensor_trace_and_diagonal_are_ilocal():
    grid = exact.gaussian_grid_2d(cov=S2, m=21, width=6.0)
    pop = N.gaussian_population(N.linear(A2), SIG2)
    G = _quiet(exact.ilocal_tensor, grid, pop, n_levels=16)
    per_dim = _quiet(exact.ilocal, grid, pop, n_levels=16, per_dim=True)
    m = grid.points.shape[0]
    assert G.shape == (m, 2, 2) and G.dtype == np.float64
    # exact.ilocal is per_dim summed over dimensions (one computation)
    np.testing.assert_allclose(np.trace(G, axis1=1, axis2=2), per_dim.sum(axis=1), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(np.diagonal(G, axis1=1, axis2=2), per_dim, rtol=1e-10, atol=1e-13)
    np.testing.assert_array_equal(G, np.swapaxes(G, 1, 2))
    assert np.linalg.eigvalsh(G).min() >= -1e-12


@pytest.mark.heavy
def test_exact_tensor_matches_gaussian_closed_form():
    grid = exact.gaussian_grid_2d(cov=S2, m=31, width=6.0)
    pop = N.gaussian_population(N.linear(A2), SIG2)
    G = _quiet(exact.ilocal_tensor, grid, pop)
    Gt = tasks.gaussian(np.zeros(2), S2, A2, SIG2).ilocal_tensor()
    assert abs(Gt[0, 1]) > 0.1                   # a real off-diagonal to test
    x = np.asarray(grid.points)
    inside = np.einsum("ni,ij,nj->n", x, np.linalg.inv(S2), x) <= 4.0   # within 2 Mahalanobis SD
    assert inside.sum() > 40
    # measured: 9e-4 max abs error (trace 0.685) on this 31 x 31 grid
    np.testing.assert_allclose(G[inside], np.broadcast_to(Gt, G[inside].shape), rtol=0, atol=2.5e-3)
    assert np.linalg.eigvalsh(G).min() >= -1e-12


@pytest.mark.heavy
def test_exact_tensor_1d_is_ilocal():
    grid = exact.gaussian_grid(0.0, 1.0, m=101, lo=-5, hi=5)
    pop = N.poisson_population(N.gaussian_bumps([-1.0, 0.8], 0.7, [8.0, 5.0], 0.5))
    G = _quiet(exact.ilocal_tensor, grid, pop, n_levels=16)
    assert G.shape == (101, 1, 1)
    np.testing.assert_allclose(G[:, 0, 0], _quiet(exact.ilocal, grid, pop, n_levels=16), rtol=1e-10, atol=1e-13)
    assert G.min() >= 0


def test_exact_tensor_options_are_validated():
    grid = exact.gaussian_grid(0.0, 1.0, m=51)
    pop = N.gaussian_population(N.linear(1.0), 0.5)
    with pytest.raises(TypeError):
        exact.ilocal_tensor(grid, pop, per_dim=True)
    with pytest.raises(TypeError):
        exact.ilocal_tensor(np.zeros(3), pop)


# ----------------------------------------------------------------------------- estimator


def _z(est, truth):
    return np.abs((np.asarray(est.value) - truth) / np.asarray(est.stderr))


@pytest.mark.heavy
def test_estimated_tensor_d2_matches_closed_form_and_ilocal():
    D = diffusion.gaussian_denoiser(np.zeros(2), S2, A=A2, sigma=SIG2)
    pop = D.population
    Gt = tasks.gaussian(np.zeros(2), S2, A2, SIG2).ilocal_tensor()
    x = jnp.array([0.4, -0.7], jnp.float32)
    key = jax.random.PRNGKey(3)
    res = estimate.ilocal_tensor(key, D, pop, x, directions=np.eye(2), k=1, n_samples=128)
    il = estimate.ilocal(key, D, pop, x, n_samples=128)
    # the same draws: trace and diagonal are estimate.ilocal's
    np.testing.assert_allclose(res.trace.value, il.total, rtol=1e-6)
    np.testing.assert_allclose(res.trace.stderr, il.stderr, rtol=1e-5)
    np.testing.assert_allclose(res.diagonal.map, il.map, rtol=1e-6)
    G = np.asarray(res.action.value)            # row p = G e_p
    assert np.all(_z(res.action, Gt) < 4.0), (G, Gt, np.asarray(res.action.stderr))
    np.testing.assert_allclose(np.diag(G), res.diagonal.map, rtol=1e-5)
    np.testing.assert_allclose(res.directional.value, np.diag(G), rtol=1e-5)
    w, V = np.linalg.eigh(Gt)
    assert abs(float(res.eigenvalues.value[0]) - w[-1]) < 4.0 * float(res.eigenvalues.stderr[0])


@pytest.fixture(scope="module")
def gaussian_8d():
    rng = np.random.default_rng(1)
    d = 8
    L = rng.normal(size=(d, d)) / np.sqrt(d)
    S = L @ L.T + 0.3 * np.eye(d)
    A = rng.normal(size=(3, d))
    task = tasks.gaussian(np.zeros(d), S, A, 0.5)
    x = jnp.asarray(rng.normal(size=d) * 0.5, jnp.float32)
    key = jax.random.PRNGKey(0)
    Q = np.linalg.qr(np.random.default_rng(5).normal(size=(d, d)))[0].T     # rows: an orthonormal basis
    full = estimate.ilocal_tensor(key, task.denoiser, task.encoder, x, directions=np.concatenate([np.eye(d), Q]),
                                  k=2, n_samples=128)
    # rows 0..d-1: G e_p (the matrix); rows d..2d-1: the basis Q
    res = full._replace(action=estimate.Estimate(full.action.value[:d], full.action.stderr[:d]),
                        directional=estimate.Estimate(full.directional.value[:d], full.directional.stderr[:d]),
                        info={**full.info, "basis": full.directional.value[d:]})
    return task, x, key, res


@pytest.mark.heavy
def test_estimated_tensor_d8_entries_within_se(gaussian_8d):
    task, x, key, res = gaussian_8d
    Gt = task.ilocal_tensor()
    z = _z(res.action, Gt)
    assert z.max() < 4.5, z
    assert abs(float(res.trace.value) - np.trace(Gt)) < 4.0 * float(res.trace.stderr)


def test_estimated_tensor_d8_psd_and_basis_sum(gaussian_8d):
    task, x, key, res = gaussian_8d
    G = np.asarray(res.action.value, np.float64)
    np.testing.assert_allclose(G, G.T, rtol=1e-4, atol=1e-6)
    lam = np.linalg.eigvalsh(0.5 * (G + G.T))
    assert lam.min() >= -4.0 * float(np.asarray(res.action.stderr).max())
    # v^T G v over an orthonormal basis sums to the trace (= I_local total)
    np.testing.assert_allclose(float(res.info["basis"].sum()), float(res.trace.value), rtol=2e-5)
    np.testing.assert_allclose(float(res.directional.value.sum()), float(res.trace.value), rtol=2e-5)
    # randomised eigen-pairs = those of the estimated matrix (the same sampled operator)
    w, V = np.linalg.eigh(0.5 * (G + G.T))
    np.testing.assert_allclose(res.eigenvalues.value, w[::-1][:2], rtol=1e-4)
    assert abs(float(np.asarray(res.eigenvectors[0], np.float64) @ V[:, -1])) > 1 - 1e-5


def test_estimated_tensor_d8_top_eigenvector(gaussian_8d):
    task, _, _, res = gaussian_8d
    w, V = np.linalg.eigh(task.ilocal_tensor())
    v = np.asarray(res.eigenvectors[0], np.float64)
    np.testing.assert_allclose(np.linalg.norm(v), 1.0, rtol=1e-5)
    angle = float(np.arccos(min(1.0, abs(v @ V[:, -1]))))
    se = float(res.info["angle_stderr"][0])
    assert angle < 4.0 * se, (np.degrees(angle), np.degrees(se))
    assert np.degrees(angle) < 10.0                 # stated: the top direction within 10 degrees
    assert abs(float(res.eigenvalues.value[0]) - w[-1]) < 4.0 * float(res.eigenvalues.stderr[0]) + 0.05 * w[-1]


@pytest.mark.heavy
def test_estimated_tensor_image_shapes_and_randomised_eigen():
    # a 5 x 5 image: d = 25 > k + oversample, so the subspace iteration is a real approximation
    task = tasks.gaussian(np.zeros((5, 5)), 1.0, np.random.default_rng(0).normal(size=(3, 25)), 0.5)
    x = jnp.zeros((5, 5), jnp.float32)
    key = jax.random.PRNGKey(1)
    lv = diffusion.schedules.levels(n=8)
    dirs = np.eye(25).reshape(25, 5, 5)
    res = estimate.ilocal_tensor(key, task.denoiser, task.encoder, x, directions=dirs, k=2, levels=lv, n_samples=4)
    assert res.action.value.shape == (25, 5, 5) and res.action.stderr.shape == (25, 5, 5)
    assert res.directional.value.shape == (25,)
    assert res.eigenvalues.value.shape == (2,) and res.eigenvectors.shape == (2, 5, 5)
    assert res.diagonal.map.shape == (5, 5)
    np.testing.assert_allclose(res.trace.value, float(np.sum(res.diagonal.map)), rtol=1e-5)
    np.testing.assert_allclose(res.directional.value, np.asarray(res.diagonal.map).ravel(), rtol=1e-5, atol=1e-7)
    G = np.asarray(res.action.value, np.float64).reshape(25, 25)
    w, V = np.linalg.eigh(0.5 * (G + G.T))
    np.testing.assert_allclose(res.eigenvalues.value, w[::-1][:2], rtol=1e-3)
    vecs = np.asarray(res.eigenvectors, np.float64).reshape(2, 25)
    assert np.all(np.abs(np.sum(vecs * V[:, ::-1][:, :2].T, axis=1)) > 0.999)
    with pytest.raises(ValueError):
        estimate.ilocal_tensor(key, task.denoiser, task.encoder, x, directions=np.zeros((2, 25)))
    with pytest.raises(ValueError):
        estimate.ilocal_tensor(key, task.denoiser, task.encoder, x, k=26)
    with pytest.raises(ValueError):
        estimate.ilocal_tensor(key, task.denoiser, task.encoder, jnp.zeros((2, 5, 5)))
