"""The contracts everything else plugs into. Imports nothing from the package.

* :class:`Encoder`: a population of neurons ``p(r | x)`` for ONE stimulus ``x`` of any
  shape (batch with ``jax.vmap``); a pytree, differentiable in ``x`` and in its parameters.
* :class:`Denoiser`: the protocol ``eps_hat = denoiser(x_noisy, log_snr, r)``.
* :class:`Estimate` and :class:`MapResult`: the only result types of the estimators.
* ``Array`` and ``Key``: aliases used in signatures and docstrings.
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple, Optional, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

Array = Any  #: a jax.Array, numpy array or anything ``jnp.asarray`` accepts
Key = Any  #: a JAX PRNG key (``jax.random.PRNGKey(0)`` or ``jax.random.key(0)``)

__all__ = ["Array", "Key", "Encoder", "Denoiser", "Estimate", "MapResult", "StaticCallable", "as_pytree_callable",
           "rate_jacobian_fisher"]


# ----------------------------------------------------------------------------- results


class Estimate(NamedTuple):
    """A scalar (or per-grid-point) estimate in nats with its Monte Carlo standard error.

    value: the estimate; stderr: its standard error (same shape);
    info: ``None`` or a dict of diagnostics (e.g. ``per_pair`` values, a trained ``model``).
    A pytree (``info`` included), so it passes through ``jit`` / ``vmap``. Read the fields by
    name (``est.value``, ``est.stderr``): unpacking ``value, se = est`` fails (three fields).
    """

    value: Array
    stderr: Array
    info: Optional[dict] = None


class MapResult(NamedTuple):
    """A stimulus-wise measure: ``map`` (shape of ``x``), ``total`` (its sum) and ``stderr`` of the total.

    For a batch, each field gains a leading batch axis. A pytree, so it passes through
    ``jit``/``vmap``; take ``jax.grad`` of a function returning ``result.total``.
    """

    map: Array
    total: Array
    stderr: Array


# ----------------------------------------------------------------------------- denoiser


@runtime_checkable
class Denoiser(Protocol):
    """``eps_hat = denoiser(x_noisy, log_snr, r)``: the predicted noise, shape of ``x_noisy``.

    x_noisy: ONE variance-preserving noisy stimulus ``alpha x + sigma eps`` (``alpha^2 + sigma^2
    = 1``), shape ``S``; log_snr: a scalar ``log(alpha^2 / sigma^2)``; r: a response ``(n,)``,
    or ``None`` for the unconditional denoiser ``E[eps | x_noisy]``. Batch with ``jax.vmap``.
    Trained networks (:mod:`jaxdecomp.diffusion.networks`) and the analytic oracles
    (:mod:`jaxdecomp.diffusion.analytic`) satisfy it.

    Optional: ``posterior_sample(key, x_noisy, log_snr, r=None)``, an EXACT draw from
    ``p(x | x_noisy)`` (or ``p(x | x_noisy, r)``) of shape ``S``. Where present, the
    estimators' ``response_sampler="posterior_sample"`` uses it instead of reverse diffusion;
    provide it only when the draw is exact (analytic priors), never an approximation.
    An optional ``shape`` attribute (the stimulus shape ``S``) spares ``stimulus_shape=``.
    """

    def __call__(self, x_noisy: Array, log_snr: Array, r: Optional[Array] = None) -> Array: ...


# ----------------------------------------------------------------------------- encoder


def rate_jacobian_fisher(rate, weights, x, *, diag: bool = False):
    """Fisher information of independent neurons whose response law depends on ``x`` only
    through its mean ``f_n(x)``: ``J = sum_n w_n grad f_n grad f_n^T``.

    rate: ``x -> (n,)`` mean responses; weights: ``f (n,) -> (n,)`` the Fisher information of
    each neuron's law about its own mean (``1/f`` Poisson, ``1/sigma^2`` Gaussian with fixed
    sigma, ``1/(f(1-f))`` Bernoulli: ``1/Var`` for a natural exponential family in its mean).
    Returns shape ``x.shape + x.shape`` (``diag=False``) or ``x.shape`` (``diag=True``).
    The gradients come from forward-mode autodiff of ``rate``.
    """
    x = jnp.asarray(x, dtype=jnp.result_type(float))
    f = rate(x)
    jac = jax.jacfwd(rate)(x)  # (n, *x.shape)
    w = weights(f)
    if diag:
        return jnp.tensordot(w, jac**2, axes=1)
    jf = jac.reshape(jac.shape[0], -1)
    return (jf.T @ (w[:, None] * jf)).reshape(x.shape + x.shape)


class Encoder(abc.ABC):
    """An encoder ``p(r | x)``: a population of neurons, for ONE stimulus ``x`` of any shape.

    Subclasses are pytrees (e.g. ``flax.struct.dataclass``) whose array leaves are the
    parameters, and implement, for one stimulus (batch with ``jax.vmap``):

    * ``rate(x) -> (n,)``          mean response of each neuron;
    * ``sample(key, x) -> (n,)``   one response;
    * ``log_prob(r, x) -> ()``     log-probability (log-density for continuous responses);
    * ``fisher_diag(x)``           diagonal of the Fisher information about ``x``, shape of ``x``.

    Derived here: :meth:`fisher_trace`, :meth:`n_neurons` and :meth:`fisher`. ``fisher``
    (the full matrix) is computed from the rates when the subclass defines
    ``fisher_weights(f)`` (the per-neuron Fisher information about its own mean, see
    :func:`rate_jacobian_fisher`); for a scalar stimulus it is ``fisher_diag``; otherwise
    override it. Every method must be a pure JAX function of ``(self, x)`` (traceable).
    """

    @abc.abstractmethod
    def rate(self, x) -> Array:
        """Mean response of each neuron, shape ``(n,)``."""

    @abc.abstractmethod
    def sample(self, key, x) -> Array:
        """One response ``r ~ p(r | x)``, shape ``(n,)``."""

    @abc.abstractmethod
    def log_prob(self, r, x) -> Array:
        """``log p(r | x)``, a scalar."""

    @abc.abstractmethod
    def fisher_diag(self, x) -> Array:
        """Diagonal of the Fisher information matrix about ``x``, shape of ``x``."""

    # ------------------------------------------------------------------ derived
    def fisher_trace(self, x) -> Array:
        """Trace of the Fisher information matrix, a scalar."""
        return jnp.sum(self.fisher_diag(x))

    def n_neurons(self, x) -> int:
        """Number of neurons (needs an example stimulus to know the shape)."""
        return int(jax.eval_shape(self.rate, jnp.asarray(x, dtype=jnp.result_type(float))).shape[0])

    def fisher(self, x) -> Array:
        """Fisher information matrix about ``x``, shape ``x.shape + x.shape``."""
        if type(self).fisher_weights is not Encoder.fisher_weights:
            return rate_jacobian_fisher(self.rate, self.fisher_weights, x)
        x = jnp.asarray(x, dtype=jnp.result_type(float))
        if x.size == 1:  # a 1 x 1 matrix is its diagonal
            return jnp.reshape(self.fisher_diag(x), x.shape + x.shape)
        raise NotImplementedError(
            f"fisher: {type(self).__name__} defines no full Fisher matrix for a stimulus of shape {x.shape}; "
            f"override fisher(x), or define fisher_weights(f) (each neuron's Fisher information about its "
            f"mean rate) when the response law depends on x only through the rates; fisher_diag(x) is available"
        )

    def fisher_weights(self, f) -> Array:
        """Per-neuron Fisher information about its own mean ``f``, ``(n,)``. Optional: define it
        when the response law of each neuron depends on ``x`` only through ``f_n(x)``; then
        :meth:`fisher` comes from the rate Jacobian (:func:`rate_jacobian_fisher`)."""
        raise NotImplementedError(f"fisher_weights: not defined by {type(self).__name__}")


# ----------------------------------------------------------------------------- plain callables under jit
@jax.tree_util.register_static
class StaticCallable:
    """A plain Python callable (not a pytree of arrays) made a static argument of ``jit``, with its
    attributes forwarded: ``shape``, an exact ``posterior_sample`` and any other method of the wrapped
    object stay visible to the estimators (``jax.tree_util.Partial`` hid them). ``func`` is the wrapped
    object; two wrappers of the same object are equal, so ``jit`` compiles once per object."""

    __slots__ = ("func",)

    def __init__(self, func):
        object.__setattr__(self, "func", func)

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)

    def __getattr__(self, name):
        if name == "func":
            raise AttributeError(name)
        return getattr(self.func, name)

    def __eq__(self, other):
        if not isinstance(other, StaticCallable):
            return False
        if other.func is self.func:
            return True
        try:
            return bool(other.func == self.func)
        except Exception:          # noqa: BLE001  (an == that returns arrays, or raises)
            return False

    def __hash__(self):
        try:
            return hash(self.func)
        except TypeError:          # an unhashable callable object: identity
            return id(self.func)

    def __repr__(self):
        return f"StaticCallable({self.func!r})"


def _array_leaf(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic, float, int, bool, complex))


def as_pytree_callable(fn):
    """Pass pytrees of arrays (analytic denoisers, NNX modules, populations) as they are; wrap anything
    else in :class:`StaticCallable` (static under ``jit``: it cannot carry traced parameters)."""
    if isinstance(fn, StaticCallable):
        return fn
    leaves = jax.tree_util.tree_leaves(fn)
    if leaves and all(_array_leaf(l) for l in leaves):
        return fn
    return StaticCallable(fn)
