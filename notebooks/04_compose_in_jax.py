# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The estimators inside your JAX code: `jit`, `vmap`, `grad`, sharding
#
# jaxdecomp's estimators are pure functions of `(key, denoiser, population, x)`: denoisers and populations
# are pytrees, randomness comes from explicit PRNG keys, and nothing leaves the device inside the hot path.
# So they compose with JAX's transformations like any other function. This notebook wraps
# `estimate.ilocal` in `jax.jit`, maps it over stimuli with `jax.vmap`, differentiates it with `jax.grad`,
# and shards a batch of stimuli over all devices with `jax.sharding`, checking at every step that the
# transformed code gives the same numbers as plain code. It uses exact (analytic) denoisers for a
# Gaussian-mixture prior, so it runs in seconds on a CPU.

# %%
# Colab: install jaxdecomp when it is not importable (a no-op locally, in CI, or once installed).
# There is no public repository URL yet: set REPO_URL to the git repository that hosts jaxdecomp.
import importlib.util

REPO_URL = "https://github.com/OWNER/jaxdecomp"  # <-- set this to the jaxdecomp repository

if importlib.util.find_spec("jaxdecomp") is None:
    if "OWNER" in REPO_URL:
        raise RuntimeError("jaxdecomp is not installed: set REPO_URL in this cell to its git repository")
    # %pip install -q "jaxdecomp @ git+{REPO_URL}"

# %% [markdown]
# JAX fixes the number of CPU devices when it is first imported. To try sharding on a single CPU (Colab's
# CPU runtime has one device), the next cell asks for 4 virtual CPU devices; it must run before `jax` is
# imported (restart the runtime otherwise). On a GPU or TPU runtime it changes nothing you use:
# `jax.devices()` lists the accelerators.

# %%
import os

# Small sizes for continuous integration (the tests set JAXDECOMP_NOTEBOOK_SMALL=1);
# the full sizes run in minutes on a Colab CPU runtime.
SMALL = os.environ.get("JAXDECOMP_NOTEBOOK_SMALL") == "1" or os.environ.get("CI", "").lower() == "true"

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxdecomp import estimate
from jaxdecomp.diffusion import gmm_denoiser, schedules

print(jax.devices())
N_LEVELS, N_SAMPLES, BATCH = (16, 16, 8) if SMALL else (48, 64, 32)

# %% [markdown]
# ## An exact model
#
# A 3-component Gaussian mixture prior on $x \in \mathbb R^4$ and three linear-Gaussian neurons
# $r = A x + 0.5\,n$. `gmm_denoiser` returns exact denoisers (and exact posterior sampling);
# `D.population` is the matching encoder. `il(key, x)` is I_local of one stimulus.

# %%
rng = np.random.default_rng(0)
D = gmm_denoiser([0.2, 0.3, 0.5], rng.normal(size=(3, 4)) * 1.5, [0.3, 0.5, 0.8], rng.normal(size=(3, 4)), 0.5)
population = D.population
levels = schedules.levels("gauss_legendre", -10.0, 14.0, N_LEVELS)


def il(key, x):
    """I_local(x) in nats, one stimulus x: (4,)."""
    return estimate.ilocal(key, D, population, x, levels=levels, n_samples=N_SAMPLES).total


xs = D.prior_sample(jax.random.PRNGKey(1), BATCH)
keys = jax.random.split(jax.random.PRNGKey(0), BATCH)
eager = np.array([float(il(k, x)) for k, x in zip(keys, xs)])
print("I_local of", BATCH, "stimuli (python loop):", np.round(eager, 3))

# %% [markdown]
# ## `jax.jit` and `jax.vmap`
#
# The same key gives the same Monte Carlo draws, so the transformed functions must agree with the loop to
# floating-point rounding.

# %%
il_jit = jax.jit(il)
jitted = np.array([float(il_jit(k, x)) for k, x in zip(keys, xs)])
batched = np.asarray(jax.jit(jax.vmap(il))(keys, xs))
print("max |jit - eager|  =", np.abs(jitted - eager).max())
print("max |vmap - eager| =", np.abs(batched - eager).max())
assert np.allclose(jitted, eager, rtol=1e-5, atol=1e-5)
assert np.allclose(batched, eager, rtol=1e-5, atol=1e-5)


# %% [markdown]
# Composing with your own code: the average of I_local over stimuli drawn from the prior is the mutual
# information (completeness); here it is one jitted function, checked against $I(R;X)$ computed from exact
# log densities.

# %%
@jax.jit
def mean_ilocal(key, x):
    ks = jax.random.split(key, x.shape[0])
    totals = jax.vmap(il)(ks, x)
    return totals.mean(), totals.std() / jnp.sqrt(x.shape[0])


x_prior = D.prior_sample(jax.random.PRNGKey(2), 4 * BATCH)
m, se = mean_ilocal(jax.random.PRNGKey(3), x_prior)
mi_est = D.mutual_information(jax.random.PRNGKey(4), 20_000, 4)  # an Estimate: .value and .stderr (nats)
mi, mi_se = float(mi_est.value), float(mi_est.stderr)
print(f"E_x[I_local] = {float(m):.3f} +- {float(se):.3f} nats;  I(R;X) = {mi:.3f} +- {mi_se:.3f}")
assert abs(float(m) - mi) < 4 * np.hypot(float(se), mi_se)

# %% [markdown]
# ## `jax.grad`
#
# `jax.grad` of I_local with respect to the stimulus differentiates the noise path and the denoisers.
# (What this gradient includes, and unbiased gradients of information, are the subject of
# `03_gradients.ipynb`.) Here: `grad` composes with `jit` and `vmap` and gives the same numbers.

# %%
grad_il = jax.grad(il, argnums=1)
g_eager = np.stack([np.asarray(grad_il(k, x)) for k, x in zip(keys[:4], xs[:4])])
g_jit_vmap = np.asarray(jax.jit(jax.vmap(grad_il))(keys[:4], xs[:4]))
print("d I_local / dx for the first stimulus:", np.round(g_eager[0], 3))
assert np.isfinite(g_eager).all()
assert np.allclose(g_jit_vmap, g_eager, rtol=1e-4, atol=1e-5)

# %% [markdown]
# ## Sharding a batch over devices
#
# A `Mesh` over all devices with one axis, `"batch"`; the stimuli (and their keys) are placed with
# `NamedSharding(mesh, P("batch"))`, so each device holds `BATCH / n_devices` of them. The jitted, vmapped
# function is unchanged: XLA partitions the computation along the batch and the output stays sharded.
# The same code runs on 1 CPU, on 4 virtual CPUs, or on a pod (where `jax.distributed.initialize()` comes
# first).

# %%
mesh = Mesh(np.array(jax.devices()), ("batch",))
batch_sharding = NamedSharding(mesh, P("batch"))
xs_sharded = jax.device_put(xs, batch_sharding)
keys_sharded = jax.device_put(keys, batch_sharding)

sharded = jax.jit(jax.vmap(il))(keys_sharded, xs_sharded)
print(f"{len(jax.devices())} device(s); output sharding: {sharded.sharding}")
jax.debug.visualize_array_sharding(sharded)
assert np.allclose(np.asarray(sharded), eager, rtol=1e-5, atol=1e-5)
