"""Encoders ``p(r | x)``: a rate model plus a noise model, for ONE stimulus.

Every population subclasses the public :class:`~jaxdecomp._interfaces.Encoder` and is a
pytree with

* ``rate(x) -> (n,)``            mean response of each neuron,
* ``sample(key, x) -> (n,)``     one response,
* ``log_prob(r, x) -> ()``       log-likelihood (log-density for Gaussian noise),
* ``fisher(x)``                  Fisher information matrix about ``x``, shape
  ``x.shape + x.shape`` (a scalar for a scalar stimulus); ``fisher_diag(x)``
  (shape of ``x``) and ``fisher_trace(x)`` (scalar) are shortcuts.

Batch with ``jax.vmap``. Fisher information is closed form: ``sum_n w_n
grad f_n grad f_n^T`` with the noise model's weight ``w_n = 1/f_n`` (Poisson)
or ``1/sigma_n^2`` (Gaussian); the gradients of the rates come from autodiff.

The rate model is held as it is, in the field ``rates``: a pytree rate model (e.g.
:func:`~jaxdecomp.neurons.gaussian_bumps`) is a child of the population, so
``jax.grad(f)(pop).rates`` has the rate model's own structure (``.rates.centers``); a
plain function (no array parameters) is static (part of the tree structure, not a leaf).
A pytree rate model's Python float fields are turned into arrays here (so that they get
gradients); Python int / bool fields and non-array leaves are refused (mark such fields
static with ``flax.struct.field(pytree_node=False)``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.scipy.special import gammaln, xlogy

from jaxdecomp._checks import check_positive, is_concrete
from jaxdecomp._interfaces import Array, Encoder, rate_jacobian_fisher


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


# ----------------------------------------------------------------------------- rate models


def _is_static_rate(fn) -> bool:
    """A rate model without pytree parameters: a plain function (its own single leaf) or a
    pytree with no leaves at all. Such a model is static in the population's tree."""
    leaves = jax.tree_util.tree_leaves(fn)
    return not leaves or (len(leaves) == 1 and leaves[0] is fn)


def _prepare_rates(rate_fn):
    """Validate a rate model; turn the Python float leaves of a pytree model into arrays."""
    if isinstance(rate_fn, Encoder):
        raise TypeError(f"rate_fn: expected a rate model x -> (n,), got a population ({type(rate_fn).__name__})")
    if not callable(rate_fn):
        raise TypeError(f"rate_fn: expected a callable x -> (n,) rates, got {type(rate_fn).__name__}")
    if _is_static_rate(rate_fn):
        return rate_fn
    flat, treedef = jax.tree_util.tree_flatten_with_path(rate_fn)
    leaves = []
    for path, leaf in flat:
        name = jax.tree_util.keystr(path) or "<root>"
        if isinstance(leaf, (jax.Array, np.ndarray)):
            leaves.append(leaf)
        elif isinstance(leaf, (bool, np.bool_, int, np.integer)):
            raise TypeError(
                f"rate_fn: parameter {name} of {type(rate_fn).__name__} is a Python {type(leaf).__name__} "
                f"({leaf!r}), which would get no gradient; pass a float array (jnp.asarray({leaf!r}, float)) "
                f"or, if it is a setting (a size, a flag), mark the field static with "
                f"flax.struct.field(pytree_node=False)"
            )
        elif isinstance(leaf, (float, np.floating)):
            leaves.append(jnp.asarray(leaf, dtype=jnp.result_type(float)))
        else:
            raise TypeError(
                f"rate_fn: parameter {name} of {type(rate_fn).__name__} is a {type(leaf).__name__}, not an array; "
                f"a rate model's pytree leaves must be arrays (its parameters): mark other fields static with "
                f"flax.struct.field(pytree_node=False)"
            )
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _check_response(pop, r, x):
    r = jnp.asarray(r)
    n = pop.n_neurons(x)
    if r.shape != (n,):
        raise ValueError(f"r: expected shape ({n},) for this population, got {r.shape}")
    return r


