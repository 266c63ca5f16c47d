"""Information from denoisers: I_local maps, Kong-2, specific surprise, population MI.

All estimators integrate over log-SNR ``a`` with a :class:`~jaxdecomp.diffusion.schedules.Levels`
quadrature (default: 48 Gauss–Legendre nodes on ``[-10, 14]`` plus tails) and Monte
Carlo over noise and responses. They are pure functions of ``(key, denoiser, ...)``,
jit-compiled, and chunked: at most ``chunk`` (stimulus, level, sample) evaluations
are in flight at once, so memory is bounded whatever the number of samples.
They are differentiable with respect to the stimulus ``x`` and the population's parameters
(``jax.grad`` of ``.total`` or of ``.map`` entries), with unbiased gradients; see "Gradients" below.

Integrals and tails (``docs/numerics.md`` §1-3). In log-SNR the I_local
integrand is ``f(a) = 1/2 E (eps_hat(x_a, a, r) - eps_hat(x_a, a))^2``. For ``a -> +inf``
``f(a) -> 1/2 e^{-a} J(x)`` (Fisher at the clean stimulus), so the tail beyond
``hi`` is ``1/2 g(hi) J(x)``, computed exactly from the population when it is known
(``fisher_correction=True``) and otherwise extrapolated as ``f(hi)``. For ``a -> -inf``,
``f(a) ~ C e^{a}`` so the tail below ``lo`` is ``f(lo)``.

Gradients (``score_gradient=True``, the default). The estimate is a Monte Carlo average of
``f(x_g, r; theta)`` over ``x_g = x + sqrt(g) eps`` (a reparametrised path: autodiff handles it)
and over a response ``r`` whose DISTRIBUTION depends on ``x`` and on the population's parameters
``theta``. Autodiff through the sample alone misses the score-function term of that distribution:
``grad E_r[f] = E_r[grad f] + E_r[(f - b) grad log p(r | .)]`` for any baseline ``b`` independent
of the draw. The estimators add, per draw, the zero-valued surrogate ``stop_gradient(f - b) * h``
where ``h`` has value 0 and gradient equal to the score, so VALUES are unchanged (bit for bit) and
``jax.grad`` returns the unbiased gradient. ``b`` is the leave-one-out mean of ``f`` (per pixel)
over the other draws at the same noise level (independent of the draw, so it adds no bias).
Responses themselves are drawn under ``stop_gradient`` (no pathwise term through ``r``).

* ``"posterior_sample"``: ``r ~ p(r | x_g) = int p(r | x') p(x' | x_g) dx'``. Score in ``x_g``
  (Rao-Blackwellised over ``x'``) by Tweedie:
  ``s = grad_{x_g} log p(r | x_g) = (xhat(x_g, r) - xhat(x_g)) / g = -(eps_c - eps_u) / sqrt(g)``;
  ``h_x = sum stop_gradient(s) * (x_g - stop_gradient(x_g))``. Score in ``theta`` from the
  joint ``(x', r)``: ``h_theta = log p(r | x'; theta) - stop_gradient(log p(r | x'; theta))``.
* ``"posterior_mean"`` / ``"clean"``: ``r ~ p(r | x_r)`` with ``x_r = xhat(x_g)`` / ``x``, a
  differentiable function of ``x``: ``h = log p(r | x_r; theta) - stop_gradient(...)``.
* Variance reduction in ``x`` (ilocal): with ``x`` entering through ``x_g = x + sqrt(g) eps`` only,
  Stein's lemma gives a second unbiased estimator that needs no derivative of ``f`` at all:
  ``grad_x E f = E[(f - b) eps] / sqrt(g)``. Its tails are lighter (``f eps`` against ``f s ~ s^3``)
  and it is the exact gradient of the estimator's own expectation even with trained networks and
  reverse-diffusion draws. The estimator returns the equal-weight average of the two (the
  blur-path gradient is scaled by 1/2 and ``1/2 stop_gradient(eps) / sqrt(g)`` joins ``h_x``); on
  the bimodal 1-D oracle it has 0.5-0.6x the variance of pathwise + score alone, 0.55-0.85x
  that of Stein alone.
  ``"clean"`` keeps the full ``x`` score of ``p(r | x)``; ``theta`` gradients are not split.
* :func:`specific_surprise`: ``r ~ p(r | x)``, ``h = log p(r | x; theta) - stop_gradient(...)``
  (pathwise + score only: its integrand depends on ``eps`` itself, so Stein's lemma does not apply).
* The Fisher tail ``1/2 g(hi) J(x; theta)`` is differentiated exactly.

Exactness. With exact denoisers (``jaxdecomp.diffusion.analytic``; ``grid_denoiser`` for any
encoder) and exact posterior draws the gradients in ``x`` and ``theta`` are unbiased for the
estimator's expectation (up to the quadrature in log-SNR). With trained networks the ``x``-gradient
is as good as the networks: the pathwise part is the network's derivative and, for
``"posterior_sample"``, the score is the networks' Tweedie estimate (the reverse-diffusion draw of
``x'`` is not differentiated); the Stein half is unbiased for the estimator's own expectation.
``theta``-gradients need the conditional denoiser as a function of ``theta``: an analytic denoiser
built from ``theta`` gives it; a trained network does not (it would have to be retrained), so with
a network only the score part of the ``theta``-gradient is returned and the result is NOT the
gradient of I_local. Gradients with respect to the PRIOR (e.g. an analytic denoiser's prior
parameters) miss the score of the posterior draw ``x'`` and are not supported.
Per-draw gradient terms are heavy-tailed (a score times the integrand), so a gradient needs more
draws than a value of the same relative precision; estimate its error from independent keys.
``score_gradient=False`` gives the old, biased gradient (pathwise only).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxdecomp._interfaces import Estimate, MapResult
from jaxdecomp.diffusion.sampling import reverse_diffusion
from jaxdecomp.diffusion.schedules import Levels, levels as make_levels, to_variance_preserving, variance_from_log_snr


RESPONSE_SAMPLERS = ("posterior_mean", "posterior_sample", "clean")


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
        host = np.asarray(x)     # checked on the host: also works for constants inside a user's jit
        if host.size == 0:
            raise ValueError(f"{name}: expected a non-empty array, got shape {host.shape}")
        if np.issubdtype(host.dtype, np.number) and not np.all(np.isfinite(host)):
            raise ValueError(f"{name}: contains NaN or infinite values")
        arr = jnp.asarray(x)
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
    """``lax.map`` over task indices, ``chunk`` at a time (vmapped inside a chunk).

    A single chunk is a plain ``vmap``: no loop. On CPU, XLA runs the reverse pass of a loop body
    with convolutions about 9x slower than the same ops outside a loop (measured: ``jax.grad`` of 36
    UNet calls, 0.95 s in a one-step ``lax.map`` against 0.10 s vmapped), so gradients gain most."""
    idx = jnp.arange(n_tasks)
    if n_tasks <= int(chunk):
        return jax.vmap(fn)(idx)
    return jax.lax.map(fn, idx, batch_size=int(chunk))


# ----------------------------------------------------------- I_local and Kong-2
def _draw_response_stimulus(key, denoiser, x, x_g, z, a, eps_u, sampler, n_steps, log_snr_end):
    """The stimulus ``x_r`` whose response is drawn. ``"posterior_sample"`` draws carry no gradient
    (their dependence on ``x_g`` enters through the Tweedie score, see the module docstring)."""
    if sampler == "clean":
        return x
    g = variance_from_log_snr(a)
    if sampler == "posterior_mean":
        return x_g - jnp.sqrt(g) * eps_u
    z = jax.lax.stop_gradient(z)
    exact = getattr(denoiser, "posterior_sample", None)
    if exact is not None:
        return jax.lax.stop_gradient(exact(key, z, a, None))
    return jax.lax.stop_gradient(reverse_diffusion(key, denoiser, z, a, None, n_steps=n_steps,
                                                   log_snr_end=log_snr_end))


_MIX = 0.5   # share of the blur-path x-gradient taken pathwise + score (the rest by Stein's lemma)


def _scale_grad(v, c):
    """Value ``v``, gradient ``c`` times that of ``v``."""
    return jax.lax.stop_gradient(v) + c * (v - jax.lax.stop_gradient(v))


def _zero_with_grad(v):
    """Value exactly 0, gradient that of ``v``."""
    return v - jax.lax.stop_gradient(v)


def _log_prob_surrogate(population, r, x):
    """``log p(r | x) - stop_gradient(log p(r | x))``: value 0, gradient the score of ``r`` in
    ``x`` and in the population's parameters (``r`` is held fixed)."""
    try:
        lp = population.log_prob(r, x)
    except (NotImplementedError, AttributeError) as err:
        raise TypeError(f"population: the score-function term of the gradient needs population.log_prob(r, x) "
                        f"({type(population).__name__} has none: {err}); pass score_gradient=False for values "
                        "and pathwise-only (biased) gradients") from err
    return jnp.where(jnp.isfinite(jax.lax.stop_gradient(lp)), _zero_with_grad(lp), 0.0)


