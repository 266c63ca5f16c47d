"""The I_local tensor from denoisers (``docs/ilocal.md`` §8), without forming a d x d matrix.

    G(x) = int 1/(2 g^2) E[(xhat(x_g, r) - xhat(x_g)) (xhat(x_g, r) - xhat(x_g))^T] dg,  r ~ p(r | x_g)
         = 1/2 int E[delta delta^T] da,      delta = eps_hat(x_a, a, r) - eps_hat(x_a, a)   (log-SNR a)

The draws are exactly those of :func:`jaxdecomp.estimate.ilocal` (same key, same levels, same
response sampler: the per-draw computation is the same), so with the same key and settings the
diagonal here is its pixel map and the trace its total. The Monte Carlo estimate is

    G_hat = sum_l w_l / n sum_s 1/2 delta_ls delta_ls^T + T,     T = 1/2 log(I + g_hi J(x))

(the small-noise tail, the matrix whose diagonal ``estimate.ilocal`` adds; see
:func:`jaxdecomp.estimate._estimators.small_noise_tail`). ``G_hat`` is held implicitly as the
columns ``u_ls = sqrt(w_l / (2 n)) delta_ls`` (d x L n numbers, as many as ``ilocal`` holds before
averaging) plus the tail as an operator, so ``G v`` costs two passes over the columns and the top
eigen-pairs come from randomised subspace iteration (Halko, Martinsson & Tropp 2011) on that
operator. Standard errors are over the draws within each level (independent), as in ``ilocal``;
the tail is exact (no error).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxdecomp._interfaces import Estimate, MapResult
from jaxdecomp.diffusion.schedules import Levels
from jaxdecomp.estimate._estimators import (
    RESPONSE_SAMPLERS,
    _as_pytree,
    _check_count,
    _check_levels,
    _check_x,
    _draw,
    _has_full_fisher,
    _has_method,
    _map_tasks,
    _nodes,
    _spectral_phi,
    _stimulus_shape,
    small_noise_tail,
)

_EIG_FOLD = 0x7FFFFFFF  # key fold for the random test matrix (the draws use folds 0 .. L n - 1)


class TensorResult(NamedTuple):
    """The I_local tensor ``G(x)`` of one stimulus, seen through what a d x d matrix need not be formed for.

    diagonal: :class:`MapResult`, the pixel map ``G_ii`` (shape of ``x``), ``total = trace G =
      I_local(x)`` and its standard error; equal to ``estimate.ilocal`` with the same key and settings.
    trace: ``Estimate`` of ``trace G`` (the same numbers as ``diagonal.total`` / ``.stderr``).
    action: ``Estimate`` of ``G v`` for each given direction, value and stderr ``(p, *x.shape)``
      (entrywise standard errors), or ``None`` without ``directions``.
    directional: ``Estimate`` of ``v^T G v``, ``(p,)``: the information about perturbations along ``v``
      (for unit ``v``), or ``None``.
    eigenvalues: ``Estimate`` of the top ``k`` eigenvalues (descending, ``(k,)``; stderr by first-order
      perturbation: that of ``v^T G v`` at the estimated eigenvector), or ``None`` when ``k = 0``.
    eigenvectors: ``(k, *x.shape)`` unit eigenvectors (sign: largest-magnitude entry positive), or ``None``.
    info: dict with ``angle_stderr`` ``(k,)`` (radians; first-order bound on the standard error of the
      angle between the estimated and the true eigenvector: ``sqrt(tr Cov(G_hat v) - Var(v^T G_hat v)) /
      gap``, gap to the nearest other Ritz value) and ``n_columns`` (sampled columns held).
    """

    diagonal: MapResult
    trace: Estimate
    action: Optional[Estimate]
    directional: Optional[Estimate]
    eigenvalues: Optional[Estimate]
    eigenvectors: Optional[jax.Array]
    info: dict


def _tail_parts(population, x, g_hi, fisher_tail: bool):
    """The small-noise tail ``T = 1/2 log(I + g_hi J(x))`` as ``(diag (shape of x), apply)``
    where ``apply(V)`` maps directions ``(p, d)`` to ``T V`` rows ``(p, d)``. The diagonal is
    ``small_noise_tail`` itself (what ``ilocal`` adds); the off-diagonal part comes from the
    same Fisher source (rate Jacobian, full Fisher matrix, or the diagonal alone)."""
    d = x.size
    if not fisher_tail:
        return jnp.zeros(x.shape, x.dtype), lambda V: jnp.zeros_like(V)
    diag = small_noise_tail(population, x, g_hi).astype(x.dtype)
    g = jnp.asarray(g_hi, x.dtype)
    if _has_method(population, "fisher_weights"):
        f = population.rate(x)
        n = f.shape[0]
        jac_fn = jax.jacrev if n < d else jax.jacfwd
        jac = jac_fn(population.rate)(x).reshape(n, d)
        K = (jnp.sqrt(jnp.maximum(population.fisher_weights(f), 0.0))[:, None] * jac).astype(x.dtype)
        if n <= d:
            P = _spectral_phi(K @ K.T, g)                    # T = 1/2 K^T Phi(K K^T) K

            def apply(V):
                return 0.5 * ((V @ K.T) @ P) @ K
        else:
            J = K.T @ K
            T = 0.5 * J @ _spectral_phi(J, g)

            def apply(V):
                return V @ T
        return diag, apply
    if d > 1 and _has_full_fisher(population, x):
        J = jnp.reshape(population.fisher(x), (d, d)).astype(x.dtype)
        J = 0.5 * (J + J.T)
        T = 0.5 * J @ _spectral_phi(J, g)
        return diag, lambda V: V @ T
    flat = diag.reshape(-1)
    return diag, lambda V: V * flat[None, :]


def _deltas(key, denoiser, population, x, nodes, n_samples, sampler, n_steps, log_snr_end, chunk):
    """``delta = eps_hat(x_a, a, r) - eps_hat(x_a, a)`` per level and draw, twice: ``(2, L, n, *S)``, the
    second from the independent estimate ``eps_c2`` of Monte Carlo (zero-shot) denoisers (equal to the
    first for every other denoiser). The draws of ``estimate.ilocal`` (``_estimators._ilocal_one``'s
    task, same keys and order), so the tensor's products ``delta_1 delta_2^T`` match its squares."""
    n_nodes = nodes.shape[0]

    def task(t):
        *_, eps_u, eps_c, eps_c2 = _draw(key, t, denoiser, population, x, nodes, n_samples, sampler, n_steps,
                                         log_snr_end, False)
        return jnp.stack([eps_c - eps_u, eps_c2 - eps_u])

    out = _map_tasks(task, n_nodes * n_samples, chunk).reshape((n_nodes, n_samples, 2) + x.shape)
    return jnp.moveaxis(out, 2, 0)


