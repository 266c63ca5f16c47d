"""Input validation shared by the whole package.

Checks run on concrete (non-traced) values only: under ``jit`` a value is not
known, so value checks are skipped there and the public entry points validate
before they trace. Shape checks are static and always run.
"""

from __future__ import annotations

import jax
import numpy as np


def is_concrete(x) -> bool:
    """True when ``x`` holds concrete values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def as_array(name: str, x, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``x`` as a float numpy array, raising a ValueError naming ``name``.

    Rejects non-numeric input, wrong rank and non-finite values.
    """
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected a numeric array, got {type(x).__name__}") from err
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            raise ValueError(
                f"{name}: expected an array with ndim in {allowed}, got shape {arr.shape}"
            )
    if arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def check_positive(name: str, x, allow_zero: bool = False) -> None:
    """Raise a ValueError naming ``name`` if a concrete ``x`` has non-positive entries."""
    if not is_concrete(x):
        return
    arr = np.asarray(x)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    bad = arr < 0 if allow_zero else arr <= 0
    if np.any(bad):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name}: must be {kind}, got minimum {arr.min():.6g}")