def _with_score_terms(f, h):
    """``f + stop_gradient(f - b) * h`` with ``b`` the leave-one-out mean over draws (axis 1).

    f: (L, N, *S) integrand per level, draw and pixel; h: (L, N) zero-valued score surrogates.
    The value equals ``f``; the gradient adds ``(f - b) * grad log p(r)`` per draw and pixel.
    """
    n = f.shape[1]
    b = (jnp.sum(f, axis=1, keepdims=True) - f) / (n - 1)
    return f + jax.lax.stop_gradient(f - b) * h.reshape(h.shape + (1,) * (f.ndim - 2))


def _ilocal_one(key, denoiser, population, x, nodes, n_samples, sampler, n_steps, log_snr_end, chunk,
                score_gradient):
    """Per-node mean map (L, *S) and per-node variance of the mean total (L,) for one stimulus."""
    n_nodes = nodes.shape[0]

    def task(t):
        a = nodes[t // n_samples]
        k_eps, k_post, k_resp = jax.random.split(jax.random.fold_in(key, t), 3)
        g = variance_from_log_snr(a)
        eps = jax.random.normal(k_eps, x.shape, dtype=x.dtype)
        x_g_full = x + jnp.sqrt(g) * eps
        # same value; the x-gradient along the blur path is split: _MIX of it pathwise (+ response
        # score), 1 - _MIX by Stein's lemma on eps (module docstring)
        x_g = _scale_grad(x_g_full, _MIX) if score_gradient else x_g_full
        z = to_variance_preserving(x_g, a)
        eps_u = denoiser(z, a, None)
        x_r = _draw_response_stimulus(k_post, denoiser, x, x_g, z, a, eps_u, sampler, n_steps, log_snr_end)
        # the response is a draw: no pathwise gradient through it (its law's score enters via h)
        r = jax.lax.stop_gradient(population.sample(k_resp, jax.lax.stop_gradient(x_r)))
        eps_c = denoiser(z, a, r)
        f = 0.5 * (eps_c - eps_u) ** 2
        if not score_gradient:
            return f, jnp.zeros((), f.dtype)
        v = (1.0 - _MIX) * eps / jnp.sqrt(g)                      # Stein: grad_x E f = E[f eps] / sqrt(g)
        if sampler == "posterior_sample":
            # Tweedie: grad_{x_g} log p(r | x_g) = (xhat(x_g, r) - xhat(x_g)) / g = -(eps_c - eps_u) / sqrt(g)
            v = v - _MIX * (eps_c - eps_u) / jnp.sqrt(g)
        h = jnp.sum(jax.lax.stop_gradient(v) * _zero_with_grad(x_g_full))
        h = h + _log_prob_surrogate(population, r, x_r)
        return f, h.astype(f.dtype)

    f, h = _map_tasks(task, n_nodes * n_samples, chunk)
    f = f.reshape((n_nodes, n_samples) + x.shape)
    vals = _with_score_terms(f, h.reshape(n_nodes, n_samples)) if score_gradient else f
    totals = vals.reshape(n_nodes, n_samples, -1).sum(-1)
    return vals.mean(1), totals.var(1, ddof=1) / n_samples


@partial(jax.jit, static_argnames=("n_samples", "sampler", "n_steps", "chunk", "fisher_tail", "batched",
                                   "score_gradient"))
def _ilocal_jit(key, denoiser, population, x, nodes, weights, g_hi, *, n_samples, sampler, n_steps,
                chunk, fisher_tail, batched, score_gradient):
    log_snr_end = nodes.max() + 4.0   # reverse diffusion ends 4 log-SNR units past the finest level

    def one(k, xi):
        means, var = _ilocal_one(k, denoiser, population, xi, nodes, n_samples, sampler, n_steps,
                                 log_snr_end, chunk, score_gradient)
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
           stimulus_shape=None, score_gradient: bool = True) -> MapResult:
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
    score_gradient: add the zero-valued score-function surrogates that make ``jax.grad`` unbiased
      (values are unchanged either way; needs ``population.log_prob``). ``False``: pathwise-only
      gradient, which misses how the response distribution moves with ``x`` and ``theta`` (biased).

    Returns :class:`MapResult`: ``map`` (shape of ``x``, nats per pixel), ``total`` = I_local(x),
    ``stderr`` (Monte Carlo standard error of ``total``; the quadrature error is not included).

    Gradients: ``jax.grad`` of ``.total`` or of a ``.map`` entry with respect to ``x`` and to the
    population's parameters (the population is a pytree argument; build an analytic denoiser from
    the same parameters, e.g. :func:`jaxdecomp.diffusion.grid_denoiser`, for the conditional
    denoiser's share) is unbiased for exact denoisers; with trained networks see the module
    docstring (the score is the networks' Tweedie estimate; parameter gradients are incomplete).
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
                       n_steps=n_steps, chunk=chunk, fisher_tail=fisher_tail, batched=batched,
                       score_gradient=bool(score_gradient))


