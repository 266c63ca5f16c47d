"""Input validation for the whole package: the one place argument checks live.

Every check names the argument in its message (``"grid: expected an int >= 1, got 0"``)
and raises ``TypeError`` for a value of the wrong kind and ``ValueError`` for a value of
the right kind that is out of range, of the wrong shape, or not finite.

Value checks run on concrete (non-traced) values only: under ``jit`` a value is not
known, so value checks are skipped there and the public entry points validate
before they trace. Shape and dtype checks are static and always run.

Images are ``float`` arrays with pixel values in [-1, 1]; :data:`PIXEL_TOLERANCE`
is the one tolerance of that range used everywhere (resampling and float round-off
may overshoot a little).
"""

from __future__ import annotations

import numbers
import os

import jax
import jax.numpy as jnp
import numpy as np

#: Tolerance of the pixel-range check: values in [-1 - tol, 1 + tol] are accepted.
PIXEL_TOLERANCE = 1e-3


def is_concrete(x) -> bool:
    """True when ``x`` holds concrete values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


# ----------------------------------------------------------------------------- scalars


def check_bool(name: str, value) -> bool:
    """Return ``value`` if it is a bool, else raise TypeError naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def check_int(name: str, value, minimum: int | None = None) -> int:
    """Return ``value`` as a Python int, raising TypeError/ValueError naming ``name``.

    Accepts Python and numpy integers (not bools); ``minimum`` is inclusive.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def check_float(name: str, value, *, positive: bool = False, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite Python float, raising TypeError/ValueError naming ``name``.

    Accepts Python/numpy reals and concrete 0-d arrays. With ``positive`` the value must
    be > 0 (>= 0 with ``allow_zero``).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        if isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0:
            if isinstance(value, jax.core.Tracer):
                raise TypeError(f"{name}: expected a concrete float, got a traced value")
            if not np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_:
                raise TypeError(f"{name}: expected a float, got an array of dtype {value.dtype}")
        else:
            raise TypeError(f"{name}: expected a float, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite float, got {value}")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name}: expected a finite {kind} float, got {value}")
    return value


def check_shape(shape, *, ndim: int | None = None, minimum: int = 1, name: str = "shape") -> tuple[int, ...]:
    """Return ``shape`` as a tuple of Python ints, raising TypeError/ValueError naming ``name``.

    ``ndim``: the required length (any non-zero length when None); ``minimum``: the
    smallest allowed size of every axis.
    """
    want = f"a tuple of {ndim}" if ndim else "a non-empty tuple of"
    try:
        items = tuple(shape)
    except TypeError:
        raise TypeError(f"{name}: expected {want} ints >= {minimum}, got {shape!r}") from None
    out = []
    for s in items:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Real):
            raise TypeError(f"{name}: expected {want} ints >= {minimum}, got {shape!r}")
        if not float(s).is_integer():  # 8.0 is accepted, 8.5 is not
            raise ValueError(f"{name}: expected {want} ints >= {minimum}, got {shape!r}")
        out.append(int(s))
    if (ndim is not None and len(out) != ndim) or not out or min(out) < minimum:
        raise ValueError(f"{name}: expected {want} ints >= {minimum}, got {shape!r}")
    return tuple(out)


RESUME_MODES = ("auto", "must", "never")


def check_resume(resume, overwrite, what: str) -> None:
    """``resume`` (one of :data:`RESUME_MODES`) and ``overwrite`` (a bool) of a resumable run; ``what``
    names the saved work (``"checkpoints"``, ``"maps"``) in the message for ``resume='must'`` with
    ``overwrite=True``."""
    if not isinstance(resume, str) or resume not in RESUME_MODES:
        raise ValueError(f"resume: expected one of {RESUME_MODES}, got {resume!r}")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite: expected a bool, got {type(overwrite).__name__}")
    if resume == "must" and overwrite:
        raise ValueError(f"resume, overwrite: resume='must' continues the {what} that overwrite=True would "
                         f"delete; pass one of them")


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


def check_file(path, name: str = "path") -> str:
    """Return ``path`` (str or os.PathLike) as a str naming an existing file.

    Raises TypeError (not a path), FileNotFoundError (missing) or ValueError (a directory).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name}: no such file: {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"{name}: expected a file, got a directory: {path!r}")
    return path


# ----------------------------------------------------------------------------- arrays


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


#: jax arrays up to this many entries are checked on the host (a copy is cheaper than a
#: device dispatch); larger ones are reduced on their device.
_HOST_CHECK_MAX_SIZE = 1 << 16


