"""The exact grid engine: every stimulus-wise measure for 1-D / 2-D stimuli.

Computed in float64 (inside ``jax.enable_x64``): the noise-level integrand of
I_local is a squared difference of posterior means that shrinks like ``g`` at
small noise, where float32 would lose three to four digits.

Discrete measures come from the response-cell masses ``P[j, k] = P(cell k | x_j)``
(see :mod:`jaxdecomp.exact._responses`) and the prior masses ``w_j``.

I_local and Kong-2 integrate over the blur variance ``g``:

    I_local(x) = 1/2 int_0^inf E_{y ~ N(x, g I)} Tr J(y) dg,
    J(y) = E_{r | y} || m(y, r) - m(y) ||^2 / g^2          (Tweedie)

with ``m(y) = E[X | y]``, ``m(y, r) = E[X | y, r]`` computed exactly on the grid.
Numerics (all settings are keyword arguments of the public functions):

* ``g`` in ``[g_min, g_max]`` by Gauss–Legendre quadrature in log-SNR ``a = -log g``
  with ``n_levels`` nodes (integrand ``g J / 2`` is smooth and decays at both ends);
* small-noise end ``[0, g_min]``: the quadratic through the encoder's Fisher information
  at ``x`` (the ``g -> 0`` limit) and the integrand at ``g_min`` and ``2 g_min``,
  integrated exactly. Default ``g_min = 0.75 spacing^2``: a blur much finer than
  the grid spacing would see its cells (the grid sum of a Gaussian of SD
  ``sqrt(g)`` errs by about ``exp(-2 pi^2 g / spacing^2)``, 4e-7 here), a coarser
  one makes the small-noise piece less accurate. Measured: 1.5e-7 relative error
  for the linear-Gaussian closed form on the default 401-point grid; 7e-5 against
  a 6x finer grid for Poisson bumps on a 101-point grid;
* large-noise tail ``[g_max, inf)``: the integrand decays like ``C / g^2`` (the
  posterior tends to the prior), so the tail is ``g_max * integrand(g_max)``.
  Default ``g_max = 10 * span^2``;
* the expectation over ``y ~ N(x, g I)`` is a normalised trapezoid sum over a
  ``blur_points``-per-axis grid covering the stimulus grid ± 6 sqrt(g); ``J(y)`` is
  evaluated on that grid, in chunks of ``chunk`` points to bound memory.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from jaxdecomp._quadrature import gauss_legendre, log_snr_from_variance, variance_from_log_snr
from jaxdecomp.exact._grid import Grid, axes_of
from jaxdecomp.exact._responses import Cells, response_cells, sampled_cells
from jaxdecomp.neurons._populations import _Population, joint_population


def _x64(fn):
    """Run ``fn`` in float64 and hand back numpy float64 results (jax float64 arrays
    would be truncated to float32 by any operation outside the x64 context)."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.enable_x64(True):
            out = fn(*args, **kwargs)
            return jax.tree_util.tree_map(lambda v: np.asarray(v, dtype=np.float64), out)

    return wrapped


class _Problem(NamedTuple):
    X: jax.Array  # (m, d) grid points
    w: jax.Array  # (m,) prior masses
    P: jax.Array  # (m, K) response-cell masses
    cells: Cells
    points: jax.Array  # grid points in the user's shape, (m,) or (m, 2)
    sizes: tuple  # (K1, K2): measure of the inner K2 cells given the outer K1 (K1 = 1: unconditional)


def _check_inputs(grid, population, given=None):
    if not isinstance(grid, Grid):
        raise TypeError(f"grid: expected a jaxdecomp.exact.Grid, got {type(grid).__name__}")
    if not isinstance(population, _Population):
        raise TypeError(f"population: expected a population from jaxdecomp.neurons, got {type(population).__name__}")
    if given is not None and not isinstance(given, _Population):
        raise TypeError(f"given: expected a population from jaxdecomp.neurons, got {type(given).__name__}")


