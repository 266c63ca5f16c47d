"""Zero-shot conditional denoiser: a prior (unconditional) denoiser plus a known encoder, no training.

``p(x | x_g, r) ∝ p(r | x) p(x | x_g)``, so the response-conditioned posterior mean is

    xhat(x_g, r) = E_{p(x|x_g)}[ x p(r|x) ] / E_{p(x|x_g)}[ p(r|x) ]

and every estimator of :mod:`jaxdecomp.estimate` needs only the prior denoiser and the likelihood
(``docs/zeroshot.md``; SCIENCE §6). :func:`zero_shot_denoiser` builds a :class:`ZeroShotDenoiser`
that satisfies the Denoiser contract ``eps_hat = D(x_noisy, log_snr, r)``:

* ``method="particles"`` (asymptotically exact): ``K`` particles ``x^(k) ~ p(x | x_g)`` (the prior's
  exact ``posterior_sample`` when it has one, else ``n_steps`` steps of reverse diffusion with the prior
  denoiser from level ``log_snr``), log-weights ``log p(r | x^(k))`` normalised with logsumexp.
  The returned conditional mean is ``xhat(x_g) + Dt`` with the prior's own ``xhat(x_g)`` and

      Dt = K/(K-1) * sum_k (wbar_k - 1/K) x^(k)       (wbar: normalised weights)

  When ``r`` was drawn from one of the particles (``r ~ p(r | x^(J))``, ``J`` uniform; the estimators
  do this through :meth:`ZeroShotDenoiser.posterior_sample`, which returns a particle of the same set),
  ``E[Dt | x_g, r] = xhat(x_g, r) - xhat(x_g)`` EXACTLY for any ``K >= 2`` (docs/zeroshot.md §2): the
  kept particle removes the self-normalisation bias, and the ``1/K`` centring removes the particles'
  own scatter (at small noise the weights are nearly flat and ``Dt`` is a sample covariance times the
  likelihood's slope, not a noisy mean). The I_local integrand squares ``Dt``; squaring one estimate
  would add ``tr Var(Dt | x_g, r) / (2 g)`` per level, O(d/K) (summed over coordinates), so with
  ``paired=True`` (default) the estimators multiply two INDEPENDENT estimates instead
  (:meth:`ZeroShotDenoiser.conditional_pair`: the kept-particle set and a fresh, jackknifed set),
  which leaves an O(1/K^2) bias (docs/zeroshot.md §2).
* ``method="dps"`` (the diffusion-posterior-sampling baseline, Chung et al. 2023):
  ``xhat(x_g, r) = xhat(x_g) + g grad_{x_g} log p(r | xhat(x_g))``; one call plus a vector-Jacobian
  product, biased where ``p(x | x_g)`` is wide compared with the encoder's resolution.

Randomness (the contract's call has no key). The denoiser holds a seed ``key`` and derives the key of
each call from a hash of its inputs: ``fold_in(key, hash(bits of x_noisy, bits of log_snr))``. So it
is a fixed (pseudo-random) function, like a network with random weights: the same inputs give the same
particles, which is what lets :meth:`posterior_sample` (called by the estimator with ITS key, to pick a
particle) and the conditional call (made later with the response drawn from that particle) see the SAME
particle set; distinct inputs (the estimators' distinct blur draws) give independent particles. The
seed is never reused for anything else; :meth:`ZeroShotDenoiser.with_key` gives an independent copy
(use one per independent replicate if inputs could repeat). Within a call the particles are common
random numbers for the parameters ``theta`` of the encoder (they depend on the prior and ``x_g`` only),
so ``theta``-gradients are smooth.

Gradients (see ``docs/zeroshot.md`` §4). Particles are held fixed (``stop_gradient``) and enter only
through the weights, so ``jax.grad`` w.r.t. the encoder's parameters is the exact pathwise derivative
given the particles; the estimators add the score of the response law ``grad log p(r | x^(J); theta)``
at the particle ``x^(J)`` the response came from, which is the score of the joint law of (particles,
``J``, ``r``): the ``theta``-gradient is unbiased for the estimator's expectation. In ``x_g`` the particle
law moves too: the conditional output carries the zero-valued surrogate whose ``x_g``-gradient is the
particle estimate of ``(Cov[x | x_g, r] - Cov[x | x_g]) / g`` (the exact Jacobian of ``Dt``'s mean),
plus the prior denoiser's own Jacobian; this ``x``-gradient is consistent (bias O(1/K)), and the
estimator's Stein half of the ``x``-gradient does not use it at all.

ESS. :meth:`ZeroShotDenoiser.ess` gives ``(sum w)^2 / sum w^2`` for one call (the same particles);
:meth:`ZeroShotDenoiser.check_ess` sweeps the estimator's levels with the estimator's response law and
refuses (``ValueError``; ``action="warn"``: ``RuntimeWarning``) when at some level the median ESS over
the draws is below ``min_ess`` (default :data:`MIN_ESS`). The population handed to an estimator must be
the encoder the denoiser was built with (checked by the estimators through :meth:`check_population`).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdecomp._checks import check_key, is_concrete
from jaxdecomp._interfaces import as_pytree_callable
from jaxdecomp.diffusion.analytic import GridDenoiser
from jaxdecomp.diffusion.sampling import reverse_diffusion
from jaxdecomp.diffusion.schedules import (
    check_levels,
    levels as make_levels,
    to_variance_exploding,
    to_variance_preserving,
    variance_from_log_snr,
)

Array = Any

__all__ = ["METHODS", "MIN_ESS", "ESSReport", "ZeroShotDenoiser", "zero_shot_denoiser"]

METHODS = ("particles", "dps")

#: Default ESS floor of :meth:`ZeroShotDenoiser.check_ess`: a level whose median effective sample size
#: is below it has collapsed (the self-normalised average rests on a handful of particles).
MIN_ESS = 10.0


# ----------------------------------------------------------------------------- hashing
_U32 = jnp.uint32


def _fmix32(h):
    """MurmurHash3's 32-bit finaliser (a bijection of uint32 with full avalanche)."""
    h = h ^ (h >> 16)
    h = h * _U32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * _U32(0xC2B2AE35)
    return h ^ (h >> 16)


