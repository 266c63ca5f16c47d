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
# # Gradients of information
#
# Everything in jaxdecomp is a JAX function, so information can be *optimised*. Two directions:
# **with respect to the neurons** (efficient coding: which tuning curves carry the most information about
# stimuli drawn from a prior?) and **with respect to the stimulus** (which stimulus does a population carry
# the most information about?). For 1-D stimuli `jaxdecomp.exact.differentiable` turns any exact measure,
# I(R;X) or I_local(x) on the whole grid, into a pure function of the population's parameters, so
# `jax.grad` gives its exact gradient. For the diffusion estimator `jaxdecomp.estimate.ilocal`,
# `jax.grad` with respect to the stimulus is unbiased: besides the pathwise derivative it includes the
# score-function term of the sampled responses (`score_gradient=True`, the default). Here both are checked
# against finite differences of exact values and used with `optax`.

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

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdecomp import estimate, exact, neurons
from jaxdecomp.diffusion import gmm_denoiser, schedules
import jaxdecomp.plotting  # noqa: F401  (selects the Agg backend for scripts; the next line restores inline)

# %matplotlib inline
import matplotlib.pyplot as plt

N_NEURONS, EC_STEPS, M = (3, 80, 61) if SMALL else (4, 150, 81)   # efficient coding
REGION_STEPS = 40 if SMALL else 120                                   # information about a region
N_KEYS, ASCENT_STEPS, IMAGE_STEPS = (16, 60, 80) if SMALL else (64, 100, 300)

# %% [markdown]
# ## 1. Efficient coding: tuning curves that maximise I(R;X)
#
# A skewed bimodal prior (a narrow minor mode at $-1.5$, a broad major one at $+1$) and $N$ Poisson neurons
# with Gaussian tuning curves $f_n(x) = b + (p - b)\,e^{-(x - c_n)^2 / 2w_n^2}$. The peak rate $p$ and the
# baseline $b$ are fixed (a rate budget); the centres $c_n$ and widths $w_n = \mathrm{softplus}(u_n)$ are
# learned by Adam ascent on the exact $I(R;X)$. `exact.differentiable(measure, grid, population)` fixes
# the grid and the response cells (Poisson counts up to what the peak rate needs: `rate_range=(0, peak)`)
# and returns `fn(population)`, a pure function of the population's arrays. It needs float64
# (`with jax.enable_x64(True):`).

# %%
PEAK, BASELINE = 1.5, 0.05  # spikes per trial


def population(params):
    """Poisson neurons with learned centres and (softplus) widths; params: {"centers": (n,), "raw_widths": (n,)}."""
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
    assert abs(float(grad0["centers"][0]) - float(fd)) < 1e-5 * max(1.0, abs(float(fd)))

# %%
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
plt.show()

# %% [markdown]
# `experiments/efficient_coding.py` runs the same optimisation at larger sizes and records it.
#
# ## 2. Information about chosen stimuli: the gradient of I_local
#
# I(R;X) is an average; I_local says about which stimuli. Maximising
# $\mathbb E[I_{local}(x) \mid x \in \text{region}]$ instead allocates the rate budget to the stimuli of a
# region, here the minor mode around $-1.5$. `exact.differentiable("ilocal", ...)` returns I_local at
# every grid point, differentiable through the noise integral. (Two neurons keep the response table small:
# the I_local gradient costs one noise integral per step.)

# %%
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
plt.show()

# %% [markdown]
# ## 3. Gradients with respect to the stimulus, and the most informative stimulus
#
# `estimate.ilocal` estimates I_local with denoisers; here exact ones (`gmm_denoiser`) for the prior of the
# paper's Fig. 2 (modes at $\pm1$, variance 0.1) and the neuron $r \sim \mathcal N(x, 0.5^2)$, so the exact
# engine gives the truth, I_local on a grid and its derivative. The estimator draws responses
# $r \sim p(r | x_g)$ whose distribution moves with $x$; differentiating through the draws alone (the
# pathwise gradient, `score_gradient=False`) misses that and is biased. The default adds the
# score-function term, and its average over independent keys matches the exact derivative.

# %%
SIGMA = 0.5
oracle = gmm_denoiser([0.5, 0.5], [[-1.0], [1.0]], [0.1, 0.1], [[1.0]], SIGMA)
bimodal = exact.mixture_grid([-1.0, 1.0], 0.1, m=401, lo=-4.5, hi=4.5)
xg = np.asarray(bimodal.points)
il_exact = np.asarray(exact.ilocal(bimodal, neurons.gaussian_population(neurons.linear(1.0), SIGMA)))
dil_exact = np.gradient(il_exact, xg)
levels = schedules.levels("gauss_legendre", -10.0, 14.0, 24)


def il(key, x, score_gradient=True):
    """Estimated I_local of one stimulus x: (1,)."""
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
        assert abs(mp - dil_exact[i]) > 4 * sep + 0.2  # the pathwise gradient alone is biased here

# %% [markdown]
# Gradient ascent on the estimated I_local, one fresh key per step, finds the most informative stimulus:
# $x = 0$, between the two modes, where a response best tells which mode the stimulus came from.

# %%
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
plt.show()

# %% [markdown]
# ### The same on images
#
# A Gaussian mixture fitted to the 8×8 digits as the prior, 49 linear-Gaussian neurons with Gaussian
# receptive fields, exact denoisers. Starting from a digit, Adam ascends the estimated I_local over the
# image (kept in $[-1, 1]$ by $x = \tanh(u)$); the check compares I_local before and after with fresh samples.
# The image found is not a digit: nothing keeps it near the prior's bulk (its log prior density is printed
# beside the start's), and I_local, like the 1-D maximum between the modes, can be largest at stimuli the
# prior finds unlikely. To search among plausible images, add a prior term (e.g. the mixture's
# log-density) to the objective.

# %%
from sklearn.mixture import GaussianMixture

from jaxdecomp import data

size, K = 8, 4
digits = np.asarray(data.digits(size), dtype=np.float64)
gm = GaussianMixture(K, covariance_type="full", reg_covar=1e-2, random_state=0).fit(digits.reshape(len(digits), -1))
lin = neurons.linear_gaussian_population((size, size), gain=0.2, sigma=1.0)
image_oracle = gmm_denoiser(gm.weights_, gm.means_.reshape(K, size, size), gm.covariances_, lin.rates.A, lin.sigma)
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
plt.show()
