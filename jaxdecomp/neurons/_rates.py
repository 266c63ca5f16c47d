"""Rate models: differentiable tuning curves ``rate(x) -> (n,)`` for one stimulus.

Each model is a pytree (its parameters are leaves), so ``jax.grad`` reaches the
parameters and ``jax.vmap`` batches stimuli. ``x`` is a scalar for 1-D stimuli
or a vector ``(d,)`` for d-dimensional ones (an array of any shape is flattened).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

Array = Any


def _vec(x):
    """Stimulus as a 1-D vector: a scalar becomes shape (1,), an image is flattened."""
    return jnp.reshape(jnp.asarray(x), (-1,))


def _stimulus(x, weights, name: str):
    """``x`` as a vector of the dimension the parameter ``name`` (``weights``: (n,) for scalar
    stimuli, (n, d) for d-dimensional ones) expects; a clear error instead of silent broadcasting."""
    v = _vec(x)
    w = jnp.asarray(weights)
    d = 1 if w.ndim == 1 else w.shape[1]
    if v.shape[0] != d:
        raise ValueError(
            f"x: this tuning model is for stimuli of dimension {d} ({name} of shape {tuple(w.shape)}), got a "
            f"stimulus of shape {tuple(jnp.shape(x))}; give {name} the shape (n, {v.shape[0]}) for "
            f"{v.shape[0]}-dimensional stimuli")
    return v


@struct.dataclass
class GaussianBumps:
    """Bell-shaped tuning: ``f_n(x) = baseline_n + amplitude_n exp(-|x - c_n|^2 / (2 w_n^2))``.

    centers: (n,) for scalar stimuli or (n, d); widths, amplitudes, baseline: (n,).
    """

    centers: Array
    widths: Array
    amplitudes: Array
    baseline: Array

    def __call__(self, x):
        c = jnp.asarray(self.centers)
        c = c[:, None] if c.ndim == 1 else c
        d2 = jnp.sum((_stimulus(x, self.centers, "centers")[None, :] - c) ** 2, axis=-1)
        return self.baseline + self.amplitudes * jnp.exp(-0.5 * d2 / self.widths**2)


@struct.dataclass
class Sigmoids:
    """Sigmoid tuning: ``f_n(x) = baseline_n + amplitude_n sigmoid(slope_n . x - offset_n)``.

    slopes: (n,) for scalar stimuli or (n, d); offsets, amplitudes, baseline: (n,).
    With scalar stimuli ``offset_n = slope_n * center_n`` puts the midpoint at center_n.
    """

    slopes: Array
    offsets: Array
    amplitudes: Array
    baseline: Array

    def __call__(self, x):
        s = jnp.asarray(self.slopes)
        s = s[:, None] if s.ndim == 1 else s
        return self.baseline + self.amplitudes * jax.nn.sigmoid(s @ _stimulus(x, self.slopes, "slopes") - self.offsets)


@struct.dataclass
class VonMises:
    """Circular tuning for an angle x (radians):
    ``f_n(x) = baseline_n + amplitude_n exp(kappa_n (cos(x - c_n) - 1))``.

    Note: :mod:`jaxdecomp.exact` blurs stimuli on the real line, not on the circle;
    for I_local of a circular variable put the grid on one period with a prior that
    vanishes at its ends, or treat the result as that of the unwrapped variable.
    """

    centers: Array
    kappas: Array
    amplitudes: Array
    baseline: Array

    def __call__(self, x):
        x = _stimulus(x, self.centers, "centers")[0]   # an angle: a scalar stimulus
        return self.baseline + self.amplitudes * jnp.exp(
            self.kappas * (jnp.cos(x - self.centers) - 1.0)
        )


@struct.dataclass
class Linear:
    """Linear map ``f(x) = A x + b``; A: (n,) for scalar stimuli or (n, d); b: (n,).

    Meant for Gaussian noise (it can go negative, which Poisson noise rejects).
    """

    A: Array
    b: Array

    def __call__(self, x):
        A = jnp.asarray(self.A)
        A = A[:, None] if A.ndim == 1 else A
        return A @ _stimulus(x, self.A, "A") + self.b


def _f(x, name: str = "x"):
    """A float array; concrete values must be finite (a clear error naming ``name``)."""
    if not isinstance(x, jax.core.Tracer):
        try:
            host = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name}: expected numbers, got {type(x).__name__} {x!r}") from err
        if not np.all(np.isfinite(host)):
            raise ValueError(f"{name}: contains NaN or infinite values")
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _broadcast(n: int, **kw):
    out = {}
    for k, v in kw.items():
        v = _f(v, k)
        if v.ndim > 1 or (v.ndim == 1 and v.shape[0] not in (1, n)):
            raise ValueError(f"{k}: expected a scalar or one value per neuron ({n},), got shape {tuple(v.shape)}")
        out[k] = jnp.broadcast_to(v, (n,))
    return out


def _positive(name: str, v):
    if not isinstance(v, jax.core.Tracer) and np.any(np.asarray(v) <= 0):
        raise ValueError(f"{name}: must be positive, got minimum {float(np.min(np.asarray(v))):.6g}")


def gaussian_bumps(centers, widths=1.0, amplitudes=1.0, baseline=0.0) -> GaussianBumps:
    """Gaussian tuning curves; scalars broadcast to the number of centres."""
    centers = jnp.atleast_1d(_f(centers, "centers"))
    if centers.ndim > 2:
        raise ValueError(f"centers: expected (n,) or (n, d), got shape {tuple(centers.shape)}")
    n = centers.shape[0]
    p = _broadcast(n, widths=widths, amplitudes=amplitudes, baseline=baseline)
    _positive("widths", p["widths"])
    return GaussianBumps(centers, **p)


def sigmoids(centers, slopes=1.0, amplitudes=1.0, baseline=0.0) -> Sigmoids:
    """Sigmoid tuning curves for scalar stimuli with midpoints at ``centers``."""
    centers = jnp.atleast_1d(_f(centers, "centers"))
    if centers.ndim != 1:
        raise ValueError(f"centers: expected (n,) midpoints for scalar stimuli, got shape {tuple(centers.shape)}")
    n = centers.shape[0]
    p = _broadcast(n, slopes=slopes, amplitudes=amplitudes, baseline=baseline)
    return Sigmoids(p["slopes"], p["slopes"] * centers, p["amplitudes"], p["baseline"])


def von_mises(centers, kappas=1.0, amplitudes=1.0, baseline=0.0) -> VonMises:
    """Von Mises tuning curves for circular stimuli (radians)."""
    centers = jnp.atleast_1d(_f(centers, "centers"))
    if centers.ndim != 1:
        raise ValueError(f"centers: expected (n,) preferred angles, got shape {tuple(centers.shape)}")
    n = centers.shape[0]
    return VonMises(centers, **_broadcast(n, kappas=kappas, amplitudes=amplitudes, baseline=baseline))


def linear(A, b=0.0) -> Linear:
    """Linear tuning ``A x + b``."""
    A = jnp.atleast_1d(_f(A, "A"))
    if A.ndim > 2:
        raise ValueError(f"A: expected (n,) or (n, d), got shape {tuple(A.shape)}")
    n = A.shape[0]
    return Linear(A, _broadcast(n, b=b)["b"])