def _problem(grid: Grid, population, given=None, cell_kw=None, cells=None) -> _Problem:
    _check_inputs(grid, population, given)
    pop = population if given is None else joint_population(given, population)
    points = jnp.asarray(grid.points, dtype=jnp.float64)
    if cells is None:
        cells = response_cells(pop, np.asarray(points), **(cell_kw or {}))
    P = jax.jit(jax.vmap(cells.mass))(points)
    X = points[:, None] if points.ndim == 1 else points
    K = P.shape[1]
    sizes = (1, K) if given is None else tuple(int(k) for k in cells.sizes)
    return _Problem(X, jnp.asarray(grid.weights, jnp.float64), P, cells, points, sizes)


def _safe_div(a, b):
    ok = b > 0
    return jnp.where(ok, a / jnp.where(ok, b, 1.0), 0.0)


# ----------------------------------------------------------------------------- discrete measures


def _discrete(w, P, volumes=None):
    """All measures that need no noise integral, each (m,) except the MI.
    ``volumes``: cell volumes where they are not all equal (Monte Carlo cells)."""
    pr = w @ P  # (K,) response-cell probabilities
    log_pr = jnp.log(jnp.where(pr > 0, pr, 1.0))
    plogp = jnp.sum(xlogy(P, P), axis=1)  # -H(R | x_j) on the cells
    surprise = plogp - P @ log_pr  # KL(p(r|x) || p(r))
    H_R = -jnp.sum(xlogy(pr, pr))
    if volumes is not None:  # differential entropies: -sum p log(p / volume)
        log_v = jnp.log(jnp.asarray(volumes))
        plogp = plogp - P @ log_v
        H_R = H_R + pr @ log_v
    q = _safe_div(w[:, None] * P, pr[None, :])  # posterior p(x_j | r_k)
    H_X = -jnp.sum(xlogy(w, w))
    H_X_r = -jnp.sum(xlogy(q, q), axis=0)  # (K,)
    log_w = jnp.log(jnp.where(w > 0, w, 1.0))
    kl_post = jnp.sum(xlogy(q, q), axis=0) - log_w @ q  # KL(p(x|r_k) || p(x))
    return dict(
        mutual_information=w @ surprise,
        specific_surprise=surprise,
        specific_information=H_R + plogp,
        ssi=P @ (H_X - H_X_r),
        cissi=P @ kl_post,
    )


# ----------------------------------------------------------------------------- noise integral


class Integral(NamedTuple):
    """Settings of the noise-level integral (see the module docstring)."""

    n_levels: int = 48
    g_min: float | None = None
    g_max: float | None = None
    blur_points: int | None = None
    chunk: int = 512


def _settings(grid_points, integral: Integral):
    axes = axes_of(np.asarray(grid_points))
    lo = np.array([a[0] for a in axes])
    hi = np.array([a[-1] for a in axes])
    spacing = min(float(np.median(np.diff(a))) for a in axes)
    span = float(np.max(hi - lo))
    g_min = 0.75 * spacing**2 if integral.g_min is None else float(integral.g_min)
    g_max = 10.0 * span**2 if integral.g_max is None else float(integral.g_max)
    if not (np.isfinite(g_min) and np.isfinite(g_max) and 0 < g_min < g_max):
        raise ValueError(f"g_min, g_max: expected finite 0 < g_min < g_max, got {g_min}, {g_max}")
    M = max(len(a) for a in axes) + 16 if integral.blur_points is None else int(integral.blur_points)
    if M < 8:
        raise ValueError(f"blur_points: expected at least 8, got {M}")
    if int(integral.chunk) < 1:
        raise ValueError(f"chunk: expected a positive integer, got {integral.chunk}")
    return lo, hi, g_min, g_max, M


