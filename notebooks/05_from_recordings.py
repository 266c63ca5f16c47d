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
# # From recordings to information maps
#
# Your data are images shown and spike counts recorded, often several repeats per image. I_local needs
# responses to stimuli that were never shown (blurred versions of each image), so it needs an **encoding
# model** `p(r | x)` fitted to the recordings. This notebook does the whole path on "recordings" from a
# known model, so that every step can be checked against the truth:
#
# 1. record: a known LNP Poisson population (9 neurons with Gaussian receptive fields) on 8×8 digits,
#    4 repeats per image;
# 2. fit a GLM encoder with `neurons.fit_encoder` (split by stimulus, early stopping on the validation
#    log-likelihood) and score it the way system-identification papers do (`neurons.encoder_metrics`:
#    bits/spike over a constant-rate null, correlation with the trial average, fraction of explainable
#    variance explained);
# 3. decompose with the fitted encoder and with the true one under the same prior (the empirical prior
#    over held-out digits, whose denoisers are exact), with common random numbers;
# 4. see how the fitted encoder's filters and I_local converge as the number of recorded images grows.
#
# The same steps at the command line: `jaxdecomp fit --data rec.npz --out enc` (with `x` images and `r`
# counts of shape `(N, repeats, n)`), then `jaxdecomp decompose --data imgs.npz --model MODEL --encoder enc`.

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

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jaxdecomp import data, neurons, tasks

# Small sizes for continuous integration (the tests set JAXDECOMP_NOTEBOOK_SMALL=1).
SMALL = os.environ.get("JAXDECOMP_NOTEBOOK_SMALL") == "1" or os.environ.get("CI", "").lower() == "true"
N_RECORD = 600 if SMALL else 1200        # recorded images
REPEATS = 4
N_PRIOR = 120 if SMALL else 400          # held-out digits: the prior of the decomposition
SWEEP = (100, 300, 600) if SMALL else (100, 300, 600, 1200)
N_SAMPLES = 32 if SMALL else 128         # draws per level for I_local

# %% [markdown]
# ## 1. Record from a known population

# %%
true_pop = neurons.lnp_population((8, 8), grid=3, extent=0.5, rf_sigma=0.25, gain=10.0, slope=0.15, offset=0.0)
x_all = np.asarray(data.digits(8), np.float32)                  # (1797, 8, 8) in [-1, 1]
perm = np.random.default_rng(0).permutation(len(x_all))
x_rec, x_prior = x_all[perm[:N_RECORD]], x_all[perm[N_RECORD:N_RECORD + N_PRIOR]]

rates = np.asarray(jax.vmap(true_pop.rate)(jnp.asarray(x_rec)))  # (N, 9) spikes per trial
r_rec = np.random.default_rng(1).poisson(rates[:, None, :], (N_RECORD, REPEATS, rates.shape[1])).astype(np.float32)
print(f"recorded {N_RECORD} images x {REPEATS} repeats from {rates.shape[1]} neurons; "
      f"{r_rec.mean():.2f} spikes per trial per neuron")

# %% [markdown]
# ## 2. Fit a GLM encoder and score it on held-out images
#
# `fit_encoder` splits the images (not the trials) into training and validation sets, fits by Poisson
# maximum likelihood with optax, and keeps the parameters of the best validation step. The result is an
# ordinary population of the `Encoder` contract, usable by every estimator. Its metrics are computed on
# the validation images; the true model's metrics on the same images say what "perfect" looks like here.

# %%
fit = neurons.fit_encoder(jax.random.PRNGKey(2), x_rec, r_rec, nonlinearity="sigmoid", learning_rate=0.05,
                          steps=2000)
val = fit.val_idx
true_m = neurons.encoder_metrics(true_pop, x_rec[val], r_rec[val])
for name, m in (("true model", true_m), ("fitted GLM", fit.metrics)):
    print(f"{name:10s}: {m['bits_per_spike_pooled']:.3f} bits/spike, correlation {m['correlation_mean']:.3f}, "
          f"FEV {m['fev_mean']:.3f}  ({len(val)} validation images)")


def filter_corr(a, b):
    return np.array([np.corrcoef(u.ravel(), v.ravel())[0, 1] for u, v in zip(a, b)])


fc = filter_corr(np.asarray(fit.encoder.rates.W), np.asarray(true_pop.rates.W))
print(f"filter correlation with the truth: min {fc.min():.3f}, median {np.median(fc):.3f}")
assert fc.min() > 0.8, "the fit did not recover the filters"