def _bits(x):
    """The bit pattern of a float array as a flat uint32 vector."""
    x = jax.lax.stop_gradient(jnp.asarray(x))
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.dtype.itemsize == 8:
        return jax.lax.bitcast_convert_type(x, _U32).reshape(-1)
    return jax.lax.bitcast_convert_type(x.astype(jnp.float32), _U32).reshape(-1)


def _input_hash(z, a):
    """A 32-bit hash of ``(z, a)``: position-dependent, so permuted inputs differ."""
    b = jnp.concatenate([_bits(a), _bits(z)])
    pos = _fmix32(jnp.arange(1, b.shape[0] + 1, dtype=_U32) * _U32(0x9E3779B9))
    return _fmix32(jnp.sum(_fmix32(b ^ pos), dtype=_U32))


# ----------------------------------------------------------------------------- the denoiser
@struct.dataclass
class ZeroShotDenoiser:
    """Conditional denoiser from a prior denoiser and a known encoder (build with :func:`zero_shot_denoiser`).

    Satisfies the Denoiser contract: ``D(x_noisy, log_snr, r)`` for ONE VP noisy stimulus of shape
    ``self.shape``, a scalar ``log_snr`` and a response ``(n,)`` (``r=None``: the prior denoiser's output,
    unchanged). Batch with ``jax.vmap``. A pytree: the prior's and the encoder's array leaves and the
    seed ``key`` are leaves, so ``jax.grad`` reaches the encoder's parameters.
    """

    prior: Any                  # unconditional denoiser (a pytree of arrays, or a StaticCallable)
    encoder: Any                # p(r | x): log_prob(r, x), sample(key, x) for ONE stimulus of `shape`
    key: Array                  # the seed of the per-call keys (module docstring)
    n_particles: int = struct.field(pytree_node=False, default=256)
    method: str = struct.field(pytree_node=False, default="particles")
    n_steps: int = struct.field(pytree_node=False, default=32)
    log_snr_end: float = struct.field(pytree_node=False, default=14.0)
    exact_prior: bool = struct.field(pytree_node=False, default=True)
    shape: tuple = struct.field(pytree_node=False, default=())
    paired: bool = struct.field(pytree_node=False, default=True)

    # ------------------------------------------------------------------ basics
    @property
    def population(self):
        """The encoder ``p(r | x)`` this denoiser conditions on (pass it to the estimators)."""
        return self.encoder

    def with_key(self, key) -> "ZeroShotDenoiser":
        """The same denoiser with another seed: independent particles everywhere."""
        return self.replace(key=check_key(key))

    def check_population(self, population) -> None:
        """Raise ``ValueError`` (naming ``population``) unless ``population`` is the encoder this denoiser
        was built with (same pytree structure; same parameter values where concrete). The estimators call
        it (the weights and the response law must come from the same encoder, else I_local is silently
        wrong)."""
        own = self.encoder
        if population is own:
            return
        s1, s2 = jax.tree_util.tree_structure(population), jax.tree_util.tree_structure(own)
        if s1 != s2:
            raise ValueError(f"population: differs from the encoder the zero-shot denoiser was built with "
                             f"({type(population).__name__} against {type(own).__name__}); pass denoiser.encoder")
        l1, l2 = jax.tree_util.tree_leaves(population), jax.tree_util.tree_leaves(own)
        if all(is_concrete(v) for v in l1 + l2):
            for u, v in zip(l1, l2):
                u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
                if u.shape != v.shape or not np.allclose(u, v, rtol=1e-5, atol=1e-6):
                    raise ValueError("population: its parameters differ from those of the encoder the zero-shot "
                                     "denoiser was built with; pass denoiser.encoder (or build the denoiser from "
                                     "this population)")

    def _check_inputs(self, x_noisy, r):
        x = jnp.asarray(x_noisy)
        if x.shape != tuple(self.shape):
            raise ValueError(f"x_noisy: expected one stimulus of shape {tuple(self.shape)}, got {x.shape} "
                             "(batch with jax.vmap)")
        if r is not None:
            n = int(jax.eval_shape(self.encoder.sample, jax.random.PRNGKey(0),
                                   jax.ShapeDtypeStruct(tuple(self.shape), x.dtype)).shape[0])
            if jnp.shape(r) != (n,):
                raise ValueError(f"r: expected a response of shape ({n},) for the encoder, got {jnp.shape(r)}")
        return x

    def _call_key(self, z, a):
        return jax.random.fold_in(self.key, _input_hash(z, a))

    # ------------------------------------------------------------------ particles
    def particles(self, x_noisy, log_snr, stream: int = 0):
        """The ``K`` particles ``x^(k) ~ p(x | x_g)`` of this input, ``(K, *shape)`` (no gradient).

        ``stream=0``: the set the conditional call and :meth:`posterior_sample` use; ``stream=1``: an
        independent second set of the same input (for :meth:`conditional_pair`)."""
        z = jax.lax.stop_gradient(self._check_inputs(x_noisy, None))
        a = jax.lax.stop_gradient(jnp.asarray(log_snr, z.dtype))
        key = self._call_key(z, a)
        if stream:
            key = jax.random.fold_in(key, 0x5EC0 + int(stream))
        if isinstance(self.prior, GridDenoiser):
            return jax.lax.stop_gradient(_grid_draws(self.prior, key, z, a, self.n_particles).astype(z.dtype))
        keys = jax.random.split(key, self.n_particles)
        if self.exact_prior:
            draw = lambda k: self.prior.posterior_sample(k, z, a, None)  # noqa: E731
        else:
            draw = lambda k: reverse_diffusion(k, self.prior, z, a, None, n_steps=self.n_steps,  # noqa: E731
                                               log_snr_end=self.log_snr_end)
        return jax.lax.stop_gradient(jax.vmap(draw)(keys).astype(z.dtype))

    def _log_weights(self, parts, r):
        lw = jax.vmap(lambda p: self.encoder.log_prob(r, p))(parts)
        return jnp.where(jnp.isfinite(lw), lw, -jnp.inf)

    def ess(self, x_noisy, log_snr, r):
        """Effective sample size ``(sum w)^2 / sum w^2`` of the particle weights of this call (in ``[1, K]``)."""
        if self.method != "particles":
            raise ValueError(f"ess: defined for method='particles', this denoiser uses {self.method!r}")
        lw = self._log_weights(self.particles(x_noisy, log_snr), jnp.asarray(r))
        return jnp.exp(2.0 * jax.nn.logsumexp(lw) - jax.nn.logsumexp(2.0 * lw))

    def _shift(self, z, a, r, stream: int = 0):
        """``xhat(x_g, r) - xhat(x_g)`` (flat, d) for the particles method, with the x_g-gradient surrogate.

        ``stream=0``: the kept-particle set (``K/(K-1)`` centring, unbiased when ``r`` came from one of its
        particles); ``stream=1``: the independent set, plain self-normalised weights centred on the set's
        own mean (which is unbiased for ``xhat(x_g)``: the set does not depend on ``r``)."""
        K = self.n_particles
        parts = self.particles(z, a, stream).reshape(K, -1)
        w = jax.nn.softmax(self._log_weights(parts.reshape((K,) + tuple(self.shape)), r))   # (K,)
        if stream:
            # jackknifed self-normalised mean (bias O(1/K) -> O(1/K^2)): K m - (K-1) mean_k m_{-k}, with
            # the leave-one-out means m_{-k} = (sum_j w_j x_j - w_k x_k) / (1 - w_k); minus the set's mean
            m = w @ parts
            loo_w = jnp.where(w < 1.0, 1.0 - w, 1.0)
            loo = (m[None, :] - w[:, None] * parts) / loo_w[:, None]
            loo_mean = jnp.mean(jnp.where((w < 1.0)[:, None], loo, m[None, :]), axis=0)
            shift = K * m - (K - 1.0) * loo_mean - jnp.mean(parts, axis=0)
        else:
            shift = (K / (K - 1.0)) * ((w - 1.0 / K) @ parts)
        # zero-valued term whose x_g-gradient is the particle estimate of (Cov[x|x_g,r] - Cov[x|x_g]) / g
        g = variance_from_log_snr(a)
        x_g = to_variance_exploding(z, a).reshape(-1)
        delta = x_g - jax.lax.stop_gradient(x_g)
        ws = jax.lax.stop_gradient(w)
        dc = parts - (ws @ parts)[None, :]                      # offsets from the weighted mean
        du = parts - jnp.mean(parts, axis=0, keepdims=True)         # offsets from the plain mean
        cov_c = (ws * (dc @ delta)) @ dc
        cov_u = ((du @ delta) @ du) / (K - 1.0)
        return shift + (cov_c - cov_u) / g

    def _dps_shift(self, z, a, r):
        g = variance_from_log_snr(a)

        def loglik(x_g):
            zz = to_variance_preserving(x_g.reshape(self.shape), a)
            xhat = x_g.reshape(self.shape) - jnp.sqrt(g) * self.prior(zz, a, None)
            return self.encoder.log_prob(r, xhat)

        x_g = to_variance_exploding(z, a)
        return g * jax.grad(loglik)(x_g).reshape(-1)

    # ------------------------------------------------------------------ the contract
    def __call__(self, x_noisy, log_snr, r=None):
        """``eps_hat`` given ``r`` (``r=None``: the prior's ``E[eps | x_noisy]``); shape of ``x_noisy``."""
        z = self._check_inputs(x_noisy, r)
        a = jnp.asarray(log_snr, z.dtype)
        eps_u = jnp.asarray(self.prior(z, a, None)).astype(z.dtype)
        if r is None:
            return eps_u
        return self._conditional(z, a, jnp.asarray(r), eps_u, stream=0)

    def _conditional(self, z, a, r, eps_u, stream: int = 0):
        """``eps_hat`` given ``r`` from the prior output ``eps_u`` and particle set ``stream``."""
        if self.method == "particles":
            shift = self._shift(z, a, r, stream)
        else:
            shift = self._dps_shift(z, a, r)
        g = variance_from_log_snr(a)
        return eps_u - (shift / jnp.sqrt(g)).reshape(self.shape).astype(z.dtype)

    def conditional_pair(self, x_noisy, log_snr, r, eps_u=None):
        """Two estimates of ``eps_hat`` given ``r`` from INDEPENDENT particle sets: ``(D(x_noisy, log_snr, r),
        the same from the second set)``.

        The estimators square the conditional shift (``|eps_c - eps_u|^2``); the square of one Monte Carlo
        estimate is biased upward by its variance, which grows with the dimension (``Var(Dt)`` summed over
        ``d`` coordinates, most of which carry no signal). The product of two conditionally independent
        estimates is not: ``E[(e1 - eu)(e2 - eu)] = E[e1 - eu] E[e2 - eu]``. The first is the usual call
        (kept particle, unbiased for responses drawn through :meth:`posterior_sample`); the second uses
        fresh particles (self-normalised, bias O(1/K) in the mean, none from the variance). Costs twice
        the particles. With ``paired=False`` (or ``method="dps"``, which is deterministic) both are the
        usual call. ``eps_u``: the prior's output at this input when the caller already has it (saves a
        prior call; must be ``self(x_noisy, log_snr, None)``)."""
        z = self._check_inputs(x_noisy, r)
        a = jnp.asarray(log_snr, z.dtype)
        if eps_u is None:
            eps_u = self.prior(z, a, None)
        eps_u = jnp.asarray(eps_u).astype(z.dtype)
        r = jnp.asarray(r)
        e1 = self._conditional(z, a, r, eps_u, stream=0)
        if self.method != "particles" or not self.paired:
            return e1, e1
        return e1, self._conditional(z, a, r, eps_u, stream=1)

    def posterior_mean(self, x_noisy, log_snr, r=None):
        """``E[x | x_noisy(, r)]`` by Tweedie from :meth:`__call__`."""
        a = jnp.asarray(log_snr)
        g = variance_from_log_snr(a)
        return to_variance_exploding(jnp.asarray(x_noisy), a) - jnp.sqrt(g) * self(x_noisy, log_snr, r)

    def posterior_sample(self, key, x_noisy, log_snr, r=None):
        """A draw from ``p(x | x_noisy)``: one of THIS input's particles, chosen uniformly with ``key``.

        Marginally an exact draw when the prior's ``posterior_sample`` is exact (reverse diffusion
        otherwise). Because the particle set is a fixed function of the input, a response drawn at the
        returned particle is one the conditional call will weight with its own particle kept (the
        module docstring). Given ``r``: a draw from the weighted particles (importance resampling;
        approximate, O(1/K)). For ``method="dps"``: the prior's own draw (or reverse diffusion)."""
        key = check_key(key)
        z = jax.lax.stop_gradient(self._check_inputs(x_noisy, r))
        if self.method == "dps" and r is None:
            if self.exact_prior:
                return self.prior.posterior_sample(key, z, log_snr, None)
            return reverse_diffusion(key, self.prior, z, log_snr, None, n_steps=self.n_steps,
                                     log_snr_end=self.log_snr_end)
        parts = self.particles(z, log_snr)
        if r is None:
            j = jax.random.randint(key, (), 0, self.n_particles)
        else:
            j = jax.random.categorical(key, self._log_weights(parts, jnp.asarray(r)))
        return parts[j]

    # ------------------------------------------------------------------ ESS sweep
    def check_ess(self, key, x, *, levels=None, n_samples: int = 32, min_ess: float = MIN_ESS,
                  action: str = "raise") -> "ESSReport":
        """ESS at the estimator's levels for the stimuli ``x`` (one, shape ``self.shape``, or a batch).

        Per level ``a`` and stimulus: ``n_samples`` draws ``x_g = x + sqrt(g) eps``, ``x' =``
        :meth:`posterior_sample`, ``r ~ p(r | x')`` (the estimators' response law) and the ESS of the
        conditional call. Rule: the level COLLAPSES when the median ESS over its draws (all stimuli
        together) is below ``min_ess``; then ``action="raise"`` raises ``ValueError`` and ``"warn"``
        issues a ``RuntimeWarning`` (``"ignore"``: neither). Returns :class:`ESSReport`.
        """
        if self.method != "particles":
            raise ValueError(f"check_ess: defined for method='particles', this denoiser uses {self.method!r}")
        if action not in ("raise", "warn", "ignore"):
            raise ValueError(f"action: expected 'raise', 'warn' or 'ignore', got {action!r}")
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples: expected a positive integer, got {n_samples!r}")
        if not (np.isfinite(min_ess) and 1.0 <= float(min_ess) <= self.n_particles):
            raise ValueError(f"min_ess: expected a number in [1, n_particles={self.n_particles}], got {min_ess!r}")
        key = check_key(key)
        lv = check_levels(make_levels() if levels is None else levels)
        xs = jnp.asarray(x, jnp.result_type(float))
        if xs.shape == tuple(self.shape):
            xs = xs[None]
        if xs.shape[1:] != tuple(self.shape) or xs.shape[0] == 0:
            raise ValueError(f"x: expected one stimulus of shape {tuple(self.shape)} or a batch, got {xs.shape}")
        nodes = jnp.asarray(np.asarray(lv.log_snr), xs.dtype)
        ess = np.asarray(_ess_sweep(self, key, xs, nodes, int(n_samples)))        # (L, B * n)
        med = np.median(ess, axis=1)
        low = np.quantile(ess, 0.1, axis=1)
        bad = np.nonzero(med < float(min_ess))[0]
        report = ESSReport(np.asarray(lv.log_snr, np.float64), med, low, ess.min(axis=1), bool(bad.size == 0),
                           float(min_ess))
        if bad.size and action != "ignore":
            msg = (f"zero-shot denoiser: the effective sample size collapsed at {bad.size} of {med.size} levels "
                   f"(median ESS {med[bad].min():.3g} < min_ess={float(min_ess):g} of n_particles="
                   f"{self.n_particles}, worst at log_snr={float(lv.log_snr[bad[np.argmin(med[bad])]]):.3g}); the "
                   f"likelihood-weighted average rests on a few particles and I_local is biased (upward when squared "
                   f"unpaired, either way paired). Raise "
                   f"n_particles (ESS grows in proportion), or use a trained conditional denoiser.")
            if action == "raise":
                raise ValueError(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return report


class ESSReport(NamedTuple):
    """Result of :meth:`ZeroShotDenoiser.check_ess`: per level, the median, 10% quantile and minimum ESS."""

    log_snr: np.ndarray
    median: np.ndarray
    q10: np.ndarray
    minimum: np.ndarray
    ok: bool
    min_ess: float


def _ess_sweep_impl(den, key, xs, nodes, n_samples):
    B, L = xs.shape[0], nodes.shape[0]

    def one(t):
        l, rest = t // (B * n_samples), t % (B * n_samples)
        x = xs[rest // n_samples]
        a = nodes[l]
        k_eps, k_post, k_resp = jax.random.split(jax.random.fold_in(key, t), 3)
        g = variance_from_log_snr(a)
        z = to_variance_preserving(x + jnp.sqrt(g) * jax.random.normal(k_eps, x.shape, x.dtype), a)
        xp = den.posterior_sample(k_post, z, a, None)
        r = den.encoder.sample(k_resp, xp)
        return den.ess(z, a, r)

    n = L * B * n_samples
    return jax.lax.map(one, jnp.arange(n), batch_size=min(n, 256)).reshape(L, B * n_samples)


_ess_sweep = jax.jit(_ess_sweep_impl, static_argnames=("n_samples",))


def _grid_draws(prior, key, z, a, n):
    """``n`` exact draws from a discrete prior's ``p(x | x_g)`` by inverse-CDF sampling: one uniform per
    draw (the prior's ``posterior_sample``, vmapped, would draw one Gumbel per point and draw)."""
    logits, _, _, _ = prior._posterior(z, a, None)
    cdf = jnp.cumsum(jax.nn.softmax(logits))
    u = jax.random.uniform(key, (n,), dtype=cdf.dtype) * cdf[-1]
    j = jnp.clip(jnp.searchsorted(cdf, u, side="right"), 0, cdf.shape[0] - 1)
    return jnp.reshape(prior.points[j], (n,) + tuple(prior.shape))


# ----------------------------------------------------------------------------- factory
def zero_shot_denoiser(prior, encoder, *, key, n_particles: int = 256, method: str = "particles",
                       n_steps: int = 32, log_snr_end: float = 14.0, shape=None,
                       paired: bool = True) -> ZeroShotDenoiser:
    """A conditional denoiser from the prior denoiser ``prior`` and the encoder ``encoder``, no training.

    prior: an unconditional denoiser ``eps_hat = prior(x_noisy, log_snr, None)`` (an analytic oracle of
      :mod:`jaxdecomp.diffusion.analytic`, a trained network, any function); its exact
      ``posterior_sample`` is used when it has one, else reverse diffusion (``n_steps`` steps down to
      ``log_snr_end``). Only its unconditional output is ever used.
    encoder: an :class:`~jaxdecomp.Encoder` (``log_prob(r, x)``, ``sample(key, x)`` for ONE stimulus of
      ``shape``). Pass the SAME object as the estimators' ``population``; build both from the same
      parameters inside the function you differentiate (``theta``-gradients).
    key: the seed of the per-call keys (module docstring). n_particles: ``K >= 2`` particles per call.
    method: ``"particles"`` (asymptotically exact) or ``"dps"`` (the biased one-call baseline).
    shape: the stimulus shape (default ``prior.shape``).
    paired: with ``method="particles"``, the estimators square the conditional shift as the product of
      two independent particle estimates (:meth:`ZeroShotDenoiser.conditional_pair`), which removes the
      O(d/K) upward bias of squaring one estimate; costs twice the particles per conditional call.
    Cost per conditional call: ``K`` prior posterior draws (``K (n_steps + 1)`` prior calls with reverse
    diffusion) and ``K`` likelihood evaluations; the estimators' ``posterior_sample`` draw costs the same
    particles again. Memory: ``K * prod(shape)`` numbers per call in flight (mind the estimators' ``chunk``).
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if not callable(prior):
        raise TypeError(f"prior: expected a denoiser eps_hat = prior(x_noisy, log_snr, r), got {type(prior).__name__}")
    if not (callable(getattr(encoder, "log_prob", None)) and callable(getattr(encoder, "sample", None))):
        raise TypeError(f"encoder: expected an encoder with log_prob(r, x) and sample(key, x), "
                        f"got {type(encoder).__name__}")
    for name, v, lo in (("n_particles", n_particles, 2), ("n_steps", n_steps, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name}: expected an integer >= {lo}, got {type(v).__name__} {v!r}")
        if int(v) < lo:
            raise ValueError(f"{name}: expected an integer >= {lo}, got {v}")
    if not np.isfinite(log_snr_end):
        raise ValueError(f"log_snr_end: expected a finite log-SNR, got {log_snr_end!r}")
    key = check_key(key)
    if shape is None:
        shape = getattr(prior, "shape", None)
        if not isinstance(shape, tuple):
            raise ValueError("shape: the prior has no `shape` attribute; pass the stimulus shape")
    shape = tuple(int(s) for s in shape)
    x0 = jax.ShapeDtypeStruct(shape, jnp.result_type(float))
    try:
        r0 = jax.eval_shape(encoder.sample, jax.random.PRNGKey(0), x0)
        jax.eval_shape(encoder.log_prob, r0, x0)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"encoder: cannot evaluate it on a stimulus of the prior's shape {shape}: {err}") from err
    if len(r0.shape) != 1:
        raise ValueError(f"encoder: expected responses of shape (n,) for one stimulus, got {r0.shape}")
    try:
        out = jax.eval_shape(lambda z: prior(z, jnp.zeros(()), None), x0)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"prior: cannot evaluate it on a stimulus of shape {shape} with r=None: {err}") from err
    if tuple(out.shape) != shape:
        raise ValueError(f"prior: returned shape {tuple(out.shape)} for a stimulus of shape {shape}")
    exact = callable(getattr(prior, "posterior_sample", None))
    return ZeroShotDenoiser(as_pytree_callable(prior), encoder, key, n_particles=int(n_particles),
                            method=method, n_steps=int(n_steps), log_snr_end=float(log_snr_end),
                            exact_prior=exact, shape=shape, paired=bool(paired))
