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
``f(a) -> 1/2 g J (I + g J)^{-1}`` (a Gaussian channel with the Fisher information ``J = J(x)`` at
the clean stimulus), so the tail beyond ``hi`` is ``1/2 diag log(I + g(hi) J)``
(:func:`small_noise_tail`; ``1/2 g(hi) J_ii`` when ``g(hi) J << 1``, and right also when
``g(hi) J >> 1``), computed from the population when it is known (``fisher_correction=True``; for
:func:`mutual_information` pass ``population=``) and otherwise extrapolated as ``f(hi)``. For
``a -> -inf``, ``f(a) ~ C e^{a}`` so the tail below ``lo`` is ``f(lo)``.

Validation: keys (one PRNG key), levels (:func:`jaxdecomp.diffusion.schedules.check_levels`),
stimuli and responses (numeric, finite, non-empty) are checked before tracing; an analytic
denoiser's own population must match the ``population`` given (its ``A`` / ``sigma``, or the grid
denoiser's encoder), else a ValueError names ``population``.

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
* The Fisher tail ``1/2 diag log(I + g(hi) J(x; theta))`` is differentiated exactly.

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

import warnings
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdecomp import _parallel
from jaxdecomp._checks import check_key
from jaxdecomp._interfaces import Estimate, MapResult, as_pytree_callable
from jaxdecomp.diffusion.sampling import reverse_diffusion
from jaxdecomp.diffusion.schedules import Levels, check_levels, levels as make_levels, to_variance_preserving, variance_from_log_snr


RESPONSE_SAMPLERS = ("posterior_mean", "posterior_sample", "clean")


# ------------------------------------------------------------------ helpers
def _as_pytree(fn, name: str):
    """Pass pytrees of arrays (analytic denoisers, NNX modules, populations) as they are; wrap
    plain Python callables so ``jit`` treats them as static, their attributes (``posterior_sample``,
    ``shape``) still visible (:func:`jaxdecomp._interfaces.as_pytree_callable`)."""
    if not callable(fn) and not hasattr(fn, "sample"):
        raise TypeError(f"{name}: expected a callable, got {type(fn).__name__}")
    return as_pytree_callable(fn)


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
        try:
            host = np.asarray(x)     # checked on the host: also works for constants inside a user's jit
        except Exception as err:  # noqa: BLE001  (ragged lists and the like)
            raise TypeError(f"{name}: expected a numeric array, got {type(x).__name__}") from err
        if not (np.issubdtype(host.dtype, np.number) or host.dtype == np.bool_):
            raise TypeError(f"{name}: expected a numeric array, got dtype {host.dtype} ({type(x).__name__})")
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


def _check_population(population, name="population"):
    if not (callable(getattr(population, "sample", None)) and callable(getattr(population, "rate", None))):
        raise TypeError(f"{name}: expected a jaxdecomp.neurons population (with .rate and .sample), "
                        f"got {type(population).__name__}")


def _all_concrete(tree) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def _close(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-30)
    return bool(np.all(np.abs(a - b) <= 1e-5 * np.abs(b) + 1e-6 * scale))


