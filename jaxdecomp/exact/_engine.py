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
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

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

    # jax.checkpoint: under reverse-mode AD keep only each level's (and block's) inputs and
    # recompute the rest on the backward pass (else every level's (n_y, K) tables are stored)
    @jax.checkpoint
    def one_level(g):
        s = jnp.sqrt(g)
        axes = [jnp.linspace(lo[i] - 6 * s, hi[i] + 6 * s, M) for i in range(d)]
        Y = jnp.stack([a.ravel() for a in jnp.meshgrid(*axes, indexing="ij")], axis=1)  # (n_y, d)
        conv = [jax.nn.softmax(-((X[:, i, None] - axes[i][None, :]) ** 2) / (2 * g), axis=1) for i in range(d)]
        C = conv[0]
        for c in conv[1:]:
            C = (C[:, :, None] * c[:, None, :]).reshape(m, -1)
        Ypad = jnp.concatenate([Y, jnp.broadcast_to(Y[-1], (n_chunks * chunk - n_y, d))])

        @jax.checkpoint
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


# ----------------------------------------------------------------------------- public API


_CELL_FIELDS = ("max_cells", "tail", "points_per_sigma", "rate_range")


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
def ilocal(grid: Grid, population, *, given=None, per_dim: bool = False, **options) -> np.ndarray:
    """I_local(x) in nats at every grid point: (m,), or (m, d) per stimulus dimension with
    ``per_dim=True`` (rows sum to I_local).

    ``given``: another population R1; then this is ``I_{R|R1}(x)``, the conditional
    decomposition of I(R; X | R1) (additivity: ``ilocal(joint(R1, R)) = ilocal(R1) +
    ilocal(R, given=R1)``). Noise-integral settings: ``n_levels``, ``g_min``, ``g_max``,
    ``blur_points``, ``chunk`` (see the module docstring); response-cell settings:
    ``max_cells``, ``tail``, ``points_per_sigma`` (see ``response_cells``).
    """
    integral, cells = _options(options)
    plan = _plan(grid, population, given, cells)
    return _evaluate(plan, population, ("ilocal",), integral, per_dim)["ilocal"]


@_x64
def kong2(grid: Grid, population, *, given=None, **options) -> np.ndarray:
    """Kong et al.'s second pointwise measure: the I_local integrand with ``r ~ p(r | x)``
    instead of ``p(r | x_g)``, (m,). Averages to I(R;X) but is neither local nor additive.
    Options as for :func:`ilocal`."""
    integral, cells = _options(options)
    plan = _plan(grid, population, given, cells)
    return _evaluate(plan, population, ("kong2",), integral)["kong2"]


@_x64
def all_measures(grid: Grid, population, **options) -> dict[str, np.ndarray]:
    """Every measure at once (shares the response table and the noise integral):
    keys ``mutual_information`` (a float), ``fisher``, ``ilocal``, ``kong2``,
    ``specific_information``, ``ssi``, ``specific_surprise``, ``cissi`` (each (m,) float64).
    Options as for :func:`ilocal`."""
    integral, cells = _options(options)
    return _evaluate(_plan(grid, population, cell_kw=cells), population, MEASURE_NAMES, integral)


@_x64
def monte_carlo_measures(key, grid: Grid, population, *, n_samples: int = 20000, n_batches: int = 10,
                         **options) -> dict[str, Estimate]:
    """Every measure of :func:`all_measures` with responses sampled instead of enumerated,
    for populations too large to enumerate (many neurons).

    ``n_samples`` responses are drawn from the prior predictive ``p(r)`` in ``n_batches``
    independent batches; each batch gives a full estimate (importance weights
    ``p(r|x) / q(r)`` with ``q`` exact on the grid, so every sum over responses is
    unbiased). Returns ``{name: Estimate(value, stderr)}``: the batch mean and the
    standard error of that mean (float64; a float for the MI, (m,) arrays otherwise). The grid sums and the noise integral stay exact.
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
        names = tuple(k for k in MEASURE_NAMES if k != "fisher")
        out = _evaluate(_plan(grid, population, cells=cells), population, names, settings)
        runs.append({k: np.asarray(v) for k, v in out.items()})
    result = {}
    for name in runs[0]:
        stack = np.stack([r[name] for r in runs])
        result[name] = Estimate(stack.mean(axis=0), stack.std(axis=0, ddof=1) / np.sqrt(len(runs)))
    return result
