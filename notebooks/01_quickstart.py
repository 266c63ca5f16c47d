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
# # jaxdecomp quickstart: exact information measures for a 1-D stimulus
#
# A neural population encodes a stimulus $x$ through $p(r|x)$; the mutual information $I(R;X)$ says how much
# it encodes, and **I_local** (Laquitaine, Azeglio, Paris, Ferrari & Chalk, NeurIPS 2025) says *about which
# stimuli*: a function $I_{local}(x)$ whose average over the prior is $I(R;X)$, and which is local, positive
# and additive. For a scalar stimulus `jaxdecomp.exact` computes it, and the measures it is usually compared
# with (Fisher information, specific information, SSI, specific surprise, CiSSI, Kong-2), exactly on a grid.
# This notebook reproduces the paper's Fig. 2 (the effect of the prior): with $r \sim \mathcal N(x, \sigma^2)$
# and a Gaussian prior I_local is flat at $\tfrac12\log(1 + s/\sigma^2)$; with a bimodal prior it peaks
# between the modes. Units are nats throughout.

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

import numpy as np

from jaxdecomp import exact, neurons
import jaxdecomp.plotting as jplot  # the library's figure helpers (they select the Agg backend for scripts)

# %matplotlib inline
import matplotlib.pyplot as plt

M = 201 if SMALL else 401  # grid points of the prior

# %% [markdown]
# ## One neuron, a Gaussian prior: the closed form
#
# Prior $x \sim \mathcal N(0, s)$, response $r = x + \sigma n$ with $n \sim \mathcal N(0, 1)$. A prior is a
# `Grid` (points and masses), a population comes from `jaxdecomp.neurons`, and every measure is a function
# `measure(grid, population)` that returns one value per grid point.

# %%
S, SIGMA = 1.0, 0.5  # prior variance s, response noise SD sigma

population = neurons.gaussian_population(neurons.linear(1.0), SIGMA)  # r ~ N(x, sigma^2)
gaussian_prior = exact.gaussian_grid(0.0, S, m=M)

il = np.asarray(exact.ilocal(gaussian_prior, population))
mi = float(exact.mutual_information(gaussian_prior, population))
closed_form = 0.5 * np.log(1 + S / SIGMA**2)
x = np.asarray(gaussian_prior.points)

print(f"I_local at x=0        : {il[M // 2]:.6f} nats")
print(f"1/2 log(1 + s/sigma^2): {closed_form:.6f} nats")
print(f"E_x[I_local(x)]       : {gaussian_prior.weights @ il:.6f}   I(R;X) = {mi:.6f}  (completeness)")

# %% [markdown]
# The next cell is a check, not a demo: the notebook fails if the library is wrong. Within three prior SDs
# I_local must equal the closed form, and so must the specific surprise
# $\tfrac12[\log\frac{s+\sigma^2}{\sigma^2} + \frac{\sigma^2 + x^2}{s+\sigma^2} - 1]$ and the Fisher
# information $1/\sigma^2$.

# %%
inside = np.abs(x) <= 3 * np.sqrt(S)
rel_err = np.max(np.abs(il[inside] - closed_form)) / closed_form
print(f"max relative error of I_local against the closed form (|x| <= 3 sd): {rel_err:.2e}")
assert rel_err < 1e-4, rel_err
assert abs(gaussian_prior.weights @ il - mi) < 1e-4 * mi  # completeness
assert abs(mi - closed_form) < 1e-4 * closed_form

surprise = np.asarray(exact.specific_surprise(gaussian_prior, population))
surprise_closed = 0.5 * (np.log((S + SIGMA**2) / SIGMA**2) + (SIGMA**2 + x**2) / (S + SIGMA**2) - 1)
assert np.max(np.abs(surprise - surprise_closed)[inside]) < 1e-4
assert np.allclose(np.asarray(exact.fisher(gaussian_prior, population)), 1 / SIGMA**2, rtol=1e-6)
print("closed forms OK")

# %% [markdown]
# ## Fig. 2: the effect of the prior
#
# Same neuron, two priors: the Gaussian above, and a bimodal mixture with modes at $\pm1$ (variance 0.1 each).
# `exact.all_measures` computes every measure at once (it shares the response table and the noise integral).

# %%
bimodal_prior = exact.mixture_grid([-1.0, 1.0], 0.1, m=M, lo=-4.5, hi=4.5)
priors = {"Gaussian prior": gaussian_prior, "bimodal prior": bimodal_prior}
measures = {name: exact.all_measures(grid, population) for name, grid in priors.items()}
for name, out in measures.items():
    print(f"{name:15s} I(R;X) = {float(out['mutual_information']):.4f} nats")

