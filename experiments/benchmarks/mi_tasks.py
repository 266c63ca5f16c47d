"""A suite of mutual-information tasks with closed-form truth, in the families of "Beyond Normal".

The families follow Czyż, Grabowski, Vogt, Beerenwinkel & Marx (2023), "Beyond Normal: On the
Evaluation of Mutual Information Estimators" (NeurIPS): multivariate normal (dense and sparse
interactions), multivariate Student-t, and the same distributions seen through invertible maps that
leave the mutual information unchanged, plus two one-dimensional non-Gaussian families (additive
uniform noise; bimodal marginals). Every sampler, transform and formula here is written for this
project; none is taken from the ``benchmark-mi`` package.

Each :class:`Task` has ``name``, ``dim_x``, ``dim_r``, ``true_mi`` (nats), ``family`` and
``sample(seed, n) -> (x, r)`` (numpy float64, shapes ``(n, dim_x)`` and ``(n, dim_r)``).
Transformed tasks also keep their ``base`` task and the maps (``fx``, ``fx_inv``, ``fr``, ``fr_inv``),
so the tests can check invertibility (a round trip) and that the sample is exactly
``f(base sample)`` with the same seed.

Why the truth survives a transform. For injective measurable maps ``f`` and ``g``,
``I(f(X); g(R)) = I(X; R)`` (data processing both ways: ``X -> f(X) -> f^{-1}(f(X)) = X``). The maps
used: element-wise strictly monotone maps (half-cube, asinh, normal CDF, wiggly, bimodal), a
norm-preserving rotation whose angle depends only on the norm (spiral: the inverse rotates back by
the same angle, computable from the norm of the output), and the Swiss-roll embedding of the unit
square into R^3 (injective because the roll radius, the norm of the (1st, 3rd) coordinates, recovers
the roll parameter).

Usage: ``from experiments.benchmarks.mi_tasks import TASKS, get``; ``python -m
experiments.benchmarks.mi_tasks`` prints the table of tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.special import digamma, gammaln, ndtr, ndtri


# ------------------------------------------------------------------ the task record
@dataclass(frozen=True)
class Task:
    name: str
    family: str
    dim_x: int
    dim_r: int
    true_mi: float
    sample: Callable[[int, int], tuple[np.ndarray, np.ndarray]] = field(repr=False)
    description: str = ""
    base: "Task | None" = field(default=None, repr=False)
    fx: Callable | None = field(default=None, repr=False)
    fx_inv: Callable | None = field(default=None, repr=False)
    fr: Callable | None = field(default=None, repr=False)
    fr_inv: Callable | None = field(default=None, repr=False)
    params: dict = field(default_factory=dict, repr=False)


# ------------------------------------------------------------------ Gaussian
def gaussian_mi(cov: np.ndarray, dim_x: int) -> float:
    """``I(X;R) = 1/2 (log det S_xx + log det S_rr - log det S)`` for a joint normal with covariance ``S``
    (``X`` the first ``dim_x`` coordinates)."""
    cov = np.asarray(cov, np.float64)
    _, lx = np.linalg.slogdet(cov[:dim_x, :dim_x])
    _, lr = np.linalg.slogdet(cov[dim_x:, dim_x:])
    _, lj = np.linalg.slogdet(cov)
    return float(0.5 * (lx + lr - lj))


def canonical_correlations(cov: np.ndarray, dim_x: int) -> np.ndarray:
    """Singular values of ``S_xx^{-1/2} S_xr S_rr^{-1/2}``; ``I = -1/2 sum log(1 - rho_i^2)`` (an
    independent route to :func:`gaussian_mi`)."""
    def inv_sqrt(m):
        w, v = np.linalg.eigh(m)
        return (v / np.sqrt(w)) @ v.T
    sxx, srr, sxr = cov[:dim_x, :dim_x], cov[dim_x:, dim_x:], cov[:dim_x, dim_x:]
    return np.linalg.svd(inv_sqrt(sxx) @ sxr @ inv_sqrt(srr), compute_uv=False)


def dense_cov(dim_x: int, dim_r: int, rho: float) -> np.ndarray:
    """Dense interactions: every pair of the ``dim_x + dim_r`` coordinates has correlation ``rho``
    (equicorrelation; positive definite for ``-1/(d-1) < rho < 1``)."""
    d = dim_x + dim_r
    return (1 - rho) * np.eye(d) + rho * np.ones((d, d))


def sparse_cov(dim_x: int, dim_r: int, rho: float | list, pairs: int) -> np.ndarray:
    """Sparse interactions: ``X_i`` and ``R_i`` have correlation ``rho`` (or ``rho[i]``) for the first
    ``pairs`` indices; every other pair of coordinates is uncorrelated."""
    d = dim_x + dim_r
    cov = np.eye(d)
    rhos = np.broadcast_to(np.asarray(rho, np.float64), (pairs,))
    for i in range(pairs):
        cov[i, dim_x + i] = cov[dim_x + i, i] = rhos[i]
    return cov


def _gaussian_sampler(cov: np.ndarray, dim_x: int):
    chol = np.linalg.cholesky(cov)

    def sample(seed: int, n: int):
        z = np.random.default_rng(seed).standard_normal((n, cov.shape[0])) @ chol.T
        return z[:, :dim_x].copy(), z[:, dim_x:].copy()
    return sample


def gaussian_task(name: str, cov: np.ndarray, dim_x: int, description: str = "") -> Task:
    return Task(name, "gaussian", dim_x, cov.shape[0] - dim_x, gaussian_mi(cov, dim_x),
                _gaussian_sampler(cov, dim_x), description, params={"cov": cov})


# ------------------------------------------------------------------ Student-t
def student_t_correction(dof: float, dim_x: int, dim_r: int) -> float:
    """Closed-form excess of the Student-t MI over the Gaussian MI of its scale matrix.

    A ``d``-dimensional Student-t with ``dof`` = ``nu`` and scale ``S`` has differential entropy

        h_d = 1/2 log det S + d/2 log(nu pi) + log G(nu/2) - log G((nu+d)/2)
              + (nu+d)/2 [psi((nu+d)/2) - psi(nu/2)]

    (``G`` the gamma function, ``psi`` the digamma; Kotz & Nadarajah 2004, "Multivariate t
    Distributions and Their Applications", and Arellano-Valle, Contreras-Reyes & Genton 2013,
    "Shannon entropy and mutual information for multivariate skew-elliptical distributions", Scand.
    J. Stat. 40:42-62, eq. for the t case). Marginals of a multivariate t are multivariate t with the
    same ``nu`` and the sub-blocks of ``S``, so ``I = h_x + h_r - h_xr`` gives

        I = I_gauss(S) + c(nu, dx, dr),
        c = log G(nu/2) + log G((nu+dx+dr)/2) - log G((nu+dx)/2) - log G((nu+dr)/2)
            + (nu+dx)/2 [psi((nu+dx)/2) - psi(nu/2)] + (nu+dr)/2 [psi((nu+dr)/2) - psi(nu/2)]
            - (nu+dx+dr)/2 [psi((nu+dx+dr)/2) - psi(nu/2)]

    (the ``d/2 log(nu pi)`` terms cancel). ``c > 0`` and ``c -> 0`` as ``nu -> inf``: even with
    ``S`` block-diagonal the shared scale variable makes X and R dependent. This is the correction
    in Czyż et al. (2023), Appendix on the Student-t distribution.
    """
    nu, dx, dr = float(dof), dim_x, dim_r

    def part(d):
        return (nu + d) / 2 * (digamma((nu + d) / 2) - digamma(nu / 2)) - gammaln((nu + d) / 2)
    return float(gammaln(nu / 2) + part(dx) + part(dr) - part(dx + dr))


def _student_sampler(cov: np.ndarray, dim_x: int, dof: float):
    chol = np.linalg.cholesky(cov)

    def sample(seed: int, n: int):
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((n, cov.shape[0])) @ chol.T
        w = rng.chisquare(dof, (n, 1))
        t = z / np.sqrt(w / dof)
        return t[:, :dim_x].copy(), t[:, dim_x:].copy()
    return sample


def student_task(name: str, cov: np.ndarray, dim_x: int, dof: float, description: str = "") -> Task:
    dim_r = cov.shape[0] - dim_x
    return Task(name, "student_t", dim_x, dim_r,
                gaussian_mi(cov, dim_x) + student_t_correction(dof, dim_x, dim_r),
                _student_sampler(cov, dim_x, dof), description, params={"cov": cov, "dof": dof})


# ------------------------------------------------------------------ MI-preserving transforms
def half_cube(v):
    """``sign(v) |v|^{3/2}``: strictly increasing, heavier tails."""
    return np.sign(v) * np.abs(v) ** 1.5


def half_cube_inv(v):
    return np.sign(v) * np.abs(v) ** (2.0 / 3.0)


def normal_cdf(v):
    """``Phi(v)``: Gaussian margins become uniform on (0, 1)."""
    return ndtr(v)


def normal_cdf_inv(u):
    return ndtri(u)


WIGGLE = ((0.4, 1.0, 0.0), (0.15, 3.0, 1.0))     # (amplitude, frequency, phase); sum a*w = 0.85 < 1


def wiggly(v):
    """``v + sum_k a_k sin(w_k v + p_k)`` with ``sum_k |a_k w_k| = 0.85 < 1``: the derivative is at least
    0.15, so the map is strictly increasing (a bijection of R)."""
    out = np.array(v, np.float64, copy=True)
    for a, w, p in WIGGLE:
        out = out + a * np.sin(w * v + p)
    return out


def _monotone_inverse(f, y, lo_pad=5.0, iters=80):
    """Inverse of a strictly increasing ``f`` with ``|f(v) - v| <= lo_pad``: bisection, element-wise."""
    y = np.asarray(y, np.float64)
    lo, hi = y - lo_pad, y + lo_pad
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        below = f(mid) < y
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def wiggly_inv(y):
    return _monotone_inverse(wiggly, y, lo_pad=0.6)


BIMODAL = (3.0, 0.3)      # (shift a, width w) of the bimodal map


def bimodal(v):
    """``v + a tanh(v / w)`` with ``a = 3, w = 0.3``: strictly increasing; it stretches the centre of a
    standard normal by ``1 + a/w = 11``, so the image density has a trough at 0 and two modes near
    ``+-(a + 1)``."""
    a, w = BIMODAL
    return v + a * np.tanh(v / w)


def bimodal_inv(y):
    return _monotone_inverse(bimodal, y, lo_pad=BIMODAL[0] + 0.1)


def asinh(v):
    return np.arcsinh(v)


def asinh_inv(v):
    return np.sinh(v)


SPIRAL_SPEED = 0.5


def spiral(v, speed=SPIRAL_SPEED):
    """Rotate the first two coordinates of each row by the angle ``speed * |v|^2`` (the norm of the
    whole row). A rotation keeps the norm, so the inverse rotates by ``-speed * |y|^2``; the map is a
    diffeomorphism of R^d (d >= 2)."""
    v = np.asarray(v, np.float64)
    theta = speed * np.sum(v * v, axis=1)
    c, s = np.cos(theta), np.sin(theta)
    out = v.copy()
    out[:, 0] = c * v[:, 0] - s * v[:, 1]
    out[:, 1] = s * v[:, 0] + c * v[:, 1]
    return out


def spiral_inv(y, speed=SPIRAL_SPEED):
    return spiral(y, -speed)


SWISS_HEIGHT = 10.0


def swiss_roll(v):
    """R^2 -> R^3: ``u = Phi(v)`` in (0, 1)^2, roll parameter ``t = pi (1 + 2 u_1)`` in (pi, 3 pi), and
    the point ``(t cos t, H u_2, t sin t)`` with ``H = 10``. Injective: ``t`` is the radius
    ``sqrt(p_1^2 + p_3^2)`` of the point, so ``u_1 = (t/pi - 1)/2`` and ``u_2 = p_2 / H`` are recovered."""
    u = ndtr(np.asarray(v, np.float64))
    t = np.pi * (1 + 2 * u[:, 0])
    return np.stack([t * np.cos(t), SWISS_HEIGHT * u[:, 1], t * np.sin(t)], axis=1)


def swiss_roll_inv(p):
    t = np.hypot(p[:, 0], p[:, 2])
    u = np.stack([(t / np.pi - 1) / 2, p[:, 1] / SWISS_HEIGHT], axis=1)
    return ndtri(u)


def transformed(name: str, base: Task, fx, fx_inv, fr=None, fr_inv=None, family: str = "", description: str = "",
                dim_x: int | None = None) -> Task:
    """``(fx(X), fr(R))`` for ``(X, R)`` from ``base`` (``fr`` defaults to ``fx``); same truth as ``base``."""
    fr = fx if fr is None else fr
    fr_inv = fx_inv if fr_inv is None else fr_inv

    def sample(seed: int, n: int):
        x, r = base.sample(seed, n)
        return fx(x), fr(r)
    return Task(name, family or base.family, base.dim_x if dim_x is None else dim_x, base.dim_r, base.true_mi,
                sample, description, base=base, fx=fx, fx_inv=fx_inv, fr=fr, fr_inv=fr_inv)


# ------------------------------------------------------------------ additive uniform noise
def additive_uniform_mi(width: float) -> float:
    """``X ~ U(0, 1)``, ``R = X + N`` with ``N ~ U(-e/2, e/2)`` independent (``e`` = width). ``h(R | X) =
    log e``; ``R`` has a trapezoidal density (ramps of width ``min(1, e)``, plateau ``1 / max(1, e)``),
    whose entropy is ``log max(1, e) + min(1, e) / (2 max(1, e))``. Hence ``I = e/2 - log e`` for
    ``e <= 1`` and ``I = 1/(2e)`` for ``e >= 1`` (both 1/2 at ``e = 1``)."""
    e = float(width)
    return e / 2 - np.log(e) if e <= 1 else 1 / (2 * e)


def additive_uniform_logratio(x, r, width: float):
    """Exact ``log p(r | x) - log p(r)`` (for the tests)."""
    e = float(width)
    lo, hi = min(1.0, e), max(1.0, e)
    s = r[:, 0] + e / 2                       # R + e/2 = X + U(0, e) has support (0, 1 + e)
    dens = np.minimum.reduce([s / (lo * hi), np.full_like(s, 1 / hi), (1 + e - s) / (lo * hi)])
    inside = np.abs(r[:, 0] - x[:, 0]) <= e / 2
    return np.where(inside, -np.log(e) - np.log(dens), -np.inf)


def additive_uniform_task(name: str, width: float) -> Task:
    def sample(seed: int, n: int):
        rng = np.random.default_rng(seed)
        x = rng.uniform(0, 1, (n, 1))
        return x, x + rng.uniform(-width / 2, width / 2, (n, 1))
    return Task(name, "additive_uniform", 1, 1, additive_uniform_mi(width), sample,
                f"X ~ U(0,1), R = X + U(-{width / 2:g}, {width / 2:g})", params={"width": width})


# ------------------------------------------------------------------ pointwise MI of a sample
def _log_gauss(z, cov):
    d = cov.shape[0]
    q = np.einsum("ni,ij,nj->n", z, np.linalg.inv(cov), z)
    return -0.5 * (d * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1] + q)


def _log_student(z, cov, nu):
    d = cov.shape[0]
    q = np.einsum("ni,ij,nj->n", z, np.linalg.inv(cov), z)
    return (gammaln((nu + d) / 2) - gammaln(nu / 2) - d / 2 * np.log(nu * np.pi)
            - 0.5 * np.linalg.slogdet(cov)[1] - (nu + d) / 2 * np.log1p(q / nu))


def pointwise_mi(task: Task, seed: int, n: int) -> np.ndarray:
    """``log p(x, r) / (p(x) p(r))`` of each of the ``n`` pairs ``task.sample(seed, n)`` draws: its mean
    is the MI of that sample (the truth plus the sample's own scatter, ``sd / sqrt(n)``).

    Transformed tasks use their base task's draws: an invertible map of each variable leaves the
    pointwise MI of every pair unchanged."""
    base = task
    while base.base is not None:
        base = base.base
    x, r = base.sample(seed, n)
    if base.family == "additive_uniform":
        return additive_uniform_logratio(x, r, base.params["width"])
    cov, dx = base.params["cov"], base.dim_x
    z = np.concatenate([x, r], 1)
    if "dof" in base.params:
        nu = base.params["dof"]
        return _log_student(z, cov, nu) - _log_student(x, cov[:dx, :dx], nu) - _log_student(r, cov[dx:, dx:], nu)
    return _log_gauss(z, cov) - _log_gauss(x, cov[:dx, :dx]) - _log_gauss(r, cov[dx:, dx:])


# ------------------------------------------------------------------ the suite
def _build() -> list[Task]:
    g11 = gaussian_task("gauss-1x1", sparse_cov(1, 1, 0.75, 1), 1, "1-D pair, rho = 0.75")
    g22 = gaussian_task("gauss-dense-2x2", dense_cov(2, 2, 0.5), 2, "all 4 coordinates correlated 0.5")
    g55 = gaussian_task("gauss-dense-5x5", dense_cov(5, 5, 0.5), 5, "all 10 coordinates correlated 0.5")
    g55s = gaussian_task("gauss-sparse-5x5", sparse_cov(5, 5, 0.75, 2), 5, "2 correlated pairs, rho = 0.75")
    g25s = gaussian_task("gauss-sparse-25x25", sparse_cov(25, 25, 0.8, 3), 25, "3 correlated pairs of 25, rho = 0.8")
    g50 = gaussian_task("gauss-dense-50x50", dense_cov(50, 50, 0.5), 50, "all 100 coordinates correlated 0.5")
    g33 = gaussian_task("gauss-sparse-3x3", sparse_cov(3, 3, 0.6, 3), 3, "3 pairs, rho = 0.6")
    g21 = gaussian_task("gauss-2x1", np.array([[1, 0, .6], [0, 1, .4], [.6, .4, 1]]), 2,
                        "R correlated 0.6 and 0.4 with two independent X coordinates")

    t11 = student_task("student-dof1-1x1", sparse_cov(1, 1, 0.5, 1), 1, 1, "Cauchy-tailed, scale rho = 0.5")
    t22 = student_task("student-dof2-2x2", sparse_cov(2, 2, 0.5, 2), 2, 2, "2 pairs rho = 0.5")
    t33 = student_task("student-dof3-3x3", sparse_cov(3, 3, 0.5, 1), 3, 3, "1 pair rho = 0.5")
    t55 = student_task("student-dof5-5x5", sparse_cov(5, 5, 0.0, 1), 5, 5, "identity scale: all MI from the shared scale")

    tasks = [g11, g22, g55, g55s, g25s, g50, t11, t22, t33, t55]
    tasks += [
        transformed("halfcube-1x1", g11, half_cube, half_cube_inv, family="half_cube"),
        transformed("halfcube-sparse-5x5", g55s, half_cube, half_cube_inv, family="half_cube"),
        transformed("asinh-student-dof1-1x1", t11, asinh, asinh_inv, family="asinh"),
        transformed("asinh-student-dof2-2x2", t22, asinh, asinh_inv, family="asinh"),
        transformed("normalcdf-1x1", g11, normal_cdf, normal_cdf_inv, family="normal_cdf",
                    description="uniform margins"),
        transformed("normalcdf-dense-5x5", g55, normal_cdf, normal_cdf_inv, family="normal_cdf"),
        transformed("spiral-sparse-3x3", g33, spiral, spiral_inv, family="spiral"),
        transformed("spiral-dense-5x5", g55, spiral, spiral_inv, family="spiral"),
        transformed("wiggly-1x1", g11, wiggly, wiggly_inv, family="wiggly"),
        transformed("wiggly-dense-2x2", g22, wiggly, wiggly_inv, family="wiggly"),
        transformed("swissroll-2x1", g21, swiss_roll, swiss_roll_inv, lambda v: v, lambda v: v,
                    family="swiss_roll", dim_x=3, description="X: 2-D Gaussian rolled into R^3"),
        additive_uniform_task("additive-uniform-0.1", 0.1),
        additive_uniform_task("additive-uniform-0.75", 0.75),
        transformed("bimodal-1x1", g11, bimodal, bimodal_inv, family="bimodal"),
        transformed("bimodal-sparse-3x3", g33, bimodal, bimodal_inv, family="bimodal"),
    ]
    return tasks


TASKS: list[Task] = _build()
BY_NAME = {t.name: t for t in TASKS}
QUICK = ("gauss-1x1", "student-dof2-2x2", "halfcube-1x1", "additive-uniform-0.75")


def get(name: str) -> Task:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(BY_NAME)}") from None


if __name__ == "__main__":
    print(f"{'task':28s} {'family':18s} {'dx':>3s} {'dr':>3s} {'I (nats)':>9s}")
    for t in TASKS:
        print(f"{t.name:28s} {t.family:18s} {t.dim_x:3d} {t.dim_r:3d} {t.true_mi:9.4f}")
