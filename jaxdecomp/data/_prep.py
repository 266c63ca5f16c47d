"""Preparing stimulus arrays: scaling and sharded mini-batches.

(``jaxdecomp.data.check_images``, the validation of a batch of images, lives in
:mod:`jaxdecomp._checks`, the package's one validation module.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdecomp._checks import check_bool, check_float, check_int, check_key
from jaxdecomp.data._batching import Batcher, key_words, put_global


def scale_to_unit(x, lo=None, hi=None) -> np.ndarray:
    """Map ``x`` linearly to [-1, 1]: ``2 (x - lo) / (hi - lo) - 1``, then clip.

    Args:
      x: numeric array of any shape (e.g. ``(N, 28, 28) uint8`` MNIST).
      lo, hi: values mapped to -1 and +1; default ``x.min()`` and ``x.max()``
        (pass ``lo=0, hi=255`` for 8-bit images to keep a fixed, global map).
        Values outside ``[lo, hi]`` are clipped.

    Returns:
      ``float32`` numpy array of ``x``'s shape, in [-1, 1].

    Raises:
      TypeError: non-numeric ``x``. ValueError: empty or non-finite ``x``,
      constant ``x`` (with default lo/hi), or ``lo >= hi``.
    """
    if isinstance(x, jax.core.Tracer):
        raise TypeError("x: scale_to_unit works on concrete arrays, got a traced value")
    try:
        arr = np.asarray(x)
    except Exception as err:  # noqa: BLE001
        raise TypeError(f"x: expected a numeric array, got {type(x).__name__}") from err
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise TypeError(f"x: expected an integer or float array, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"x: expected a non-empty array, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"x: expected finite values, got {int(np.sum(~np.isfinite(arr)))} NaN/inf")
    lo = float(arr.min()) if lo is None else check_float("lo", lo)
    hi = float(arr.max()) if hi is None else check_float("hi", hi)
    if not lo < hi:
        what = "x is constant" if lo == hi else "lo > hi"
        raise ValueError(
            f"lo, hi: expected lo < hi to scale x to [-1, 1], got lo={lo:.6g}, hi={hi:.6g} ({what})"
        )
    out = 2.0 * (arr - lo) / (hi - lo) - 1.0
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def _data_sharding() -> NamedSharding:
    mesh = Mesh(np.array(jax.devices()), ("data",))
    return NamedSharding(mesh, P("data"))


def batches(
    key,
    x,
    r=None,
    *,
    batch_size: int,
    shard: bool = True,
    drop_remainder: bool = True,
    epoch: int = 0,
) -> Iterator[Any]:
    """One epoch of mini-batches in an order permuted by ``key``.

    Arguments are checked when ``batches`` is called (not at the first ``next``).

    Args:
      key: PRNG key. The order is the package's one batching rule
        (:mod:`jaxdecomp.data._batching`): a host-side permutation seeded by
        ``(key, epoch)``, the same one :func:`jaxdecomp.diffusion.train` walks, so with
        ``drop_remainder`` the batches of epoch ``e`` are those of training steps
        ``e * (N // batch_size)`` onwards.
      x: ``(N, ...)`` array (numpy or jax) of stimuli.
      r: optional ``(N, ...)`` array of responses paired with ``x``.
      batch_size: examples per batch, int >= 1 and <= N; with ``shard`` a multiple
        of ``jax.device_count()``.
      shard: place each batch with ``NamedSharding(Mesh(devices, ("data",)),
        P("data"))``, i.e. split along the batch axis over all devices; otherwise
        put it on the default device.
      drop_remainder: drop the last ``N % batch_size`` examples (every batch has
        the same shape, so a jitted step compiles once). With ``False`` the last
        batch is shorter; when sharding, it must also divide over the devices.
      epoch: which epoch's permutation to walk, an int >= 0.

    Yields:
      ``x_batch`` of shape ``(batch_size, ...)`` (x's dtype), or
      ``(x_batch, r_batch)`` when ``r`` is given; jax Arrays on the device(s).
      Over one epoch every example appears exactly once (up to the dropped
      remainder).

    Note: with several processes (multi-host), ``jax.devices()`` spans all hosts; a
    numpy ``x`` (identical on every host) is placed with
    ``jax.make_array_from_callback``, so each host fills its own shards.
    """
    key = check_key(key)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    epoch = check_int("epoch", epoch, minimum=0)
    shard = check_bool("shard", shard)
    drop_remainder = check_bool("drop_remainder", drop_remainder)

    def as_batchable(arg, v):
        if not isinstance(v, (np.ndarray, jax.Array)):
            try:
                v = np.asarray(v)
            except Exception as err:  # noqa: BLE001
                raise TypeError(f"{arg}: expected an array, got {type(v).__name__}") from err
        if v.ndim == 0:
            raise ValueError(f"{arg}: expected an array with a leading batch axis, got a scalar")
        return v

    x = as_batchable("x", x)
    n = x.shape[0]
    if r is not None:
        r = as_batchable("r", r)
        if r.shape[0] != n:
            raise ValueError(
                f"x, r: expected the same number of examples (leading axis), got "
                f"x with {n} (shape {tuple(x.shape)}) and r with {r.shape[0]} "
                f"(shape {tuple(r.shape)})"
            )
    if batch_size > n:
        raise ValueError(f"batch_size: expected <= the number of examples {n}, got {batch_size}")
    sharding = None
    if shard:
        n_dev = jax.device_count()
        if batch_size % n_dev:
            raise ValueError(
                f"batch_size: expected a multiple of the device count {n_dev} when "
                f"shard=True, got {batch_size}"
            )
        tail = n % batch_size
        if not drop_remainder and tail % n_dev:
            raise ValueError(
                f"batch_size: with drop_remainder=False and shard=True the last batch of "
                f"{tail} examples (N={n} mod batch_size={batch_size}) must divide over "
                f"{n_dev} devices; use drop_remainder=True or another batch_size"
            )
        sharding = _data_sharding()
    order = Batcher(key_words(key), n, batch_size).permutation(epoch)
    n_batches = n // batch_size if drop_remainder else -(-n // batch_size)

    def take(v, idx):
        if isinstance(v, jax.Array):
            b = jnp.take(v, jnp.asarray(idx), axis=0)
            return jax.device_put(b, sharding) if sharding is not None else jax.device_put(b)
        b = np.asarray(v[idx])
        return put_global(b, sharding) if sharding is not None else jax.device_put(b)

    def gen():
        for i in range(n_batches):
            idx = order[i * batch_size : (i + 1) * batch_size]
            xb = take(x, idx)
            yield xb if r is None else (xb, take(r, idx))

    return gen()
