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
# # Pixel maps of information on handwritten digits
#
# Which pixels of an image is a population's information about? I_local splits the information into a
# map $I_i(x)$ per pixel; for images it is estimated with two denoisers (one unconditional, one conditioned
# on the response), $I_i(x) = \tfrac12\int \mathbb E\,(\hat\epsilon_i(x_a, a, r) - \hat\epsilon_i(x_a, a))^2\,da$
# with $r$ drawn from $p(r|x_a)$. This notebook follows the paper's Fig. 4 at small scale: 16×16 digits
# (bundled with scikit-learn), the 49-neuron LNP population (Gaussian receptive fields on a 7×7 lattice,
# Poisson spikes), one small UNet trained on (image, response) pairs, and I_local maps beside Fisher maps.
# A second part uses a model with **exact** denoisers (a Gaussian-mixture prior fitted to the digits and
# linear-Gaussian neurons) to show exact maps and check completeness.

# %%
# Colab: install jaxdecomp when it is not importable (a no-op locally, in CI, or once installed).
# There is no public repository URL yet: set REPO_URL to the git repository that hosts jaxdecomp.
import importlib.util

REPO_URL = "https://github.com/OWNER/jaxdecomp"  # <-- set this to the jaxdecomp repository

if importlib.util.find_spec("jaxdecomp") is None:
    if "OWNER" in REPO_URL:
        raise RuntimeError("jaxdecomp is not installed: set REPO_URL in this cell to its git repository")
    # %pip install -q "jaxdecomp @ git+{REPO_URL}"

# %%
import os

# Small sizes for continuous integration (the tests set JAXDECOMP_NOTEBOOK_SMALL=1);
# the full sizes run in minutes on a Colab CPU runtime.
SMALL = os.environ.get("JAXDECOMP_NOTEBOOK_SMALL") == "1" or os.environ.get("CI", "").lower() == "true"

import time

import jax
import numpy as np

from jaxdecomp import data, estimate, neurons
from jaxdecomp.diffusion import TrainConfig, build_denoiser, denoiser_spec, gmm_denoiser, schedules, train
from jaxdecomp.estimate import pixel_maps
from jaxdecomp.neurons import simulate_responses
from jaxdecomp.plotting import map_figure  # importing plotting selects Agg for scripts; the next line restores inline

# %matplotlib inline
import matplotlib.pyplot as plt

CFG = (dict(steps=200, channels=(16, 32), copies=1, panel=3, n_levels=12, n_samples=4, n_steps=4,
            components=3, exact_levels=16, n_complete=8) if SMALL else
       dict(steps=1500, channels=(16, 32), copies=4, panel=6, n_levels=32, n_samples=16, n_steps=16,
            components=10, exact_levels=48, n_complete=32))
SIZE = 16
print("small" if SMALL else "full", "settings:", CFG)

# %% [markdown]
# ## Stimuli and neurons
#
# `data.digits(16)` gives the 1797 scikit-learn digits upsampled to 16×16 in $[-1, 1]$.
# `neurons.lnp_population` is the paper's population: $f_n(x) = 40\,\sigma(0.4\, w_n^\top(x + 0.1))$ with
# Gaussian receptive fields $w_n$, Poisson spike counts. Its Fisher information is exact
# (`population.fisher_diag(x)`: one value per pixel).

# %%
x_all = np.asarray(data.digits(SIZE), dtype=np.float32)
population = neurons.lnp_population((SIZE, SIZE))
W = np.asarray(population.rates.W).reshape(-1, SIZE, SIZE)  # receptive fields (49, 16, 16)

key = jax.random.PRNGKey(0)
k_split, k_resp, k_train, k_maps, k_exact = jax.random.split(key, 5)
perm = np.asarray(jax.random.permutation(k_split, x_all.shape[0]))
x_test, x_train = x_all[perm[: CFG["panel"]]], x_all[perm[CFG["panel"]:]]

fig, axes = plt.subplots(1, 4, figsize=(9, 2.4))
axes[0].imshow(x_test[0], cmap="gray", vmin=-1, vmax=1)
axes[0].set_title("a digit")
axes[1].imshow(W.sum(0), cmap="viridis")
axes[1].set_title("49 receptive fields")
axes[2].bar(np.arange(49), np.asarray(population.rate(x_test[0])))
axes[2].set_title("rates (spikes)")
axes[3].imshow(np.asarray(population.fisher_diag(x_test[0])), cmap="magma")
axes[3].set_title("Fisher diagonal")
for ax in (axes[0], axes[1], axes[3]):
    ax.set_xticks([]); ax.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Train a denoiser
#
# `simulate_responses` draws `copies` Poisson responses per training digit. One UNet gives both denoisers:
# it is trained with the response dropped 20% of the time (replaced by a learned null embedding), so
# `model(x_noisy, log_snr, None)` is the unconditional denoiser and `model(x_noisy, log_snr, r)` the
# conditional one. `train` uses AdamW with warm-up and cosine decay and keeps an EMA of the weights.