def _action_stats(D1, D2, c, V, tail_apply):
    """``G V`` rows and their entrywise standard errors. D1, D2: (L, n, d) draws (the two independent
    estimates of delta; the same array for ordinary denoisers); c: (L,) weights w_l / 2; V: (p, d).
    Per level the draw's contribution is ``c_l (delta_1 (delta_2 . v) + delta_2 (delta_1 . v)) / 2``."""
    n = D1.shape[1]
    p1 = jnp.einsum("lsd,pd->lsp", D1, V)                        # (L, n, p)
    p2 = jnp.einsum("lsd,pd->lsp", D2, V)
    mean = 0.5 * (jnp.einsum("lsd,lsp->lpd", D1, p2) + jnp.einsum("lsd,lsp->lpd", D2, p1)) / n   # (L, p, d)
    second = 0.25 * (jnp.einsum("lsd,lsp->lpd", D1**2, p2**2) + 2 * jnp.einsum("lsd,lsp->lpd", D1 * D2, p1 * p2)
                     + jnp.einsum("lsd,lsp->lpd", D2**2, p1**2)) / n
    var = jnp.maximum(second - mean**2, 0.0) * n / (n - 1)
    GV = jnp.tensordot(c, mean, axes=1) + tail_apply(V)
    se = jnp.sqrt(jnp.tensordot(c**2, var, axes=1) / n)
    q = p1 * p2                                                  # v^T delta_1 delta_2^T v
    qvar = q.var(axis=1, ddof=1)                                 # (L, p)
    vGv = jnp.sum(V * GV, axis=1)
    vse = jnp.sqrt(jnp.tensordot(c**2, qvar, axes=1) / n)
    return GV, se, vGv, vse


def _orth(Y):
    return jnp.linalg.qr(Y.T)[0].T                               # rows orthonormal