def _rate_encoder(cls):
    """Frozen dataclass + pytree for a population whose field ``rates`` holds a rate model.

    ``rates`` is a child when it is a pytree model and static (in the tree structure) when it
    is a plain function; the other fields in ``cls._children`` are children, the rest static.
    The choice is made once, at construction, and carried through flatten / unflatten."""
    cls = dataclasses.dataclass(frozen=True, eq=False)(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    others = [n for n in names if n != "rates"]

    def flatten_with_keys(obj):
        dyn = [n for n in others if n in cls._children]
        static_rates = obj._static_rates
        keys = ([] if static_rates else ["rates"]) + dyn
        children = [(jax.tree_util.GetAttrKey(n), getattr(obj, n)) for n in keys]
        aux = (static_rates, obj.rates if static_rates else None,
               tuple((n, getattr(obj, n)) for n in others if n not in cls._children))
        return children, aux

    def flatten(obj):
        children, aux = flatten_with_keys(obj)
        return [c for _, c in children], aux

    def unflatten(aux, children):
        static_rates, rates, static = aux
        obj = object.__new__(cls)
        children = list(children)
        object.__setattr__(obj, "_static_rates", static_rates)
        object.__setattr__(obj, "rates", rates if static_rates else children.pop(0))
        for n in others:
            if n in cls._children:
                object.__setattr__(obj, n, children.pop(0))
        for n, v in static:
            object.__setattr__(obj, n, v)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls


class _RatePopulation(Encoder):
    """Shared part of the rate-model populations (Poisson, Gaussian): rates, Fisher from the
    rate Jacobian with the noise model's weights ``fisher_weights(f)``."""

    _children: tuple = ()

    def __post_init__(self):
        rates = _prepare_rates(self.rates)
        object.__setattr__(self, "rates", rates)
        object.__setattr__(self, "_static_rates", _is_static_rate(rates))

    def replace(self, **changes):
        """A copy with some fields replaced (``pop.replace(rates=...)``)."""
        return dataclasses.replace(self, **changes)

    def _rates_of(self, x):
        out = jnp.asarray(self.rates(x))
        if out.ndim != 1:
            raise ValueError(
                f"rate_fn: must return a 1-D array of rates (n,), got shape {out.shape} "
                f"for a stimulus of shape {jnp.shape(x)}"
            )
        return out

    def fisher(self, x):
        """Fisher information matrix about ``x``: shape ``x.shape + x.shape``."""
        return rate_jacobian_fisher(self.rate, self.fisher_weights, x)

    def fisher_diag(self, x):
        """Diagonal of the Fisher matrix (per stimulus dimension / pixel), shape of ``x``."""
        return rate_jacobian_fisher(self.rate, self.fisher_weights, x, diag=True)

    def log_prob(self, r, x):
        return jnp.sum(self.log_prob_each(r, x))


@_rate_encoder
class PoissonPopulation(_RatePopulation):
    """Independent Poisson spike counts with rates ``rates(x)`` (non-negative)."""

    rates: Any

    def rate(self, x):
        f = self._rates_of(x)
        if is_concrete(f) and np.any(np.asarray(f) < 0):
            raise ValueError(
                f"rate_fn: Poisson rates must be non-negative, got minimum {float(jnp.min(f)):.6g}"
            )
        return f

    def fisher_weights(self, f):
        return jnp.where(f > 0, 1.0 / jnp.where(f > 0, f, 1.0), 0.0)

    def sample(self, key, x):
        """One draw of the counts. A NaN rate (e.g. a NaN stimulus) raises when concrete; when
        traced the count is NaN (jax.random.poisson would return -1)."""
        f = self.rate(x)
        if is_concrete(f) and not np.all(np.isfinite(np.asarray(f))):
            raise ValueError("x: the Poisson rates are NaN or infinite at this stimulus (is x NaN?)")
        counts = jax.random.poisson(key, jnp.where(jnp.isfinite(f), f, 0.0)).astype(jnp.result_type(float))
        return jnp.where(jnp.isfinite(f), counts, jnp.nan)

    def log_prob_each(self, r, x):
        """Per-neuron log-probabilities, shape (n,)."""
        return poisson_log_pmf(_check_response(self, r, x), self.rate(x))


@_rate_encoder
class GaussianPopulation(_RatePopulation):
    """Independent Gaussian responses ``r_n = f_n(x) + sigma_n * noise`` (fixed sigma)."""

    rates: Any
    sigma: Array
    _children = ("sigma",)

    def rate(self, x):
        f = self._rates_of(x)
        sd = jnp.shape(self.sigma)
        if len(sd) > 1 or (len(sd) == 1 and sd[0] not in (1, f.shape[0])):
            raise ValueError(f"sigma: expected a scalar or one noise SD per neuron ({f.shape[0]},), got shape {sd}")
        return f

    def fisher_weights(self, f):
        return jnp.broadcast_to(1.0 / self.sigma**2, f.shape)

    def sample(self, key, x):
        f = self.rate(x)
        return f + self.sigma * jax.random.normal(key, f.shape, dtype=f.dtype)

    def log_prob_each(self, r, x):
        """Per-neuron log-densities, shape (n,)."""
        return gaussian_log_density(_check_response(self, r, x), self.rate(x), self.sigma)


@struct.dataclass
class JointPopulation(Encoder):
    """Two populations responding independently given the stimulus; ``r = [r1, r2]``."""

    first: Any
    second: Any

    def rate(self, x):
        return jnp.concatenate([self.first.rate(x), self.second.rate(x)])

    def split(self, r, x):
        """Split a joint response into ``(r1, r2)``."""
        n1 = self.first.n_neurons(x)
        r = _check_response(self, r, x)
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
class TransformedPopulation(Encoder):
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
        return self.log_prob_fn(_check_response(self, r, x), x, self.base)

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

    ``rate_fn`` may be a rate model from this module (differentiable parameters; it is
    ``pop.rates``) or any JAX-traceable function of one stimulus (static, no parameters).
    """
    return PoissonPopulation(rate_fn)


def gaussian_population(rate_fn, sigma) -> GaussianPopulation:
    """Independent Gaussian neurons ``r = rate_fn(x) + sigma * noise``; sigma scalar or (n,) > 0."""
    if is_concrete(sigma):
        arr = np.asarray(sigma, dtype=np.float64)
        if arr.ndim > 1:
            raise ValueError(f"sigma: expected a scalar or a 1-D array (n,), got shape {arr.shape}")
        check_positive("sigma", arr)
    return GaussianPopulation(rate_fn, jnp.asarray(sigma, dtype=jnp.result_type(float)))


def joint_population(first, second) -> JointPopulation:
    """The population made of two populations, conditionally independent given ``x``."""
    for name, p in (("first", first), ("second", second)):
        if not isinstance(p, Encoder):
            raise TypeError(f"{name}: expected a population (a jaxdecomp.neurons.Encoder), got {type(p).__name__}")
    return JointPopulation(first, second)


def transform_response(population, transform, *, invertible: bool = False, log_prob=None) -> TransformedPopulation:
    """The response ``transform(r)`` of ``population`` (data processing, re-parametrisation)."""
    if not isinstance(population, Encoder):
        raise TypeError(f"population: expected a population (a jaxdecomp.neurons.Encoder), got {type(population).__name__}")
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
