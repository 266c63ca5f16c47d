"""The closed-form truths of the MI benchmark suite (``experiments/benchmarks/mi_tasks.py``), each checked
against an independent ground truth, and the transforms checked for invertibility.

Statistical checks assert ``|z| < z_family(k)`` over the ``k`` checks of a family (``tests/_stats.py``:
the chance of any false failure under fresh seeds is 1e-4), with a standard error that is either the
sample SD of an exact Monte Carlo average or, for the Gaussian plug-in, its delta-method SE.
"""

import numpy as np
import pytest
from scipy import integrate, stats

from experiments.benchmarks import mi_tasks as mt
from tests._stats import z_family

GAUSS = [t for t in mt.TASKS if t.family == "gaussian"]
STUDENT = [t for t in mt.TASKS if t.family == "student_t"]
UNIFORM = [t for t in mt.TASKS if t.family == "additive_uniform"]
TRANSFORMED = [t for t in mt.TASKS if t.base is not None]


def test_suite_shape():
    assert len(mt.TASKS) >= 20
    assert len(mt.BY_NAME) == len(mt.TASKS)                 # names are unique
    for t in mt.TASKS:
        x, r = t.sample(3, 50)
        assert x.shape == (50, t.dim_x) and r.shape == (50, t.dim_r)
        assert np.all(np.isfinite(x)) and np.all(np.isfinite(r))
        x2, r2 = t.sample(3, 50)
        assert np.array_equal(x, x2) and np.array_equal(r, r2)   # deterministic in the seed
        assert t.true_mi > 0
    for q in mt.QUICK:
        mt.get(q)


@pytest.mark.parametrize("task", GAUSS, ids=lambda t: t.name)
def test_gaussian_closed_form(task):
    """slogdet formula = canonical-correlation formula; and = the plug-in MI of the sample covariance.

    Plug-in at n pairs: bias ``dx dr / (2n)`` (the chi-square law of the likelihood-ratio statistic
    with ``dx dr`` degrees of freedom), delta-method variance ``sum rho_i^2 / n`` (canonical
    correlations rho_i) plus ``dx dr / (2 n^2)`` from the null directions. Measured on 20 replicates
    per task at n = 40,000: z had mean within 0.4 and SD 0.93-1.35, so the tolerance below
    (the family-wise z times 1.5 for the SD) is not tight by accident."""
    cov, dx = task.params["cov"], task.dim_x
    rho = mt.canonical_correlations(cov, dx)
    assert task.true_mi == pytest.approx(-0.5 * np.sum(np.log1p(-rho ** 2)), rel=1e-10)
    n = 20_000 if task.dim_x + task.dim_r <= 50 else 8_000
    x, r = task.sample(11, n)
    est = mt.gaussian_mi(np.cov(np.hstack([x, r]).T), dx)
    bias = dx * task.dim_r / (2 * n)
    se = np.sqrt(np.sum(rho ** 2) / n + dx * task.dim_r / (2 * n * n))
    assert abs(est - task.true_mi - bias) < 1.5 * z_family(len(GAUSS)) * se


@pytest.mark.parametrize("task", STUDENT, ids=lambda t: t.name)
def test_student_t_correction(task):
    """truth = Monte Carlo mean of the exact log density ratio log p(x,r) - log p(x) - log p(r) (scipy's
    multivariate_t logpdf of the joint and the two marginals, which are t with the same dof)."""
    cov, dof, dx = task.params["cov"], task.params["dof"], task.dim_x
    n = 20_000
    x, r = task.sample(5, n)
    xr = np.hstack([x, r])
    lr = (stats.multivariate_t(np.zeros(cov.shape[0]), cov, df=dof).logpdf(xr)
          - stats.multivariate_t(np.zeros(dx), cov[:dx, :dx], df=dof).logpdf(x)
          - stats.multivariate_t(np.zeros(task.dim_r), cov[dx:, dx:], df=dof).logpdf(r))
    z = (lr.mean() - task.true_mi) / (lr.std(ddof=1) / np.sqrt(n))
    assert abs(z) < z_family(len(STUDENT) + len(UNIFORM))
    # the sampler's first coordinate is Student-t with that dof (scale cov[0, 0] = 1)
    assert stats.kstest(x[:, 0], stats.t(dof).cdf).pvalue > 1e-4 / len(STUDENT)


def test_student_t_correction_limits():
    assert mt.student_t_correction(1e7, 3, 4) == pytest.approx(0.0, abs=1e-6)   # Gaussian limit
    cs = [mt.student_t_correction(v, 2, 2) for v in (1, 2, 5, 20)]
    assert all(c > 0 for c in cs) and all(a > b for a, b in zip(cs, cs[1:]))      # heavier tails, more MI


