"""The exact grid engine: every stimulus-wise measure for 1-D / 2-D stimuli.

Computed in float64 (inside ``jax.enable_x64``): the noise-level integrand of
I_local is a squared difference of posterior means that shrinks like ``g`` at
small noise, where float32 would lose three to four digits.

Every public function builds a plan (grid, response cells: fixed from the concrete
population) and evaluates it with :func:`_evaluate`, a pure JAX function of the
population; :func:`~jaxdecomp.exact.differentiable` (in :mod:`jaxdecomp.exact._differentiable`)
hands that same function to the user, so gradients w.r.t. tuning-curve parameters come
from the code that computes the values.

The public functions here sit at the JAX boundary: they take concrete arrays and return
numpy float64 (arrays, or ``float`` for a scalar). Called with traced values (inside
``jax.jit`` / ``jax.grad`` / ``jax.vmap``) they raise a TypeError pointing to
``exact.differentiable``, which is the traceable, differentiable form.

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
import warnings
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdecomp._checks import check_float, check_int, check_key
from jaxdecomp._interfaces import Encoder, Estimate
from jaxdecomp._quadrature import gauss_legendre, log_snr_from_variance, variance_from_log_snr
from jaxdecomp.exact._grid import Grid, axes_of
from jaxdecomp.exact._responses import Cells, response_cells, sampled_cells
from jaxdecomp.neurons._populations import joint_population


def _to_host(v):
    """numpy float64: an array, or a ``float`` (``np.float64``) for a scalar."""
    a = np.asarray(v, dtype=np.float64)
    return np.float64(a) if a.ndim == 0 else a


def _refuse_tracers(name: str, args, kwargs) -> None:
    """The exact engine is not traceable: say so, and where the traceable form is."""
    for leaf in jax.tree_util.tree_leaves((args, kwargs)):
        if isinstance(leaf, jax.core.Tracer):
            raise TypeError(
                f"exact.{name}: got traced values (called inside jax.jit, jax.grad, jax.vmap or similar); "
                f"the exact engine builds its response cells from concrete rates and returns numpy float64, "
                f"so it cannot be traced. Use fn = jaxdecomp.exact.differentiable(exact.{name}, grid, "
                f"population, ...) outside the transformation and call fn(population) inside it "
                f"(jit-, grad- and vmap-able, float64)."
            )


def _x64(fn):
    """A public function at the JAX boundary: refuse traced arguments, run ``fn`` in float64
    and hand back numpy float64 results (jax float64 arrays would be truncated to float32
    by any operation outside the x64 context)."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        _refuse_tracers(fn.__name__, args, kwargs)
        with jax.enable_x64(True):
            out = fn(*args, **kwargs)
            return jax.tree_util.tree_map(_to_host, out)

    return wrapped


class _Plan(NamedTuple):
    """Everything fixed before the population's parameters are traced: the grid, the
    response cells (their support comes from the concrete population) and the jitted
    tables. Evaluating a plan (:func:`_evaluate`) is a pure JAX function of the population."""

    points: np.ndarray  # grid points in the user's shape, (m,) or (m, 2), float64
    w: np.ndarray  # (m,) prior masses
    cells: Cells  # cells of the measured population (joint with ``given`` when conditional)
    sizes: tuple  # (K1, K2): measure of the inner K2 cells given the outer K1 (K1 = 1: unconditional)
    given: object  # the conditioning population R1, or None
    table: Callable  # (joint) population, points (m, ...) -> P (m, K) = P(cell k | x_j)
    fisher_table: Callable | None  # population, points -> Fisher diagonal (m, d) on the
    #                                 response cells, where the population has no closed form


def _check_inputs(grid, population, given=None):
    if not isinstance(grid, Grid):
        raise TypeError(f"grid: expected a jaxdecomp.exact.Grid, got {type(grid).__name__}")
    if not isinstance(population, Encoder):
        raise TypeError(f"population: expected an encoder (a jaxdecomp.neurons population or a subclass of "
                        f"jaxdecomp.neurons.Encoder), got {type(population).__name__}")
    if given is not None and not isinstance(given, Encoder):
        raise TypeError(f"given: expected an encoder (a jaxdecomp.neurons population or a subclass of "
                        f"jaxdecomp.neurons.Encoder), got {type(given).__name__}")