def _check_population_matches(population, denoiser):
    """An analytic denoiser is exact for ONE population (the one it was built with): check that the
    population handed to the estimator is that one (neuron count always; values when concrete).

    * :class:`~jaxdecomp.diffusion.analytic.GaussianMixtureDenoiser` with ``A``: the population must
      be linear-Gaussian ``r = A x + b + sigma n`` with the denoiser's ``A``, ``b = 0`` and ``sigma``.
    * :class:`~jaxdecomp.diffusion.analytic.GridDenoiser` with an encoder: the same pytree structure
      and parameter values.
    * Any other denoiser with a ``check_population(population)`` method (e.g. the zero-shot
      denoiser of :mod:`jaxdecomp.diffusion.zeroshot`) checks it itself.
    Other denoisers (networks, user functions) carry no population: nothing is checked.
    """
    from jaxdecomp.diffusion.analytic import GaussianMixtureDenoiser, GridDenoiser

    if isinstance(denoiser, GaussianMixtureDenoiser):
        n_own = denoiser.n_neurons
        if n_own == 0:
            return
        x0 = jax.ShapeDtypeStruct(tuple(denoiser.shape), jnp.result_type(float))
        try:
            n = int(jax.eval_shape(population.rate, x0).shape[0])
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"population: cannot evaluate its rates on a stimulus of the denoiser's shape "
                             f"{tuple(denoiser.shape)}: {err}") from err
        if n != n_own:
            raise ValueError(f"population: has {n} neurons but the denoiser was built for a population of "
                             f"{n_own} neurons (A of shape {tuple(denoiser.A.shape)}); use denoiser.population")
        rates = getattr(population, "rates", None)
        A = getattr(rates, "A", None)
        b = getattr(rates, "b", None)
        sigma = getattr(population, "sigma", None)
        if A is None or b is None or sigma is None:
            raise ValueError(
                f"population: the Gaussian-mixture denoiser is exact for the linear-Gaussian population "
                f"r = A x + sigma * noise it was built with (denoiser.population), got a "
                f"{type(population).__name__} with rates {type(rates).__name__}")
        if not _all_concrete((A, b, sigma, denoiser.A, denoiser.noise_sd)):
            return
        A_pop = np.asarray(A, dtype=np.float64).reshape(n, -1)
        sd = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (n,))
        bad = [name for name, ok in (("A", _close(A_pop, denoiser.A)),
                                     ("b", _close(np.asarray(b).reshape(-1), np.zeros(n))),
                                     ("sigma", _close(sd, denoiser.noise_sd))) if not ok]
        if bad:
            raise ValueError(
                f"population: differs from the population the denoiser was built with (its {', '.join(bad)} "
                f"differ: the denoiser's conditional posterior would be that of another encoder, and I_local "
                f"silently wrong); pass denoiser.population, or build the denoiser from this population's "
                f"A and sigma")
    elif isinstance(denoiser, GridDenoiser) and denoiser.encoder is not None:
        own = denoiser.encoder
        if own is population:
            return
        s1, s2 = jax.tree_util.tree_structure(population), jax.tree_util.tree_structure(own)
        if s1 != s2:
            raise ValueError(f"population: differs from the encoder the grid denoiser was built with "
                             f"({type(population).__name__} against {type(own).__name__}); pass denoiser.encoder")
        l1, l2 = jax.tree_util.tree_leaves(population), jax.tree_util.tree_leaves(own)
        if _all_concrete((l1, l2)) and not all(_close(a, b) for a, b in zip(l1, l2)):
            raise ValueError("population: its parameters differ from those of the encoder the grid denoiser was "
                             "built with; pass denoiser.encoder (or build the denoiser from this population)")
    elif callable(getattr(denoiser, "check_population", None)):
        denoiser.check_population(population)


def _own_population(denoiser):
    """The population an analytic Gaussian-mixture denoiser was built with, else None."""
    from jaxdecomp.diffusion.analytic import GaussianMixtureDenoiser

    if isinstance(denoiser, GaussianMixtureDenoiser) and denoiser.n_neurons > 0:
        return denoiser.population
    return None


def _check_levels(levels) -> Levels:
    return check_levels(make_levels() if levels is None else levels)


def _check_count(name, n, minimum=1):
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected an integer >= {minimum}, got {type(n).__name__} {n!r}")
    if not np.isfinite(n) or int(n) != n or int(n) < minimum:
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


# ------------------------------------------------------ small-noise tail
def _phi(lam, g):
    """``log1p(g lam) / lam`` (-> ``g`` as ``lam -> 0``), elementwise, for ``lam >= 0``."""
    u = g * lam
    small = u < 1e-4
    safe = jnp.where(small, 1.0, lam)
    return jnp.where(small, g * (1.0 - u / 2.0 + u * u / 3.0), jnp.log1p(u) / safe)