@functools.partial(jax.jit, static_argnames=("M", "chunk", "sizes", "with_kong2"))
def _level_integrands(gs, X, w, P, lo, hi, *, M, chunk, sizes, with_kong2):
    """For each blur variance g: E_{y~N(x,g)} J_ii(y) per grid point and dimension (m, d)
    and the Kong-2 integrand (m,). ``sizes = (K1, K2)``: the measure is of the inner
    cells given the outer ones (K1 = 1: unconditional)."""
    m, d = X.shape
    K = P.shape[1]
    K1, K2 = sizes
    log_w = jnp.log(jnp.where(w > 0, w, 1e-300))
    n_y = M**d
    n_chunks = -(-n_y // chunk)

    def one_level(g):
        s = jnp.sqrt(g)
        axes = [jnp.linspace(lo[i] - 6 * s, hi[i] + 6 * s, M) for i in range(d)]
        Y = jnp.stack([a.ravel() for a in jnp.meshgrid(*axes, indexing="ij")], axis=1)  # (n_y, d)
        conv = [jax.nn.softmax(-((X[:, i, None] - axes[i][None, :]) ** 2) / (2 * g), axis=1) for i in range(d)]
        C = conv[0]
        for c in conv[1:]:
            C = (C[:, :, None] * c[:, None, :]).reshape(m, -1)
        Ypad = jnp.concatenate([Y, jnp.broadcast_to(Y[-1], (n_chunks * chunk - n_y, d))])

        def block(Yc):
            d2 = jnp.sum((Yc[:, None, :] - X[None, :, :]) ** 2, axis=-1)
            Pi = jax.nn.softmax(log_w[None, :] - d2 / (2 * g), axis=1)  # p(x_j | y)
            mu = Pi @ X
            Q = Pi @ P  # p(cell | y)
            Q1 = jnp.repeat(Q.reshape(-1, K1, K2).sum(-1), K2, axis=1)
            jy, D = [], jnp.zeros_like(Q)
            for i in range(d):
                N = (Pi * (X[None, :, i] - mu[:, i : i + 1])) @ P  # p(cell|y) (m(y,r) - m(y))
                N1 = jnp.repeat(N.reshape(-1, K1, K2).sum(-1), K2, axis=1)
                diff = _safe_div(N, Q) - _safe_div(N1, Q1)
                jy.append(jnp.sum(Q * diff**2, axis=1))
                D = D + diff**2
            return jnp.stack(jy, axis=1) / g**2, (D / g**2 if with_kong2 else None)

        jy, D = jax.lax.map(block, Ypad.reshape(n_chunks, chunk, d))
        Jy = jy.reshape(-1, d)[:n_y]
        E = C @ Jy
        k2 = jnp.sum(P * (C @ D.reshape(-1, K)[:n_y]), axis=1) if with_kong2 else jnp.zeros(m)
        return E, k2

    return jax.lax.map(one_level, gs)


def _head_fisher(problem: _Problem, population) -> jax.Array:
    """Fisher information diagonal at each grid point, (m, d): closed form where the
    population has one, else on the response cells (sum_k (d P_k)^2 / P_k)."""
    pts = problem.points
    try:
        J = jax.jit(jax.vmap(population.fisher_diag))(pts)
    except NotImplementedError:
        # the problem's cells are the population's own unless it is conditioned on another
        cells = problem.cells if problem.sizes[0] == 1 else response_cells(population, np.asarray(pts))

        def table_fisher(x):
            p = cells.mass(x)
            dp = jax.jacfwd(cells.mass)(x).reshape(p.shape[0], -1)
            return jnp.sum(_safe_div(dp**2, p[:, None]), axis=0).reshape(jnp.shape(x))

        J = jax.jit(jax.vmap(table_fisher))(pts)
    return J.reshape(pts.shape[0], -1)


def _integrate(problem: _Problem, population, integral: Integral, with_kong2: bool):
    lo, hi, g_min, g_max, M = _settings(problem.points, integral)
    a_nodes, a_weights = gauss_legendre(
        float(log_snr_from_variance(g_max)), float(log_snr_from_variance(g_min)), integral.n_levels
    )
    gs = jnp.concatenate([variance_from_log_snr(jnp.asarray(a_nodes)), jnp.array([g_min, 2 * g_min, g_max])])
    E, k2 = _level_integrands(
        gs, problem.X, problem.w, problem.P, jnp.asarray(lo), jnp.asarray(hi),
        M=M, chunk=int(integral.chunk), sizes=problem.sizes, with_kong2=with_kong2,
    )
    J0 = _head_fisher(problem, population)  # (m, d)
    n = len(a_nodes)
    wq = jnp.asarray(a_weights) * gs[:n] / 2  # d g = g d a, and the 1/2 of the definition

    def combine(vals, head):
        body = jnp.tensordot(wq, vals[:n], axes=1)
        # [0, g_min]: quadratic through g = 0 (Fisher at x), g_min and 2 g_min, integrated exactly
        small = g_min / 12 * (5 * head + 8 * vals[n] - vals[n + 1]) / 2
        return body + small + g_max / 2 * vals[n + 2]

    il = combine(E, J0)
    k2 = combine(k2, J0.sum(axis=1)) if with_kong2 else None
    return il, k2


# ----------------------------------------------------------------------------- public API


_CELL_FIELDS = ("max_cells", "tail", "points_per_sigma")


def _options(kw, integral_allowed: bool = True, cells_allowed: bool = True):
    """Split keyword options into noise-integral settings and response-cell settings
    (``max_cells``, ``tail``, ``points_per_sigma``: see ``response_cells``)."""
    allowed = (_CELL_FIELDS if cells_allowed else ()) + (Integral._fields if integral_allowed else ())
    unknown = set(kw) - set(allowed)
    if unknown:
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}; allowed here: {allowed}")
    cell_kw = {k: v for k, v in kw.items() if k in _CELL_FIELDS}
    return Integral(**{k: v for k, v in kw.items() if k in Integral._fields}), cell_kw