def _check_stimulus_dimension(grid: Grid, population, points) -> None:
    """The population must take the grid's stimuli: a (1-D) tuning model evaluated on 2-D points
    would otherwise broadcast silently or fail deep inside JAX."""
    x0 = jnp.asarray(points[0])
    try:
        out = jax.eval_shape(population.rate, x0)
    except Exception as err:  # noqa: BLE001
        raise ValueError(
            f"population: cannot evaluate its rates at a grid point of shape {tuple(x0.shape)} (grid: "
            f"{grid.ndim}-D stimuli): {err}. Use tuning curves for {grid.ndim}-D stimuli (e.g. centers of shape "
            f"(n, {grid.ndim})) or a grid of the population's stimulus dimension") from err
    if len(out.shape) != 1:
        raise ValueError(f"population: its rates at a grid point of shape {tuple(x0.shape)} have shape "
                         f"{tuple(out.shape)}, expected (n,) (grid: {grid.ndim}-D stimuli)")


def _has_closed_form_fisher(population, x) -> bool:
    try:
        jax.eval_shape(population.fisher_diag, x)
    except NotImplementedError:
        return False
    return True


def _plan(grid: Grid, population, given=None, cell_kw=None, cells=None) -> _Plan:
    """Build the fixed part of a computation from concrete populations (call in x64 mode)."""
    _check_inputs(grid, population, given)
    pop = population if given is None else joint_population(given, population)
    points = np.asarray(grid.points, dtype=np.float64)
    _check_stimulus_dimension(grid, pop, points)
    if cells is None:
        cells = response_cells(pop, points, **(cell_kw or {}))
    sizes = (1, cells.points.shape[0]) if given is None else tuple(int(k) for k in cells.sizes)
    fisher_table = None
    if not _has_closed_form_fisher(population, jnp.asarray(points[0])):
        # Fisher information on the population's own response cells (sum_k (d P_k)^2 / P_k)
        own = cells if given is None else response_cells(population, points, **(cell_kw or {}))

        def table_fisher(p, x):
            P = own.mass_of(p, x)
            dP = jax.jacfwd(own.mass_of, argnums=1)(p, x).reshape(P.shape[0], -1)
            return jnp.sum(_safe_div(dP**2, P[:, None]), axis=0)

        fisher_table = jax.jit(jax.vmap(table_fisher, in_axes=(None, 0)))
    table = jax.jit(jax.vmap(cells.mass_of, in_axes=(None, 0)))
    return _Plan(points, np.asarray(grid.weights, dtype=np.float64), cells, sizes, given, table, fisher_table)


# ----------------------------------------------------------------------------- discrete measures


def _safe_div(a, b):
    ok = b > 0
    return jnp.where(ok, a / jnp.where(ok, b, 1.0), 0.0)


def _plogp(p):
    """``p log p`` with ``0 log 0 = 0`` and a finite gradient at 0 (``xlogy(p, p)`` has a NaN one)."""
    ok = p > 0
    return jnp.where(ok, p * jnp.log(jnp.where(ok, p, 1.0)), 0.0)


