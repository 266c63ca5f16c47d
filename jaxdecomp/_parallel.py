"""Independent pieces of work spread over this process's devices, with the same keys as on one device.

On a CPU, XLA runs one program on about one core (1.2 cores measured for an I_local map): on the
2-core development VM (BENCHMARKS.md, "CPU cores as devices, side by side";
``experiments/benchmarks/cpu_devices.py``) exposing the two cores as two devices made the demo's UNet
training step 2.0x faster (the batch split between them), its I_local maps 1.6x and its MI 1.5x (one
piece per device in flight). So the command line exposes the cores as devices
(:func:`force_cpu_devices`, before JAX starts its backend), training splits its batch over all devices
(``diffusion.train``), and the map and MI phases place independent pieces on each local device
(:func:`replicas`). Every piece keeps the key it has on one device, so results do not depend on the
number of devices (up to float rounding). On GPUs and TPUs the same code spreads the pieces over the
accelerators.

Place every piece's inputs on its device BEFORE dispatching any piece: an operation on an array that
lives on device 0 (slicing the next piece out of a batch) is queued behind the piece already running
there, which silently serialises the devices (the first version of the maps phase did this and ran no
faster on two devices than on one).
"""

from __future__ import annotations

import os

#: Environment variable: the number of CPU devices the command line exposes (``1`` turns it off).
CPU_DEVICES_ENV = "JAXDECOMP_CPU_DEVICES"
_FLAG = "--xla_force_host_platform_device_count"
MAX_CPU_DEVICES = 8


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_cpu_devices(divides: int | None = None) -> int:
    """The largest power of two at most ``min(usable cores, MAX_CPU_DEVICES)`` that divides ``divides``
    (a batch size the devices must split evenly), or 1."""
    n = 1
    while 2 * n <= min(usable_cores(), MAX_CPU_DEVICES) and (divides is None or int(divides) % (2 * n) == 0):
        n *= 2
    return n


def force_cpu_devices(divides: int | None = None) -> int | None:
    """Expose the CPU cores as JAX devices by adding ``--xla_force_host_platform_device_count`` to
    ``XLA_FLAGS``; call it before JAX initialises its backend (the first array or ``jax.devices()``).

    Leaves ``XLA_FLAGS`` alone if it already sets the count (the user's choice, or a test's). The count is
    ``JAXDECOMP_CPU_DEVICES`` if set (a positive integer; ``1`` turns this off), else
    :func:`default_cpu_devices` ``(divides)``. Only the CPU platform is affected: on a machine with a GPU
    the GPU stays the default device. Returns the count set, or None if nothing was changed."""
    flags = os.environ.get("XLA_FLAGS", "")
    if _FLAG in flags:
        return None
    want = os.environ.get(CPU_DEVICES_ENV)
    if want is not None:
        try:
            n = int(want)
        except ValueError:
            raise ValueError(f"{CPU_DEVICES_ENV}: expected a positive integer, got {want!r}") from None
        if n < 1:
            raise ValueError(f"{CPU_DEVICES_ENV}: expected a positive integer, got {want!r}")
    else:
        n = default_cpu_devices(divides)
    if n <= 1:
        return None
    os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}={n}".strip()
    return n


def is_concrete(*trees) -> bool:
    """True unless some leaf is a tracer (inside ``jit``/``grad``/``vmap`` the work stays one program)."""
    import jax

    return not any(isinstance(v, jax.core.Tracer) for t in trees for v in jax.tree_util.tree_leaves(t))


def replicas(tree, devices) -> list:
    """``tree`` placed on each device (a list, one per device); with one device, ``[tree]`` untouched."""
    import jax

    if len(devices) <= 1:
        return [tree]
    return [jax.device_put(tree, d) for d in devices]