@pytest.mark.parametrize("task", UNIFORM, ids=lambda t: t.name)
def test_additive_uniform(task):
    """truth = Monte Carlo mean of the exact log ratio log p(r|x) - log p(r); and = h(R) - log e with
    h(R) integrated numerically from the trapezoidal density."""
    e = task.params["width"]
    n = 20_000
    x, r = task.sample(7, n)
    lr = mt.additive_uniform_logratio(x, r, e)
    assert np.all(np.isfinite(lr))
    z = (lr.mean() - task.true_mi) / (lr.std(ddof=1) / np.sqrt(n))
    assert abs(z) < z_family(len(STUDENT) + len(UNIFORM))
    # density of R: convolution of U(0,1) and U(-e/2, e/2)
    def dens(y):
        return max(0.0, min(y + e / 2, 1.0) - max(y - e / 2, 0.0)) / e
    pts = sorted({-e / 2, e / 2, 1 - e / 2, 1 + e / 2})
    h = -sum(integrate.quad(lambda y: dens(y) * np.log(dens(y)) if dens(y) > 0 else 0.0, a, b)[0]
             for a, b in zip(pts, pts[1:]))
    assert h - np.log(e) == pytest.approx(task.true_mi, abs=1e-8)


@pytest.mark.parametrize("task", TRANSFORMED, ids=lambda t: t.name)
def test_transform_keeps_truth_and_inverts(task):
    """A transformed task is exactly (fx(X), fr(R)) of its base task's draw, shares its truth, and the maps
    invert (round trip), so they are injective on the sample and the MI is unchanged."""
    assert task.true_mi == task.base.true_mi
    xb, rb = task.base.sample(9, 2000)
    x, r = task.sample(9, 2000)
    assert x.shape[1] == task.dim_x
    assert np.array_equal(x, task.fx(xb)) and np.array_equal(r, task.fr(rb))
    np.testing.assert_allclose(task.fx_inv(x), xb, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(task.fr_inv(r), rb, rtol=1e-7, atol=1e-7)
    assert not np.allclose(x[:, : xb.shape[1]], xb)            # the map does something


@pytest.mark.parametrize("f", [mt.half_cube, mt.asinh, mt.normal_cdf, mt.wiggly, mt.bimodal],
                         ids=lambda f: f.__name__)
def test_elementwise_maps_strictly_increasing(f):
    v = np.linspace(-6, 6, 20_001)          # Phi rounds to 1 in float64 beyond about 8.3
    assert np.all(np.diff(f(v)) > 0)


def test_spiral_and_swiss_roll_geometry():
    v = np.random.default_rng(0).standard_normal((1000, 3))
    y = mt.spiral(v)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), np.linalg.norm(v, axis=1), rtol=1e-12)
    angles = np.angle((y[:, 0] + 1j * y[:, 1]) / (v[:, 0] + 1j * v[:, 1]))
    assert np.ptp(angles) > 3                                  # the rotation angle varies with the norm
    p = mt.swiss_roll(v[:, :2])
    assert p.shape == (1000, 3)
    radius = np.hypot(p[:, 0], p[:, 2])
    assert radius.min() > np.pi and radius.max() < 3 * np.pi   # the roll parameter is the radius


def test_bimodal_marginal_has_two_modes():
    task = mt.get("bimodal-1x1")
    x, _ = task.sample(1, 20_000)
    centre = np.mean(np.abs(x[:, 0]) < 0.5)
    mode = np.mean((x[:, 0] > 3.5) & (x[:, 0] < 4.5))
    assert mode > 3 * centre                                   # exact: about 0.22 vs 0.036


@pytest.mark.parametrize("task", mt.TASKS, ids=lambda t: t.name)
def test_pointwise_mi_averages_to_the_truth(task):
    """The sample's pointwise MI (used to separate an estimator's bias from its evaluation pairs' own
    scatter): finite for every pair, and its mean over 20,000 pairs is the closed-form truth within
    z_family over the whole suite of its sample SE."""
    n = 20_000
    p = mt.pointwise_mi(task, 3, n)
    assert p.shape == (n,) and np.all(np.isfinite(p))
    z = (p.mean() - task.true_mi) / (p.std(ddof=1) / np.sqrt(n))
    assert abs(z) < z_family(len(mt.TASKS)), z


@pytest.mark.parametrize("task", GAUSS[:3] + STUDENT, ids=lambda t: t.name)
def test_pointwise_mi_against_scipy_densities(task):
    """Independent densities: scipy's multivariate normal / t log-densities of the joint and the marginals."""
    x, r = task.sample(5, 50)
    cov, dx = task.params["cov"], task.dim_x
    if task.family == "student_t":
        def logpdf(v, c):
            return stats.multivariate_t(np.zeros(c.shape[0]), c, df=task.params["dof"]).logpdf(v)
    else:
        def logpdf(v, c):
            return stats.multivariate_normal(np.zeros(c.shape[0]), c).logpdf(v)
    want = logpdf(np.concatenate([x, r], 1), cov) - logpdf(x, cov[:dx, :dx]) - logpdf(r, cov[dx:, dx:])
    np.testing.assert_allclose(mt.pointwise_mi(task, 5, 50), want, rtol=1e-8, atol=1e-10)