def kong2(key, denoiser, population, x, **kw) -> MapResult:
    """Kong et al.'s second pointwise measure: :func:`ilocal` with ``r ~ p(r | x)`` (not local, not additive)."""
    return ilocal(key, denoiser, population, x, response_sampler="clean", **kw)


# --------------------------------------------------------- specific surprise
@partial(jax.jit, static_argnames=("n_samples", "chunk", "batched", "score_gradient"))
def _surprise_jit(key, denoiser, population, x, nodes, weights, *, n_samples, chunk, batched, score_gradient):
    def one(k, xi):
        n_nodes = nodes.shape[0]

        def task(t):
            a = nodes[t // n_samples]
            k_eps, k_resp = jax.random.split(jax.random.fold_in(k, t))
            g = variance_from_log_snr(a)
            eps = jax.random.normal(k_eps, xi.shape, dtype=xi.dtype)
            z = to_variance_preserving(xi + jnp.sqrt(g) * eps, a)
            r = jax.lax.stop_gradient(population.sample(k_resp, jax.lax.stop_gradient(xi)))
            f = 0.5 * ((eps - denoiser(z, a, None)) ** 2 - (eps - denoiser(z, a, r)) ** 2)
            h = _log_prob_surrogate(population, r, xi) if score_gradient else jnp.zeros(())
            return f, h.astype(f.dtype)

        f, h = _map_tasks(task, n_nodes * n_samples, chunk)
        f = f.reshape((n_nodes, n_samples) + xi.shape)
        vals = _with_score_terms(f, h.reshape(n_nodes, n_samples)) if score_gradient else f
        totals = vals.reshape(n_nodes, n_samples, -1).sum(-1)
        w = weights.astype(vals.dtype)
        m = jnp.tensordot(w, vals.mean(1), axes=1)
        return MapResult(m, m.sum(), jnp.sqrt(jnp.sum(w**2 * totals.var(1, ddof=1) / n_samples)))

    if not batched:
        return one(key, x)
    keys = jax.random.split(key, x.shape[0])
    return jax.lax.map(lambda kx: one(*kx), (keys, x))


def specific_surprise(key, denoiser, population, x, *, levels: Levels | None = None, n_samples: int = 64,
                      chunk: int = 4096, stimulus_shape=None, score_gradient: bool = True) -> MapResult:
    """Specific surprise ``KL(p(r|x) || p(r))`` (= Kong-1) from denoising-error gaps, with a pixel split.

    Uses ``log p(r|x)/p(r) = 1/2 int E_eps[ ||eps - eps_hat(x_a,a)||^2 - ||eps - eps_hat(x_a,a,r)||^2 ] da``
    at the clean stimulus ``x`` and averages over ``r ~ p(r|x)`` (one response per draw).
    The pixel ``map`` splits the squared errors by pixel; it sums to ``total`` but, unlike
    I_local's, single pixels may be negative. Both tails are extrapolated (``f(lo)``, ``f(hi)``).
    Arguments as in :func:`ilocal`. Gradients in ``x`` and the population's parameters are unbiased
    with exact denoisers (score term ``grad log p(r | x; theta)`` of the response draw; see the
    module docstring).
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
                         jnp.asarray(weights, x.dtype), n_samples=n_samples, chunk=chunk, batched=batched,
                         score_gradient=bool(score_gradient))


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
    return per.mean(), per.std(ddof=1) / jnp.sqrt(n_pairs), per


def mutual_information(key, denoiser, x, r, *, levels: Levels | None = None, form: str = "orthogonal",
                       n_noise: int = 1, chunk: int = 4096, stimulus_shape=None,
                       return_pairs: bool = False) -> Estimate:
    """Population I(R;X) from paired samples ``(x_j, r_j) ~ p(x, r)`` (I-MMSE).

    form: ``"orthogonal"`` (``1/2 int E ||eps_hat(x_a,a,r) - eps_hat(x_a,a)||^2 da``, Kong et al.'s
    orthogonal estimator; never negative) or ``"gap"`` (``1/2 int E[||eps - eps_hat(x_a,a)||^2 -
    ||eps - eps_hat(x_a,a,r)||^2] da``). x: ``(N, *S)``; r: ``(N, n_neurons)``; ``N >= 2``.
    n_noise: noise draws per pair and level. Returns :class:`Estimate` (value, standard error over
    pairs); with ``return_pairs`` its ``info`` is ``{"per_pair": (N,) values}`` (their mean is
    ``value``), else ``None``. Both tails are extrapolated.
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
    value, stderr, per = _mi_jit(key, _as_pytree(denoiser, "denoiser"), x, r.astype(x.dtype), jnp.asarray(nodes, x.dtype),
                       jnp.asarray(weights, x.dtype), form=form, n_noise=n_noise, chunk=chunk)
    return Estimate(value, stderr, {"per_pair": per} if return_pairs else None)
