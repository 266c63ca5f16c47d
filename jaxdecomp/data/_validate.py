"""Argument checks shared by the data modules (private)."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np


def check_int(name: str, value, minimum: int | None = None) -> int:
    """Return ``value`` as a Python int, raising TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def check_float(name: str, value) -> float:
    """Return ``value`` as a finite Python float, raising TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0:
            if isinstance(value, jax.core.Tracer):
                raise TypeError(f"{name}: expected a concrete float, got a traced value")
            value = float(value)
        else:
            raise TypeError(f"{name}: expected a float, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite float, got {value}")
    return value


def check_key(key, name: str = "key"):
    """Accept a typed PRNG key (``jax.random.key``) or a raw ``(2,) uint32`` key."""
    if isinstance(key, jax.Array) or isinstance(key, np.ndarray):
        dtype = key.dtype
        if jnp.issubdtype(dtype, jax.dtypes.prng_key) and key.ndim == 0:
            return key
        if dtype == np.uint32 and key.shape == (2,):
            return jnp.asarray(key)
        raise TypeError(
            f"{name}: expected a single PRNG key (jax.random.key(...) or "
            f"jax.random.PRNGKey(...)), got an array of shape {key.shape} and dtype {dtype}"
        )
    raise TypeError(
        f"{name}: expected a PRNG key (jax.random.key(...) or jax.random.PRNGKey(...)), "
        f"got {type(key).__name__}"
    )
