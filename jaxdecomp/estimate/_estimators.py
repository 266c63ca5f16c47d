"""Information from denoisers: I_local maps, Kong-2, specific surprise, population MI.

All estimators integrate over log-SNR ``a`` with a :class:`~jaxdecomp.diffusion.schedules.Levels`
quadrature (default: 48 Gauss–Legendre nodes on ``[-10, 14]`` plus tails) and Monte
Carlo over noise and responses. They are pure functions of ``(key, denoiser, ...)``,
jit-compiled, and chunked: at most ``chunk`` (stimulus, level, sample) evaluations
are in flight at once, so memory is bounded whatever the number of samples.
They are differentiable with respect to the stimulus ``x`` (``jax.grad`` of
``.total``); see the notes of :func:`ilocal` for what that gradient includes.

Integrals and tails (``../SCIENCE.md`` §2, Numerics). In log-SNR the I_local
integrand is ``f(a) = 1/2 E (eps_hat(x_a, a, r) - eps_hat(x_a, a))^2``. For ``a -> +inf``
``f(a) -> 1/2 e^{-a} J(x)`` (Fisher at the clean stimulus), so the tail beyond
``hi`` is ``1/2 g(hi) J(x)``, computed exactly from the population when it is known
(``fisher_correction=True``) and otherwise extrapolated as ``f(hi)``. For ``a -> -inf``,
``f(a) ~ C e^{a}`` so the tail below ``lo`` is ``f(lo)``.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdecomp.diffusion.sampling import reverse_diffusion
from jaxdecomp.diffusion.schedules import Levels, levels as make_levels, to_variance_preserving, variance_from_log_snr

Array = Any

RESPONSE_SAMPLERS = ("posterior_mean", "posterior_sample", "clean")


class MapResult(NamedTuple):
    """A stimulus-wise measure: ``map`` (shape of ``x``), ``total`` (its sum) and ``stderr`` of the total.

    For a batch, each field gains a leading batch axis. A pytree, so it passes through
    ``jit``/``vmap``; take ``jax.grad`` of a function returning ``result.total``.
    """

    map: Array
    total: Array
    stderr: Array


class Estimate(NamedTuple):
    """A scalar estimate (nats) with its Monte Carlo standard error."""

    value: Array
    stderr: Array


# ------------------------------------------------------------------ helpers
def _is_array_leaf(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic, float, int, bool, complex))


def _as_pytree(fn, name: str):
    """Pass pytrees of arrays (analytic denoisers, NNX modules, populations) as they are; wrap
    plain Python callables so ``jit`` treats them as static."""
    if not callable(fn) and not hasattr(fn, "sample"):
        raise TypeError(f"{name}: expected a callable, got {type(fn).__name__}")
    leaves = jax.tree_util.tree_leaves(fn)
    if leaves and all(_is_array_leaf(l) for l in leaves):
        return fn
    return jax.tree_util.Partial(fn)


def _stimulus_shape(denoiser, x, stimulus_shape):
    if stimulus_shape is not None:
        return tuple(int(s) for s in stimulus_shape)
    shape = getattr(denoiser, "shape", None)
    if isinstance(shape, tuple):
        return shape
    return tuple(jnp.shape(x))


def _check_x(x, shape, name="x"):
    """Validate stimuli; return (array, batched?)."""
    if isinstance(x, jax.core.Tracer):
        arr = x
    else:
        arr = jnp.asarray(x)
        if arr.size == 0:
            raise ValueError(f"{name}: expected a non-empty array, got shape {arr.shape}")
        if not bool(jnp.all(jnp.isfinite(arr))):
            raise ValueError(f"{name}: contains NaN or infinite values")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    if tuple(arr.shape) == shape:
        return arr, False
    if tuple(arr.shape[1:]) == shape and arr.shape[0] > 0:
        return arr, True
    raise ValueError(f"{name}: expected one stimulus of shape {shape} or a batch (B, *{shape}), got {tuple(arr.shape)}")


def _check_levels(levels) -> Levels:
    levels = make_levels() if levels is None else levels
    if not isinstance(levels, Levels):
        raise TypeError(f"levels: expected a jaxdecomp.diffusion.schedules.Levels, got {type(levels).__name__}")
    a, w = np.asarray(levels.log_snr, dtype=float), np.asarray(levels.weights, dtype=float)
    if a.ndim != 1 or a.shape != w.shape or a.size == 0:
        raise ValueError(f"levels: log_snr and weights must be equal-length 1-D arrays, got {a.shape} and {w.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(w)) and np.isfinite(levels.lo) and np.isfinite(levels.hi)):
        raise ValueError("levels: the log-SNR range and weights must be finite")
    return levels


def _check_count(name, n, minimum=1):
    if int(n) != n or int(n) < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {n}")
    return int(n)


def _nodes(levels: Levels, extrapolate_hi: bool):
    """Quadrature nodes incl. tail nodes (weight 1 each: see module docstring)."""
    a = [np.asarray(levels.log_snr, float)]
    w = [np.asarray(levels.weights, float)]
    if levels.tails:
        a.append([levels.lo])
        w.append([1.0])
        if extrapolate_hi:
            a.append([levels.hi])
            w.append([1.0])
    return np.concatenate(a), np.concatenate(w)


def _map_tasks(fn, n_tasks: int, chunk: int):
    """``lax.map`` over task indices, ``chunk`` at a time (vmapped inside a chunk)."""
    idx = jnp.arange(n_tasks)
    return jax.lax.map(fn, idx, batch_size=min(int(chunk), n_tasks))


# ----------------------------------------------------------- I_local and Kong-2
def _draw_response_stimulus(key, denoiser, x, x_g, z, a, eps_u, sampler, n_steps, log_snr_end):
    if sampler == "clean":
        return x
    g = variance_from_log_snr(a)
    if sampler == "posterior_mean":
        return x_g - jnp.sqrt(g) * eps_u
    exact = getattr(denoiser, "posterior_sample", None)
    if exact is not None:
        return exact(key, z, a, None)
    return reverse_diffusion(key, denoiser, z, a, None, n_steps=n_steps, log_snr_end=log_snr_end)


def _ilocal_one(key, denoiser, population, x, nodes, n_samples, sampler, n_steps, log_snr_end, chunk):
    """Per-node mean map (L, *S) and per-node variance of the mean total (L,) for one stimulus."""
    n_nodes = nodes.shape[0]

    def task(t):
        a = nodes[t // n_samples]
        k_eps, k_post, k_resp = jax.random.split(jax.random.fold_in(key, t), 3)
        g = variance_from_log_snr(a)
        eps = jax.random.normal(k_eps, x.shape, dtype=x.dtype)
        x_g = x + jnp.sqrt(g) * eps
        z = to_variance_preserving(x_g, a)
        eps_u = denoiser(z, a, None)
        x_r = _draw_response_stimulus(k_post, denoiser, x, x_g, z, a, eps_u, sampler, n_steps, log_snr_end)
        r = population.sample(k_resp, jax.lax.stop_gradient(x_r))
        eps_c = denoiser(z, a, r)
        return 0.5 * (eps_c - eps_u) ** 2

    vals = _map_tasks(task, n_nodes * n_samples, chunk).reshape((n_nodes, n_samples) + x.shape)
    totals = vals.reshape(n_nodes, n_samples, -1).sum(-1)
    return vals.mean(1), totals.var(1, ddof=1) / n_samples


@partial(jax.jit, static_argnames=("n_samples", "sampler", "n_steps", "chunk", "fisher_tail", "batched"))
def _ilocal_jit(key, denoiser, population, x, nodes, weights, g_hi, *, n_samples, sampler, n_steps,
                chunk, fisher_tail, batched):
    log_snr_end = nodes.max() + 4.0   # reverse diffusion ends 4 log-SNR units past the finest level

    def one(k, xi):
        means, var = _ilocal_one(k, denoiser, population, xi, nodes, n_samples, sampler, n_steps,
                                 log_snr_end, chunk)
        w = weights.astype(means.dtype)
        m = jnp.tensordot(w, means, axes=1)
        if fisher_tail:
            m = m + 0.5 * g_hi * population.fisher_diag(xi).reshape(xi.shape)
        return MapResult(m, m.sum(), jnp.sqrt(jnp.sum(w**2 * var)))

    if not batched:
        return one(key, x)
    keys = jax.random.split(key, x.shape[0])
    return jax.lax.map(lambda kx: one(*kx), (keys, x))


def ilocal(key, denoiser, population, x, *, response_sampler: str = "posterior_sample", levels: Levels | None = None,
           n_samples: int = 64, n_steps: int = 32, fisher_correction: bool = True, chunk: int = 4096,
           stimulus_shape=None) -> MapResult:
    """I_local pixel map of one stimulus or a batch: ``I_i(x) = 1/2 int E (eps_hat_i(x_a,a,r) - eps_hat_i(x_a,a))^2 da``.

    key: PRNG key. denoiser: ``eps_hat = denoiser(x_noisy, log_snr, r)`` (VP input, ``r=None``
    unconditional; an analytic oracle from :mod:`jaxdecomp.diffusion.analytic`, a network
    from :mod:`jaxdecomp.diffusion.networks`, or any such function). population: the encoder
    ``p(r|x)`` (``sample``; ``fisher_diag`` for the small-noise correction).
    x: one stimulus (shape ``S`` = ``denoiser.shape`` or ``stimulus_shape``) or a batch ``(B, *S)``.

    response_sampler: how ``r ~ p(r | x_g)`` is drawn at each noise level
      * ``"posterior_sample"`` (default): ``x' ~ p(x | x_g)`` then ``r ~ p(r | x')``; exact when the
        denoiser has an exact ``posterior_sample`` (analytic priors), else ``n_steps`` steps of
        second-order reverse diffusion (:func:`jaxdecomp.diffusion.reverse_diffusion`).
      * ``"posterior_mean"`` (the paper's): ``r ~ p(r | E[x | x_g])``, no extra call; an
        approximation that can be strongly biased (-65% on the d=4 Gaussian-mixture case of
        ``experiments/sampler_bias.py``).
      * ``"clean"``: ``r ~ p(r | x)``; this is Kong et al.'s second measure (Kong-2), not I_local.
    levels: log-SNR quadrature. The paper's protocol is ``levels=schedules.levels("paper"),
      response_sampler="posterior_mean", n_samples=50`` (24 DDPM timesteps, trapezoid in log-SNR).
    n_samples: ``(x_g, r)`` draws per level (the paper: 50). fisher_correction: add the exact
    small-noise tail ``1/2 g(hi) J_ii(x)`` from the population's Fisher diagonal (else extrapolate).
    chunk: evaluations in flight at once (memory bound).

    Returns :class:`MapResult`: ``map`` (shape of ``x``, nats per pixel), ``total`` = I_local(x),
    ``stderr`` (Monte Carlo standard error of ``total``; the quadrature error is not included).

    Gradients: ``jax.grad`` w.r.t. ``x`` differentiates the noise path ``x_g = x + sqrt(g) eps`` and the
    denoisers; responses are drawn with ``stop_gradient`` on the stimulus they come from, so the
    score-function term of sampled (e.g. Poisson) responses is not included here.
    """
    if response_sampler not in RESPONSE_SAMPLERS:
        raise ValueError(f"response_sampler: expected one of {RESPONSE_SAMPLERS}, got {response_sampler!r}")
    if not hasattr(population, "sample"):
        raise TypeError(f"population: expected a jaxdecomp.neurons population (with .sample), got {type(population).__name__}")
    n_samples = _check_count("n_samples", n_samples, 2)
    n_steps = _check_count("n_steps", n_steps)
    chunk = _check_count("chunk", chunk)
    levels = _check_levels(levels)
    shape = _stimulus_shape(denoiser, x, stimulus_shape)
    x, batched = _check_x(x, shape)
    fisher_tail = bool(levels.tails and fisher_correction)
    if fisher_tail and not hasattr(population, "fisher_diag"):
        raise TypeError("population: fisher_correction=True needs population.fisher_diag; pass fisher_correction=False")
    nodes, weights = _nodes(levels, extrapolate_hi=not fisher_tail)
    g_hi = float(np.exp(-levels.hi))
    return _ilocal_jit(key, _as_pytree(denoiser, "denoiser"), population, x, jnp.asarray(nodes, x.dtype),
                       jnp.asarray(weights, x.dtype), g_hi, n_samples=n_samples, sampler=response_sampler,
                       n_steps=n_steps, chunk=chunk, fisher_tail=fisher_tail, batched=batched)


def kong2(key, denoiser, population, x, **kw) -> MapResult:
    """Kong et al.'s second pointwise measure: :func:`ilocal` with ``r ~ p(r | x)`` (not local, not additive)."""
    return ilocal(key, denoiser, population, x, response_sampler="clean", **kw)


# --------------------------------------------------------- specific surprise
@partial(jax.jit, static_argnames=("n_samples", "chunk", "batched"))
def _surprise_jit(key, denoiser, population, x, nodes, weights, *, n_samples, chunk, batched):
    def one(k, xi):
        n_nodes = nodes.shape[0]

        def task(t):
            a = nodes[t // n_samples]
            k_eps, k_resp = jax.random.split(jax.random.fold_in(k, t))
            g = variance_from_log_snr(a)
            eps = jax.random.normal(k_eps, xi.shape, dtype=xi.dtype)
            z = to_variance_preserving(xi + jnp.sqrt(g) * eps, a)
            r = population.sample(k_resp, jax.lax.stop_gradient(xi))
            return 0.5 * ((eps - denoiser(z, a, None)) ** 2 - (eps - denoiser(z, a, r)) ** 2)

        vals = _map_tasks(task, n_nodes * n_samples, chunk).reshape((n_nodes, n_samples) + xi.shape)
        totals = vals.reshape(n_nodes, n_samples, -1).sum(-1)
        w = weights.astype(vals.dtype)
        m = jnp.tensordot(w, vals.mean(1), axes=1)
        return MapResult(m, m.sum(), jnp.sqrt(jnp.sum(w**2 * totals.var(1, ddof=1) / n_samples)))

    if not batched:
        return one(key, x)
    keys = jax.random.split(key, x.shape[0])
    return jax.lax.map(lambda kx: one(*kx), (keys, x))


def specific_surprise(key, denoiser, population, x, *, levels: Levels | None = None, n_samples: int = 64,
                      chunk: int = 4096, stimulus_shape=None) -> MapResult:
    """Specific surprise ``KL(p(r|x) || p(r))`` (= Kong-1) from denoising-error gaps, with a pixel split.

    Uses ``log p(r|x)/p(r) = 1/2 int E_eps[ ||eps - eps_hat(x_a,a)||^2 - ||eps - eps_hat(x_a,a,r)||^2 ] da``
    at the clean stimulus ``x`` and averages over ``r ~ p(r|x)`` (one response per draw).
    The pixel ``map`` splits the squared errors by pixel; it sums to ``total`` but, unlike
    I_local's, single pixels may be negative. Both tails are extrapolated (``f(lo)``, ``f(hi)``).
    Arguments as in :func:`ilocal`.
    """
    if not hasattr(population, "sample"):
        raise TypeError(f"population: expected a jaxdecomp.neurons population, got {type(population).__name__}")
    n_samples = _check_count("n_samples", n_samples, 2)
    chunk = _check_count("chunk", chunk)
    levels = _check_levels(levels)
    shape = _stimulus_shape(denoiser, x, stimulus_shape)
    x, batched = _check_x(x, shape)
    nodes, weights = _nodes(levels, extrapolate_hi=True)
    return _surprise_jit(key, _as_pytree(denoiser, "denoiser"), population, x, jnp.asarray(nodes, x.dtype),
                         jnp.asarray(weights, x.dtype), n_samples=n_samples, chunk=chunk, batched=batched)


# ------------------------------------------------------ population MI (pairs)
@partial(jax.jit, static_argnames=("form", "n_noise", "chunk"))
def _mi_jit(key, denoiser, x, r, nodes, weights, *, form, n_noise, chunk):
    n_pairs, n_nodes = x.shape[0], nodes.shape[0]
    per_pair = n_nodes * n_noise

    def task(t):
        j, l = t // per_pair, (t % per_pair) // n_noise
        xj, rj, a = x[j], r[j], nodes[l]
        eps = jax.random.normal(jax.random.fold_in(key, t), xj.shape, dtype=xj.dtype)
        z = to_variance_preserving(xj + jnp.sqrt(variance_from_log_snr(a)) * eps, a)
        eu, ec = denoiser(z, a, None), denoiser(z, a, rj)
        if form == "orthogonal":
            return 0.5 * jnp.sum((ec - eu) ** 2)
        return 0.5 * (jnp.sum((eps - eu) ** 2) - jnp.sum((eps - ec) ** 2))

    vals = _map_tasks(task, n_pairs * per_pair, chunk).reshape(n_pairs, n_nodes, n_noise).mean(-1)
    per = vals @ weights.astype(vals.dtype)
    return Estimate(per.mean(), per.std(ddof=1) / jnp.sqrt(n_pairs)), per


def mutual_information(key, denoiser, x, r, *, levels: Levels | None = None, form: str = "orthogonal",
                       n_noise: int = 1, chunk: int = 4096, stimulus_shape=None,
                       return_pairs: bool = False):
    """Population I(R;X) from paired samples ``(x_j, r_j) ~ p(x, r)`` (I-MMSE).

    form: ``"orthogonal"`` (``1/2 int E ||eps_hat(x_a,a,r) - eps_hat(x_a,a)||^2 da``, Kong et al.'s
    orthogonal estimator; never negative) or ``"gap"`` (``1/2 int E[||eps - eps_hat(x_a,a)||^2 -
    ||eps - eps_hat(x_a,a,r)||^2] da``). x: ``(N, *S)``; r: ``(N, n_neurons)``; ``N >= 2``.
    n_noise: noise draws per pair and level. Returns :class:`Estimate` (value, standard error over
    pairs), and also the per-pair values ``(N,)`` if ``return_pairs``. Both tails are extrapolated.
    """
    if form not in ("orthogonal", "gap"):
        raise ValueError(f"form: expected 'orthogonal' or 'gap', got {form!r}")
    n_noise = _check_count("n_noise", n_noise)
    chunk = _check_count("chunk", chunk)
    levels = _check_levels(levels)
    x_arr = jnp.asarray(x)
    shape = _stimulus_shape(denoiser, x_arr[0] if x_arr.ndim else x_arr, stimulus_shape)
    x, batched = _check_x(x, shape)
    if not batched:
        raise ValueError(f"x: expected a batch of paired stimuli (N, *{shape}), got {tuple(x.shape)}")
    r = jnp.asarray(r)
    if r.ndim != 2:
        raise ValueError(f"r: expected responses of shape (N, n_neurons), got {tuple(r.shape)}")
    if r.shape[0] != x.shape[0]:
        raise ValueError(f"x and r: must hold the same number of pairs, got {x.shape[0]} stimuli and {r.shape[0]} responses")
    if not bool(jnp.all(jnp.isfinite(r))):
        raise ValueError("r: contains NaN or infinite values")
    if x.shape[0] < 2:
        raise ValueError(f"x: need at least 2 pairs for a standard error, got {x.shape[0]}")
    nodes, weights = _nodes(levels, extrapolate_hi=True)
    est, per = _mi_jit(key, _as_pytree(denoiser, "denoiser"), x, r.astype(x.dtype), jnp.asarray(nodes, x.dtype),
                       jnp.asarray(weights, x.dtype), form=form, n_noise=n_noise, chunk=chunk)
    return (est, per) if return_pairs else est