def _dphi(lam, g):
    """Derivative of :func:`_phi` in ``lam``."""
    u = g * lam
    small = u < 1e-3
    safe = jnp.where(small, 1.0, lam)
    return jnp.where(small, g * g * (-0.5 + 2.0 * u / 3.0 - 0.75 * u * u),
                     (g / (1.0 + u) - jnp.log1p(u) / safe) / safe)


@jax.custom_jvp
def _spectral_phi(M, g):
    """``Phi(M) = M^{-1} log(I + g M)`` for a symmetric PSD matrix ``M`` (a spectral function).

    The custom JVP is the Daleckii-Krein formula, finite at repeated eigenvalues (autodiff
    through ``eigh`` would give NaN there)."""
    lam, U = jnp.linalg.eigh(M)
    lam = jnp.maximum(lam, 0.0)
    return (U * _phi(lam, g)[None, :]) @ U.T


@_spectral_phi.defjvp
def _spectral_phi_jvp(primals, tangents):
    (M, g), (dM, dg) = primals, tangents
    lam, U = jnp.linalg.eigh(M)
    lam = jnp.maximum(lam, 0.0)
    f = _phi(lam, g)
    diff = lam[:, None] - lam[None, :]
    close = jnp.abs(diff) <= 1e-6 * (1.0 + jnp.abs(lam[:, None]) + jnp.abs(lam[None, :]))
    mid = 0.5 * (lam[:, None] + lam[None, :])
    F = jnp.where(close, _dphi(mid, g), (f[:, None] - f[None, :]) / jnp.where(close, 1.0, diff))
    dM = 0.5 * (dM + dM.T)
    d_g = (U * (1.0 / (1.0 + g * lam))[None, :]) @ U.T * dg       # d Phi / d g = (I + g M)^{-1}
    return (U * f[None, :]) @ U.T, U @ (F * (U.T @ dM @ U)) @ U.T + d_g


def _has_method(population, name) -> bool:
    """Whether ``population.name`` is implemented (not the abstract default that raises)."""
    from jaxdecomp._interfaces import Encoder

    method = getattr(type(population), name, None)
    return method is not None and method is not getattr(Encoder, name, None)


def small_noise_tail(population, x, g_hi):
    """The small-noise end of the I_local integral, per pixel: ``1/2 diag log(I + g_hi J(x))``.

    Beyond the finest level (noise variance ``g <= g_hi``) the prior is flat on the scale of the
    blur, ``p(x' | x_g) ~ N(x_g, g I)``, and the likelihood is locally Gaussian with precision
    ``J = J(x)`` (the Fisher information at the clean stimulus). ``p(r | x_g)`` is then a Gaussian
    channel whose Fisher information about ``x_g`` is ``J (I + g J)^{-1}``, and
    ``1/2 int_0^{g_hi} J (I + g J)^{-1} dg = 1/2 log(I + g_hi J)`` (a matrix; its diagonal is the pixel
    split, its trace ``1/2 log det(I + g_hi J)``). Exact for a Gaussian prior of covariance ``S`` with a
    linear-Gaussian population up to ``O(g_hi / S)``; when ``g_hi J << 1`` it is the familiar
    ``1/2 g_hi J_ii`` (the two differ by a relative ``g_hi J / 2``), and unlike it it stays right when
    ``g_hi J >> 1`` (a very informative population: ``1/2 g J`` would grow without bound).

    Computed from the rate Jacobian when the population declares ``fisher_weights`` (``J = K^T K``
    with ``K = sqrt(w) df/dx``; one eigendecomposition of the smaller of ``K K^T`` (n x n) and
    ``J`` (d x d)), else from ``population.fisher(x)`` (d x d), else from ``fisher_diag`` alone as
    ``1/2 log(1 + g_hi J_ii)`` (exact for a diagonal Fisher matrix, e.g. a scalar stimulus).
    Differentiable (the eigendecomposition has a custom JVP). Returns the shape of ``x``.
    """
    x = jnp.asarray(x)
    dt = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.result_type(float)
    x = x.astype(dt)
    d = x.size
    g = jnp.asarray(g_hi, dt)
    if _has_method(population, "fisher_weights"):
        f = population.rate(x)
        n = f.shape[0]
        jac_fn = jax.jacrev if n < d else jax.jacfwd
        jac = jac_fn(population.rate)(x).reshape(n, d)
        K = jnp.sqrt(jnp.maximum(population.fisher_weights(f), 0.0))[:, None] * jac
        if n <= d:
            P = _spectral_phi(K @ K.T, g)                     # (n, n)
            diag = jnp.sum(K * (P @ K), axis=0)               # diag(K^T Phi(K K^T) K)
        else:
            J = K.T @ K
            diag = jnp.sum(J * _spectral_phi(J, g), axis=0)   # diag(J Phi(J)) = diag log(I + g J)
        return (0.5 * diag).reshape(x.shape)
    if d == 1 or not _has_full_fisher(population, x):
        return 0.5 * jnp.log1p(g * jnp.maximum(population.fisher_diag(x), 0.0)).reshape(x.shape)
    J = jnp.reshape(population.fisher(x), (d, d))
    J = 0.5 * (J + J.T)
    return (0.5 * jnp.sum(J * _spectral_phi(J, g), axis=0)).reshape(x.shape)


