"""Response cells: the response space of a population cut into finitely many cells.

``response_cells(population, points)`` returns the cell representatives ``(K, n)``
and a function ``mass(x) -> (K,)`` giving ``P(R in cell k | x)`` for one stimulus.
Everything in :mod:`jaxdecomp.exact` is computed from these masses.

The cells (their number and positions) are fixed from concrete rates; the masses are
a pure JAX function of the population too: ``mass_of(population, x)`` gives them for
any population of the same structure (other parameter values), differentiably in its
array leaves. ``mass`` is ``mass_of`` at the population the cells were built from.
The cells stay exact while the rates stay inside the range they were built for: the
rates on the grid, widened by the ``rate_range`` option.

* Poisson counts are enumerated exactly, per neuron from 0 to the smallest
  ``c_max`` whose upper tail ``P(N > c_max)`` is below ``tail`` (default 1e-9)
  at the largest rate on the grid; the masses of a stimulus therefore sum to
  at least ``1 - n * tail``.
* Gaussian responses use, per neuron, equally spaced cells of width
  ``h = sigma / points_per_sigma`` centred at ``(k + 1/2) h`` (mid-point rule), over
  ``[min rate - 8 sigma, max rate + 8 sigma]``. For Gaussian integrands the
  mid-point rule with ``h = sigma/2`` errs by about ``exp(-2 pi^2 sigma^2/h^2) ~ 1e-34``:
  it is quadrature, not sampling.
* A joint population gets the product cells (cells of ``first`` outer, ``second`` inner).
* A transformed population ``r' = T(r)`` maps the base cells through ``T`` and merges
  cells with equal images (the induced partition), which is exact for the
  distribution of ``r'`` on those cells.
* Any other encoder: the builder registered for its class (:func:`register_cells`), e.g.
  :func:`finite_support` (one cell per response, masses from ``log_prob``) for an encoder
  with finitely many responses.
"""

from __future__ import annotations

import functools
import itertools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdecomp._checks import check_float, check_int
from jaxdecomp.neurons._populations import (
    GaussianPopulation,
    JointPopulation,
    PoissonPopulation,
    TransformedPopulation,
    gaussian_log_density,
    poisson_log_pmf,
)


class Cells(NamedTuple):
    points: np.ndarray  # (K, n) response representative of each cell
    mass: Callable  # x -> (K,) probability of each cell given one stimulus
    sizes: tuple  # (K1, K2) for a joint population (first, second), else (K,)
    volumes: np.ndarray | None = None  # (K,) cell volumes where they differ (Monte Carlo), else None
    mass_of: Callable | None = None  # (population, x) -> (K,): ``mass`` for other parameter values


class TooManyCells(ValueError):
    """Exact enumeration of the responses would need more cells than allowed."""


