"""Work spread over devices (jaxdecomp._parallel): the MI and the pixel maps give the same numbers with one
device and with two forced CPU devices (the same keys per piece), and the command line's choice of CPU
devices respects the user's flags."""

import json
import subprocess
import sys

import numpy as np
import pytest

from jaxdecomp import _parallel
from tests._subproc import forced_devices_env

WORKER = r"""
import json, sys
import jax, numpy as np
from flax import nnx
from jaxdecomp import estimate, neurons
from jaxdecomp.diffusion import MLPDenoiser, fit_response_scaling
pop = neurons.lnp_population((8, 8))
net = MLPDenoiser((8, 8), n_neurons=49, hidden=16, depth=1, emb_dim=8, n_fourier=2, rngs=nnx.Rngs(0))
x = np.linspace(-1, 1, 7 * 64, dtype=np.float32).reshape(7, 8, 8) ** 3
r = np.asarray(jax.vmap(pop.sample)(jax.random.split(jax.random.PRNGKey(1), 7), x))
fit_response_scaling(net, r)
params = nnx.state(net, nnx.Param)       # an untrained net's zero output layer would make every value 0
leaves, tree = jax.tree_util.tree_flatten(params)
keys = jax.random.split(jax.random.PRNGKey(4), len(leaves))
nnx.update(net, jax.tree_util.tree_unflatten(tree, [p + 0.3 * jax.random.normal(k, p.shape, p.dtype)
                                                    for p, k in zip(leaves, keys)]))
mi = estimate.mutual_information(jax.random.PRNGKey(2), net, x, r, n_noise=2, return_pairs=True, form="gap")
maps = estimate.pixel_maps(jax.random.PRNGKey(3), net, pop, x[:3], n_levels=4, n_samples=4, n_steps=2,
                           progress=False)
print(json.dumps(dict(devices=len(jax.local_devices()), mi=float(mi.value), per_pair=np.asarray(mi.info["per_pair"]).tolist(),
                      maps=np.asarray(maps["ilocal"]).tolist(), se=np.asarray(maps["ilocal_se"]).tolist())))
"""


def _run(n_devices):
    out = subprocess.run([sys.executable, "-c", WORKER], capture_output=True, text=True, timeout=600,
                         env=forced_devices_env(n_devices))
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.heavy
def test_mi_and_maps_do_not_depend_on_the_device_count():
    one, two = _run(1), _run(2)
    assert one["devices"] == 1 and two["devices"] == 2
    assert np.min(np.abs(one["per_pair"])) > 1e-3 and np.min(np.asarray(one["se"])) > 0   # not trivially equal
    assert len(set(np.round(one["per_pair"], 6))) == 7
    # 7 pairs over 2 devices: shards of 4 (the last padded), the same noise draw for every pair;
    # float32 programs compiled per device can differ in the last bits only
    np.testing.assert_allclose(two["per_pair"], one["per_pair"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(two["maps"], one["maps"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(two["se"], one["se"], rtol=1e-5, atol=1e-7)


def test_force_cpu_devices_respects_the_user(monkeypatch):
    monkeypatch.setattr(_parallel, "usable_cores", lambda: 6)
    monkeypatch.delenv(_parallel.CPU_DEVICES_ENV, raising=False)
    assert _parallel.default_cpu_devices() == 4                       # a power of two, at most the cores
    assert _parallel.default_cpu_devices(divides=6) == 2              # and dividing the batch
    assert _parallel.default_cpu_devices(divides=3) == 1
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_thunk_runtime=true")
    assert _parallel.force_cpu_devices(divides=64) == 4
    assert _parallel.os.environ["XLA_FLAGS"] == ("--xla_cpu_use_thunk_runtime=true "
                                                 "--xla_force_host_platform_device_count=4")
    assert _parallel.force_cpu_devices() is None                      # already set (by the user or above): kept
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setenv(_parallel.CPU_DEVICES_ENV, "1")
    assert _parallel.force_cpu_devices() is None and _parallel.os.environ["XLA_FLAGS"] == ""
    monkeypatch.setenv(_parallel.CPU_DEVICES_ENV, "3")
    assert _parallel.force_cpu_devices() == 3
    monkeypatch.setenv("XLA_FLAGS", "")
    for bad in ("0", "two"):
        monkeypatch.setenv(_parallel.CPU_DEVICES_ENV, bad)
        with pytest.raises(ValueError, match=_parallel.CPU_DEVICES_ENV):
            _parallel.force_cpu_devices()