def _has_full_fisher(population, x) -> bool:
    try:
        jax.eval_shape(population.fisher, x)
    except NotImplementedError:
        return False
    return True


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


def _conditional_pair(denoiser, z, a, r, eps_u=None):
    """``(eps_c, eps_c2)``: two conditionally independent estimates of the conditional output when the
    denoiser is itself a Monte Carlo estimate with a ``conditional_pair`` method (the zero-shot
    denoiser), so that squares are taken as products of independent estimates (unbiased for the
    square of the mean); otherwise the one output twice. ``eps_u``: the unconditional output at
    ``(z, a)`` when the caller has it (the zero-shot denoiser then skips its own prior call)."""
    pair = getattr(denoiser, "conditional_pair", None)
    if pair is not None:
        return pair(z, a, r, eps_u=eps_u)
    ec = denoiser(z, a, r)
    return ec, ec


def _draw(key, t, denoiser, population, x, nodes, n_samples, sampler, n_steps, log_snr_end, mix_grad):
    """Draw ``t`` of the I_local estimator (shared by ``ilocal``/``kong2`` and ``ilocal_tensor``, so
    both see the same draws for the same key): level ``a = nodes[t // n_samples]``, blur noise
    ``eps``, the blurred stimulus, the stimulus ``x_r`` the response is drawn at, the response ``r``
    and both denoiser outputs. ``mix_grad``: split the x-gradient along the blur path (score
    gradients, module docstring); the value is the same either way.
    Returns ``(a, g, eps, x_g_full, x_r, r, eps_u, eps_c, eps_c2)``; ``eps_c2`` is an independent
    second estimate of ``eps_c`` for Monte Carlo denoisers (:func:`_conditional_pair`), else ``eps_c``."""
    a = nodes[t // n_samples]
    k_eps, k_post, k_resp = jax.random.split(jax.random.fold_in(key, t), 3)
    g = variance_from_log_snr(a)
    eps = jax.random.normal(k_eps, x.shape, dtype=x.dtype)
    x_g_full = x + jnp.sqrt(g) * eps
    # same value; the x-gradient along the blur path is split: _MIX of it pathwise (+ response
    # score), 1 - _MIX by Stein's lemma on eps (module docstring)
    x_g = _scale_grad(x_g_full, _MIX) if mix_grad else x_g_full
    z = to_variance_preserving(x_g, a)
    eps_u = denoiser(z, a, None)
    x_r = _draw_response_stimulus(k_post, denoiser, x, x_g, z, a, eps_u, sampler, n_steps, log_snr_end)
    # the response is a draw: no pathwise gradient through it (its law's score enters via h)
    r = jax.lax.stop_gradient(population.sample(k_resp, jax.lax.stop_gradient(x_r)))
    eps_c, eps_c2 = _conditional_pair(denoiser, z, a, r, eps_u)
    return a, g, eps, x_g_full, x_r, r, eps_u, eps_c, eps_c2


def _ilocal_one(key, denoiser, population, x, nodes, n_samples, sampler, n_steps, log_snr_end, chunk,
                score_gradient):
    """Per-node mean map (L, *S) and per-node variance of the mean total (L,) for one stimulus."""
    n_nodes = nodes.shape[0]

    def task(t):
        a, g, eps, x_g_full, x_r, r, eps_u, eps_c, eps_c2 = _draw(key, t, denoiser, population, x, nodes,
                                                                  n_samples, sampler, n_steps, log_snr_end,
                                                                  score_gradient)
        f = 0.5 * (eps_c - eps_u) * (eps_c2 - eps_u)
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
    pixel_var = jax.lax.stop_gradient(vals.var(1, ddof=1) / n_samples)
    return vals.mean(1), totals.var(1, ddof=1) / n_samples, pixel_var


@partial(jax.jit, static_argnames=("n_samples", "sampler", "n_steps", "chunk", "fisher_tail", "batched",
                                   "score_gradient", "pixel_se"))
def _ilocal_jit(key, denoiser, population, x, nodes, weights, g_hi, *, n_samples, sampler, n_steps,
                chunk, fisher_tail, batched, score_gradient, pixel_se=False):
    """:class:`MapResult` (batched: stacked); with ``pixel_se`` a pair ``(MapResult, per-pixel standard
    error of the map)`` (per level the variance of the mean over draws, combined with the squared
    quadrature weights; the quadrature error is not included)."""
    log_snr_end = nodes.max() + 4.0   # reverse diffusion ends 4 log-SNR units past the finest level

    def one(k, xi):
        means, var, pvar = _ilocal_one(k, denoiser, population, xi, nodes, n_samples, sampler, n_steps,
                                       log_snr_end, chunk, score_gradient)
        w = weights.astype(means.dtype)
        m = jnp.tensordot(w, means, axes=1)
        if fisher_tail:
            m = m + small_noise_tail(population, xi, g_hi).astype(m.dtype)
        res = MapResult(m, m.sum(), jnp.sqrt(jnp.sum(w**2 * var)))
        return (res, jnp.sqrt(jnp.tensordot(w**2, pvar, axes=1))) if pixel_se else res

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
    n_samples: ``(x_g, r)`` draws per level (the paper: 50). fisher_correction: add the
    small-noise tail ``1/2 diag log(I + g(hi) J(x))`` from the population's Fisher information
    (:func:`small_noise_tail`; else extrapolate ``f(hi)``).
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
    s = _ilocal_setup(key, denoiser, population, x, response_sampler=response_sampler, levels=levels,
                      n_samples=n_samples, n_steps=n_steps, chunk=chunk, stimulus_shape=stimulus_shape,
                      fisher_correction=fisher_correction)
    return _ilocal_jit(s.key, s.denoiser, population, s.x, s.nodes, s.weights, s.g_hi, n_samples=s.n_samples,
                       sampler=response_sampler, n_steps=s.n_steps, chunk=s.chunk, fisher_tail=s.fisher_tail,
                       batched=s.batched, score_gradient=bool(score_gradient))


class _Setup(NamedTuple):
    key: Any
    denoiser: Any
    x: Any
    batched: bool
    nodes: Any
    weights: Any
    g_hi: float
    fisher_tail: bool
    n_samples: int
    n_steps: int
    chunk: int


def _ilocal_setup(key, denoiser, population, x, *, response_sampler, levels, n_samples, n_steps, chunk,
                  stimulus_shape, fisher_correction) -> _Setup:
    """Checks and quadrature of :func:`ilocal` (shared with ``pixel_maps``): every argument checked with
    its name, the nodes and weights (Fisher tail above the top level when the population has one)."""
    if response_sampler not in RESPONSE_SAMPLERS:
        raise ValueError(f"response_sampler: expected one of {RESPONSE_SAMPLERS}, got {response_sampler!r}")
    _check_population(population)
    key = check_key(key)
    n_samples = _check_count("n_samples", n_samples, 2)
    n_steps = _check_count("n_steps", n_steps)
    chunk = _check_count("chunk", chunk)
    levels = _check_levels(levels)
    shape = _stimulus_shape(denoiser, x, stimulus_shape)
    x, batched = _check_x(x, shape)
    _check_population_matches(population, denoiser)
    fisher_tail = bool(levels.tails and fisher_correction)
    if fisher_tail and not hasattr(population, "fisher_diag"):
        raise TypeError("population: fisher_correction=True needs population.fisher_diag; pass fisher_correction=False")
    nodes, weights = _nodes(levels, extrapolate_hi=not fisher_tail)
    return _Setup(key, _as_pytree(denoiser, "denoiser"), x, batched, jnp.asarray(nodes, x.dtype),
                  jnp.asarray(weights, x.dtype), float(np.exp(-levels.hi)), fisher_tail, n_samples, n_steps, chunk)


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
            eu = denoiser(z, a, None)
            ec, ec2 = _conditional_pair(denoiser, z, a, r, eu)
            f = 0.5 * ((eps - eu) ** 2 - (eps - ec) * (eps - ec2))
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
    _check_population(population)
    key = check_key(key)
    n_samples = _check_count("n_samples", n_samples, 2)
    chunk = _check_count("chunk", chunk)
    levels = _check_levels(levels)
    shape = _stimulus_shape(denoiser, x, stimulus_shape)
    x, batched = _check_x(x, shape)
    _check_population_matches(population, denoiser)
    nodes, weights = _nodes(levels, extrapolate_hi=True)
    return _surprise_jit(key, _as_pytree(denoiser, "denoiser"), population, x, jnp.asarray(nodes, x.dtype),
                         jnp.asarray(weights, x.dtype), n_samples=n_samples, chunk=chunk, batched=batched,
                         score_gradient=bool(score_gradient))


# ------------------------------------------------------ population MI (pairs)
@partial(jax.jit, static_argnames=("form", "n_noise", "chunk"))
def _mi_jit(key, denoiser, x, r, nodes, first=0, *, form, n_noise, chunk):
    """Per pair and node, the integrand averaged over ``n_noise`` draws: (N, L). ``first``: the index of
    ``x[0]`` among all pairs (a shard of them keeps the noise draws it has in the whole batch)."""
    n_pairs, n_nodes = x.shape[0], nodes.shape[0]
    per_pair = n_nodes * n_noise

    def task(t):
        j, l = t // per_pair, (t % per_pair) // n_noise
        xj, rj, a = x[j], r[j], nodes[l]
        eps = jax.random.normal(jax.random.fold_in(key, t + first * per_pair), xj.shape, dtype=xj.dtype)
        z = to_variance_preserving(xj + jnp.sqrt(variance_from_log_snr(a)) * eps, a)
        eu = denoiser(z, a, None)
        ec, ec2 = _conditional_pair(denoiser, z, a, rj, eu)
        orth = 0.5 * jnp.sum((ec - eu) * (ec2 - eu))
        gap = 0.5 * (jnp.sum((eps - eu) ** 2) - jnp.sum((eps - ec) * (eps - ec2)))
        return {"orthogonal": orth, "gap": gap, "both": jnp.stack([orth, gap])}[form]

    vals = _map_tasks(task, n_pairs * per_pair, chunk)
    return vals.reshape(n_pairs, n_nodes, n_noise, *vals.shape[1:]).mean(2)


def _mi_values(key, denoiser, x, r, nodes, *, form, n_noise, chunk):
    """:func:`_mi_jit` with the pairs split into equal shards, one per local device, when the inputs are
    concrete and there is more than one device (``jaxdecomp._parallel``); the same draws either way."""
    devices = jax.local_devices()
    n = int(x.shape[0])
    nd = min(len(devices), n // 2)
    if nd <= 1 or not _parallel.is_concrete(key, denoiser, x, r, nodes):
        return _mi_jit(key, denoiser, x, r, nodes, form=form, n_noise=n_noise, chunk=chunk)
    per = -(-n // nd)
    pad = nd * per - n                      # equal shards (one compiled program): repeat the last pair
    xp = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]) if pad else x
    rp = jnp.concatenate([r, jnp.repeat(r[-1:], pad, axis=0)]) if pad else r
    consts = _parallel.replicas((key, denoiser, nodes), devices[:nd])
    # every shard placed before any is dispatched: slicing on device 0 behind a running shard would
    # serialise the devices
    shards = jax.block_until_ready([jax.device_put((xp[k * per:(k + 1) * per], rp[k * per:(k + 1) * per],
                                                    np.int32(k * per)), devices[k]) for k in range(nd)])
    outs = []
    for k in range(nd):
        xs, rs, first = shards[k]
        kk, den, nod = consts[k]
        outs.append(_mi_jit(kk, den, xs, rs, nod, first, form=form,
                            n_noise=n_noise, chunk=chunk))
    return jnp.concatenate([jax.device_put(o, devices[0]) for o in outs])[:n]


@jax.jit
def _tail_totals(population, x, g_hi):
    """``1/2 log det(I + g_hi J(x_j))`` per stimulus of the batch ``x``: (N,)."""
    return jax.lax.map(lambda xi: jnp.sum(small_noise_tail(population, xi, g_hi)), x)


#: Mean integrand at the finest level above which the extrapolated small-noise tail of
#: :func:`mutual_information` (without ``population``) is flagged: the tail assumes
#: ``f(a) ~ e^{-a}`` beyond ``hi``; it underestimates by about ``f(hi)^2`` nats (exactly
#: ``1/2 log(1+u) - 1/2 u/(1+u)`` per stimulus direction with ``u = g_hi J``).
MI_TAIL_WARN = 0.02


def mutual_information(key, denoiser, x, r, *, levels: Levels | None = None, form: str = "orthogonal",
                       n_noise: int = 1, chunk: int = 4096, stimulus_shape=None,
                       return_pairs: bool = False, population=None) -> Estimate:
    """Population I(R;X) from paired samples ``(x_j, r_j) ~ p(x, r)`` (I-MMSE).

    form: ``"orthogonal"`` (``1/2 int E ||eps_hat(x_a,a,r) - eps_hat(x_a,a)||^2 da``, Kong et al.'s
    orthogonal estimator; never negative) or ``"gap"`` (``1/2 int E[||eps - eps_hat(x_a,a)||^2 -
    ||eps - eps_hat(x_a,a,r)||^2] da``), or ``"both"``: the two forms from the same network calls and
    draws (half the cost of two calls, the same values as two calls with this key), returned as a dict
    ``{"orthogonal": Estimate, "gap": Estimate, "difference": Estimate}`` whose ``difference`` is the
    orthogonal minus the gap value with its paired standard error (a network diagnostic: with an exact
    denoiser both forms estimate the same MI). x: ``(N, *S)``; r: ``(N, n_neurons)``; ``N >= 2``.
    n_noise: noise draws per pair and level. Returns :class:`Estimate` (value, standard error over
    pairs); with ``return_pairs`` its ``info`` is ``{"per_pair": (N,) values}`` (their mean is
    ``value``), else ``None``.

    Tails (with ``levels.tails``): the large-noise one is extrapolated (``f(lo)``). The small-noise
    one is exact with ``population`` (the encoder that produced ``r``; by default the population
    of a Gaussian-mixture oracle built with ``A``): per pair
    ``1/2 log det(I + g(hi) J(x_j))`` (:func:`small_noise_tail`), right at any ``g(hi) J`` (e.g. a
    population with noise SD 1e-4); without it the integrand is extrapolated as ``f(hi)``, which
    assumes ``g(hi) J << 1`` and underestimates otherwise: a ``RuntimeWarning`` is raised when the
    mean integrand at ``hi`` exceeds :data:`MI_TAIL_WARN` (concrete inputs only).
    """
    if form not in ("orthogonal", "gap", "both"):
        raise ValueError(f"form: expected 'orthogonal', 'gap' or 'both', got {form!r}")
    key = check_key(key)
    n_noise = _check_count("n_noise", n_noise)
    chunk = _check_count("chunk", chunk)
    levels = _check_levels(levels)
    x_arr, _ = _check_x(x, tuple(np.shape(x)))
    if x_arr.ndim == 0:
        raise ValueError("x: expected a batch of paired stimuli (N, ...), got a scalar")
    shape = _stimulus_shape(denoiser, x_arr[0], stimulus_shape)
    x, batched = _check_x(x_arr, shape)
    if not batched:
        raise ValueError(f"x: expected a batch of paired stimuli (N, *{shape}), got {tuple(x.shape)}")
    if not isinstance(r, jax.core.Tracer):
        r_host = _check_x(r, tuple(np.shape(r)), name="r")[0]
    r = jnp.asarray(r if isinstance(r, jax.core.Tracer) else r_host)
    if r.ndim != 2:
        raise ValueError(f"r: expected responses of shape (N, n_neurons), got {tuple(r.shape)}")
    if r.shape[0] != x.shape[0]:
        raise ValueError(f"x and r: must hold the same number of pairs, got {x.shape[0]} stimuli and {r.shape[0]} responses")
    if not bool(jnp.all(jnp.isfinite(r))):
        raise ValueError("r: contains NaN or infinite values")
    if x.shape[0] < 2:
        raise ValueError(f"x: need at least 2 pairs for a standard error, got {x.shape[0]}")
    if population is None:
        population = _own_population(denoiser)
    else:
        _check_population(population, "population")
        _check_population_matches(population, denoiser)
    if population is not None:
        n_pop = int(jax.eval_shape(population.rate, jax.ShapeDtypeStruct(shape, x.dtype)).shape[0])
        if n_pop != r.shape[1]:
            raise ValueError(f"r: has {r.shape[1]} neurons per response but population has {n_pop}")
    closed_tail = bool(levels.tails and population is not None)
    nodes, weights = _nodes(levels, extrapolate_hi=not closed_tail)
    vals = _mi_values(key, _as_pytree(denoiser, "denoiser"), x, r.astype(x.dtype), jnp.asarray(nodes, x.dtype),
                      form=form, n_noise=n_noise, chunk=chunk)
    per = jnp.tensordot(jnp.asarray(weights, x.dtype), vals, axes=(0, 1))   # (N,) or (N, 2) for "both"
    g_hi = float(np.exp(-levels.hi))
    if closed_tail:
        tail = _tail_totals(population, x, jnp.asarray(g_hi, x.dtype)).astype(per.dtype)
        per = per + (tail[:, None] if per.ndim == 2 else tail)
    elif levels.tails and not isinstance(vals, jax.core.Tracer):
        top = float(jnp.mean(vals[:, -1, 0] if vals.ndim == 3 else vals[:, -1]))  # the extrapolated node at hi
        if top > MI_TAIL_WARN:
            warnings.warn(
                f"mutual_information: the integrand at the finest level (log_snr = {levels.hi:g}) is "
                f"{top:.3g}, not yet in its small-noise regime (g J << 1), so the tail extrapolated beyond it "
                f"underestimates I(R;X) (by about {top**2:.2g} nats or more). Pass population= (the "
                f"encoder) for the exact small-noise tail 1/2 log det(I + g J(x)), or raise levels.hi "
                f"(with an exact or well-trained denoiser).", RuntimeWarning, stacklevel=2)
    def est(p):
        return Estimate(p.mean(), p.std(ddof=1) / jnp.sqrt(p.shape[0]), {"per_pair": p} if return_pairs else None)

    if form == "both":
        diff = per[:, 0] - per[:, 1]
        return {"orthogonal": est(per[:, 0]), "gap": est(per[:, 1]),
                "difference": Estimate(diff.mean(), diff.std(ddof=1) / jnp.sqrt(diff.shape[0]), None)}
    return est(per)
