"""The differentiable path of the exact engine: :func:`differentiable` and
:class:`DifferentiableMeasure`.

The public functions of :mod:`jaxdecomp.exact._engine` build a plan (grid and response
cells, fixed from the concrete population) and evaluate it with ``_evaluate``; here the
same plan and the same ``_evaluate`` are handed to the user as a pure JAX function of the
population, so ``jax.grad``, ``jax.jit``, ``jax.jvp`` and ``jax.jacrev`` apply and gradients
come from the code that computes the values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdecomp._interfaces import Encoder
from jaxdecomp.exact._engine import (
    MEASURE_NAMES,
    Integral,
    _evaluate,
    _options,
    _plan,
    _Plan,
    _check_flag,
    _check_resolution,
    _settings,
    all_measures,
    cissi,
    fisher,
    ilocal,
    kong2,
    mutual_information,
    specific_information,
    specific_surprise,
    ssi,
)
from jaxdecomp.exact._grid import Grid
from jaxdecomp.exact._responses import concrete_rates
from jaxdecomp.neurons._populations import (
    JointPopulation,
    PoissonPopulation,
    TransformedPopulation,
    joint_population,
)

_PUBLIC = {
    mutual_information: ("mutual_information",),
    fisher: ("fisher",),
    specific_information: ("specific_information",),
    ssi: ("ssi",),
    specific_surprise: ("specific_surprise",),
    cissi: ("cissi",),
    ilocal: ("ilocal",),
    kong2: ("kong2",),
    all_measures: MEASURE_NAMES,
}


def _measure_names(measure) -> tuple[tuple[str, ...], bool]:
    """``(names, single)``: which measures, and whether one array (not a dict) is returned."""
    if isinstance(measure, str):
        if measure == "all":
            return MEASURE_NAMES, False
        if measure in MEASURE_NAMES:
            return (measure,), True
        raise ValueError(f"measure: expected one of {MEASURE_NAMES} or 'all', got {measure!r}")
    if callable(measure):
        try:
            names = _PUBLIC[measure]
        except (KeyError, TypeError):
            names = None
        if names is None:
            raise ValueError(
                f"measure: expected a measure function of jaxdecomp.exact (e.g. exact.ilocal) or a name, "
                f"got {getattr(measure, '__name__', type(measure).__name__)}"
            )
        return names, len(names) == 1 and measure is not all_measures
    if isinstance(measure, (tuple, list)) and measure and all(isinstance(k, str) for k in measure):
        bad = [k for k in measure if k not in MEASURE_NAMES]
        if bad:
            raise ValueError(f"measure: unknown names {bad}; expected names from {MEASURE_NAMES}")
        return tuple(dict.fromkeys(measure)), False
    raise TypeError(
        f"measure: expected a name, a sequence of names or a jaxdecomp.exact measure function, "
        f"got {type(measure).__name__}"
    )


def _poisson_parts(population):
    if isinstance(population, PoissonPopulation):
        yield population
    elif isinstance(population, JointPopulation):
        yield from _poisson_parts(population.first)
        yield from _poisson_parts(population.second)
    elif isinstance(population, TransformedPopulation):
        yield from _poisson_parts(population.base)


def _as_float64(leaf):
    if jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
        return jnp.asarray(leaf, dtype=jnp.float64)
    return leaf


class DifferentiableMeasure:
    """A measure of the exact engine as a pure JAX function of a population's parameters.

    Made by :func:`differentiable`; ``fn(population)`` returns what the public function
    returns (a scalar or (m,) / (m, d) array, or a dict of them, nats), as float64 jax
    arrays, and is traceable (in float64 mode: see :func:`differentiable`): ``jax.grad``,
    ``jax.value_and_grad``, ``jax.jit``, ``jax.jvp``, ``jax.jacrev`` all apply, differentiating w.r.t. every floating array leaf of the
    population (tuning-curve parameters, Gaussian ``sigma``). The grid, the response
    cells, the conditioning population ``given`` and the numerical settings are fixed
    at construction. Use :meth:`missing_mass` to check that new parameters stay within
    the response cells.
    """

    def __init__(self, plan: _Plan, names, single: bool, integral: Integral, per_dim: bool, reference):
        self._plan, self._names, self._single = plan, names, single
        self._integral, self._per_dim = integral, per_dim
        self._reference = reference
        flat, self._treedef = jax.tree_util.tree_flatten_with_path(reference)
        self._shapes = [(jax.tree_util.keystr(path), jnp.shape(leaf)) for path, leaf in flat]
        self.__name__ = f"differentiable_{'_'.join(names) if single else 'measures'}"

    @property
    def names(self) -> tuple[str, ...]:
        """The measures computed (a single one is returned as an array, several as a dict)."""
        return self._names

    @property
    def n_cells(self) -> int:
        """Number of response cells K (the tables are (m, K) float64)."""
        return int(self._plan.cells.points.shape[0])

    def _check(self, population):
        if not isinstance(population, Encoder):
            raise TypeError(
                f"population: expected a population from jaxdecomp.neurons with the structure of the one "
                f"given at construction ({type(self._reference).__name__}), got {type(population).__name__}"
            )
        flat, treedef = jax.tree_util.tree_flatten_with_path(population)
        if treedef != self._treedef:
            raise ValueError(
                f"population: its pytree structure differs from the population given at construction "
                f"(got {treedef}, expected {self._treedef}); the response cells are fixed per structure, "
                f"so build a new differentiable measure for it"
            )
        for (path, leaf), (name, shape) in zip(flat, self._shapes):
            if jnp.shape(leaf) != shape:
                raise ValueError(
                    f"population: parameter {name or '<root>'} has shape {jnp.shape(leaf)}, expected {shape} "
                    f"as at construction (the number of neurons and the stimulus dimension are fixed)"
                )

    def _require_x64(self):
        if not jax.config.jax_enable_x64:
            raise RuntimeError(
                f"{self.__name__}: needs float64; call it (and jax.grad / jax.jit of it) inside "
                f"`with jax.enable_x64(True):` or after jax.config.update('jax_enable_x64', True). "
                f"(The backward pass of jax.grad is traced outside this function, so it cannot switch "
                f"float64 on by itself: its products would be truncated to float32.)"
            )

    def __call__(self, population):
        self._check(population)
        self._require_x64()
        pop = jax.tree_util.tree_map(_as_float64, population)
        out = _evaluate(self._plan, pop, self._names, self._integral, self._per_dim)
        return out[self._names[0]] if self._single else out

    def missing_mass(self, population) -> float:
        """Largest probability, over the grid points, of responses outside the fixed cells,
        ``max_j (1 - sum_k P(cell k | x_j))`` for a concrete ``population``. About
        ``n * tail`` (Poisson; ~0 for Gaussian) while the cells cover its rates; a larger
        value means the parameters left the range the cells were built for, and every
        measure is then off by about that much: rebuild with a wider ``rate_range``."""
        self._check(population)
        self._require_x64()
        pop = jax.tree_util.tree_map(_as_float64, population)
        pop = pop if self._plan.given is None else joint_population(self._plan.given, pop)
        P = self._plan.table(pop, jnp.asarray(self._plan.points))
        return float(jnp.max(1.0 - jnp.sum(P, axis=1)))

    def __repr__(self) -> str:
        what = self._names[0] if self._single else list(self._names)
        return f"DifferentiableMeasure({what}, m={self._plan.points.shape[0]}, cells={self.n_cells})"


def differentiable(measure, grid: Grid, population, *, given=None, per_dim: bool = False,
                   check: bool = True, **options) -> DifferentiableMeasure:
    """A measure of the exact engine as a differentiable function of the population.

    ``fn = differentiable(measure, grid, population, **options)``; then ``fn(pop)``
    for any population ``pop`` of the same structure (same kind, same number of
    neurons, other parameter values) returns the measure exactly as the public
    function (``measure(grid, pop, **options)``) would, through the same code, but as
    a pure JAX function of ``pop``'s array leaves: ``jax.grad(lambda p:
    fn(p))(pop)`` is the gradient of I(R;X) (a population of the same pytree type,
    holding d I / d parameter), ``jax.jacrev(fn)(pop)`` that of I_local(x_j) at every
    grid point, and ``jax.jit(fn)`` compiles it.

    measure: a name (``"mutual_information"``, ``"ilocal"``, ``"kong2"``, ``"fisher"``,
        ``"specific_information"``, ``"ssi"``, ``"specific_surprise"``, ``"cissi"``),
        the public function itself (``exact.ilocal``), a sequence of names or ``"all"``
        / ``exact.all_measures`` (then ``fn`` returns a dict). Every measure is
        differentiable: the discrete ones through the response-cell masses, I_local and
        Kong-2 also through the noise integral, whose settings (levels, blur grid) are
        fixed numbers, so the gradient is the exact gradient of the computed value.
    grid: the prior (fixed; not differentiated).
    population: fixes the structure and, through its rates on the grid, the response
        cells. The cells do not move with the parameters: they must cover the rates
        the parameters will produce, else the responses outside them are dropped
        (see :meth:`DifferentiableMeasure.missing_mass`). Leave room with the option
        ``rate_range=(lo, hi)`` (e.g. ``(0, peak rate)`` for Poisson tuning curves
        whose amplitudes may grow), or a smaller ``tail``.
    given: a fixed conditioning population R1 (``ilocal``/``kong2`` only; not differentiated).
    per_dim: I_local per stimulus dimension, (m, d) (``ilocal`` only).
    check: for ``ilocal`` / ``kong2``, refuse a grid that does not resolve the posterior of
        ``population`` (as :func:`jaxdecomp.exact.ilocal` does; ``False``: warn). The completeness
        check of the public functions needs concrete values and is not made by ``fn``.
    options: as for the public functions: response cells (``tail``, ``points_per_sigma``,
        ``max_cells``, ``rate_range``) and the noise integral (``n_levels``, ``g_min``,
        ``g_max``, ``blur_points``, ``chunk``).

    Precision: float64. ``fn`` must be called, and differentiated, with float64 enabled
    (inside ``with jax.enable_x64(True):`` or with ``jax_enable_x64`` set); it raises a
    RuntimeError otherwise, because the backward pass of ``jax.grad`` is traced after
    ``fn`` returns and would silently run in float32. ``fn`` casts the population's
    floating leaves to float64 (gradients come back in the leaves' own dtype, so build
    the population in x64 mode too). The construction itself (this function) may run
    in either mode.
    Poisson rates must be positive on the grid (a positive baseline): at a zero rate the
    gradient of ``log p(r | x)`` is infinite; this is checked here.

    Memory: reverse mode stores the (m, K) cell table and its cotangent and, through
    ``jax.checkpoint``, recomputes one noise level at a time (about the forward pass's
    memory, twice its time or more).
    """
    names, single = _measure_names(measure)
    if given is not None and not set(names) <= {"ilocal", "kong2"}:
        raise ValueError(f"given: conditional measures are ilocal and kong2 only, got measures {list(names)}")
    if per_dim and "ilocal" not in names:
        raise ValueError(f"per_dim: applies to ilocal only, got measures {list(names)}")
    integral, cell_kw = _options(options)
    with jax.enable_x64(True):
        plan = _plan(grid, population, given, cell_kw)
        for part in _poisson_parts(population):
            f = concrete_rates(part, plan.points)
            if not np.all(f > 0):
                raise ValueError(
                    f"population: Poisson rates must be positive on the grid for gradients (minimum "
                    f"{f.min():.3g}); the gradient of log p(r|x) is infinite at a zero rate. Add a positive baseline."
                )
        _settings(plan.points, integral)  # validate the noise-integral settings now, not at trace time
        if {"ilocal", "kong2"} & set(names):
            # the grid must resolve the posterior of the population given here (ilocal's check);
            # completeness cannot be checked on traced values: compare with exact.ilocal if in doubt
            _check_resolution(plan, population, integral, _check_flag(check))
    return DifferentiableMeasure(plan, names, single, integral, bool(per_dim), population)