@_x64
def mutual_information(grid: Grid, population, **cells) -> jax.Array:
    """I(R; X) in nats, exactly on the grid (response-cell options: see ``response_cells``)."""
    p = _problem(grid, population, cell_kw=_options(cells, False)[1])
    return _discrete(p.w, p.P)["mutual_information"]


@_x64
def fisher(grid: Grid, population, **cells) -> jax.Array:
    """Trace of the Fisher information at each grid point, (m,). Does not average to I(R;X)."""
    p = _problem(grid, population, cell_kw=_options(cells, False)[1])
    return _head_fisher(p, population).sum(axis=1)


def _discrete_measure(name, doc):
    @_x64
    def measure(grid: Grid, population, **cells) -> jax.Array:
        p = _problem(grid, population, cell_kw=_options(cells, False)[1])
        return _discrete(p.w, p.P)[name]

    measure.__name__ = name
    measure.__doc__ = doc
    return measure


specific_information = _discrete_measure(
    "specific_information",
    "Specific information I_sp(x) = H(R) - H(R|x) per grid point, (m,). Entropies are over the "
    "response cells (for continuous responses the cell width cancels in the difference). Can be negative.",
)
ssi = _discrete_measure(
    "ssi",
    "Stimulus-specific information (Butts 2003) E_{r|x}[H(X) - H(X|r)] per grid point, (m,). "
    "Entropies over the grid (for an equally spaced grid the cell size cancels). Can be negative.",
)
specific_surprise = _discrete_measure(
    "specific_surprise",
    "Specific surprise (DeWeese & Meister 1999; Kong-1) KL(p(r|x) || p(r)) per grid point, (m,).",
)
cissi = _discrete_measure(
    "cissi",
    "Coordinate-invariant SSI (Kostal & D'Onofrio 2018) E_{r|x} KL(p(x|r) || p(x)) per grid point, (m,).",
)