# %%
W_true, W_fit = np.asarray(true_pop.rates.W), np.asarray(fit.encoder.rates.W)
fig, axes = plt.subplots(2, 9, figsize=(13, 3.2))
for i in range(9):
    for row, (W, lab) in enumerate(((W_true, "true"), (W_fit, "fitted"))):
        lim = float(np.abs(W[i]).max())
        im = axes[row, i].imshow(W[i].reshape(8, 8), cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[row, i].set_xticks([]), axes[row, i].set_yticks([])
        fig.colorbar(im, ax=axes[row, i], fraction=0.046, pad=0.03).ax.tick_params(labelsize=6)
    axes[0, i].set_title(f"neuron {i}", fontsize=8)
    axes[1, i].set_xlabel(f"corr {fc[i]:.3f}", fontsize=8)
axes[0, 0].set_ylabel("true filter\n(weight per pixel)", fontsize=8)
axes[1, 0].set_ylabel("fitted filter", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Decompose with the fitted encoder and with the true one
#
# The prior is the empirical distribution of held-out digits, so the denoisers are exact (finite sums)
# and any difference between the two maps comes from the encoder, not from a network. One key for both:
# common random numbers make the comparison sharper than either map's own error.

# %%
panel = jnp.asarray(x_prior[:4])
key = jax.random.PRNGKey(3)
res = {name: tasks.empirical(x_prior, enc).ilocal(key, panel, n_samples=N_SAMPLES)
       for name, enc in (("true", true_pop), ("fitted", fit.encoder))}
maps = {k: np.asarray(v.map) for k, v in res.items()}
corr = np.array([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(maps["fitted"], maps["true"])])
for j in range(len(panel)):
    print(f"digit {j}: I_local true {float(res['true'].total[j]):.3f} ± {float(res['true'].stderr[j]):.3f}, "
          f"fitted {float(res['fitted'].total[j]):.3f} ± {float(res['fitted'].stderr[j]):.3f} nats; "
          f"map correlation {corr[j]:.3f}")

# %%
fig, axes = plt.subplots(3, len(panel), figsize=(2.6 * len(panel), 7))
for j in range(len(panel)):
    im = axes[0, j].imshow(np.asarray(panel[j]), cmap="gray", vmin=-1, vmax=1)
    fig.colorbar(im, ax=axes[0, j], fraction=0.046, pad=0.03, label="pixel value")
    lim = float(max(maps["true"][j].max(), maps["fitted"][j].max()))
    for row, name in ((1, "true"), (2, "fitted")):
        im = axes[row, j].imshow(maps[name][j], cmap="magma", vmin=0, vmax=lim)
        fig.colorbar(im, ax=axes[row, j], fraction=0.046, pad=0.03, label="nats / pixel")
        axes[row, j].set_title(f"{name}: {float(res[name].total[j]):.2f} ± {float(res[name].stderr[j]):.2f} nats",
                               fontsize=8)
    axes[2, j].set_xlabel(f"map correlation {corr[j]:.3f}", fontsize=8)
for ax in axes.ravel():
    ax.set_xticks([]), ax.set_yticks([])
axes[1, 0].set_ylabel("I_local, true encoder")
axes[2, 0].set_ylabel("I_local, fitted encoder")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. How much data is enough?
#
# Fit again on the first `n` recorded images for growing `n`: the filters converge to the truth, and so
# does the fitted encoder's I_local (same prior, same key). The error bars combine the two estimates'
# standard errors as if they were independent: an upper bound, since common random numbers make the
# difference far more precise than either estimate.

# %%
rows = []
for n in SWEEP:
    f_n = neurons.fit_encoder(jax.random.PRNGKey(2), x_rec[:n], r_rec[:n], nonlinearity="sigmoid",
                              learning_rate=0.05, steps=2000)
    c_n = filter_corr(np.asarray(f_n.encoder.rates.W), W_true)
    r_n = tasks.empirical(x_prior, f_n.encoder).ilocal(key, panel, n_samples=N_SAMPLES)
    rel = np.asarray(r_n.total) / np.asarray(res["true"].total) - 1
    rel_se = np.hypot(np.asarray(r_n.stderr), np.asarray(res["true"].stderr)) / np.asarray(res["true"].total)
    rows.append((n, np.median(c_n), np.mean(np.abs(rel)), np.sqrt(np.mean(rel_se ** 2))))
    print(f"n = {n:5d} images: filter correlation median {rows[-1][1]:.3f}; "
          f"I_local totals off by {100 * rows[-1][2]:.1f}% on average (SE bound {100 * rows[-1][3]:.1f}%)")

n_, c_, e_, s_ = (np.array(v) for v in zip(*rows))
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
axes[0].plot(n_, c_, "o-")
axes[0].set(xscale="log", xlabel="recorded images (× 4 repeats)", ylabel="median filter correlation", ylim=(0, 1.02))
axes[1].errorbar(n_, 100 * e_, yerr=100 * s_, fmt="o-", capsize=3)
axes[1].set(xscale="log", xlabel="recorded images (× 4 repeats)", ylabel="mean |I_local error| (%)\n(bars: SE bound)")
axes[1].axhline(0, color="k", lw=0.5)
plt.tight_layout()
plt.show()

# %% [markdown]
# With real recordings there is no true model to compare with: the held-out metrics of step 2 are what
# you can check, and the convergence of step 4 (refit on subsets of your data) says whether the maps
# would change with more recordings. `experiments/recordings_truth.py` runs this comparison at the
# paper's scale (16×16 digits, 49 neurons, 1,500 images × 4 repeats); `docs/recordings.md` describes the
# fitting options, the metrics and the command line.
