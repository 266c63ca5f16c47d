"""The I_local tensor on the exact grid engine (``docs/ilocal.md`` §8).

    G(x) = 1/2 int_0^inf E_{y ~ N(x, g I)} J(y) dg,
    J_ij(y) = E_{r | y} (m_i(y, r) - m_i(y)) (m_j(y, r) - m_j(y)) / g^2     (Tweedie)

Same plan, response cells, noise-level quadrature, blur grid and tails as
:func:`jaxdecomp.exact.ilocal` (:mod:`jaxdecomp.exact._engine`); only the per-level integrand
keeps the cross terms ``sum_k N_i N_j / Q`` and the small-noise head uses the full Fisher
matrix at ``x`` (``population.fisher(x)``, or ``sum_k dP_i dP_j / P_k`` on the response cells
where the population has no closed form) instead of its diagonal. So ``trace(G) =
exact.ilocal`` and ``diag(G) = exact.ilocal(..., per_dim=True)`` to rounding.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdecomp._quadrature import gauss_legendre, log_snr_from_variance, variance_from_log_snr
from jaxdecomp.exact._engine import (
    Integral,
    _has_closed_form_fisher,
    _options,
    _plan,
    _Plan,
    _blur_grid,
    _posterior_differences,
    _safe_div,
    _settings,
    _x64,
)
from jaxdecomp.neurons._populations import joint_population


@functools.partial(jax.jit, static_argnames=("M", "chunk", "sizes"))
def _tensor_level_integrands(gs, X, w, P, lo, hi, *, M, chunk, sizes):
    """For each blur variance g: E_{y~N(x,g)} J(y) per grid point, (L, m, d, d): the blur grid
    and posterior sums of ``_engine._level_integrands``, keeping the cross terms."""
    d = X.shape[1]
    log_w = jnp.log(jnp.where(w > 0, w, 1e-300))

    def one_level(g):
        C, Yblocks, n_y = _blur_grid(g, X, lo, hi, M, chunk)

        def block(Yc):
            Q, diffs = _posterior_differences(Yc, g, X, log_w, P, sizes)
            rows = [jnp.stack([jnp.sum(Q * diffs[i] * diffs[j], axis=1) for j in range(d)], axis=1)
                    for i in range(d)]
            return jnp.stack(rows, axis=1) / g**2  # (chunk, d, d)

        jy = jax.lax.map(block, Yblocks)
        Jy = jy.reshape(-1, d, d)[:n_y]
        return jnp.einsum("my,yij->mij", C, Jy)

    return jax.lax.map(one_level, gs)


def _has_full_fisher(population, x) -> bool:
    try:
        jax.eval_shape(population.fisher, x)
    except (NotImplementedError, AttributeError):
        return False
    return True


def _head_fisher_matrix(plan: _Plan, population, points, d: int, cell_kw=None) -> jax.Array:
    """Full Fisher matrix at each grid point, (m, d, d): ``population.fisher`` where the
    population has a closed form, else ``sum_k dP_i dP_j / P_k`` on its own response cells."""
    m = points.shape[0]
    x0 = points[0]
    if _has_full_fisher(population, x0):
        return jax.vmap(population.fisher)(points).reshape(m, d, d)
    if d == 1 and _has_closed_form_fisher(population, x0):
        return jax.vmap(population.fisher_diag)(points).reshape(m, 1, 1)
    from jaxdecomp.exact._responses import response_cells

    own = plan.cells if plan.given is None else response_cells(population, np.asarray(points), **(cell_kw or {}))

    def table_fisher(x):
        Pk = own.mass_of(population, x)
        dP = jax.jacfwd(own.mass_of, argnums=1)(population, x).reshape(Pk.shape[0], -1)
        return jnp.einsum("ki,kj->ij", dP, _safe_div(dP, Pk[:, None]))

    return jax.vmap(table_fisher)(points).reshape(m, d, d)


def _tensor_evaluate(plan: _Plan, population, integral: Integral, cell_kw=None) -> jax.Array:
    """G at every grid point, (m, d, d): the integral of ``_engine._integrate`` with matrices."""
    pop = population if plan.given is None else joint_population(plan.given, population)
    points = jnp.asarray(plan.points)
    P = plan.table(pop, points)
    X = points[:, None] if points.ndim == 1 else points
    d = X.shape[1]
    J0 = _head_fisher_matrix(plan, population, points, d, cell_kw)
    J0 = 0.5 * (J0 + jnp.swapaxes(J0, 1, 2))
    lo, hi, g_min, g_max, M = _settings(plan.points, integral)
    a_nodes, a_weights = gauss_legendre(
        float(log_snr_from_variance(g_max)), float(log_snr_from_variance(g_min)), integral.n_levels
    )
    gs = jnp.concatenate([variance_from_log_snr(jnp.asarray(a_nodes)), jnp.array([g_min, 2 * g_min, g_max])])
    E = _tensor_level_integrands(
        gs, X, jnp.asarray(plan.w), P, jnp.asarray(lo), jnp.asarray(hi),
        M=M, chunk=int(integral.chunk), sizes=plan.sizes,
    )
    n = len(a_nodes)
    wq = jnp.asarray(a_weights) * gs[:n] / 2
    body = jnp.tensordot(wq, E[:n], axes=1)
    small = g_min / 12 * (5 * J0 + 8 * E[n] - E[n + 1]) / 2
    G = body + small + g_max / 2 * E[n + 2]
    return 0.5 * (G + jnp.swapaxes(G, 1, 2))


@_x64
def ilocal_tensor(grid, population, *, given=None, check: bool = True, **options) -> np.ndarray:
    """The I_local tensor ``G(x)`` at every grid point, ``(m, d, d)`` float64 (``d = 1`` for a
    1-D grid): ``G(x) = 1/2 int_0^inf E_{y ~ N(x, g I)} J(y) dg`` (``docs/ilocal.md`` §8).

    Symmetric positive semi-definite; ``trace = exact.ilocal``, ``diagonal = exact.ilocal(...,
    per_dim=True)`` (same settings). ``vᵀ G(x) v`` (unit ``v``) is the information about
    perturbations of ``x`` along ``v``; ``numpy.linalg.eigh`` gives the most informative
    directions. ``given``, ``check`` (the accuracy checks), noise-integral settings (``n_levels``, ``g_min``, ``g_max``,
    ``blur_points``, ``chunk``) and response-cell settings as for :func:`exact.ilocal`.
    """
    from jaxdecomp.exact import _engine

    # the accuracy checks of exact.ilocal (grid resolution before, completeness after), where present
    check_flag = getattr(_engine, "_check_flag", bool)(check)
    integral, cells = _options(options)
    plan = _plan(grid, population, given, cells)
    if hasattr(_engine, "_check_resolution"):
        _engine._check_resolution(plan, population, integral, check_flag)
    G = _tensor_evaluate(plan, population, integral, cells)
    if hasattr(_engine, "_check_completeness"):
        _engine._check_completeness(plan, population, {"ilocal": jnp.trace(G, axis1=1, axis2=2)}, check_flag)
    return G
