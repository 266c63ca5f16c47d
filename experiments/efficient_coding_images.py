"""Efficient coding on images: LNP receptive fields that maximise I(R;X) on digits, through a trained prior.

The 1-D/2-D experiment (``efficient_coding.py``) optimises tuning curves on an exact grid. Here the
stimuli are the bundled digits (``jaxdecomp.data.digits(size)``), whose prior is known only through
samples: one UNCONDITIONAL UNet is trained on them (``experiments._images.train_prior``, cached by
digest in ``experiments/out/priors``), and I(R;X) of an LNP Poisson population is estimated through
the zero-shot conditional denoiser (``jaxdecomp.diffusion.zero_shot_denoiser``: K likelihood-weighted
particles drawn by reverse diffusion with the prior network; docs/zeroshot.md). The loss is minus
the average of I_local(x) over a minibatch of training digits (completeness: ``E_x I_local(x) =
I(R;X)``), built INSIDE the differentiated function, so ``jax.grad`` w.r.t. the receptive-field
parameters is the estimators' unbiased gradient of their own expectation: the particles do not
depend on theta, theta enters through the particle weights (pathwise) and through the law of the
response (score term, ``score_gradient=True``) (docs/zeroshot.md §4). Fresh key and fresh minibatch
at every Adam step (stochastic gradient).

Encoder (n neurons, Poisson): ``f_n(x) = gain * sigmoid(slope * w_n^T (x + offset))`` (the paper's
LNP rates, ``neurons.LNPRates``) with Gaussian receptive fields ``w_n(p) ∝ exp(-|p - c_n|^2 /
(2 s_n^2))`` over the pixel centres p in [-1, 1]^2. Learned: the centres ``c_n = tanh(u_n)`` (inside
the image) and the widths ``s_n = s_lo + (s_hi - s_lo) sigmoid(v_n)``. Constraints (what keeps the
problem meaningful): the GAIN (the maximal rate, spikes per trial) is fixed, and every filter has the
same fixed total weight ``sum_p w_n(p) = budget`` (a synaptic budget: ``w_n^T x`` is a weighted
AVERAGE of the image times ``budget``, so widening a field cannot amplify its drive); widths bounded
to ``[s_lo, s_hi]``. Start: a deliberately crowded ``grid x grid`` lattice (extent ``init_extent``)
with equal widths.

Evaluation: I(R;X) on HELD-OUT digits (not used for the prior nor for the gradient), with an
independent key, more particles, levels and draws, before and after (same key for both, so the
difference is paired), with SEs (the SE of a mean over stimuli: between-digit spread plus Monte
Carlo noise). Also a fixed-key held-out probe every ``eval_every`` steps, I_local maps of a few
held-out digits before/after (nats/pixel), the ESS of the particle weights, and a sanity check of
the theta-gradient: the same loss with the EXACT empirical prior of the training digits
(``grid_denoiser`` over the stored images: exact particles p(x | x_g), and the exact discrete-prior
conditional denoiser ``grid_denoiser(points, weights, population)`` as in ``tasks.digits_lnp``)
against the trained prior's, at the start parameters, same stimuli, replicate keys (sign agreement,
cosine, norm ratio, each with its replicate SE).

Default (quick, ~10 min on a 2-core CPU): 8x8 digits, 9 neurons, UNet channels (8, 16) trained 3000
steps, K = 16 particles with 6 reverse-diffusion steps, 6 levels x 4 draws x 6 digits per Adam step,
30 steps. ``--full`` (for a GPU): 16x16, 16 neurons, bigger UNet, more of everything.
Units: nats; maps in nats/pixel; rates in spikes per trial.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from experiments._images import train_prior
from experiments import _cli
from jaxdecomp import data
from jaxdecomp import estimate as E
from jaxdecomp.diffusion import grid_denoiser, zero_shot_denoiser
from jaxdecomp.diffusion.schedules import levels as make_levels
from jaxdecomp.neurons import LNPRates, lattice_centers, pixel_coordinates, poisson_population
from jaxdecomp.plotting import save

SETTINGS = {
    "quick": dict(size=8, grid=3, init_extent=0.3, init_width=0.3, width_range=(0.15, 0.6), gain=6.0,
                  slope=0.4, offset=0.1, budget=15.0, channels=(8, 16), prior_steps=3000, prior_batch=64,
                  n_train=1500, steps=30, lr=0.08, batch=6, n_levels=6, n_samples=4, n_particles=16,
                  zs_steps=6, log_snr=(-8.0, 8.0), eval_every=10, probe_stimuli=12,
                  eval_stimuli=32, eval_levels=8, eval_samples=6, eval_particles=24, eval_zs_steps=6,
                  n_maps=4, check_reps=6, check_stimuli=6, chunk=64),
    "full": dict(size=16, grid=4, init_extent=0.3, init_width=0.25, width_range=(0.08, 0.6), gain=6.0,
                 slope=0.4, offset=0.1, budget=15.0, channels=(32, 64), prior_steps=20000, prior_batch=128,
                 n_train=1500, steps=200, lr=0.05, batch=16, n_levels=12, n_samples=8, n_particles=64,
                 zs_steps=16, log_snr=(-8.0, 8.0), eval_every=20, probe_stimuli=32,
                 eval_stimuli=297, eval_levels=16, eval_samples=16, eval_particles=128, eval_zs_steps=24,
                 n_maps=6, check_reps=8, check_stimuli=16, chunk=256),
}


# ----------------------------------------------------------------------------- encoder
def _logit(p):
    return np.log(p) - np.log1p(-p)


def constrained(theta, cfg):
    """``(centres (n, 2), widths (n,))`` from the unconstrained parameters ``{"u": (n, 2), "v": (n,)}``."""
    lo, hi = cfg["width_range"]
    return jnp.tanh(theta["u"]), lo + (hi - lo) * jax.nn.sigmoid(theta["v"])


def initial_theta(cfg) -> dict:
    """A crowded ``grid x grid`` lattice over [-init_extent, init_extent]^2, equal widths ``init_width``."""
    c = lattice_centers(cfg["grid"], cfg["init_extent"])
    lo, hi = cfg["width_range"]
    v = _logit((cfg["init_width"] - lo) / (hi - lo))
    return {"u": jnp.asarray(np.arctanh(c), jnp.float32), "v": jnp.full((c.shape[0],), v, jnp.float32)}


def rf_weights(centres, widths, shape, budget):
    """Differentiable Gaussian RFs normalised to a fixed total weight: (n, H*W), each row sums to ``budget``."""
    p = jnp.asarray(pixel_coordinates(shape).reshape(-1, 2), centres.dtype)
    d2 = jnp.sum((p[None] - centres[:, None]) ** 2, -1)
    k = jnp.exp(-0.5 * d2 / widths[:, None] ** 2)
    return budget * k / jnp.sum(k, axis=1, keepdims=True)


def population(theta, cfg):
    """The Poisson LNP population of ``theta`` (fixed gain, slope, offset and weight budget)."""
    shape = (cfg["size"], cfg["size"])
    c, s = constrained(theta, cfg)
    W = rf_weights(c, s, shape, cfg["budget"])
    f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    return poisson_population(LNPRates(W=W, gain=f(cfg["gain"]), slope=f(cfg["slope"]), offset=f(cfg["offset"]),
                                       centers=c, shape=shape))


# ----------------------------------------------------------------------------- I(R;X) estimate
def _levels(cfg, n):
    lo, hi = cfg["log_snr"]
    return make_levels("gauss_legendre", lo, hi, int(n))


def ilocal_of(key, theta, prior, xs, cfg, *, n_levels, n_samples, n_particles, zs_steps, exact_conditional=False):
    """I_local of the stimuli ``xs`` (B, H, W) for the population of ``theta``, through the zero-shot
    denoiser built here from ``prior`` (a trained network or an exact grid prior) and that population.
    ``exact_conditional``: use ``prior``'s points and weights for the exact discrete-prior conditional
    denoiser instead (``prior`` must be a grid denoiser). Differentiable in ``theta``."""
    pop = population(theta, cfg)
    k_den, k_est = jax.random.split(key)
    if exact_conditional:
        den = grid_denoiser(prior.points, jnp.exp(prior.log_weights), pop, shape=prior.shape)
    else:
        den = zero_shot_denoiser(prior, pop, key=k_den, n_particles=n_particles, n_steps=zs_steps,
                                 log_snr_end=float(cfg["log_snr"][1]), shape=(cfg["size"], cfg["size"]))
    return E.ilocal(k_est, den, pop, xs, levels=_levels(cfg, n_levels), n_samples=n_samples, n_steps=zs_steps,
                    chunk=cfg["chunk"])


def _mi_loss(theta, key, prior, xs, cfg, kind="zero_shot"):
    res = ilocal_of(key, theta, prior, xs, cfg, n_levels=cfg["n_levels"], n_samples=cfg["n_samples"],
                    n_particles=cfg["n_particles"], zs_steps=cfg["zs_steps"],
                    exact_conditional=(kind == "exact_conditional"))
    return -jnp.mean(res.total), res.total


def loss_and_grad(cfg, kind="zero_shot"):
    """``jit``-ed ``(theta, key, prior, xs) -> ((-mean I_local, totals), d/dtheta)`` (one compile per prior type)."""
    return jax.jit(lambda theta, key, prior, xs: jax.value_and_grad(_mi_loss, has_aux=True)(theta, key, prior, xs,
                                                                                           cfg, kind))


def make_update(opt):
    @jax.jit
    def update(theta, opt_state, g):
        updates, opt_state = opt.update(g, opt_state, theta)
        return optax.apply_updates(theta, updates), opt_state
    return update


def _mean_se(v):
    v = np.asarray(v, np.float64)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))


def make_evaluate(cfg):
    """Held-out I(R;X) = mean I_local over ``xs`` with the evaluation settings: ``(key, theta, prior, xs) ->``
    per-digit totals, SEs, maps and the mean with its SE (one compile for before and after)."""
    fn = jax.jit(lambda t, k, p, x: ilocal_of(k, t, p, x, cfg, n_levels=cfg["eval_levels"],
                                              n_samples=cfg["eval_samples"], n_particles=cfg["eval_particles"],
                                              zs_steps=cfg["eval_zs_steps"]))

    def evaluate(key, theta, prior, xs):
        res = fn(theta, key, prior, xs)
        tot = np.asarray(res.total, np.float64)
        m, se = _mean_se(tot)
        return dict(mi=m, mi_se=se, totals=tot, mc_se=np.asarray(res.stderr, np.float64),
                    maps=np.asarray(res.map[: cfg["n_maps"]], np.float64))
    return evaluate


def ess_of(key, theta, prior, xs, cfg):
    """Median ESS per level of the evaluation-size zero-shot denoiser (``check_ess``, action='ignore')."""
    pop = population(theta, cfg)
    den = zero_shot_denoiser(prior, pop, key=key, n_particles=cfg["eval_particles"], n_steps=cfg["eval_zs_steps"],
                             log_snr_end=float(cfg["log_snr"][1]), shape=(cfg["size"], cfg["size"]))
    rep = den.check_ess(jax.random.fold_in(key, 1), xs, levels=_levels(cfg, cfg["eval_levels"]), n_samples=4,
                        min_ess=min(10.0, float(cfg["eval_particles"])), action="ignore")
    return dict(log_snr=rep.log_snr, median=rep.median, q10=rep.q10, n_particles=cfg["eval_particles"])


# ----------------------------------------------------------------------------- gradient sanity check
def _flat(g):
    return np.concatenate([np.ravel(np.asarray(g["u"])), np.ravel(np.asarray(g["v"]))]).astype(np.float64)


def gradient_check(key, theta, prior_net, x_train, xs, cfg, vg=None) -> dict:
    """theta-gradient of the loss at ``theta`` on stimuli ``xs`` with (a) the trained prior in the
    zero-shot denoiser, (b) the exact empirical prior of ``x_train`` in the zero-shot denoiser (exact
    particles), (c) the exact discrete-prior conditional denoiser (no particles). ``check_reps``
    independent keys each; returns mean gradients, their SEs and the agreement statistics.
    ``vg``: the compiled :func:`loss_and_grad` of the zero-shot loss (reused, else compiled here)."""
    emp = grid_denoiser(jnp.asarray(x_train.reshape(x_train.shape[0], -1)), jnp.ones(x_train.shape[0]), None,
                        shape=tuple(x_train.shape[1:]))
    out = {}
    for name, prior, kind in (("trained_prior_zero_shot", prior_net, "zero_shot"),
                              ("exact_prior_zero_shot", emp, "zero_shot"),
                              ("exact_conditional", emp, "exact_conditional")):
        fn = vg if (kind == "zero_shot" and vg is not None) else loss_and_grad(cfg, kind)
        t0 = time.perf_counter()
        gs = np.stack([_flat(fn(theta, jax.random.fold_in(key, i), prior, xs)[1]) for i in range(cfg["check_reps"])])
        # two low-noise summaries of the gradient of I(R;X) (= minus the loss gradient): along the radial
        # spread of the centres (in u) and along all widths up (in v), per replicate, then mean ± SE
        u = np.asarray(theta["u"], np.float64).ravel()
        d_spread = np.concatenate([u / np.linalg.norm(u), np.zeros(theta["v"].size)])
        d_width = np.concatenate([np.zeros(u.size), np.ones(theta["v"].size) / np.sqrt(theta["v"].size)])
        proj = {k: -(gs @ d) for k, d in (("spread", d_spread), ("widths", d_width))}
        out[name] = dict(mean=gs.mean(0), se=gs.std(0, ddof=1) / np.sqrt(gs.shape[0]), seconds=time.perf_counter() - t0,
                         dmi_dspread=_mean_se(proj["spread"]), dmi_dwidths=_mean_se(proj["widths"]))
    ref = out["exact_conditional"]["mean"]

    def compare(a):
        g, se = out[a]["mean"], out[a]["se"]
        sig = (np.abs(ref) > 2 * out["exact_conditional"]["se"]) & (np.abs(g) > 2 * se)
        return dict(cosine=float(g @ ref / (np.linalg.norm(g) * np.linalg.norm(ref))),
                    norm_ratio=float(np.linalg.norm(g) / np.linalg.norm(ref)),
                    sign_agreement_all=float(np.mean(np.sign(g) == np.sign(ref))),
                    n_significant_both=int(sig.sum()),
                    sign_agreement_significant=float(np.mean(np.sign(g[sig]) == np.sign(ref[sig]))) if sig.any()
                    else float("nan"))

    out["trained_vs_exact_conditional"] = compare("trained_prior_zero_shot")
    out["exact_prior_zero_shot_vs_exact_conditional"] = compare("exact_prior_zero_shot")
    g1, g2 = out["trained_prior_zero_shot"]["mean"], out["exact_prior_zero_shot"]["mean"]
    out["trained_vs_exact_prior_zero_shot"] = dict(cosine=float(g1 @ g2 / (np.linalg.norm(g1) * np.linalg.norm(g2))),
                                                   norm_ratio=float(np.linalg.norm(g1) / np.linalg.norm(g2)),
                                                   sign_agreement_all=float(np.mean(np.sign(g1) == np.sign(g2))))
    # replicate-to-replicate noise scale: the cosine one would expect from noise alone is ~0
    out["relative_se_of_norm"] = {k: float(np.linalg.norm(out[k]["se"]) / np.linalg.norm(out[k]["mean"]))
                                  for k in ("trained_prior_zero_shot", "exact_prior_zero_shot", "exact_conditional")}
    return out


# ----------------------------------------------------------------------------- the experiment
def run(full: bool = False, seed: int = 0, cache_dir="experiments/out/priors", check: bool = True, **overrides):
    cfg = _cli.settings(SETTINGS, "full" if full else "quick", overrides)
    timings = {}
    x_all = np.asarray(data.digits(cfg["size"]), np.float32)
    perm = np.random.default_rng(seed).permutation(x_all.shape[0])
    x_train = x_all[np.sort(perm[: cfg["n_train"]])]
    x_test = x_all[np.sort(perm[cfg["n_train"]:])]
    x_eval = x_test[: cfg["eval_stimuli"]]
    x_probe = x_test[: cfg["probe_stimuli"]]
    key = jax.random.PRNGKey(1000 + seed)
    k_prior, k_opt, k_eval, k_probe, k_check, k_ess = jax.random.split(key, 6)

    t0 = time.perf_counter()
    prior, prior_info = train_prior(jax.random.PRNGKey(seed), x_train, channels=cfg["channels"],
                                    steps=cfg["prior_steps"], batch=cfg["prior_batch"], cache_dir=cache_dir)
    timings["prior"] = time.perf_counter() - t0

    theta0 = initial_theta(cfg)
    evaluate = make_evaluate(cfg)
    t0 = time.perf_counter()
    before = evaluate(k_eval, theta0, prior, x_eval)
    timings["eval_before"] = time.perf_counter() - t0

    vg = loss_and_grad(cfg)
    opt = optax.adam(cfg["lr"])
    update = make_update(opt)
    theta, opt_state = theta0, opt.init(theta0)
    rng = np.random.default_rng(seed + 1)
    hist = dict(step=[], train_mi=[], train_mi_se=[], grad_norm=[], probe_step=[], probe_mi=[], probe_mi_se=[],
                centres=[], widths=[])
    probe_batches = [jnp.asarray(x_probe[i:i + cfg["batch"]]) for i in range(0, len(x_probe), cfg["batch"])]

    def record_probe(i, th):
        # the training program itself (same shapes: no new compile) on fixed held-out digits, fixed key
        tot = np.concatenate([np.asarray(vg(th, jax.random.fold_in(k_probe, j), prior, xb)[0][1], np.float64)
                              for j, xb in enumerate(probe_batches)])
        m, se = _mean_se(tot)
        hist["probe_step"].append(i)
        hist["probe_mi"].append(m)
        hist["probe_mi_se"].append(se)

    def record_params(th):
        c, s = constrained(th, cfg)
        hist["centres"].append(np.asarray(c))
        hist["widths"].append(np.asarray(s))

    t0 = time.perf_counter()
    record_params(theta)
    for i in range(cfg["steps"]):
        if i % cfg["eval_every"] == 0:
            record_probe(i, theta)
        idx = rng.choice(x_train.shape[0], cfg["batch"], replace=False)
        (_, totals), g = vg(theta, jax.random.fold_in(k_opt, i), prior, jnp.asarray(x_train[idx]))
        theta, opt_state = update(theta, opt_state, g)
        m, se = _mean_se(totals)        # evaluated at theta BEFORE this step's update
        hist["step"].append(i)
        hist["train_mi"].append(m)
        hist["train_mi_se"].append(se)
        hist["grad_norm"].append(float(optax.tree.norm(g)))
        record_params(theta)
    record_probe(cfg["steps"], theta)
    timings["optimisation"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    after = evaluate(k_eval, theta, prior, x_eval)
    timings["eval_after"] = time.perf_counter() - t0
    diff = after["totals"] - before["totals"]
    gain, gain_se = _mean_se(diff)

    t0 = time.perf_counter()
    ess = {"before": ess_of(k_ess, theta0, prior, x_eval[:4], cfg), "after": ess_of(k_ess, theta, prior, x_eval[:4], cfg)}
    timings["ess"] = time.perf_counter() - t0

    grad_check = None
    if check:
        t0 = time.perf_counter()
        grad_check = gradient_check(k_check, theta0, prior, x_train, x_test[: cfg["check_stimuli"]], cfg, vg=vg)
        timings["gradient_check"] = time.perf_counter() - t0

    c0, s0 = (np.asarray(v) for v in constrained(theta0, cfg))
    c1, s1 = (np.asarray(v) for v in constrained(theta, cfg))
    return dict(settings=cfg, full=full, seed=seed, prior=prior_info,
                heldout=dict(n_digits=int(x_eval.shape[0]), before_mi=before["mi"], before_se=before["mi_se"],
                             after_mi=after["mi"], after_se=after["mi_se"], gain=gain, gain_se=gain_se,
                             gain_z=gain / gain_se if gain_se > 0 else float("nan"),
                             before_totals=before["totals"], after_totals=after["totals"],
                             before_mc_se=before["mc_se"], after_mc_se=after["mc_se"]),
                maps=dict(digits=x_eval[: cfg["n_maps"]], before=before["maps"], after=after["maps"]),
                history=hist, ess=ess, gradient_check=grad_check,
                init=dict(centres=c0, widths=s0), final=dict(centres=c1, widths=s1),
                final_weights=np.asarray(population(theta, cfg).rates.W).reshape(-1, cfg["size"], cfg["size"]),
                init_weights=np.asarray(population(theta0, cfg).rates.W).reshape(-1, cfg["size"], cfg["size"]),
                mean_digit=x_train.mean(0), seconds=timings)


# ----------------------------------------------------------------------------- figure
def figure(out):
    cfg = out["settings"]
    n_maps = out["maps"]["before"].shape[0]
    fig = plt.figure(figsize=(3.0 * max(4, n_maps), 10.5))
    gs = fig.add_gridspec(4, max(4, n_maps))
    ext = (-1 - 1 / (cfg["size"] - 1), 1 + 1 / (cfg["size"] - 1)) * 2

    # RF centres over the mean training digit, circles of radius = width
    ax = fig.add_subplot(gs[0, 0])
    im = ax.imshow(out["mean_digit"], cmap="gray", extent=(ext[0], ext[1], ext[1], ext[0]), vmin=-1, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="mean pixel value")
    for which, ls, col in (("init", "--", "C0"), ("final", "-", "C3")):
        for (r, c), s in zip(out[which]["centres"], out[which]["widths"]):
            ax.add_patch(plt.Circle((c, r), s, fill=False, ls=ls, color=col, lw=1))
            ax.plot(c, r, ".", color=col, ms=4)
    tr = np.stack(out["history"]["centres"])        # (steps+1, n, 2)
    for j in range(tr.shape[1]):
        ax.plot(tr[:, j, 1], tr[:, j, 0], "-", color="C1", lw=0.6)
    ax.set_xlim(ext[0], ext[1])
    ax.set_ylim(ext[1], ext[0])
    ax.set_title("RF centres, radius = width\n(dashed: start, red: learned)", fontsize=8)

    # weight images: sum over neurons of the normalised RFs, start and learned
    for k, (name, w) in enumerate((("start", out["init_weights"]), ("learned", out["final_weights"]))):
        ax = fig.add_subplot(gs[0, 1 + k])
        im = ax.imshow(w.sum(0), cmap="viridis")
        fig.colorbar(im, ax=ax, fraction=0.046, label="sum_n w_n(p) (weight/pixel)")
        ax.set_title(f"RF weights summed over neurons, {name}", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])

    ax = fig.add_subplot(gs[0, 3])
    h = out["history"]
    ax.errorbar(np.asarray(h["step"]), h["train_mi"], yerr=h["train_mi_se"], fmt=".", ms=3, lw=0.6, color="0.5",
                label=f"training minibatch ({cfg['batch']} digits, fresh key)")
    ax.errorbar(h["probe_step"], h["probe_mi"], yerr=h["probe_mi_se"], fmt="o-", ms=4, color="C0",
                label=f"held-out probe ({cfg['probe_stimuli']} digits, fixed key)")
    ho = out["heldout"]
    ax.errorbar([0, cfg["steps"]], [ho["before_mi"], ho["after_mi"]], yerr=[ho["before_se"], ho["after_se"]],
                fmt="s", color="C3", ms=6, capsize=3, label=f"held-out eval ({ho['n_digits']} digits)")
    ax.set_xlabel("Adam step")
    ax.set_ylabel("I(R;X) (nats), ± 1 SE")
    ax.set_title(f"held-out gain {ho['gain']:+.3f} ± {ho['gain_se']:.3f} nats (paired)", fontsize=8)
    ax.legend(fontsize=6)

    vmax = float(max(out["maps"]["before"].max(), out["maps"]["after"].max()))
    for i in range(n_maps):
        ax = fig.add_subplot(gs[1, i])
        im = ax.imshow(out["maps"]["digits"][i], cmap="gray", vmin=-1, vmax=1)
        fig.colorbar(im, ax=ax, fraction=0.046, label="pixel value")
        ax.set_title(f"held-out digit {i}", fontsize=8)
        for row, which in ((2, "before"), (3, "after")):
            ax = fig.add_subplot(gs[row, i])
            m = out["maps"][which][i]
            im = ax.imshow(m, cmap="magma", vmin=0, vmax=vmax)
            fig.colorbar(im, ax=ax, fraction=0.046, label="I_local (nats/pixel)")
            tot = out["heldout"][f"{which}_totals"][i]
            ax.set_title(f"{which}: I_local = {tot:.2f} nats", fontsize=8)
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"Efficient coding on {cfg['size']}x{cfg['size']} digits through a trained prior "
                 f"({cfg['grid'] ** 2} LNP neurons, gain {cfg['gain']:g} spikes/trial, weight budget {cfg['budget']:g})",
                 fontsize=10)
    return fig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out", help="folder for the PNG and JSON (default: experiments/out)")
    p.add_argument("--full", action="store_true", help="16x16 digits, 16 neurons, bigger prior, more of "
                   "everything (for a GPU)")
    p.add_argument("--steps", type=int, default=None, help="Adam steps (default: 30 quick, 200 full)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-check", action="store_true", help="skip the exact-prior gradient sanity check")
    p.add_argument("--cache", default="experiments/out/priors", help="cache folder of the trained prior")
    args = p.parse_args(argv)
    over = {} if args.steps is None else dict(steps=args.steps)
    t0 = time.perf_counter()
    out = run(args.full, args.seed, cache_dir=args.cache, check=not args.no_check, **over)
    out["seconds"]["total"] = time.perf_counter() - t0
    fig = figure(out)
    name = "efficient_coding_images" + ("_full" if args.full else "")
    png, js = save(fig, out, args.out, name)
    ho = out["heldout"]
    print(f"wrote {png} and {js}")
    print(f"held-out I(R;X) ({ho['n_digits']} digits): before {ho['before_mi']:.3f} ± {ho['before_se']:.3f}, after "
          f"{ho['after_mi']:.3f} ± {ho['after_se']:.3f} nats; paired gain {ho['gain']:+.3f} ± {ho['gain_se']:.3f} "
          f"(z = {ho['gain_z']:.1f})")
    print("widths:", np.round(out["final"]["widths"], 3))
    if out["gradient_check"] is not None:
        gc = out["gradient_check"]
        for k in ("trained_vs_exact_conditional", "exact_prior_zero_shot_vs_exact_conditional",
                  "trained_vs_exact_prior_zero_shot"):
            print(k, {a: round(b, 3) if isinstance(b, float) else b for a, b in gc[k].items()})
        for k in ("trained_prior_zero_shot", "exact_prior_zero_shot", "exact_conditional"):
            print(f"{k}: dI/d(spread) {gc[k]['dmi_dspread'][0]:+.3f} ± {gc[k]['dmi_dspread'][1]:.3f}, "
                  f"dI/d(widths) {gc[k]['dmi_dwidths'][0]:+.3f} ± {gc[k]['dmi_dwidths'][1]:.3f} nats per unit")
    print("seconds:", {k: round(v, 1) for k, v in out["seconds"].items()})
    return out


if __name__ == "__main__":
    main()
