"""Encoders ``p(r | x)``: a rate model plus a noise model, for ONE stimulus.

Every population is a pytree with

* ``rate(x) -> (n,)``            mean response of each neuron,
* ``sample(key, x) -> (n,)``     one response,
* ``log_prob(r, x) -> ()``       log-likelihood (log-density for Gaussian noise),
* ``fisher(x)``                  Fisher information matrix about ``x``, shape
  ``x.shape + x.shape`` (a scalar for a scalar stimulus); ``fisher_diag(x)``
  (shape of ``x``) and ``fisher_trace(x)`` (scalar) are shortcuts.

Batch with ``jax.vmap``. Fisher information is closed form: ``sum_n w_n
grad f_n grad f_n^T`` with the noise model's weight ``w_n = 1/f_n`` (Poisson)
or ``1/sigma_n^2`` (Gaussian); the gradients of the rates come from autodiff.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.scipy.special import gammaln, xlogy

from jaxdecomp._checks import check_positive, is_concrete

Array = Any


def poisson_log_pmf(r, f):
    """Elementwise Poisson log-probability of counts ``r`` at rates ``f``.

    Rates are floored at the dtype's smallest normal number inside the logarithm, so a rate
    that underflows to 0 gives a large finite penalty (and a zero, not NaN, gradient) instead
    of ``-inf``; for ``r = 0`` the value is exact."""
    f = jnp.asarray(f)
    tiny = jnp.finfo(f.dtype).tiny if jnp.issubdtype(f.dtype, jnp.floating) else 1e-30
    return xlogy(r, jnp.maximum(f, tiny)) - f - gammaln(r + 1.0)


def gaussian_log_density(r, f, sigma):
    """Elementwise Gaussian log-density of ``r`` with means ``f`` and SDs ``sigma``."""
    z = (r - f) / sigma
    return -0.5 * z**2 - jnp.log(sigma) - 0.5 * jnp.log(2 * jnp.pi)


def _is_pytree_model(fn) -> bool:
    """A rate model whose parameters are array leaves (differentiable), vs a plain function."""
    leaves = jax.tree_util.tree_leaves(fn)
    return bool(leaves) and all(isinstance(l, (jax.Array, np.ndarray)) for l in leaves)


@struct.dataclass
class _RateHolder:
    """Holds a rate model: as a pytree when it has array parameters, else as a static callable."""

    model: Any = None
    static_fn: Callable | None = struct.field(pytree_node=False, default=None)

    @classmethod
    def wrap(cls, rate_fn):
        if not callable(rate_fn):
            raise TypeError(f"rate_fn: expected a callable x -> (n,) rates, got {type(rate_fn).__name__}")
        if _is_pytree_model(rate_fn):
            return cls(model=rate_fn)
        return cls(static_fn=rate_fn)

    def __call__(self, x):
        fn = self.model if self.model is not None else self.static_fn
        out = jnp.asarray(fn(x))
        if out.ndim != 1:
            raise ValueError(
                f"rate_fn: must return a 1-D array of rates (n,), got shape {out.shape} "
                f"for a stimulus of shape {jnp.shape(x)}"
            )
        return out


class _Population:
    """Shared methods; subclasses define ``rate``, ``sample``, ``log_prob`` and ``fisher_weights``."""

    def n_neurons(self, x) -> int:
        """Number of neurons (needs an example stimulus to know the shape)."""
        return jax.eval_shape(self.rate, jnp.asarray(x, dtype=float)).shape[0]

    def _check_r(self, r, x):
        r = jnp.asarray(r)
        n = self.n_neurons(x)
        if r.shape != (n,):
            raise ValueError(f"r: expected shape ({n},) for this population, got {r.shape}")
        return r

    def _rate_jacobian(self, x):
        x = jnp.asarray(x, dtype=jnp.result_type(float))
        return self.rate(x), jax.jacfwd(self.rate)(x), x

    def fisher(self, x):
        """Fisher information matrix about ``x``: shape ``x.shape + x.shape``."""
        f, jac, x = self._rate_jacobian(x)
        w = self.fisher_weights(f)
        jf = jac.reshape(jac.shape[0], -1)
        J = jf.T @ (w[:, None] * jf)
        return J.reshape(x.shape + x.shape)

    def fisher_diag(self, x):
        """Diagonal of the Fisher matrix (per stimulus dimension / pixel), shape of ``x``."""
        f, jac, _ = self._rate_jacobian(x)
        w = self.fisher_weights(f)
        return jnp.tensordot(w, jac**2, axes=1)

    def fisher_trace(self, x):
        """Trace of the Fisher matrix, a scalar."""
        return jnp.sum(self.fisher_diag(x))


@struct.dataclass
class PoissonPopulation(_Population):
    """Independent Poisson spike counts with rates ``rate_fn(x)`` (non-negative)."""

    rates: _RateHolder

    def rate(self, x):
        f = self.rates(x)
        if is_concrete(f) and np.any(np.asarray(f) < 0):
            raise ValueError(
                f"rate_fn: Poisson rates must be non-negative, got minimum {float(jnp.min(f)):.6g}"
            )
        return f

    def fisher_weights(self, f):
        return jnp.where(f > 0, 1.0 / jnp.where(f > 0, f, 1.0), 0.0)

    def sample(self, key, x):
        return jax.random.poisson(key, self.rate(x)).astype(jnp.result_type(float))

    def log_prob_each(self, r, x):
        """Per-neuron log-probabilities, shape (n,)."""
        return poisson_log_pmf(self._check_r(r, x), self.rate(x))

    def log_prob(self, r, x):
        return jnp.sum(self.log_prob_each(r, x))


@struct.dataclass
class GaussianPopulation(_Population):
    """Independent Gaussian responses ``r_n = f_n(x) + sigma_n * noise`` (fixed sigma)."""

    rates: _RateHolder
    sigma: Array

    def rate(self, x):
        return self.rates(x)

    def fisher_weights(self, f):
        return jnp.broadcast_to(1.0 / self.sigma**2, f.shape)

    def sample(self, key, x):
        f = self.rate(x)
        return f + self.sigma * jax.random.normal(key, f.shape, dtype=f.dtype)

    def log_prob_each(self, r, x):
        """Per-neuron log-densities, shape (n,)."""
        return gaussian_log_density(self._check_r(r, x), self.rate(x), self.sigma)

    def log_prob(self, r, x):
        return jnp.sum(self.log_prob_each(r, x))


@struct.dataclass
class JointPopulation(_Population):
    """Two populations responding independently given the stimulus; ``r = [r1, r2]``."""

    first: Any
    second: Any

    def rate(self, x):
        return jnp.concatenate([self.first.rate(x), self.second.rate(x)])

    def split(self, r, x):
        """Split a joint response into ``(r1, r2)``."""
        n1 = self.first.n_neurons(x)
        r = self._check_r(r, x)
        return r[:n1], r[n1:]

    def sample(self, key, x):
        k1, k2 = jax.random.split(key)
        return jnp.concatenate([self.first.sample(k1, x), self.second.sample(k2, x)])

    def log_prob(self, r, x):
        r1, r2 = self.split(r, x)
        return self.first.log_prob(r1, x) + self.second.log_prob(r2, x)

    def fisher(self, x):
        return self.first.fisher(x) + self.second.fisher(x)

    def fisher_diag(self, x):
        return self.first.fisher_diag(x) + self.second.fisher_diag(x)


@struct.dataclass
class TransformedPopulation(_Population):
    """A deterministic function of another population's response, ``r' = transform(r)``.

    ``transform`` maps a response (n,) to a response (n',) elementwise or jointly.
    ``log_prob`` of ``r'`` is available only when given (``log_prob_fn(r', x, base)``);
    ``fisher`` only when the transform is declared invertible (then it equals the
    base population's Fisher information). The exact engine needs neither: it
    pushes the base response distribution through ``transform`` on its response cells.
    """

    base: Any
    transform: Callable = struct.field(pytree_node=False)
    invertible: bool = struct.field(pytree_node=False, default=False)
    log_prob_fn: Callable | None = struct.field(pytree_node=False, default=None)

    def rate(self, x):
        """Rates of the underlying neurons (before the transform)."""
        return self.base.rate(x)

    def n_neurons(self, x) -> int:
        n = self.base.n_neurons(x)
        return jax.eval_shape(self.transform, jax.ShapeDtypeStruct((n,), jnp.result_type(float))).shape[0]

    def sample(self, key, x):
        return self.transform(self.base.sample(key, x))

    def log_prob(self, r, x):
        if self.log_prob_fn is None:
            raise NotImplementedError(
                "log_prob: this transformed population has no log_prob; pass log_prob= to "
                "transform_response (jaxdecomp.exact does not need it)"
            )
        return self.log_prob_fn(self._check_r(r, x), x, self.base)

    def _require_invertible(self):
        if not self.invertible:
            raise NotImplementedError(
                "fisher: the Fisher information of a non-invertible response transform has no "
                "closed form here; use jaxdecomp.exact.fisher, which computes it on response cells"
            )

    def fisher(self, x):
        self._require_invertible()
        return self.base.fisher(x)

    def fisher_diag(self, x):
        self._require_invertible()
        return self.base.fisher_diag(x)


# ----------------------------------------------------------------------------- constructors


def poisson_population(rate_fn) -> PoissonPopulation:
    """Independent Poisson neurons with rates ``rate_fn(x) -> (n,)`` (spikes per trial).

    ``rate_fn`` may be a rate model from this module (differentiable parameters) or
    any JAX-traceable function of one stimulus.
    """
    return PoissonPopulation(_RateHolder.wrap(rate_fn))


def gaussian_population(rate_fn, sigma) -> GaussianPopulation:
    """Independent Gaussian neurons ``r = rate_fn(x) + sigma * noise``; sigma scalar or (n,) > 0."""
    if is_concrete(sigma):
        arr = np.asarray(sigma, dtype=np.float64)
        if arr.ndim > 1:
            raise ValueError(f"sigma: expected a scalar or a 1-D array (n,), got shape {arr.shape}")
        check_positive("sigma", arr)
    return GaussianPopulation(_RateHolder.wrap(rate_fn), jnp.asarray(sigma, dtype=jnp.result_type(float)))


def joint_population(first, second) -> JointPopulation:
    """The population made of two populations, conditionally independent given ``x``."""
    for name, p in (("first", first), ("second", second)):
        if not isinstance(p, _Population):
            raise TypeError(f"{name}: expected a population, got {type(p).__name__}")
    return JointPopulation(first, second)


def transform_response(population, transform, *, invertible: bool = False, log_prob=None) -> TransformedPopulation:
    """The response ``transform(r)`` of ``population`` (data processing, re-parametrisation)."""
    if not isinstance(population, _Population):
        raise TypeError(f"population: expected a population, got {type(population).__name__}")
    if not callable(transform):
        raise TypeError(f"transform: expected a callable, got {type(transform).__name__}")
    return TransformedPopulation(population, transform, invertible, log_prob)


def abs_response(population) -> TransformedPopulation:
    """``r' = |r|`` elementwise (the paper's Fig. 3); log_prob is exact for Gaussian noise."""
    log_prob = None
    if isinstance(population, GaussianPopulation):

        def log_prob(r, x, base):
            lp = jnp.logaddexp(base.log_prob_each(r, x), base.log_prob_each(-r, x))
            return jnp.sum(jnp.where(r >= 0, lp, -jnp.inf))

    return transform_response(population, jnp.abs, invertible=False, log_prob=log_prob)