shown = ["ilocal", "fisher", "ssi", "specific_surprise", "cissi"]
fig, axes = plt.subplots(2, len(shown) + 1, figsize=(3.0 * (len(shown) + 1), 5.6))
for row, (name, grid) in enumerate(priors.items()):
    xs = np.asarray(grid.points)
    view = np.abs(xs) <= 3  # plot -3..3
    axes[row, 0].plot(xs[view], np.asarray(grid.weights)[view] / (xs[1] - xs[0]), color="0.4")
    axes[row, 0].set_title(name)
    jplot.measure_panels(xs[view], {name: {k: measures[name][k][view] for k in shown}}, shown, axes=axes[row, 1:])
fig.tight_layout()
plt.show()

# %% [markdown]
# What to look for (the paper's Fig. 2):
#
# * **I_local** is flat for the Gaussian prior (uniform sensitivity, no preferred stimulus) and peaks at
#   $x = 0$, *between* the modes, for the bimodal prior: stimuli there are where a response most changes
#   the belief about which mode was shown.
# * **Fisher information** ignores the prior: flat in both cases.
# * **SSI** has a *minimum* at 0 for the bimodal prior.
# * **Specific surprise** and **CiSSI** grow quadratically with $|x|$ even for the Gaussian prior, although
#   the encoder treats every stimulus alike.

# %%
xb = np.asarray(bimodal_prior.points)
bi = measures["bimodal prior"]
i0 = int(np.argmin(np.abs(xb)))
peak = float(xb[np.argmax(bi["ilocal"])])
print(f"bimodal prior: I_local peaks at x = {peak:+.3f}")
assert abs(peak) < 0.05
d = int(round(0.4 / (xb[1] - xb[0])))  # 0.4 stimulus units away from 0
assert bi["ssi"][i0] < bi["ssi"][i0 - d] and bi["ssi"][i0] < bi["ssi"][i0 + d], "SSI should have a minimum at 0"
ga = measures["Gaussian prior"]
for key in ("specific_surprise", "cissi"):
    assert ga[key][inside].max() > 2 * ga[key][M // 2], key  # grows away from 0
for name, out in measures.items():  # completeness for every prior
    w = np.asarray(priors[name].weights)
    assert abs(w @ out["ilocal"] - out["mutual_information"]) < 1e-3 * out["mutual_information"]

# %% [markdown]
# ## Your own tuning curves: Poisson neurons
#
# Any rate function works: here two Poisson neurons with Gaussian tuning curves centred at $\pm1$.
# The exact engine enumerates the spike counts. Fisher information is large on the flanks of the tuning
# curves, where the rate changes fastest; I_local also counts what a response says about stimuli a finite
# distance away, so it is smoother and brings in the prior.

# %%
tuning = neurons.gaussian_bumps([-1.0, 1.0], widths=0.6, amplitudes=8.0, baseline=0.5)
poisson = neurons.poisson_population(tuning)
grid = exact.gaussian_grid(0.0, 1.0, m=M)
out = exact.all_measures(grid, poisson)
xs = np.asarray(grid.points)
print(f"I(R;X) = {float(out['mutual_information']):.4f} nats; E_x[I_local] = {grid.weights @ out['ilocal']:.4f}")

fig, axes = plt.subplots(1, 3, figsize=(11, 3))
rates = np.asarray([poisson.rate(xi) for xi in xs])
axes[0].plot(xs, rates)
axes[0].set_title("tuning curves (spikes)")
axes[1].plot(xs, out["fisher"], color="k")
axes[1].set_title("Fisher J(x)")
for key in ("ilocal", "specific_surprise", "ssi"):
    axes[2].plot(xs, out[key], label=jplot.LABELS[key])
axes[2].set_title("stimulus-wise information (nats)")
axes[2].legend(fontsize=8)
for ax in axes:
    ax.set_xlabel("stimulus x")
    ax.set_xlim(-4, 4)
fig.tight_layout()
plt.show()
assert abs(grid.weights @ out["ilocal"] - out["mutual_information"]) < 1e-3 * out["mutual_information"]
assert out["ilocal"].min() >= -1e-9  # positivity

# %% [markdown]
# Next: `02_pixel_maps.ipynb` (images, trained denoisers), `03_gradients.ipynb` (gradients of information),
# `04_compose_in_jax.ipynb` (the estimators inside `jit`, `vmap`, `grad` and sharded code). The paper's other
# 1-D figures are scripts in `experiments/` (`fig1_locality.py`, `fig3_data_processing.py`, `fig5_additivity.py`).