def _top_eigen(key, D1, D2, c, tail_apply, k, oversample, n_iter, dtype):
    """Randomised subspace iteration on ``G V = sum_l c_l/n sum_s (delta_1 (delta_2 . v) + delta_2 (delta_1 . v))/2
    + T v`` (symmetric; ``delta_1 = delta_2`` for ordinary denoisers)."""
    L, n, d = D1.shape
    ell = min(d, k + oversample)
    scale = jnp.sqrt(c / n)[:, None, None]
    U1 = (D1 * scale).reshape(L * n, d)                          # G_hat = (U1^T U2 + U2^T U1) / 2 + T
    U2 = (D2 * scale).reshape(L * n, d)

    def op(V):                                                   # (p, d) -> (p, d)
        return 0.5 * ((V @ U1.T) @ U2 + (V @ U2.T) @ U1) + tail_apply(V)

    Q = _orth(jax.random.normal(key, (ell, d), dtype))
    for _ in range(int(n_iter)):
        Q = _orth(op(Q))
    B = Q @ op(Q).T
    lam, W = jnp.linalg.eigh(0.5 * (B + B.T))
    order = jnp.argsort(-lam)
    lam, W = lam[order], W[:, order]
    vecs = W.T @ Q                                               # (ell, d), rows: Ritz vectors
    sign = jnp.sign(vecs[jnp.arange(ell), jnp.argmax(jnp.abs(vecs), axis=1)])
    vecs = vecs * jnp.where(sign == 0, 1.0, sign)[:, None]
    return lam, vecs


@partial(jax.jit, static_argnames=("n_samples", "sampler", "n_steps", "chunk", "fisher_tail", "k",
                                   "oversample", "n_iter", "with_directions"))
def _tensor_jit(key, denoiser, population, x, directions, nodes, weights, g_hi, *, n_samples, sampler,
                n_steps, chunk, fisher_tail, k, oversample, n_iter, with_directions):
    log_snr_end = nodes.max() + 4.0          # as estimate.ilocal
    delta, delta2 = _deltas(key, denoiser, population, x, nodes, n_samples, sampler, n_steps, log_snr_end, chunk)
    # the diagonal exactly as estimate.ilocal computes its map
    f = 0.5 * delta * delta2
    totals = f.reshape(f.shape[0], n_samples, -1).sum(-1)
    w = weights.astype(f.dtype)
    tail_diag, tail_apply = _tail_parts(population, x, g_hi, fisher_tail)
    m = jnp.tensordot(w, f.mean(1), axes=1)
    if fisher_tail:
        m = m + tail_diag
    diagonal = MapResult(m, m.sum(), jnp.sqrt(jnp.sum(w**2 * totals.var(1, ddof=1) / n_samples)))

    L, d = delta.shape[0], x.size
    D = delta.reshape(L, n_samples, d)
    D2 = delta2.reshape(L, n_samples, d)
    c = w / 2
    out = dict(action=None, directional=None, eigenvalues=None, eigenvectors=None)
    if with_directions:
        V = directions.reshape(directions.shape[0], d).astype(D.dtype)
        GV, se, vGv, vse = _action_stats(D, D2, c, V, tail_apply)
        out["action"] = Estimate(GV.reshape(directions.shape), se.reshape(directions.shape))
        out["directional"] = Estimate(vGv, vse)
    info = {"n_columns": jnp.asarray(L * n_samples)}
    if k > 0:
        lam, vecs = _top_eigen(jax.random.fold_in(key, _EIG_FOLD), D, D2, c, tail_apply, k, oversample, n_iter, D.dtype)
        GV, se, vGv, vse = _action_stats(D, D2, c, vecs[:k], tail_apply)
        ell = lam.shape[0]
        lam_k = lam[:k]
        above = jnp.concatenate([jnp.array([jnp.inf], lam.dtype), lam[: k - 1]])
        below = lam[1: k + 1] if ell > k else jnp.concatenate([lam[1:k], jnp.array([-jnp.inf], lam.dtype)])
        gap = jnp.minimum(above - lam_k, lam_k - below)
        resid = jnp.maximum(jnp.sum(se**2, axis=1) - vse**2, 0.0)
        info["angle_stderr"] = jnp.sqrt(resid) / jnp.maximum(gap, jnp.finfo(lam.dtype).tiny)
        out["eigenvalues"] = Estimate(vGv, vse)
        out["eigenvectors"] = vecs[:k].reshape((k,) + x.shape)
    return TensorResult(diagonal, Estimate(diagonal.total, diagonal.stderr), out["action"], out["directional"],
                        out["eigenvalues"], out["eigenvectors"], info)