@_x64
def ilocal(grid: Grid, population, *, given=None, per_dim: bool = False, **options) -> jax.Array:
    """I_local(x) in nats at every grid point: (m,), or (m, d) per stimulus dimension with
    ``per_dim=True`` (rows sum to I_local).

    ``given``: another population R1; then this is ``I_{R|R1}(x)``, the conditional
    decomposition of I(R; X | R1) (additivity: ``ilocal(joint(R1, R)) = ilocal(R1) +
    ilocal(R, given=R1)``). Noise-integral settings: ``n_levels``, ``g_min``, ``g_max``,
    ``blur_points``, ``chunk`` (see the module docstring); response-cell settings:
    ``max_cells``, ``tail``, ``points_per_sigma`` (see ``response_cells``).
    """
    integral, cells = _options(options)
    p = _problem(grid, population, given, cells)
    il, _ = _integrate(p, population, integral, with_kong2=False)
    return il if per_dim else il.sum(axis=1)


@_x64
def kong2(grid: Grid, population, *, given=None, **options) -> jax.Array:
    """Kong et al.'s second pointwise measure: the I_local integrand with ``r ~ p(r | x)``
    instead of ``p(r | x_g)``, (m,). Averages to I(R;X) but is neither local nor additive.
    Options as for :func:`ilocal`."""
    integral, cells = _options(options)
    p = _problem(grid, population, given, cells)
    _, k2 = _integrate(p, population, integral, with_kong2=True)
    return k2


@_x64
def all_measures(grid: Grid, population, **options) -> dict:
    """Every measure at once (shares the response table and the noise integral):
    keys ``mutual_information`` (scalar), ``fisher``, ``ilocal``, ``kong2``,
    ``specific_information``, ``ssi``, ``specific_surprise``, ``cissi`` (each (m,)).
    Options as for :func:`ilocal`."""
    integral, cells = _options(options)
    p = _problem(grid, population, cell_kw=cells)
    out = _measures(p, population, integral)
    out["fisher"] = _head_fisher(p, population).sum(axis=1)
    return out


def _measures(problem: _Problem, population, integral: Integral) -> dict:
    """The discrete measures plus I_local and Kong-2 of one problem (shared noise integral)."""
    out = _discrete(problem.w, problem.P, problem.cells.volumes)
    il, k2 = _integrate(problem, population, integral, with_kong2=True)
    out.update(ilocal=il.sum(axis=1), kong2=k2)
    return out


@_x64
def monte_carlo_measures(key, grid: Grid, population, *, n_samples: int = 20000, n_batches: int = 10,
                         **options) -> dict:
    """Every measure of :func:`all_measures` with responses sampled instead of enumerated,
    for populations too large to enumerate (many neurons).

    ``n_samples`` responses are drawn from the prior predictive ``p(r)`` in ``n_batches``
    independent batches; each batch gives a full estimate (importance weights
    ``p(r|x) / q(r)`` with ``q`` exact on the grid, so every sum over responses is
    unbiased). Returns ``{name: (estimate, standard_error)}``: the batch mean and the
    standard error of that mean. The grid sums and the noise integral stay exact.
    Options: the noise-integral settings of :func:`ilocal`.
    """
    if int(n_batches) < 2 or int(n_samples) < 2 * int(n_batches):
        raise ValueError(f"n_samples, n_batches: need n_batches >= 2 and n_samples >= 2 n_batches, "
                         f"got {n_samples}, {n_batches}")
    _check_inputs(grid, population)
    settings = _options(options, cells_allowed=False)[0]
    per = int(n_samples) // int(n_batches)
    runs = []
    for b in range(int(n_batches)):
        cells = sampled_cells(jax.random.fold_in(key, b), population, grid.points, grid.weights, per)
        out = _measures(_problem(grid, population, cells=cells), population, settings)
        runs.append({k: np.asarray(v) for k, v in out.items()})
    result = {}
    for name in runs[0]:
        stack = np.stack([r[name] for r in runs])
        result[name] = (stack.mean(axis=0), stack.std(axis=0, ddof=1) / np.sqrt(len(runs)))
    return result
