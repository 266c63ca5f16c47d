"""Write the notebooks of this folder from the cell sources below (outputs stripped).

The ``.ipynb`` files are generated: edit this script, then run

    python notebooks/build_notebooks.py

``tests/test_notebooks.py`` checks that the committed notebooks equal what this script
writes, that they carry no outputs, and executes each one at small sizes.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------- shared cells
INSTALL = '''\
# Colab: install jaxdecomp when it is not importable (a no-op locally, in CI, or once installed).
# There is no public repository URL yet: set REPO_URL to the git repository that hosts jaxdecomp.
import importlib.util

REPO_URL = "https://github.com/OWNER/jaxdecomp"  # <-- set this to the jaxdecomp repository

if importlib.util.find_spec("jaxdecomp") is None:
    if "OWNER" in REPO_URL:
        raise RuntimeError("jaxdecomp is not installed: set REPO_URL in this cell to its git repository")
    %pip install -q "jaxdecomp @ git+{REPO_URL}"'''

SMALL = '''\
import os

# Small sizes for continuous integration (the tests set JAXDECOMP_NOTEBOOK_SMALL=1);
# the full sizes run in minutes on a Colab CPU runtime.
SMALL = os.environ.get("JAXDECOMP_NOTEBOOK_SMALL") == "1" or os.environ.get("CI", "").lower() == "true"'''


def md(text: str) -> dict:
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str) -> dict:
    return nbformat.v4.new_code_cell(text.strip("\n"))


# --------------------------------------------------------------------------- 01 quickstart
NB01 = [
    md(r"""
# jaxdecomp quickstart: exact information measures for a 1-D stimulus

A neural population encodes a stimulus $x$ through $p(r|x)$; the mutual information $I(R;X)$ says how much
it encodes, and **I_local** (Laquitaine, Azeglio, Paris, Ferrari & Chalk, NeurIPS 2025) says *about which
stimuli*: a function $I_{local}(x)$ whose average over the prior is $I(R;X)$, and which is local, positive
and additive. For a scalar stimulus `jaxdecomp.exact` computes it, and the measures it is usually compared
with (Fisher information, specific information, SSI, specific surprise, CiSSI, Kong-2), exactly on a grid.
This notebook reproduces the paper's Fig. 2 (the effect of the prior): with $r \sim \mathcal N(x, \sigma^2)$
and a Gaussian prior I_local is flat at $\tfrac12\log(1 + s/\sigma^2)$; with a bimodal prior it peaks
between the modes. Units are nats throughout.
"""),
    code(INSTALL),
    code(SMALL + '''

import numpy as np

from jaxdecomp import exact, neurons
import jaxdecomp.plotting as jplot  # the library's figure helpers (they select the Agg backend for scripts)

%matplotlib inline
import matplotlib.pyplot as plt

M = 201 if SMALL else 401  # grid points of the prior'''),
    md(r"""
## One neuron, a Gaussian prior: the closed form

Prior $x \sim \mathcal N(0, s)$, response $r = x + \sigma n$ with $n \sim \mathcal N(0, 1)$. A prior is a
`Grid` (points and masses), a population comes from `jaxdecomp.neurons`, and every measure is a function
`measure(grid, population)` that returns one value per grid point.
"""),
    code('''
S, SIGMA = 1.0, 0.5  # prior variance s, response noise SD sigma

population = neurons.gaussian_population(neurons.linear(1.0), SIGMA)  # r ~ N(x, sigma^2)
gaussian_prior = exact.gaussian_grid(0.0, S, m=M)

il = np.asarray(exact.ilocal(gaussian_prior, population))
mi = float(exact.mutual_information(gaussian_prior, population))
closed_form = 0.5 * np.log(1 + S / SIGMA**2)
x = np.asarray(gaussian_prior.points)

print(f"I_local at x=0        : {il[M // 2]:.6f} nats")
print(f"1/2 log(1 + s/sigma^2): {closed_form:.6f} nats")
print(f"E_x[I_local(x)]       : {gaussian_prior.weights @ il:.6f}   I(R;X) = {mi:.6f}  (completeness)")'''),
    md(r"""
The next cell is a check, not a demo: the notebook fails if the library is wrong. Within three prior SDs
I_local must equal the closed form, and so must the specific surprise
$\tfrac12[\log\frac{s+\sigma^2}{\sigma^2} + \frac{\sigma^2 + x^2}{s+\sigma^2} - 1]$ and the Fisher
information $1/\sigma^2$.
"""),
    code('''
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
print("closed forms OK")'''),
    md(r"""
## Fig. 2: the effect of the prior