# %%
xs, rs = simulate_responses(k_resp, population, x_train, CFG["copies"])
net = build_denoiser(denoiser_spec((SIZE, SIZE), 49, CFG["channels"]), seed=0)
t0 = time.perf_counter()
result = train(net, xs, rs, TrainConfig(steps=CFG["steps"], batch_size=64, warmup_steps=min(100, CFG["steps"] // 5),
                                        progress=not SMALL), key=k_train)
print(f"trained {result.step} steps on {xs.shape[0]} pairs in {time.perf_counter() - t0:.0f} s")
model = result.model  # EMA weights

plt.figure(figsize=(4, 2.5))
plt.semilogy(result.losses[:, 0], result.losses[:, 1])
plt.xlabel("step"); plt.ylabel("denoising loss")
plt.show()
assert np.isfinite(result.losses[:, 1]).all() and result.losses[-1, 1] < result.losses[0, 1]

# %% [markdown]
# ## I_local and Fisher pixel maps
#
# `pixel_maps` calls `estimate.ilocal` (Gauss-Legendre quadrature in log-SNR; responses drawn from
# $p(r|x_a)$ by reverse diffusion from the noisy image, `response_sampler="posterior_sample"`) and the
# population's exact Fisher diagonal. Fisher is blob-like, following the receptive fields; I_local is
# concentrated on the digit's strokes inside them. At the small CI sizes the network is barely trained and
# the maps are noisy; the full sizes give cleaner maps.

# %%
t0 = time.perf_counter()
maps = pixel_maps(k_maps, model, population, x_test, n_levels=CFG["n_levels"], n_samples=CFG["n_samples"],
                  n_steps=CFG["n_steps"])
print(f"maps of {len(x_test)} digits in {time.perf_counter() - t0:.0f} s")
for t, se in zip(maps["ilocal_total"], maps["ilocal_se"]):
    print(f"I_local(x) = {t:6.2f} +- {se:.2f} nats")
fig = map_figure(x_test, {"Fisher J_ii(x)": maps["fisher"], "I_local": maps["ilocal"]},
                 titles=[f"I={t:.1f} nats" for t in maps["ilocal_total"]])
plt.show()
assert maps["ilocal"].shape == x_test.shape and np.isfinite(maps["ilocal"]).all()
assert np.allclose(maps["ilocal"].reshape(len(x_test), -1).sum(1), maps["ilocal_total"], rtol=1e-4)
assert (maps["ilocal_total"] > 0).all()

# %% [markdown]
# ## Ground truth: exact denoisers
#
# With a Gaussian-mixture prior and linear-Gaussian neurons $r = A x + \sigma n$ every denoiser and the
# posterior $p(x | x_a)$ are closed form (`diffusion.gmm_denoiser`), so I_local maps follow with no network.
# Here the prior is a Gaussian mixture fitted to the digits (scikit-learn) and the neurons are
# `neurons.linear_gaussian_population`, with the same 7×7 receptive fields as the LNP. For this encoder the
# Fisher map is the same for every image, while I_local depends on the digit through the prior.
# The last cell checks completeness: the average of I_local over stimuli drawn from the prior must equal
# $I(R;X)$ (computed independently from exact log densities) within Monte Carlo error.

# %%
from sklearn.mixture import GaussianMixture

K = CFG["components"]
gm = GaussianMixture(K, covariance_type="full", reg_covar=1e-2, random_state=0, max_iter=20 if SMALL else 100)
gm.fit(x_all.reshape(len(x_all), -1).astype(np.float64))
linear = neurons.linear_gaussian_population((SIZE, SIZE), gain=0.5, sigma=1.0)
oracle = gmm_denoiser(gm.weights_, gm.means_.reshape(K, SIZE, SIZE), gm.covariances_,
                      linear.rates.A, linear.sigma)
levels = schedules.levels("gauss_legendre", -10.0, 14.0, CFG["exact_levels"])
t0 = time.perf_counter()
truth = estimate.ilocal(k_exact, oracle, linear, x_test, levels=levels, n_samples=16)
fisher_lin = np.asarray(jax.vmap(linear.fisher_diag)(x_test))
print(f"exact maps of {len(x_test)} digits in {time.perf_counter() - t0:.0f} s")
fig = map_figure(x_test, {"Fisher (linear)": fisher_lin, "exact I_local": np.asarray(truth.map)},
                 titles=[f"I={t:.1f} nats" for t in np.asarray(truth.total)])
plt.show()

# %%
k_prior, k_il, k_mi = jax.random.split(jax.random.fold_in(k_exact, 1), 3)
x_prior = oracle.prior_sample(k_prior, CFG["n_complete"])
res = estimate.ilocal(k_il, oracle, linear, x_prior, levels=levels, n_samples=8)
tot = np.asarray(res.total)
mean_il = tot.mean()
se_il = np.sqrt(tot.var(ddof=1) / len(tot) + np.sum(np.asarray(res.stderr) ** 2) / len(tot) ** 2)
mi_est = oracle.mutual_information(k_mi, 20_000, 4)  # an Estimate: .value and .stderr (nats)
mi, mi_se = float(mi_est.value), float(mi_est.stderr)
z = (mean_il - mi) / np.hypot(se_il, mi_se)
print(f"E_x[I_local] over {len(tot)} prior samples = {mean_il:.2f} +- {se_il:.2f} nats;  "
      f"I(R;X) = {mi:.2f} +- {mi_se:.2f}  ({z:+.1f} SE)")
assert abs(z) < 4, z

# %% [markdown]
# `experiments/image_truth.py` trains a UNet on pairs drawn from this exact model and compares its maps
# with the exact ones; `jaxdecomp demo` runs the LNP pipeline above end to end from the command line.