@jax.jit
def _pixel_stats(x):
    """(number of non-finite entries, min, max) of a jax array, in one device dispatch."""
    return jnp.sum(~jnp.isfinite(x)), jnp.min(x), jnp.max(x)


def check_images(x, shape=None, name: str = "x", *, batched: bool = True):
    """Validate images in [-1, 1]: the package's one image check.

    Args:
      x: with ``batched=True`` (a data set) a batch ``(N, *shape)``, or with
        ``shape=None`` ``(N, H, W)`` / ``(N, H, W, C)``; with ``batched=False`` (the
        input of an image encoder) one image of exactly ``shape``. Values must be
        finite and within ``[-1 - PIXEL_TOLERANCE, 1 + PIXEL_TOLERANCE]``; they are
        checked only for a concrete ``x`` (under ``jit`` only dtype and shape are
        checked). Large jax arrays are reduced on their device (only three scalars
        come to the host).
      shape: the expected per-image shape (tuple of ints); required when not batched.
      name: the argument name used in error messages.
      batched: see ``x``.

    Returns:
      batched: ``x`` as ``float32``, numpy stays numpy and jax stays jax; integer
      images are rejected (map them with :func:`jaxdecomp.data.scale_to_unit`).
      Not batched: ``x`` as a jax float array (integer images are cast to the
      default float dtype, float dtypes are kept, so float64 stays float64 under x64).

    Raises:
      TypeError: non-array or (batched) non-float ``x``. ValueError: wrong rank/shape,
      empty batch, NaN/inf, or values outside the range.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str, got {type(name).__name__}")
    if not batched:
        if shape is None:
            raise TypeError("shape: expected the image shape when batched=False, got None")
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.result_type(float))
        if tuple(x.shape) != tuple(shape):
            raise ValueError(f"{name}: expected an image of shape {tuple(shape)}, got shape {tuple(x.shape)}")
        _check_pixel_values(name, x)
        return x

    is_jax = isinstance(x, jax.Array)  # includes tracers
    if not is_jax:
        try:
            x = np.asarray(x)
        except Exception as err:  # noqa: BLE001
            raise TypeError(f"{name}: expected an array of images, got {type(x).__name__}") from err
    dtype = x.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{name}: expected a float array of images in [-1, 1], got dtype {dtype} "
            f"(map integer images with jaxdecomp.data.scale_to_unit first)"
        )
    if shape is not None:
        try:
            shape = tuple(int(s) for s in shape)
        except TypeError as err:
            raise TypeError(f"shape: expected a tuple of ints, got {shape!r}") from err
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"{name}: expected shape (N, {', '.join(map(str, shape))}) "
                f"(a batch of {shape} images), got {tuple(x.shape)}"
            )
    elif x.ndim not in (3, 4):
        raise ValueError(
            f"{name}: expected a batch of images of shape (N, H, W) or (N, H, W, C), "
            f"got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one image, got shape {tuple(x.shape)}")
    _check_pixel_values(name, x)
    return x.astype(jnp.float32 if is_jax else np.float32)


def _check_pixel_values(name: str, x) -> None:
    """Raise a ValueError naming ``name`` unless a concrete ``x`` lies in [-1, 1] (with tolerance)."""
    if not is_concrete(x):
        return
    if isinstance(x, jax.Array) and x.size > _HOST_CHECK_MAX_SIZE:
        n_bad, lo, hi = (v.item() for v in _pixel_stats(x))
    else:
        arr = np.asarray(x)
        tol = PIXEL_TOLERANCE
        if np.all((arr >= -1.0 - tol) & (arr <= 1.0 + tol)):  # the common case, one pass (NaN fails)
            return
        n_bad, lo, hi = int(np.sum(~np.isfinite(arr))), float(np.min(arr)), float(np.max(arr))
    if n_bad:
        raise ValueError(
            f"{name}: contains NaN or infinite values ({int(n_bad)} entries); "
            f"pixel values must lie in [-1, 1]"
        )
    if lo < -1.0 - PIXEL_TOLERANCE or hi > 1.0 + PIXEL_TOLERANCE:
        raise ValueError(
            f"{name}: pixel values must lie in [-1, 1] (tolerance {PIXEL_TOLERANCE:g}), got range "
            f"[{lo:.6g}, {hi:.6g}] (use jaxdecomp.data.scale_to_unit)"
        )