Same neuron, two priors: the Gaussian above, and a bimodal mixture with modes at $\pm1$ (variance 0.1 each).
`exact.all_measures` computes every measure at once (it shares the response table and the noise integral).
"""),
    code('''
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
plt.show()'''),
    md(r"""
What to look for (the paper's Fig. 2):

* **I_local** is flat for the Gaussian prior (uniform sensitivity, no preferred stimulus) and peaks at
  $x = 0$, *between* the modes, for the bimodal prior: stimuli there are where a response most changes
  the belief about which mode was shown.
* **Fisher information** ignores the prior: flat in both cases.
* **SSI** has a *minimum* at 0 for the bimodal prior.
* **Specific surprise** and **CiSSI** grow quadratically with $|x|$ even for the Gaussian prior, although
  the encoder treats every stimulus alike.
"""),
    code('''
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
    assert abs(w @ out["ilocal"] - out["mutual_information"]) < 1e-3 * out["mutual_information"]'''),
    md(r"""
## Your own tuning curves: Poisson neurons

Any rate function works: here two Poisson neurons with Gaussian tuning curves centred at $\pm1$.
The exact engine enumerates the spike counts. Fisher information is large on the flanks of the tuning
curves, where the rate changes fastest; I_local also counts what a response says about stimuli a finite
distance away, so it is smoother and brings in the prior.
"""),
    code('''
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
assert out["ilocal"].min() >= -1e-9  # positivity'''),
    md(r"""
Next: `02_pixel_maps.ipynb` (images, trained denoisers), `03_gradients.ipynb` (gradients of information),
`04_compose_in_jax.ipynb` (the estimators inside `jit`, `vmap`, `grad` and sharded code). The paper's other
1-D figures are scripts in `experiments/` (`fig1_locality.py`, `fig3_data_processing.py`, `fig5_additivity.py`).
"""),
]

# --------------------------------------------------------------------------- 02 pixel maps
NB02 = [
    md(r"""
# Pixel maps of information on handwritten digits

Which pixels of an image is a population's information about? I_local splits the information into a
map $I_i(x)$ per pixel; for images it is estimated with two denoisers (one unconditional, one conditioned
on the response), $I_i(x) = \tfrac12\int \mathbb E\,(\hat\epsilon_i(x_a, a, r) - \hat\epsilon_i(x_a, a))^2\,da$
with $r$ drawn from $p(r|x_a)$. This notebook follows the paper's Fig. 4 at small scale: 16×16 digits
(bundled with scikit-learn), the 49-neuron LNP population (Gaussian receptive fields on a 7×7 lattice,
Poisson spikes), one small UNet trained on (image, response) pairs, and I_local maps beside Fisher maps.
A second part uses a model with **exact** denoisers (a Gaussian-mixture prior fitted to the digits and
linear-Gaussian neurons) to show exact maps and check completeness.
"""),
    code(INSTALL),
    code(SMALL + '''

import time

import jax
import numpy as np

from jaxdecomp import data, estimate, neurons
from jaxdecomp.cli import build_denoiser, denoiser_spec, map_figure, pixel_maps, simulate_responses
from jaxdecomp.diffusion import TrainConfig, gmm_denoiser, schedules, train
import jaxdecomp.plotting  # noqa: F401  (selects the Agg backend for scripts; the next line restores inline)

%matplotlib inline
import matplotlib.pyplot as plt

CFG = (dict(steps=200, channels=(16, 32), copies=1, panel=3, n_levels=12, n_samples=4, n_steps=4,
            components=3, exact_levels=16, n_complete=8) if SMALL else
       dict(steps=1500, channels=(16, 32), copies=4, panel=6, n_levels=32, n_samples=16, n_steps=16,
            components=10, exact_levels=48, n_complete=32))
SIZE = 16
print("small" if SMALL else "full", "settings:", CFG)'''),
    md(r"""
## Stimuli and neurons

`data.digits(16)` gives the 1797 scikit-learn digits upsampled to 16×16 in $[-1, 1]$.
`neurons.lnp_population` is the paper's population: $f_n(x) = 40\,\sigma(0.4\, w_n^\top(x + 0.1))$ with
Gaussian receptive fields $w_n$, Poisson spike counts. Its Fisher information is exact
(`population.fisher_diag(x)`: one value per pixel).
"""),
    code('''
x_all = np.asarray(data.digits(SIZE), dtype=np.float32)
population = neurons.lnp_population((SIZE, SIZE))
W = np.asarray(population.rates.model.W).reshape(-1, SIZE, SIZE)  # receptive fields (49, 16, 16)

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
plt.show()'''),
    md(r"""
## Train a denoiser

`simulate_responses` draws `copies` Poisson responses per training digit. One UNet gives both denoisers:
it is trained with the response dropped 20% of the time (replaced by a learned null embedding), so
`model(x_noisy, log_snr, None)` is the unconditional denoiser and `model(x_noisy, log_snr, r)` the
conditional one. `train` uses AdamW with warm-up and cosine decay and keeps an EMA of the weights.
"""),
    code('''
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
assert np.isfinite(result.losses[:, 1]).all() and result.losses[-1, 1] < result.losses[0, 1]'''),
    md(r"""
## I_local and Fisher pixel maps

`pixel_maps` calls `estimate.ilocal` (Gauss-Legendre quadrature in log-SNR; responses drawn from
$p(r|x_a)$ by reverse diffusion from the noisy image, `response_sampler="posterior_sample"`) and the
population's exact Fisher diagonal. Fisher is blob-like, following the receptive fields; I_local is
concentrated on the digit's strokes inside them. At the small CI sizes the network is barely trained and
the maps are noisy; the full sizes give cleaner maps.
"""),
    code('''
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
assert (maps["ilocal_total"] > 0).all()'''),
    md(r"""
## Ground truth: exact denoisers

With a Gaussian-mixture prior and linear-Gaussian neurons $r = A x + \sigma n$ every denoiser and the
posterior $p(x | x_a)$ are closed form (`diffusion.gmm_denoiser`), so I_local maps follow with no network.
Here the prior is a Gaussian mixture fitted to the digits (scikit-learn) and the neurons are
`neurons.linear_gaussian_population`, with the same 7×7 receptive fields as the LNP. For this encoder the
Fisher map is the same for every image, while I_local depends on the digit through the prior.
The last cell checks completeness: the average of I_local over stimuli drawn from the prior must equal
$I(R;X)$ (computed independently from exact log densities) within Monte Carlo error.
"""),
    code('''
from sklearn.mixture import GaussianMixture

K = CFG["components"]
gm = GaussianMixture(K, covariance_type="full", reg_covar=1e-2, random_state=0, max_iter=20 if SMALL else 100)
gm.fit(x_all.reshape(len(x_all), -1).astype(np.float64))
linear = neurons.linear_gaussian_population((SIZE, SIZE), gain=0.5, sigma=1.0)
oracle = gmm_denoiser(gm.weights_, gm.means_.reshape(K, SIZE, SIZE), gm.covariances_,
                      linear.rates.model.A, linear.sigma)
levels = schedules.levels("gauss_legendre", -10.0, 14.0, CFG["exact_levels"])
t0 = time.perf_counter()
truth = estimate.ilocal(k_exact, oracle, linear, x_test, levels=levels, n_samples=16)
fisher_lin = np.asarray(jax.vmap(linear.fisher_diag)(x_test))
print(f"exact maps of {len(x_test)} digits in {time.perf_counter() - t0:.0f} s")
fig = map_figure(x_test, {"Fisher (linear)": fisher_lin, "exact I_local": np.asarray(truth.map)},
                 titles=[f"I={t:.1f} nats" for t in np.asarray(truth.total)])
plt.show()'''),
    code('''
k_prior, k_il, k_mi = jax.random.split(jax.random.fold_in(k_exact, 1), 3)
x_prior = oracle.prior_sample(k_prior, CFG["n_complete"])
res = estimate.ilocal(k_il, oracle, linear, x_prior, levels=levels, n_samples=8)
tot = np.asarray(res.total)
mean_il = tot.mean()
se_il = np.sqrt(tot.var(ddof=1) / len(tot) + np.sum(np.asarray(res.stderr) ** 2) / len(tot) ** 2)
mi, mi_se = oracle.mutual_information(k_mi, 20_000, 4)
z = (mean_il - mi) / np.hypot(se_il, mi_se)
print(f"E_x[I_local] over {len(tot)} prior samples = {mean_il:.2f} +- {se_il:.2f} nats;  "
      f"I(R;X) = {mi:.2f} +- {mi_se:.2f}  ({z:+.1f} SE)")
assert abs(z) < 4, z'''),
    md(r"""
`experiments/image_truth.py` trains a UNet on pairs drawn from this exact model and compares its maps
with the exact ones; `jaxdecomp demo` runs the LNP pipeline above end to end from the command line.
"""),
]

# --------------------------------------------------------------------------- 04 compose in JAX
NB04 = [
    md(r"""
# The estimators inside your JAX code: `jit`, `vmap`, `grad`, sharding

jaxdecomp's estimators are pure functions of `(key, denoiser, population, x)`: denoisers and populations
are pytrees, randomness comes from explicit PRNG keys, and nothing leaves the device inside the hot path.
So they compose with JAX's transformations like any other function. This notebook wraps
`estimate.ilocal` in `jax.jit`, maps it over stimuli with `jax.vmap`, differentiates it with `jax.grad`,
and shards a batch of stimuli over all devices with `jax.sharding`, checking at every step that the
transformed code gives the same numbers as plain code. It uses exact (analytic) denoisers for a
Gaussian-mixture prior, so it runs in seconds on a CPU.
"""),
    code(INSTALL),
    md(r"""
JAX fixes the number of CPU devices when it is first imported. To try sharding on a single CPU (Colab's
CPU runtime has one device), the next cell asks for 4 virtual CPU devices; it must run before `jax` is
imported (restart the runtime otherwise). On a GPU or TPU runtime it changes nothing you use:
`jax.devices()` lists the accelerators.
"""),
    code(SMALL + '''

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxdecomp import estimate
from jaxdecomp.diffusion import gmm_denoiser, schedules

print(jax.devices())
N_LEVELS, N_SAMPLES, BATCH = (16, 16, 8) if SMALL else (48, 64, 32)'''),
    md(r"""
## An exact model

A 3-component Gaussian mixture prior on $x \in \mathbb R^4$ and three linear-Gaussian neurons
$r = A x + 0.5\,n$. `gmm_denoiser` returns exact denoisers (and exact posterior sampling);
`D.population` is the matching encoder. `il(key, x)` is I_local of one stimulus.
"""),
    code('''
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
print("I_local of", BATCH, "stimuli (python loop):", np.round(eager, 3))'''),
    md(r"""
## `jax.jit` and `jax.vmap`

The same key gives the same Monte Carlo draws, so the transformed functions must agree with the loop to
floating-point rounding.
"""),
    code('''
il_jit = jax.jit(il)
jitted = np.array([float(il_jit(k, x)) for k, x in zip(keys, xs)])
batched = np.asarray(jax.jit(jax.vmap(il))(keys, xs))
print("max |jit - eager|  =", np.abs(jitted - eager).max())
print("max |vmap - eager| =", np.abs(batched - eager).max())
assert np.allclose(jitted, eager, rtol=1e-5, atol=1e-5)
assert np.allclose(batched, eager, rtol=1e-5, atol=1e-5)'''),
    md(r"""
Composing with your own code: the average of I_local over stimuli drawn from the prior is the mutual
information (completeness); here it is one jitted function, checked against $I(R;X)$ computed from exact
log densities.
"""),
    code('''
@jax.jit
def mean_ilocal(key, x):
    ks = jax.random.split(key, x.shape[0])
    totals = jax.vmap(il)(ks, x)
    return totals.mean(), totals.std() / jnp.sqrt(x.shape[0])


x_prior = D.prior_sample(jax.random.PRNGKey(2), 4 * BATCH)
m, se = mean_ilocal(jax.random.PRNGKey(3), x_prior)
mi, mi_se = D.mutual_information(jax.random.PRNGKey(4), 20_000, 4)
print(f"E_x[I_local] = {float(m):.3f} +- {float(se):.3f} nats;  I(R;X) = {mi:.3f} +- {mi_se:.3f}")
assert abs(float(m) - mi) < 4 * np.hypot(float(se), mi_se)'''),
    md(r"""
## `jax.grad`

`jax.grad` of I_local with respect to the stimulus differentiates the noise path and the denoisers.
(What this gradient includes, and unbiased gradients of information, are the subject of
`03_gradients.ipynb`.) Here: `grad` composes with `jit` and `vmap` and gives the same numbers.
"""),
    code('''
grad_il = jax.grad(il, argnums=1)
g_eager = np.stack([np.asarray(grad_il(k, x)) for k, x in zip(keys[:4], xs[:4])])
g_jit_vmap = np.asarray(jax.jit(jax.vmap(grad_il))(keys[:4], xs[:4]))
print("d I_local / dx for the first stimulus:", np.round(g_eager[0], 3))
assert np.isfinite(g_eager).all()
assert np.allclose(g_jit_vmap, g_eager, rtol=1e-4, atol=1e-5)'''),
    md(r"""
## Sharding a batch over devices

A `Mesh` over all devices with one axis, `"batch"`; the stimuli (and their keys) are placed with
`NamedSharding(mesh, P("batch"))`, so each device holds `BATCH / n_devices` of them. The jitted, vmapped
function is unchanged: XLA partitions the computation along the batch and the output stays sharded.
The same code runs on 1 CPU, on 4 virtual CPUs, or on a pod (where `jax.distributed.initialize()` comes
first).
"""),
    code('''
mesh = Mesh(np.array(jax.devices()), ("batch",))
batch_sharding = NamedSharding(mesh, P("batch"))
xs_sharded = jax.device_put(xs, batch_sharding)
keys_sharded = jax.device_put(keys, batch_sharding)

sharded = jax.jit(jax.vmap(il))(keys_sharded, xs_sharded)
print(f"{len(jax.devices())} device(s); output sharding: {sharded.sharding}")
jax.debug.visualize_array_sharding(sharded)
assert np.allclose(np.asarray(sharded), eager, rtol=1e-5, atol=1e-5)'''),
]

# --------------------------------------------------------------------------- 03 gradients
NB03 = [
    md(r"""
# Gradients of information

Everything in jaxdecomp is a JAX function, so information can be *optimised*. Two directions:
**with respect to the neurons** (efficient coding: which tuning curves carry the most information about
stimuli drawn from a prior?) and **with respect to the stimulus** (which stimulus does a population carry
the most information about?). For 1-D stimuli `jaxdecomp.exact.differentiable` turns any exact measure,
I(R;X) or I_local(x) on the whole grid, into a pure function of the population's parameters, so
`jax.grad` gives its exact gradient. For the diffusion estimator `jaxdecomp.estimate.ilocal`,
`jax.grad` with respect to the stimulus is unbiased: besides the pathwise derivative it includes the
score-function term of the sampled responses (`score_gradient=True`, the default). Here both are checked
against finite differences of exact values and used with `optax`.
"""),
    code(INSTALL),
    code(SMALL + """

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdecomp import estimate, exact, neurons
from jaxdecomp.diffusion import gmm_denoiser, schedules
import jaxdecomp.plotting  # noqa: F401  (selects the Agg backend for scripts; the next line restores inline)

%matplotlib inline
import matplotlib.pyplot as plt

N_NEURONS, EC_STEPS, M = (3, 80, 61) if SMALL else (4, 150, 81)   # efficient coding
REGION_STEPS = 40 if SMALL else 120                                   # information about a region
N_KEYS, ASCENT_STEPS, IMAGE_STEPS = (16, 60, 80) if SMALL else (64, 100, 300)"""),
    md(r"""
## 1. Efficient coding: tuning curves that maximise I(R;X)

A skewed bimodal prior (a narrow minor mode at $-1.5$, a broad major one at $+1$) and $N$ Poisson neurons
with Gaussian tuning curves $f_n(x) = b + (p - b)\,e^{-(x - c_n)^2 / 2w_n^2}$. The peak rate $p$ and the
baseline $b$ are fixed (a rate budget); the centres $c_n$ and widths $w_n = \mathrm{softplus}(u_n)$ are
learned by Adam ascent on the exact $I(R;X)$. `exact.differentiable(measure, grid, population)` fixes
the grid and the response cells (Poisson counts up to what the peak rate needs: `rate_range=(0, peak)`)
and returns `fn(population)`, a pure function of the population's arrays. It needs float64
(`with jax.enable_x64(True):`).
"""),
    code("""
PEAK, BASELINE = 1.5, 0.05  # spikes per trial


def population(params):
    \"\"\"Poisson neurons with learned centres and (softplus) widths; params: {"centers": (n,), "raw_widths": (n,)}.\"\"\"
    widths = jax.nn.softplus(params["raw_widths"])
    return neurons.poisson_population(neurons.gaussian_bumps(params["centers"], widths, PEAK - BASELINE, BASELINE))


with jax.enable_x64(True):
    prior = exact.mixture_grid([-1.5, 1.0], [0.15, 0.5], [0.35, 0.65], lo=-4.0, hi=4.0, m=M)
    init = {"centers": jnp.linspace(-2.0, 2.0, N_NEURONS), "raw_widths": jnp.full(N_NEURONS, 1.0)}
    mi_fn = exact.differentiable("mutual_information", prior, population(init), rate_range=(0.0, PEAK))
    print(mi_fn)

    # the gradient is exact: compare with a central finite difference of the public function
    grad0 = jax.grad(lambda p: mi_fn(population(p)))(init)
    h = 1e-5
    shifted = lambda d: {"centers": init["centers"].at[0].add(d), "raw_widths": init["raw_widths"]}  # noqa: E731
    fd = (exact.mutual_information(prior, population(shifted(h)), rate_range=(0.0, PEAK))
          - exact.mutual_information(prior, population(shifted(-h)), rate_range=(0.0, PEAK))) / (2 * h)
    print(f"dI/dc_0: jax.grad {float(grad0['centers'][0]):.8f}, finite difference {float(fd):.8f}")
    assert abs(float(grad0["centers"][0]) - float(fd)) < 1e-5 * max(1.0, abs(float(fd)))"""),
    code("""
with jax.enable_x64(True):
    opt = optax.adam(optax.cosine_decay_schedule(0.05, EC_STEPS))

    @jax.jit
    def step(params, state):
        mi, g = jax.value_and_grad(lambda p: mi_fn(population(p)))(params)
        updates, state = opt.update(jax.tree_util.tree_map(jnp.negative, g), state, params)  # ascent
        return optax.apply_updates(params, updates), state, mi

    params, state, history = init, opt.init(init), []
    for _ in range(EC_STEPS):
        params, state, mi = step(params, state)
        history.append(float(mi))
    history.append(float(mi_fn(population(params))))
    learned = params
    print(f"I(R;X): {history[0]:.4f} -> {history[-1]:.4f} nats in {EC_STEPS} Adam steps")
    print("centres", np.round(np.asarray(learned["centers"]), 3), "widths",
          np.round(np.asarray(jax.nn.softplus(learned["raw_widths"])), 3))
    assert history[-1] > history[0] + 0.05
    assert mi_fn.missing_mass(population(learned)) < 1e-6  # the fixed response cells still cover the rates

    x = np.asarray(prior.points)
    density = np.asarray(prior.weights) / (x[1] - x[0])
    il_before = np.asarray(exact.ilocal(prior, population(init), rate_range=(0.0, PEAK)))
    il_after = np.asarray(exact.ilocal(prior, population(learned), rate_range=(0.0, PEAK)))
    rates = {k: np.asarray(jax.vmap(population(p).rate)(jnp.asarray(x))) for k, p in (("init", init), ("learned", learned))}

fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
for i in range(N_NEURONS):
    axes[0].plot(x, rates["init"][:, i], "--", color=f"C{i}", lw=1)
    axes[0].plot(x, rates["learned"][:, i], color=f"C{i}", lw=2)
axes[0].fill_between(x, 0, density / density.max() * PEAK, color="0.85", zorder=0)
axes[0].set_title("tuning curves: initial (dashed), learned")
axes[1].plot(history)
axes[1].set_title("exact I(R;X) during training")
axes[1].set_xlabel("Adam step")
axes[2].plot(x, il_before, "--", label="initial")
axes[2].plot(x, il_after, label="learned")
axes[2].set_title("I_local(x): where the information goes")
axes[2].legend()
for ax in (axes[0], axes[2]):
    ax.set_xlabel("stimulus x")
fig.tight_layout()
plt.show()"""),
    md(r"""
`experiments/efficient_coding.py` runs the same optimisation at larger sizes and records it.

## 2. Information about chosen stimuli: the gradient of I_local

I(R;X) is an average; I_local says about which stimuli. Maximising
$\mathbb E[I_{local}(x) \mid x \in \text{region}]$ instead allocates the rate budget to the stimuli of a
region, here the minor mode around $-1.5$. `exact.differentiable("ilocal", ...)` returns I_local at
every grid point, differentiable through the noise integral. (Two neurons keep the response table small:
the I_local gradient costs one noise integral per step.)
"""),
    code("""
with jax.enable_x64(True):
    init2 = {"centers": jnp.array([-0.5, 0.5]), "raw_widths": jnp.full(2, 1.0)}
    il_fn = exact.differentiable("ilocal", prior, population(init2), rate_range=(0.0, PEAK))
    region = jnp.asarray(np.asarray(prior.weights) * ((x > -2.2) & (x < -0.8)))

    def region_info(params):
        return jnp.sum(region * il_fn(population(params))) / jnp.sum(region)

    opt2 = optax.adam(0.1)

    @jax.jit
    def step2(params, state):
        v, g = jax.value_and_grad(region_info)(params)
        updates, state = opt2.update(jax.tree_util.tree_map(jnp.negative, g), state, params)
        return optax.apply_updates(params, updates), state, v

    params2, state2 = init2, opt2.init(init2)
    for _ in range(REGION_STEPS):
        params2, state2, _ = step2(params2, state2)
    before, after = float(region_info(init2)), float(region_info(params2))
    il2 = {k: np.asarray(il_fn(population(p))) for k, p in (("init", init2), ("learned", params2))}
    mi2 = {k: float(np.asarray(prior.weights) @ v) for k, v in il2.items()}
print(f"mean I_local over the region: {before:.4f} -> {after:.4f} nats; "
      f"I(R;X): {mi2['init']:.4f} -> {mi2['learned']:.4f}")
print("centres", np.round(np.asarray(params2["centers"]), 3))
assert after > before + 0.05

plt.figure(figsize=(5, 3))
plt.plot(x, il2["init"], "--", label="initial")
plt.plot(x, il2["learned"], label="learned for the region")
plt.axvspan(-2.2, -0.8, color="0.9", zorder=0)
plt.xlabel("stimulus x"); plt.ylabel("I_local (nats)"); plt.legend()
plt.show()"""),
    md(r"""
## 3. Gradients with respect to the stimulus, and the most informative stimulus

`estimate.ilocal` estimates I_local with denoisers; here exact ones (`gmm_denoiser`) for the prior of the
paper's Fig. 2 (modes at $\pm1$, variance 0.1) and the neuron $r \sim \mathcal N(x, 0.5^2)$, so the exact
engine gives the truth, I_local on a grid and its derivative. The estimator draws responses
$r \sim p(r | x_g)$ whose distribution moves with $x$; differentiating through the draws alone (the
pathwise gradient, `score_gradient=False`) misses that and is biased. The default adds the
score-function term, and its average over independent keys matches the exact derivative.
"""),
    code("""
SIGMA = 0.5
oracle = gmm_denoiser([0.5, 0.5], [[-1.0], [1.0]], [0.1, 0.1], [[1.0]], SIGMA)
bimodal = exact.mixture_grid([-1.0, 1.0], 0.1, m=401, lo=-4.5, hi=4.5)
xg = np.asarray(bimodal.points)
il_exact = np.asarray(exact.ilocal(bimodal, neurons.gaussian_population(neurons.linear(1.0), SIGMA)))
dil_exact = np.gradient(il_exact, xg)
levels = schedules.levels("gauss_legendre", -10.0, 14.0, 24)


def il(key, x, score_gradient=True):
    \"\"\"Estimated I_local of one stimulus x: (1,).\"\"\"
    return estimate.ilocal(key, oracle, oracle.population, x, levels=levels, n_samples=64,
                           score_gradient=score_gradient).total


keys = jax.random.split(jax.random.PRNGKey(0), N_KEYS)
grads = {sg: jax.jit(jax.vmap(jax.grad(lambda k, x, sg=sg: il(k, x, sg), argnums=1), in_axes=(0, None)))
         for sg in (True, False)}
print("   x   exact dI/dx   unbiased (score)      pathwise only")
for x0 in (0.3, 0.6, 1.0):
    i = int(np.argmin(np.abs(xg - x0)))
    est = {sg: np.asarray(grads[sg](keys, jnp.array([x0])))[:, 0] for sg in (True, False)}
    m, se = est[True].mean(), est[True].std(ddof=1) / np.sqrt(N_KEYS)
    mp, sep = est[False].mean(), est[False].std(ddof=1) / np.sqrt(N_KEYS)
    print(f"{x0:5.2f}   {dil_exact[i]:+.3f}        {m:+.3f} +- {se:.3f}      {mp:+.3f} +- {sep:.3f}")
    assert abs(m - dil_exact[i]) < 4 * se + 0.05, (x0, m, se, dil_exact[i])
    if x0 == 0.6:
        assert abs(mp - dil_exact[i]) > 4 * sep + 0.2  # the pathwise gradient alone is biased here"""),
    md(r"""
Gradient ascent on the estimated I_local, one fresh key per step, finds the most informative stimulus:
$x = 0$, between the two modes, where a response best tells which mode the stimulus came from.
"""),
    code("""
grad_il = jax.jit(jax.grad(lambda x, k: il(k, x)))
x_t = jnp.array([0.8])
opt3 = optax.adam(0.05)
state3 = opt3.init(x_t)
path = [float(x_t[0])]
for t in range(ASCENT_STEPS):
    g = grad_il(x_t, jax.random.PRNGKey(100 + t))
    updates, state3 = opt3.update(-g, state3, x_t)
    x_t = optax.apply_updates(x_t, updates)
    path.append(float(x_t[0]))
print(f"most informative stimulus found: x = {path[-1]:+.3f} (exact argmax {xg[np.argmax(il_exact)]:+.3f})")
assert abs(path[-1]) < 0.2

fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].plot(xg, il_exact, color="k", label="exact I_local")
axes[0].plot(path, np.interp(path, xg, il_exact), ".", color="C3", ms=4, label="ascent path")
axes[0].set_xlim(-3, 3); axes[0].set_xlabel("stimulus x"); axes[0].legend()
axes[1].plot(path)
axes[1].set_xlabel("Adam step"); axes[1].set_ylabel("x")
fig.tight_layout()
plt.show()"""),
    md(r"""
### The same on images

A Gaussian mixture fitted to the 8×8 digits as the prior, 49 linear-Gaussian neurons with Gaussian
receptive fields, exact denoisers. Starting from a digit, Adam ascends the estimated I_local over the
image (kept in $[-1, 1]$ by $x = \tanh(u)$); the check compares I_local before and after with fresh samples.
The image found is not a digit: nothing keeps it near the prior's bulk (its log prior density is printed
beside the start's), and I_local, like the 1-D maximum between the modes, can be largest at stimuli the
prior finds unlikely. To search among plausible images, add a prior term (e.g. the mixture's
log-density) to the objective.
"""),
    code("""
from sklearn.mixture import GaussianMixture

from jaxdecomp import data

size, K = 8, 4
digits = np.asarray(data.digits(size), dtype=np.float64)
gm = GaussianMixture(K, covariance_type="full", reg_covar=1e-2, random_state=0).fit(digits.reshape(len(digits), -1))
lin = neurons.linear_gaussian_population((size, size), gain=0.2, sigma=1.0)
image_oracle = gmm_denoiser(gm.weights_, gm.means_.reshape(K, size, size), gm.covariances_, lin.rates.model.A, lin.sigma)
img_levels = schedules.levels("gauss_legendre", -10.0, 14.0, 16)


def il_image(key, x, n_samples=32):
    return estimate.ilocal(key, image_oracle, lin, x, levels=img_levels, n_samples=n_samples)


value_and_grad = jax.jit(jax.value_and_grad(lambda u, k: il_image(k, jnp.tanh(u)).total))
x0 = jnp.asarray(digits[0], jnp.float32)
u = jnp.arctanh(jnp.clip(x0, -0.95, 0.95))
opt4 = optax.adam(0.1)
state4 = opt4.init(u)
trace = []
for t in range(IMAGE_STEPS):
    v, g = value_and_grad(u, jax.random.PRNGKey(t))
    updates, state4 = opt4.update(-g, state4, u)
    u = optax.apply_updates(u, updates)
    trace.append(float(v))
x_best = jnp.tanh(u)
check = {name: il_image(jax.random.PRNGKey(10_000), img, 128) for name, img in (("start", x0), ("found", x_best))}
log_prior = gm.score_samples(np.stack([np.asarray(x0), np.asarray(x_best)]).reshape(2, -1).astype(np.float64))
for (name, r), lp in zip(check.items(), log_prior):
    print(f"I_local({name}) = {float(r.total):.2f} +- {float(r.stderr):.2f} nats;  log prior density {lp:.0f}")
assert float(check["found"].total) - float(check["start"].total) > 4 * np.hypot(
    float(check["found"].stderr), float(check["start"].stderr))

fig, axes = plt.subplots(1, 5, figsize=(13, 2.6))
for ax, img, title in ((axes[0], x0, "start"), (axes[2], x_best, "found")):
    ax.imshow(np.asarray(img), cmap="gray", vmin=-1, vmax=1); ax.set_title(title)
axes[1].imshow(np.asarray(check["start"].map), cmap="magma"); axes[1].set_title("I_local map (start)")
axes[3].imshow(np.asarray(check["found"].map), cmap="magma"); axes[3].set_title("I_local map (found)")
for ax in axes[:4]:
    ax.set_xticks([]); ax.set_yticks([])
axes[4].plot(trace); axes[4].set_title("estimated I_local"); axes[4].set_xlabel("step")
fig.tight_layout()
plt.show()"""),
]

NOTEBOOKS = {
    "01_quickstart.ipynb": NB01,
    "02_pixel_maps.ipynb": NB02,
    "03_gradients.ipynb": NB03,
    "04_compose_in_jax.ipynb": NB04,
}


def notebook(name: str, cells: list) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    stem = name.split("_")[0]
    for i, cell in enumerate(cells):
        cell["id"] = f"nb{stem}-{i:02d}"  # deterministic ids: regenerating gives identical files
    nb.cells = cells
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    }
    return nb


def render(name: str) -> str:
    nb = notebook(name, copy.deepcopy(NOTEBOOKS[name]))
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main(argv=None) -> int:
    out = Path(argv[0]) if argv else HERE
    for name in NOTEBOOKS:
        (out / name).write_text(render(name))
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