def ilocal_tensor(key, denoiser, population, x, *, directions=None, k: int = 0,
                  response_sampler: str = "posterior_sample", levels: Levels | None = None, n_samples: int = 64,
                  n_steps: int = 32, fisher_correction: bool = True, chunk: int = 4096, stimulus_shape=None,
                  oversample: int = 10, n_iter: int = 4) -> TensorResult:
    """The I_local tensor ``G(x)`` of ONE stimulus (image or vector), through its action, directional
    information and top eigen-pairs, with Monte Carlo standard errors (``docs/ilocal.md`` §8).

    key, denoiser, population, x, response_sampler, levels, n_samples, n_steps, fisher_correction, chunk,
    stimulus_shape: as for :func:`jaxdecomp.estimate.ilocal`, whose draws these are (same key and
    settings: ``result.diagonal`` is its ``MapResult`` and ``result.trace`` its total).
    directions: ``(p, *x.shape)`` (or one direction ``x.shape``): returns ``G v`` and ``v^T G v`` for each
      (pass unit vectors for the information along a direction).
    k: number of leading eigen-pairs, by randomised subspace iteration (``oversample`` extra vectors,
      ``n_iter`` power iterations; the random test matrix uses ``fold_in(key, 2**31 - 1)``, not the draws).
    Returns :class:`TensorResult`. Memory: ``n_levels * n_samples * x.size`` numbers (as ``ilocal``);
    no d x d matrix is formed except where the population's own Fisher matrix is d x d.
    Values only: gradients through this function are pathwise (not the unbiased ones of ``ilocal``).
    """
    if response_sampler not in RESPONSE_SAMPLERS:
        raise ValueError(f"response_sampler: expected one of {RESPONSE_SAMPLERS}, got {response_sampler!r}")
    if not hasattr(population, "sample"):
        raise TypeError(f"population: expected a jaxdecomp.neurons population (with .sample), got {type(population).__name__}")
    n_samples = _check_count("n_samples", n_samples, 2)
    n_steps = _check_count("n_steps", n_steps)
    chunk = _check_count("chunk", chunk)
    k = _check_count("k", k, 0)
    oversample = _check_count("oversample", oversample, 0)
    n_iter = _check_count("n_iter", n_iter, 0)
    levels = _check_levels(levels)
    shape = _stimulus_shape(denoiser, x, stimulus_shape)
    x, batched = _check_x(x, shape)
    if batched:
        raise ValueError(f"x: ilocal_tensor takes one stimulus of shape {shape}, got a batch {tuple(x.shape)}")
    d = int(np.prod(shape))
    if k > d:
        raise ValueError(f"k: expected at most the stimulus size {d}, got {k}")
    with_directions = directions is not None
    if with_directions:
        directions = jnp.asarray(directions, x.dtype)
        if tuple(directions.shape) == shape:
            directions = directions[None]
        if tuple(directions.shape[1:]) != shape or directions.shape[0] < 1:
            raise ValueError(f"directions: expected (p, *{shape}) or {shape}, got {tuple(directions.shape)}")
        if not bool(jnp.all(jnp.isfinite(directions))):
            raise ValueError("directions: contains NaN or infinite values")
    else:
        directions = jnp.zeros((1,) + shape, x.dtype)
    fisher_tail = bool(levels.tails and fisher_correction)
    if fisher_tail and not hasattr(population, "fisher_diag"):
        raise TypeError("population: fisher_correction=True needs population.fisher_diag; pass fisher_correction=False")
    nodes, weights = _nodes(levels, extrapolate_hi=not fisher_tail)
    g_hi = float(np.exp(-levels.hi))
    return _tensor_jit(key, _as_pytree(denoiser, "denoiser"), population, x, directions,
                       jnp.asarray(nodes, x.dtype), jnp.asarray(weights, x.dtype), g_hi, n_samples=n_samples,
                       sampler=response_sampler, n_steps=n_steps, chunk=chunk, fisher_tail=fisher_tail, k=k,
                       oversample=oversample, n_iter=n_iter, with_directions=with_directions)