def _rate_bounds(f: np.ndarray, rate_range) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron (lo, hi), each (n,): the range of the rates ``f`` (m, n) on the grid,
    widened to include ``rate_range`` (``None``, or ``(lo, hi)`` scalars or (n,) arrays)."""
    lo, hi = f.min(axis=0), f.max(axis=0)
    if rate_range is None:
        return lo, hi
    try:
        r_lo, r_hi = (np.broadcast_to(np.asarray(v, dtype=np.float64), lo.shape) for v in rate_range)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"rate_range: expected (lo, hi) with scalars or arrays of shape ({lo.shape[0]},), got {rate_range!r}"
        ) from err
    if not (np.all(np.isfinite(r_lo)) and np.all(np.isfinite(r_hi)) and np.all(r_lo <= r_hi)):
        raise ValueError(f"rate_range: expected finite lo <= hi, got {rate_range!r}")
    return np.minimum(lo, r_lo), np.maximum(hi, r_hi)


def _split_range(rate_range, n_first: int):
    """``rate_range`` for the two parts of a joint population (scalars pass through)."""
    if rate_range is None:
        return None, None
    lo, hi = (np.asarray(v, dtype=np.float64) for v in rate_range)
    part = lambda v, s: v if v.ndim == 0 else v[s]  # noqa: E731
    first, second = slice(None, n_first), slice(n_first, None)
    return (part(lo, first), part(hi, first)), (part(lo, second), part(hi, second))


def concrete_rates(population, points) -> np.ndarray:
    """Rates of every neuron at every grid point, (m, n), validated."""
    x = jnp.asarray(points)
    f = np.asarray(jax.vmap(population.rate)(x))
    if f.ndim != 2:
        raise ValueError(f"rate_fn: must return a 1-D array of rates (n,), got shape {f.shape[1:]}")
    if not np.all(np.isfinite(f)):
        raise ValueError("rate_fn: returned NaN or infinite rates on the grid")
    return f


def _poisson_cmax(lam_max: float, tail: float) -> int:
    """Smallest c with P(Poisson(lam_max) > c) < tail."""
    c_hi = int(lam_max + 20 * np.sqrt(lam_max + 1) + 40)
    c = np.arange(c_hi + 1, dtype=np.float64)
    logp = np.asarray(poisson_log_pmf(jnp.asarray(c), lam_max)) if lam_max > 0 else np.where(c == 0, 0.0, -np.inf)
    p = np.exp(logp)
    sf = np.append(np.cumsum(p[::-1])[::-1][1:], 0.0)  # P(N > c), summed from the tail for precision
    idx = np.nonzero(sf < tail)[0]
    return int(idx[0]) if idx.size else c_hi


def _product(vectors: list[np.ndarray]) -> np.ndarray:
    """Cartesian product of per-neuron cell values: (K, n), last neuron fastest."""
    return np.array(list(itertools.product(*vectors)), dtype=np.float64).reshape(-1, len(vectors))


def _kron_rows(vs):
    out = vs[0]
    for v in vs[1:]:
        out = (out[:, None] * v[None, :]).reshape(-1)
    return out


def _poisson_cells(pop: PoissonPopulation, points, tail, max_cells, rate_range) -> Cells:
    f = concrete_rates(pop, points)
    if np.any(f < 0):
        raise ValueError(f"rate_fn: Poisson rates must be non-negative, got minimum {f.min():.6g}")
    _, hi = _rate_bounds(f, rate_range)
    counts = [np.arange(_poisson_cmax(float(lam), tail) + 1, dtype=np.float64) for lam in hi]
    _check_size([len(c) for c in counts], max_cells)
    counts_j = [jnp.asarray(c) for c in counts]

    def mass_of(population, x):
        rates = population.rate(x)
        return _kron_rows([jnp.exp(poisson_log_pmf(c, rates[i])) for i, c in enumerate(counts_j)])

    K = int(np.prod([len(c) for c in counts]))
    return Cells(_product(counts), functools.partial(mass_of, pop), (K,), mass_of=mass_of)


def _gaussian_cells(pop: GaussianPopulation, points, points_per_sigma, max_cells, rate_range) -> Cells:
    f = concrete_rates(pop, points)
    lo, hi = _rate_bounds(f, rate_range)
    sig = np.broadcast_to(np.asarray(pop.sigma, dtype=np.float64), (f.shape[1],))
    centres = []
    for i in range(f.shape[1]):
        h = sig[i] / points_per_sigma
        k_lo = int(np.floor((lo[i] - 8 * sig[i]) / h))
        k_hi = int(np.ceil((hi[i] + 8 * sig[i]) / h))
        centres.append((np.arange(k_lo, k_hi + 1, dtype=np.float64) + 0.5) * h)
    _check_size([len(c) for c in centres], max_cells)
    centres_j = [jnp.asarray(c) for c in centres]
    widths = jnp.asarray(sig / points_per_sigma)  # cell widths stay fixed if sigma changes later

    def mass_of(population, x):
        rates = population.rate(x)
        sigma = jnp.broadcast_to(population.sigma, rates.shape)
        return _kron_rows(
            [widths[i] * jnp.exp(gaussian_log_density(c, rates[i], sigma[i])) for i, c in enumerate(centres_j)]
        )

    K = int(np.prod([len(c) for c in centres]))
    return Cells(_product(centres), functools.partial(mass_of, pop), (K,), mass_of=mass_of)


def _check_size(per_neuron: list[int], max_cells: int) -> None:
    K = int(np.prod(per_neuron))
    if K > max_cells:
        raise TooManyCells(
            f"population: exact enumeration needs {K} response cells ({' x '.join(map(str, per_neuron))}), "
            f"more than max_cells={max_cells}. Use fewer neurons, lower rates or larger sigma, "
            f"or raise max_cells if memory allows (tables are grid size x cells floats), "
            f"or use jaxdecomp.exact.monte_carlo_measures (sampled responses, with standard errors)."
        )


class CellOptions(NamedTuple):
    """Settings of the response cells, handed to every cell builder (see :func:`response_cells`)."""

    tail: float = 1e-9
    points_per_sigma: float = 1.0
    max_cells: int = 20000
    rate_range: tuple | None = None


#: encoder class -> builder ``(population, points (m,) or (m, d) float64, CellOptions) -> Cells``
_CELL_BUILDERS: dict[type, Callable] = {}


def register_cells(encoder_cls: type, builder: Callable | None = None):
    """Register how :mod:`jaxdecomp.exact` cuts the responses of ``encoder_cls`` into cells.

    ``builder(population, points, options) -> Cells``: ``points`` are the grid points
    (numpy float64, (m,) or (m, d)), ``options`` a :class:`CellOptions`; the returned
    :class:`Cells` holds the cell representatives ``(K, n)``, ``mass(x) -> (K,)`` and
    ``mass_of(population, x) -> (K,)``, a pure JAX function of the population (that is what
    :func:`jaxdecomp.exact.differentiable` differentiates). The builder is looked up along
    the population's class MRO, so a subclass inherits its parent's cells unless it registers
    its own. For an encoder with a finite set of responses use :func:`finite_support`:
    ``register_cells(MyEncoder, finite_support([0.0, 1.0]))``. Returns ``builder``
    (usable as a decorator: ``@register_cells(MyEncoder)``).
    """
    if not isinstance(encoder_cls, type):
        raise TypeError(f"encoder_cls: expected a class, got {type(encoder_cls).__name__}")
    if builder is None:
        return lambda fn: register_cells(encoder_cls, fn)
    if not callable(builder):
        raise TypeError(f"builder: expected a callable (population, points, options) -> Cells, "
                        f"got {type(builder).__name__}")
    _CELL_BUILDERS[encoder_cls] = builder
    return builder


def _builder_for(population):
    for klass in type(population).__mro__:
        if klass in _CELL_BUILDERS:
            return _CELL_BUILDERS[klass]
    raise TypeError(
        f"population: jaxdecomp.exact has no response cells for {type(population).__name__}; register them "
        f"with jaxdecomp.exact.register_cells({type(population).__name__}, builder) (for a finite set of "
        f"responses: builder = jaxdecomp.exact.finite_support(values)). Registered: "
        f"{sorted(k.__name__ for k in _CELL_BUILDERS)}"
    )


def response_cells(population, points, *, tail: float = 1e-9, points_per_sigma: float = 1.0,
                   max_cells: int = 20000, rate_range=None) -> Cells:
    """Cells of ``population``'s response space and their masses given one stimulus.

    The cells come from the builder registered for the population's class (see
    :func:`register_cells`; built in: Poisson, Gaussian, joint and transformed populations).

    ``rate_range``: ``(lo, hi)``, scalars or arrays (n,) over all neurons: make the
    cells also cover rates in ``[lo, hi]`` (beyond those of ``population`` on the
    grid), so that ``mass_of`` stays exact for parameters that move the rates there
    (Poisson: counts up to the tail of a rate ``hi``; Gaussian: ``lo - 8 sigma`` to
    ``hi + 8 sigma``). Default: the rates on the grid only.
    """
    tail = check_float("tail", tail, positive=True)
    if not tail < 0.5:
        raise ValueError(f"tail: expected a probability in (0, 0.5) (the Poisson tail mass left out per neuron), "
                         f"got {tail}")
    points_per_sigma = check_float("points_per_sigma", points_per_sigma, positive=True)
    max_cells = check_int("max_cells", max_cells, minimum=1)
    options = CellOptions(tail, points_per_sigma, int(max_cells), rate_range)
    return _builder_for(population)(population, np.asarray(points, dtype=np.float64), options)


def _poisson_builder(pop, points, o: CellOptions) -> Cells:
    return _poisson_cells(pop, points, o.tail, o.max_cells, o.rate_range)


def _gaussian_builder(pop, points, o: CellOptions) -> Cells:
    return _gaussian_cells(pop, points, o.points_per_sigma, o.max_cells, o.rate_range)


def _joint_builder(population, points, o: CellOptions) -> Cells:
    n_first = concrete_rates(population.first, points).shape[1]
    range_a, range_b = _split_range(o.rate_range, n_first)
    kw = dict(tail=o.tail, points_per_sigma=o.points_per_sigma, max_cells=o.max_cells)
    a = response_cells(population.first, points, rate_range=range_a, **kw)
    b = response_cells(population.second, points, rate_range=range_b, **kw)
    K1, K2 = a.points.shape[0], b.points.shape[0]
    _check_size([K1, K2], o.max_cells)
    pts = np.concatenate([np.repeat(a.points, K2, axis=0), np.tile(b.points, (K1, 1))], axis=1)

    def mass_of(pop, x):
        return (a.mass_of(pop.first, x)[:, None] * b.mass_of(pop.second, x)[None, :]).reshape(-1)

    return Cells(pts, functools.partial(mass_of, population), (K1, K2), mass_of=mass_of)


def _transformed_builder(population, points, o: CellOptions) -> Cells:
    base = response_cells(population.base, points, **o._asdict())
    images = np.asarray(jax.vmap(population.transform)(jnp.asarray(base.points)), dtype=np.float64)
    images = images.reshape(base.points.shape[0], -1)
    keys = np.round(images, 12)
    uniq, ids = np.unique(keys, axis=0, return_inverse=True)
    ids = jnp.asarray(ids.reshape(-1))
    U = uniq.shape[0]

    def mass_of(pop, x):
        return jax.ops.segment_sum(base.mass_of(pop.base, x), ids, num_segments=U)

    return Cells(uniq, functools.partial(mass_of, population), (U,), mass_of=mass_of)


register_cells(PoissonPopulation, _poisson_builder)
register_cells(GaussianPopulation, _gaussian_builder)
register_cells(JointPopulation, _joint_builder)
register_cells(TransformedPopulation, _transformed_builder)


def finite_support(support, *, atol: float = 1e-6) -> Callable:
    """A cell builder for an encoder whose responses take finitely many values: one cell
    per response, with mass ``exp(population.log_prob(r_k, x))`` (exact enumeration).

    support: every response the encoder can give, as a (K, n) array; or a 1-D array of the
    values each neuron can take (the support is then their n-fold product, last neuron
    fastest, with n from the population's rates); or a function ``(population, points) ->``
    either of those. The builder checks that the masses sum to 1 within ``atol`` at every
    grid point (a support that misses responses is refused) and that there are at most
    ``max_cells`` cells. Use: ``exact.register_cells(MyEncoder, exact.finite_support([0., 1.]))``.
    """
    if not callable(support):
        arr = np.asarray(support, dtype=np.float64)
        if arr.ndim not in (1, 2) or arr.size == 0 or not np.all(np.isfinite(arr)):
            raise ValueError(f"support: expected finite values (k,) per neuron or responses (K, n), "
                             f"got shape {arr.shape}")

    def builder(population, points, o: CellOptions) -> Cells:
        values = support(population, points) if callable(support) else support
        vals = np.asarray(values, dtype=np.float64)
        n = concrete_rates(population, points).shape[1]
        if vals.ndim == 1:
            _check_size([vals.shape[0]] * n, o.max_cells)
            R = _product([vals] * n)
        elif vals.ndim == 2 and vals.shape[1] == n:
            _check_size([vals.shape[0]], o.max_cells)
            R = vals
        else:
            raise ValueError(f"support: expected values (k,) per neuron or responses (K, {n}), got shape {vals.shape}")
        R_j = jnp.asarray(R)

        def mass_of(pop, x):
            return jnp.exp(jax.vmap(lambda r: pop.log_prob(r, x))(R_j))

        totals = np.asarray(jax.vmap(functools.partial(mass_of, population))(jnp.asarray(points))).sum(axis=1)
        worst = int(np.argmax(np.abs(totals - 1.0)))
        if not abs(totals[worst] - 1.0) <= atol:
            raise ValueError(
                f"support: the masses exp(log_prob(r, x)) of the {R.shape[0]} responses sum to "
                f"{totals[worst]:.9g} at grid point {worst}, not 1 (within {atol}): the support misses "
                f"responses of {type(population).__name__}, or its log_prob is not normalised"
            )
        return Cells(R, functools.partial(mass_of, population), (R.shape[0],), mass_of=mass_of)

    return builder


def sampled_cells(key, population, points, weights, n: int) -> Cells:
    """Monte Carlo "cells": ``n`` responses drawn from the prior predictive ``p(r)``.

    Each sample ``r_k`` stands for a cell of volume ``1 / (n q(r_k))`` with
    ``q(r) = sum_j w_j p(r | x_j)`` computed exactly on the grid, so that the cell
    mass ``p(r_k | x) / (n q(r_k))`` is an importance-sampling weight: sums over
    cells are unbiased estimates of integrals over responses.
    """
    X = jnp.asarray(points)
    w = jnp.asarray(weights)
    k_idx, k_r = jax.random.split(key)
    idx = jax.random.choice(k_idx, X.shape[0], (n,), p=w)
    R = jax.vmap(population.sample)(jax.random.split(k_r, n), X[idx])

    def log_lik(pop, x):
        return jax.vmap(lambda r: pop.log_prob(r, x))(R)

    logL = jax.lax.map(functools.partial(log_lik, population), X)  # (m, n)
    log_q = jax.scipy.special.logsumexp(logL + jnp.log(jnp.where(w > 0, w, 1e-300))[:, None], axis=0)

    def mass_of(pop, x):  # importance weights with the proposal q fixed
        return jnp.exp(log_lik(pop, x) - log_q) / n

    return Cells(np.asarray(R), functools.partial(mass_of, population), (n,), np.asarray(jnp.exp(-log_q) / n),
                 mass_of=mass_of)