def _discrete(w, P, volumes=None):
    """All measures that need no noise integral, each (m,) except the MI.
    ``volumes``: cell volumes where they are not all equal (Monte Carlo cells)."""
    pr = w @ P  # (K,) response-cell probabilities
    log_pr = jnp.log(jnp.where(pr > 0, pr, 1.0))
    plogp = jnp.sum(_plogp(P), axis=1)  # -H(R | x_j) on the cells
    surprise = plogp - P @ log_pr  # KL(p(r|x) || p(r))
    H_R = -jnp.sum(_plogp(pr))
    if volumes is not None:  # differential entropies: -sum p log(p / volume)
        log_v = jnp.log(jnp.asarray(volumes))
        plogp = plogp - P @ log_v
        H_R = H_R + pr @ log_v
    q = _safe_div(w[:, None] * P, pr[None, :])  # posterior p(x_j | r_k)
    H_X = -jnp.sum(_plogp(w))
    qlogq = jnp.sum(_plogp(q), axis=0)  # (K,) = -H(X | r_k)
    log_w = jnp.log(jnp.where(w > 0, w, 1.0))
    kl_post = qlogq - log_w @ q  # KL(p(x|r_k) || p(x))
    return dict(
        mutual_information=w @ surprise,
        specific_surprise=surprise,
        specific_information=H_R + plogp,
        ssi=P @ (H_X + qlogq),
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


def _validate_integral(integral: Integral) -> None:
    check_int("n_levels", integral.n_levels, minimum=2)
    for name in ("g_min", "g_max"):
        v = getattr(integral, name)
        if v is not None:
            check_float(name, v, positive=True)
    if integral.blur_points is not None:
        check_int("blur_points", integral.blur_points, minimum=8)
    check_int("chunk", integral.chunk, minimum=1)


def _settings(grid_points, integral: Integral):
    _validate_integral(integral)
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


def _blur_grid(g, X, lo, hi, M: int, chunk: int):
    """The blur grid of noise level ``g``: ``C`` (m, n_y), the normalised weights of
    ``y ~ N(x_j, g I)`` on an ``M``-per-axis grid covering the stimulus grid +- 6 sqrt(g), and the
    grid points padded to whole chunks, (n_chunks, chunk, d); ``n_y = M**d`` points are real."""
    m, d = X.shape
    n_y = M**d
    n_chunks = -(-n_y // chunk)
    s = jnp.sqrt(g)
    axes = [jnp.linspace(lo[i] - 6 * s, hi[i] + 6 * s, M) for i in range(d)]
    Y = jnp.stack([a.ravel() for a in jnp.meshgrid(*axes, indexing="ij")], axis=1)  # (n_y, d)
    conv = [jax.nn.softmax(-((X[:, i, None] - axes[i][None, :]) ** 2) / (2 * g), axis=1) for i in range(d)]
    C = conv[0]
    for c in conv[1:]:
        C = (C[:, :, None] * c[:, None, :]).reshape(m, -1)
    Ypad = jnp.concatenate([Y, jnp.broadcast_to(Y[-1], (n_chunks * chunk - n_y, d))])
    return C, Ypad.reshape(n_chunks, chunk, d), n_y


def _posterior_differences(Yc, g, X, log_w, P, sizes):
    """At blur points ``Yc`` (c, d): ``Q = p(cell | y)`` (c, K) and, per stimulus dimension ``i``,
    ``m_i(y, r) - m_i(y, r1)`` on the cells (c, K) (posterior means on the grid; ``sizes = (K1, K2)``:
    given the outer K1 cells, K1 = 1 unconditional). The one computation behind ``ilocal``,
    ``kong2`` and ``ilocal_tensor``."""
    K1, K2 = sizes
    d2 = jnp.sum((Yc[:, None, :] - X[None, :, :]) ** 2, axis=-1)
    Pi = jax.nn.softmax(log_w[None, :] - d2 / (2 * g), axis=1)  # p(x_j | y)
    mu = Pi @ X
    Q = Pi @ P  # p(cell | y)
    Q1 = jnp.repeat(Q.reshape(-1, K1, K2).sum(-1), K2, axis=1)
    diffs = []
    for i in range(X.shape[1]):
        N = (Pi * (X[None, :, i] - mu[:, i : i + 1])) @ P  # p(cell|y) (m(y,r) - m(y))
        N1 = jnp.repeat(N.reshape(-1, K1, K2).sum(-1), K2, axis=1)
        diffs.append(_safe_div(N, Q) - _safe_div(N1, Q1))
    return Q, diffs


@functools.partial(jax.jit, static_argnames=("M", "chunk", "sizes", "with_kong2"))
def _level_integrands(gs, X, w, P, lo, hi, *, M, chunk, sizes, with_kong2):
    """For each blur variance g: E_{y~N(x,g)} J_ii(y) per grid point and dimension (m, d)
    and the Kong-2 integrand (m,). ``sizes = (K1, K2)``: the measure is of the inner
    cells given the outer ones (K1 = 1: unconditional)."""
    m, d = X.shape
    K = P.shape[1]
    log_w = jnp.log(jnp.where(w > 0, w, 1e-300))

    # jax.checkpoint: under reverse-mode AD keep only each level's (and block's) inputs and
    # recompute the rest on the backward pass (else every level's (n_y, K) tables are stored)
    @jax.checkpoint
    def one_level(g):
        C, Yblocks, n_y = _blur_grid(g, X, lo, hi, M, chunk)

        @jax.checkpoint
        def block(Yc):
            Q, diffs = _posterior_differences(Yc, g, X, log_w, P, sizes)
            jy, D = [], jnp.zeros_like(Q)
            for diff in diffs:
                jy.append(jnp.sum(Q * diff**2, axis=1))
                D = D + diff**2
            return jnp.stack(jy, axis=1) / g**2, (D / g**2 if with_kong2 else None)

        jy, D = jax.lax.map(block, Yblocks)
        Jy = jy.reshape(-1, d)[:n_y]
        E = C @ Jy
        k2 = jnp.sum(P * (C @ D.reshape(-1, K)[:n_y]), axis=1) if with_kong2 else jnp.zeros(m)
        return E, k2

    return jax.lax.map(one_level, gs)


@jax.jit
def _closed_form_fisher(population, points):
    return jax.vmap(population.fisher_diag)(points)


def _head_fisher(plan: _Plan, population, points) -> jax.Array:
    """Fisher information diagonal at each grid point, (m, d): closed form where the
    population has one, else on its response cells (sum_k (d P_k)^2 / P_k)."""
    if plan.fisher_table is None:
        J = _closed_form_fisher(population, points)
    else:
        J = plan.fisher_table(population, points)
    return J.reshape(points.shape[0], -1)


def _integrate(plan: _Plan, P, J0, integral: Integral, with_kong2: bool):
    """I_local per dimension (m, d) and Kong-2 (m,) (or None) from the table ``P`` (m, K)
    and the Fisher diagonal ``J0`` (m, d) at the grid points."""
    lo, hi, g_min, g_max, M = _settings(plan.points, integral)
    with jax.ensure_compile_time_eval():  # fixed numbers, also when the population is traced
        a_nodes, a_weights = gauss_legendre(
            float(log_snr_from_variance(g_max)), float(log_snr_from_variance(g_min)), integral.n_levels
        )
        gs = jnp.concatenate([variance_from_log_snr(jnp.asarray(a_nodes)), jnp.array([g_min, 2 * g_min, g_max])])
    points = jnp.asarray(plan.points)
    X = points[:, None] if points.ndim == 1 else points
    E, k2 = _level_integrands(
        gs, X, jnp.asarray(plan.w), P, jnp.asarray(lo), jnp.asarray(hi),
        M=M, chunk=int(integral.chunk), sizes=plan.sizes, with_kong2=with_kong2,
    )
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


_DISCRETE = ("mutual_information", "specific_information", "ssi", "specific_surprise", "cissi")
MEASURE_NAMES = _DISCRETE + ("fisher", "ilocal", "kong2")


def _evaluate(plan: _Plan, population, names, integral: Integral = Integral(), per_dim: bool = False) -> dict:
    """The measures ``names`` of ``population`` on the plan's grid and cells: the one
    implementation behind every public function and :func:`differentiable`. Pure JAX
    in the population's array leaves (traceable, differentiable); runs eagerly as well."""
    pop = population if plan.given is None else joint_population(plan.given, population)
    points = jnp.asarray(plan.points)
    P = plan.table(pop, points)
    out = {}
    if any(k in _DISCRETE for k in names):
        out.update(_discrete(jnp.asarray(plan.w), P, plan.cells.volumes))
    if any(k in ("fisher", "ilocal", "kong2") for k in names):
        J0 = _head_fisher(plan, population, points)
        out["fisher"] = J0.sum(axis=1)
    if any(k in ("ilocal", "kong2") for k in names):
        il, k2 = _integrate(plan, P, J0, integral, with_kong2="kong2" in names)
        out.update(ilocal=il if per_dim else il.sum(axis=1), kong2=k2)
    return {k: out[k] for k in names}


# ----------------------------------------------------------------------------- accuracy checks

#: Largest ``h_i^2 (J_ii(x) + 1/Var_i(X))`` accepted (``h_i``: grid spacing along axis ``i``; ``J``:
#: Fisher information at a grid point; ``Var_i(X)``: prior variance, a stand-in for the prior's
#: curvature), i.e. the spacing must be below ``0.71`` posterior SDs. Measured on the linear-Gaussian
#: closed form (``docs/numerics.md`` §5): I_local is off by a relative 4e-6 at 0.12, 3.7e-4 at 0.49,
#: 2.6e-3 at 1, 1.2e-2 at 2, 0.38 at 16 (the small-noise piece over ``[0, g_min]`` and then the grid's
#: posterior break down), while the grid MI stays within 1e-6 up to 4.
RESOLUTION_LIMIT = 0.5
#: Largest accepted ``|sum_j w_j I(x_j) - I(R;X)|``, relative to ``I(R;X)`` (plus ``COMPLETENESS_ATOL``),
#: for I_local and Kong-2; both sides come from the same grid and response tables.
COMPLETENESS_RTOL = 1e-3
COMPLETENESS_ATOL = 1e-6


class GridResolutionError(ValueError):
    """The grid (or the noise integral's ``g_min``) does not resolve the posterior: I_local would be
    wrong. The message names the fix (a finer grid: ``m`` per axis, or a narrower range)."""


def _report(message: str, check: bool):
    if check:
        raise GridResolutionError(message)
    warnings.warn(message + " (check=False: returning the unchecked result)", RuntimeWarning, stacklevel=5)


def _check_resolution(plan: _Plan, population, integral: Integral, check: bool, J0=None) -> None:
    """Refuse (``check=True``) or warn when the grid spacing is not well below the posterior SD
    ``1/sqrt(J(x) + prior precision)`` at some grid point, or when ``g_min J(x)`` is not small."""
    points = np.asarray(plan.points)
    X = points[:, None] if points.ndim == 1 else points
    axes = axes_of(X)
    h = np.array([(a[-1] - a[0]) / (a.size - 1) for a in axes])
    if J0 is None:
        J0 = _head_fisher(plan, population, jnp.asarray(plan.points))
    J = np.asarray(J0, dtype=np.float64).reshape(X.shape[0], -1)
    if J.shape[1] != X.shape[1]:
        return  # a per-pixel Fisher of another shape: nothing to compare with the axes
    w = np.asarray(plan.w)
    mean = w @ X
    var = w @ (X - mean) ** 2
    prior_prec = np.where(var > 0, 1.0 / np.maximum(var, 1e-300), 0.0)
    jmax = np.max(np.where(np.isfinite(J), J, np.inf), axis=0)
    ratio = h**2 * (jmax + prior_prec)
    _, _, g_min, _, _ = _settings(plan.points, integral)
    u = g_min * float(np.max(jmax))
    if np.all(ratio <= RESOLUTION_LIMIT) and u <= 0.75 * RESOLUTION_LIMIT:
        return
    if not np.all(np.isfinite(jmax)):
        _report("population: its Fisher information is infinite or NaN at some grid point; I_local cannot be "
                "computed there (a Poisson rate of 0 with a non-zero slope, or a non-smooth tuning curve)", check)
        return
    h_need = np.sqrt(RESOLUTION_LIMIT / (jmax + prior_prec))
    span = np.array([a[-1] - a[0] for a in axes])
    m_need = [int(np.ceil(sp / hn)) + 1 for sp, hn in zip(span, h_need)]
    worst = int(np.argmax(J.max(axis=1)))
    where = points[worst]
    per_axis = "m" if len(axes) == 1 else "m per axis"
    msg = (
        f"grid: too coarse for this population: the spacing h = {', '.join(f'{v:.4g}' for v in h)} is not well below "
        f"the posterior SD 1/sqrt(J + prior precision) = "
        f"{', '.join(f'{v:.4g}' for v in 1 / np.sqrt(jmax + prior_prec))} (Fisher information up to "
        f"{', '.join(f'{v:.4g}' for v in jmax)} at x = {np.round(where, 6).tolist()}), h^2 (J + prior precision) = "
        f"{', '.join(f'{v:.3g}' for v in ratio)} > {RESOLUTION_LIMIT}; the grid cannot resolve the posterior and "
        f"I_local would be wrong (its mean would not be I(R;X)). Use {per_axis} >= {', '.join(map(str, m_need))} "
        f"over the same range (spacing <= {', '.join(f'{v:.4g}' for v in h_need)}), or a narrower range, "
        f"or a less informative population"
    )
    if np.all(ratio <= RESOLUTION_LIMIT):
        msg = (f"g_min: g_min J = {u:.3g} > {0.75 * RESOLUTION_LIMIT} (g_min = {g_min:.4g}, Fisher information up "
               f"to {float(np.max(jmax)):.4g}): the small-noise piece [0, g_min] of the noise integral would be "
               f"inaccurate; use g_min <= {0.75 * RESOLUTION_LIMIT / float(np.max(jmax)):.4g} (the default "
               f"0.75 h^2 is fine on this grid)")
    _report(msg, check)


def _target_mi(plan: _Plan, population):
    """``(I, H(X))``: the information I_local / Kong-2 must average to, from the plan's own tables:
    I(R;X), or I(R;X|R1) = I(R1,R;X) - I(R1;X) when conditional."""
    pop = population if plan.given is None else joint_population(plan.given, population)
    w = jnp.asarray(plan.w)
    P = plan.table(pop, jnp.asarray(plan.points))
    mi = _discrete(w, P, plan.cells.volumes)["mutual_information"]
    if plan.given is not None:
        K1, K2 = plan.sizes
        mi = mi - _discrete(w, P.reshape(P.shape[0], K1, K2).sum(-1))["mutual_information"]
    return float(mi), float(-jnp.sum(_plogp(w)))


def _check_completeness(plan: _Plan, population, values: dict, check: bool) -> None:
    """Refuse (or warn) when the prior mean of I_local / Kong-2 is off the grid MI by more than the
    stated tolerance, or above H(X)."""
    mi, H = _target_mi(plan, population)
    w = np.asarray(plan.w)
    for name in ("ilocal", "kong2"):
        v = values.get(name)
        if v is None:
            continue
        v = np.asarray(v)
        mean = float(w @ (v.sum(axis=1) if v.ndim == 2 else v))
        gap = mean - mi
        if abs(gap) > COMPLETENESS_RTOL * abs(mi) + COMPLETENESS_ATOL or mean > H + COMPLETENESS_ATOL:
            _report(
                f"{name}: completeness fails on this grid: the prior mean {mean:.6g} differs from I(R;X) = "
                f"{mi:.6g} computed from the same tables (by {gap:.3g}, tolerance {COMPLETENESS_RTOL:g} relative; "
                f"H(X) on the grid = {H:.6g}). The noise integral is not converged: refine the grid (larger m), "
                f"raise n_levels or blur_points, or check g_min / g_max", check)


# ----------------------------------------------------------------------------- public API


_CELL_FIELDS = ("max_cells", "tail", "points_per_sigma", "rate_range")


def _check_flag(check) -> bool:
    if not isinstance(check, (bool, np.bool_)):
        raise TypeError(f"check: expected a bool, got {type(check).__name__}")
    return bool(check)


def _options(kw, integral_allowed: bool = True, cells_allowed: bool = True):
    """Split keyword options into noise-integral settings and response-cell settings
    (``max_cells``, ``tail``, ``points_per_sigma``, ``rate_range``: see ``response_cells``)."""
    allowed = (_CELL_FIELDS if cells_allowed else ()) + (Integral._fields if integral_allowed else ())
    unknown = set(kw) - set(allowed)
    if unknown:
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}; allowed here: {allowed}")
    cell_kw = {k: v for k, v in kw.items() if k in _CELL_FIELDS}
    return Integral(**{k: v for k, v in kw.items() if k in Integral._fields}), cell_kw


@_x64
def mutual_information(grid: Grid, population, **cells) -> float:
    """I(R; X) in nats (a float64), exactly on the grid (response-cell options: see ``response_cells``)."""
    plan = _plan(grid, population, cell_kw=_options(cells, False)[1])
    return _evaluate(plan, population, ("mutual_information",))["mutual_information"]


@_x64
def fisher(grid: Grid, population, **cells) -> np.ndarray:
    """Trace of the Fisher information at each grid point, (m,) float64. Does not average to I(R;X)."""
    plan = _plan(grid, population, cell_kw=_options(cells, False)[1])
    return _evaluate(plan, population, ("fisher",))["fisher"]


def _discrete_measure(name, doc):
    @_x64
    def measure(grid: Grid, population, **cells) -> np.ndarray:
        plan = _plan(grid, population, cell_kw=_options(cells, False)[1])
        return _evaluate(plan, population, (name,))[name]

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
def ilocal(grid: Grid, population, *, given=None, per_dim: bool = False, check: bool = True,
           **options) -> np.ndarray:
    """I_local(x) in nats at every grid point: (m,), or (m, d) per stimulus dimension with
    ``per_dim=True`` (rows sum to I_local).

    ``given``: another population R1; then this is ``I_{R|R1}(x)``, the conditional
    decomposition of I(R; X | R1) (additivity: ``ilocal(joint(R1, R)) = ilocal(R1) +
    ilocal(R, given=R1)``). Noise-integral settings: ``n_levels``, ``g_min``, ``g_max``,
    ``blur_points``, ``chunk`` (see the module docstring); response-cell settings:
    ``max_cells``, ``tail``, ``points_per_sigma`` (see ``response_cells``).

    Accuracy is checked, not assumed (``check=True``): before the noise integral, the grid must
    resolve the posterior (``h^2 (J(x) + prior precision) <= RESOLUTION_LIMIT`` at every grid point,
    ``h`` the spacing, ``J`` the Fisher information); after it, the prior mean of I_local must equal
    the grid's I(R;X) within ``COMPLETENESS_RTOL`` (and never exceed H(X)). Otherwise a
    :class:`GridResolutionError` (a ValueError) names the fix, e.g. the ``m`` that would do.
    ``check=False`` turns both into a ``RuntimeWarning`` and returns the unchecked values.
    """
    check = _check_flag(check)
    integral, cells = _options(options)
    plan = _plan(grid, population, given, cells)
    _check_resolution(plan, population, integral, check)
    out = _evaluate(plan, population, ("ilocal",), integral, per_dim)
    _check_completeness(plan, population, out, check)
    return out["ilocal"]


@_x64
def kong2(grid: Grid, population, *, given=None, check: bool = True, **options) -> np.ndarray:
    """Kong et al.'s second pointwise measure: the I_local integrand with ``r ~ p(r | x)``
    instead of ``p(r | x_g)``, (m,). Averages to I(R;X) but is neither local nor additive.
    Options and accuracy checks as for :func:`ilocal`."""
    check = _check_flag(check)
    integral, cells = _options(options)
    plan = _plan(grid, population, given, cells)
    _check_resolution(plan, population, integral, check)
    out = _evaluate(plan, population, ("kong2",), integral)
    _check_completeness(plan, population, out, check)
    return out["kong2"]


@_x64
def all_measures(grid: Grid, population, *, check: bool = True, **options) -> dict[str, np.ndarray]:
    """Every measure at once (shares the response table and the noise integral):
    keys ``mutual_information`` (a float), ``fisher``, ``ilocal``, ``kong2``,
    ``specific_information``, ``ssi``, ``specific_surprise``, ``cissi`` (each (m,) float64).
    Options and accuracy checks (``check``) as for :func:`ilocal`."""
    check = _check_flag(check)
    integral, cells = _options(options)
    plan = _plan(grid, population, cell_kw=cells)
    _check_resolution(plan, population, integral, check)
    out = _evaluate(plan, population, MEASURE_NAMES, integral)
    _check_completeness(plan, population, out, check)
    return out


@_x64
def monte_carlo_measures(key, grid: Grid, population, *, n_samples: int = 20000, n_batches: int = 10,
                         check: bool = True, **options) -> dict[str, Estimate]:
    """Every measure of :func:`all_measures` with responses sampled instead of enumerated,
    for populations too large to enumerate (many neurons).

    ``n_samples`` responses are drawn from the prior predictive ``p(r)`` in ``n_batches``
    independent batches; each batch gives a full estimate (importance weights
    ``p(r|x) / q(r)`` with ``q`` exact on the grid, so every sum over responses is
    unbiased). Returns ``{name: Estimate(value, stderr)}``: the batch mean and the
    standard error of that mean (float64; a float for the MI, (m,) arrays otherwise). The grid sums and the noise integral stay exact.
    Options: the noise-integral settings of :func:`ilocal`. The grid-resolution check of
    :func:`ilocal` applies (``check``); completeness is not checked here (the MI is itself an estimate).
    """
    check = _check_flag(check)
    n_samples, n_batches = check_int("n_samples", n_samples), check_int("n_batches", n_batches)
    if int(n_batches) < 2 or int(n_samples) < 2 * int(n_batches):
        raise ValueError(f"n_samples, n_batches: need n_batches >= 2 and n_samples >= 2 n_batches, "
                         f"got {n_samples}, {n_batches}")
    _check_inputs(grid, population)
    key = check_key(key)
    settings = _options(options, cells_allowed=False)[0]
    per = int(n_samples) // int(n_batches)
    runs = []
    for b in range(int(n_batches)):
        cells = sampled_cells(jax.random.fold_in(key, b), population, grid.points, grid.weights, per)
        names = tuple(k for k in MEASURE_NAMES if k != "fisher")
        plan = _plan(grid, population, cells=cells)
        if b == 0:
            _check_resolution(plan, population, settings, check)
        out = _evaluate(plan, population, names, settings)
        runs.append({k: np.asarray(v) for k, v in out.items()})
    result = {}
    for name in runs[0]:
        stack = np.stack([r[name] for r in runs])
        result[name] = Estimate(stack.mean(axis=0), stack.std(axis=0, ddof=1) / np.sqrt(len(runs)))
    return result
