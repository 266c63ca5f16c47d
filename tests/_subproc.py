"""The environment of a test's worker subprocess: CPU only, the repository root importable, and
``n_devices`` forced host devices (XLA's ``--xla_force_host_platform_device_count``, set even for 1 so
that the command line's own choice of CPU devices, ``jaxdecomp._parallel``, leaves it alone)."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def forced_devices_env(n_devices: int = 1) -> dict:
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    flags.append(f"--xla_force_host_platform_device_count={n_devices}")   # explicit, also 1: the CLI keeps it
    env["XLA_FLAGS"] = " ".join(flags)
    return env
