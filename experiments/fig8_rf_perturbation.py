"""Paper Fig. 8 (locality in images): change one neuron's receptive field; where do I_local and
specific surprise change?

Population B equals population A except that one neuron (the one whose RF sits at the top-left
corner, (-0.7, -0.7)) gains a sharp Gaussian bump at the far, bottom-right side of the image,
centred at (0.6, 0.6). For test stimuli, the pixel maps of I_local and of specific surprise are
computed under A and under B with the same random numbers, and the change B - A is mapped.

Statistic (``concentration``): the share of the *squared* change that lies within 0.5 (image
units) of the added bump (that disc is 17.6% of a 16x16 image). Each measure is estimated in
``n_replicates`` independent replicates; the mean over replicate pairs k != l of ``d_k * d_l``
is an unbiased estimate of the squared change per pixel (Monte Carlo noise does not add a
floor, as it would to ``|d|`` or ``d**2``). The share is reported per stimulus and pooled over
stimuli (sums over stimuli and pixels), with a jackknife standard error over replicates.
The paper's finding holds when I_local's pooled share is clearly larger than specific
surprise's.

Settings:
* default (exact, CPU, about 1.5 min): the digit-fitted Gaussian-mixture prior of
  ``image_truth.py`` (``jaxdecomp.tasks.digits_mixture``) with 49 linear-Gaussian neurons,
  where exact denoisers and exact posterior sampling give exact-in-expectation maps; Kong-2 is
  mapped too, for comparison.
* ``--trained``: the paper's setting, the 49-neuron LNP population on bundled digits, with ONE
  unconditional prior UNet (``_images.train_prior``, cached under ``experiments/out/priors``) and
  the zero-shot conditional denoiser (``diffusion.zero_shot_denoiser``, likelihood-weighted
  particles drawn by reverse diffusion with the prior) for A and for B with the SAME seed: A and B
  see the same particle sets for the same inputs, so the prior network's error is common to both
  and cancels in B - A (two identical populations give a change of exactly 0). Network levels up
  to log-SNR 8 with the exact Fisher tail. ``check_ess`` is run on A first; it refuses on this
  problem (docs/zeroshot.md §5), the run goes on with ``--ess-action warn`` (default) and the JSON
  records the ESS per level. Also a sanity check: the same zero-shot I_local with the exact
  empirical prior (uniform over the prior's training digits) on the first stimuli.
* ``--trained --two-networks``: the older version, one conditional UNet trained for A and
  fine-tuned for B; its change maps also carry the two networks' errors.
* ``--full``: with ``--trained``, 32x32 digits and longer training (meant for a GPU).

Writes fig8_rf_perturbation.png/json (``--trained``: fig8_rf_perturbation_trained.*;
``--two-networks``: fig8_rf_perturbation_two_networks.*).

Measured (default, 8 stimuli, 4 replicates x 64 samples per level, 85 s on a 2-core CPU): pooled
share of the squared change near the bump, I_local 0.999 +- 0.007, specific surprise
0.771 +- 0.015, Kong-2 0.876 +- 0.008; per stimulus I_local 0.99-1.01, surprise 0.58-0.93,
Kong-2 0.54-1.00. Surprise's change also sits at the changed neuron's original RF (top left).
``--trained`` (zero-shot, one prior; 2-core CPU shared with other jobs, load 5-10): NOT reproduced,
and not resolved. Prior UNet (16, 32) trained 3,000 steps on 1,789 digits at 16x16 (875 s; cached,
0.5 s to reload); 4 test digits, K = 16 particles, 4 reverse steps, 10 network levels, 8 draws
per level, 3 replicates: maps 812 s (I_local) + 474 s (surprise). Pooled share near the bump:
I_local 0.129 +- 0.052, surprise 0.156 +- 1.257 (disc 17.6%); per stimulus I_local
[0.13, 1.03, 0.13, -0.21]: the change's signal-to-noise ratio per stimulus is 0.04-0.58, so
the statistic is Monte Carlo noise. ``check_ess`` refuses (median ESS 1.0 at the six levels
with log-SNR <= 0.3, 5.3 / 10.3 / 14.8 / 14.9 at 2.9 / 5.1 / 6.8 / 7.8; ran with
``--ess-action warn``). The zero-shot I_local totals (1.5-2.1 nats) are far below specific
surprise's (7.8-9.8): with 4 reverse steps the particles are under-dispersed (per-pixel
variance 0.048 at log-SNR -2.3 against 0.149 with 16 steps and 0.147 for the exact empirical
prior), which shrinks the conditional shift. Older ``--two-networks`` (6 digits, 12 min):
pooled shares I_local 0.184 +- 0.006, surprise 0.099 +- 0.007, dominated by the difference
between the two networks. Needed: >= 16 reverse steps and many more draws (a GPU).
"""

import argparse
import time
import warnings

import jax
import numpy as np

from experiments import _cli, _images
from jaxdecomp import estimate as E
from jaxdecomp import tasks
from jaxdecomp.diffusion import gmm_denoiser
from jaxdecomp.neurons import gaussian_rf_weights, lattice_centers, pixel_coordinates

BUMP = np.array([0.6, 0.6])
CORNER = np.array([-0.7, -0.7])
RADIUS = 0.5
MEASURES = {"ilocal": E.ilocal, "specific_surprise": E.specific_surprise, "kong2": E.kong2}
PRIOR_CACHE = "experiments/out/priors"
N_HELD_OUT = 8      # digits held out of the prior's training set (test stimuli come from them)
ZERO_SHOT = {
    "quick": dict(size=16, channels=(16, 32), steps=3000, n_images=4, n_particles=16, n_steps=4,
                  n_levels=10, n_samples=8, n_replicates=3, ess_samples=2, check_images=2),
    "full": dict(size=32, channels=(64, 128), steps=30000, n_images=8, n_particles=64, n_steps=16,
                 n_levels=24, n_samples=32, n_replicates=4, ess_samples=16, check_images=4),
}
TRAINED = {
    "quick": dict(size=16, channels=(32, 64), steps=2500, finetune_steps=1000, copies=2, n_images=6,
                  n_levels=16, n_samples=16, n_steps=8, n_replicates=4),
    "full": dict(size=32, channels=(64, 128), steps=30000, finetune_steps=10000, copies=4, n_images=8,
                 n_levels=24, n_samples=50, n_steps=16, n_replicates=4),
}


def changed_neuron() -> int:
    """Index of the neuron whose RF centre is the top-left lattice point."""
    return int(np.argmin(np.sum((lattice_centers() - CORNER) ** 2, 1)))


def near_bump(size: int) -> np.ndarray:
    """Flat boolean mask of the pixels within ``RADIUS`` of the added bump."""
    return _images.rf_region((size, size), BUMP[None], RADIUS).ravel()


def linear_gaussian_pair(size: int, bump_gain: float = 3.0, bump_sd: float = 0.12):
    """Exact oracles ``(D_a, D_b)``: the fitted digit prior with linear-Gaussian neurons, B with the bump."""
    base = tasks.digits_mixture(size).denoiser
    A = np.asarray(base.A, dtype=np.float64)
    pix = pixel_coordinates((size, size)).reshape(-1, 2)
    bump = np.exp(-np.sum((pix - BUMP) ** 2, 1) / (2 * bump_sd**2))
    A_b = A.copy()
    A_b[changed_neuron()] += bump / bump.sum() * bump_gain
    lam, U = np.asarray(base.lam, np.float64), np.asarray(base.U, np.float64)
    covs = np.einsum("kij,kj,klj->kil", U, lam, U)
    w = np.exp(np.asarray(base.log_weights, np.float64))
    means = np.asarray(base.means, np.float64).reshape((-1, size, size))
    sd = float(np.asarray(base.noise_sd)[0])
    return base, gmm_denoiser(w, means, covs, A_b, sd)


def lnp_pair(size: int, rf_sigma: float = 0.1):
    """The paper's LNP population A and B (B: the corner neuron's RF plus an equal bump at ``BUMP``)."""
    from jaxdecomp.neurons import lnp_population, poisson_population

    pop_a = lnp_population((size, size), rf_sigma=rf_sigma)
    model = pop_a.rates
    extra = gaussian_rf_weights((size, size), BUMP[None], rf_sigma)[0]
    W_b = np.asarray(model.W).copy()
    W_b[changed_neuron()] += extra
    return pop_a, poisson_population(model.replace(W=jax.numpy.asarray(W_b, model.W.dtype)))


def concentration(deltas: np.ndarray, near: np.ndarray) -> dict:
    """Share of the squared change within ``near``, from replicates ``deltas (K, B, P)`` (K >= 3).

    ``(sum_k d_k)^2 - sum_k d_k^2`` over ``K (K - 1)`` is unbiased for the squared change per pixel.
    Returns per-stimulus shares, the pooled share (sums over stimuli and pixels), its jackknife
    standard error over replicates, and the signal-to-noise ratio of each stimulus's change
    (estimated squared change over its Monte Carlo variance, summed over pixels)."""
    d = np.asarray(deltas, np.float64)
    K = d.shape[0]
    if d.ndim != 3 or K < 3:
        raise ValueError(f"deltas: expected (replicates >= 3, stimuli, pixels), got shape {d.shape}")

    def squared(dd):
        k = dd.shape[0]
        return (dd.sum(0) ** 2 - (dd**2).sum(0)) / (k * (k - 1))

    sq = squared(d)
    pooled = float(sq[:, near].sum() / sq.sum())
    jack = np.array([(lambda s: s[:, near].sum() / s.sum())(squared(np.delete(d, j, 0))) for j in range(K)])
    se = float(np.sqrt((K - 1) / K * np.sum((jack - jack.mean()) ** 2)))
    noise = d.var(0, ddof=1) / K
    return dict(per_stimulus=sq[:, near].sum(1) / sq.sum(1), pooled=pooled, pooled_se=se,
                snr=sq.sum(1) / noise.sum(1), mean_change=d.mean(0))


def change_maps(key, pair, xs, measures, n_replicates: int, **kw) -> dict:
    """``n_replicates`` independent estimates of each measure's change map B - A, with common random
    numbers inside a replicate. ``pair``: ((denoiser_a, population_a), (denoiser_b, population_b)).
    Returns {measure: (K, B, pixels)} and the totals under A and B (replicate means)."""
    (den_a, pop_a), (den_b, pop_b) = pair
    out = {}
    for i, name in enumerate(measures):
        fn = MEASURES[name]
        opts = dict(kw)
        if name == "specific_surprise":
            for k in ("response_sampler", "n_steps"):
                opts.pop(k, None)
        reps, tot_a, tot_b = [], [], []
        for k in jax.random.split(jax.random.fold_in(key, i), n_replicates):
            a = fn(k, den_a, pop_a, xs, **opts)
            b = fn(k, den_b, pop_b, xs, **opts)
            reps.append((np.asarray(b.map) - np.asarray(a.map)).reshape(xs.shape[0], -1))
            tot_a.append(np.asarray(a.total))
            tot_b.append(np.asarray(b.total))
        out[name] = dict(deltas=np.stack(reps), total_a=np.mean(tot_a, 0), total_b=np.mean(tot_b, 0))
    return out


def _summarise(changes: dict, near: np.ndarray, size: int) -> dict:
    res = {}
    for name, c in changes.items():
        stat = concentration(c["deltas"], near)
        res[name] = dict(share_near_bump=stat["per_stimulus"], pooled_share=stat["pooled"],
                         pooled_share_se=stat["pooled_se"], snr=stat["snr"],
                         change_maps=stat["mean_change"].reshape(-1, size, size),
                         total_a=c["total_a"], total_b=c["total_b"])
    return res


def run(size: int = 16, n_images: int = 8, n_samples: int = 64, n_replicates: int = 4, seed: int = 0,
        measures=("ilocal", "specific_surprise", "kong2")) -> dict:
    """Exact linear-Gaussian version (see the module docstring)."""
    D_a, D_b = linear_gaussian_pair(size)
    k_x, k_m = jax.random.split(jax.random.PRNGKey(seed))
    xs = D_a.prior_sample(k_x, n_images)
    near = near_bump(size)
    changes = change_maps(k_m, ((D_a, D_a.population), (D_b, D_b.population)), xs, measures, n_replicates,
                          n_samples=n_samples)
    return dict(setting="linear-Gaussian, exact denoisers", stimuli=np.asarray(xs), near_area_fraction=float(near.mean()),
                changed_neuron=changed_neuron(), bump_center=BUMP, radius=RADIUS, size=size, n_samples=n_samples,
                n_replicates=n_replicates, seed=seed, **_summarise(changes, near, size))


def run_trained(full: bool = False, seed: int = 0, **overrides) -> dict:
    """The paper's setting: LNP neurons on bundled digits, trained UNets (see the module docstring)."""
    from jaxdecomp import data
    from jaxdecomp.diffusion import TrainConfig, train
    from jaxdecomp.diffusion.schedules import network_levels
    from jaxdecomp.neurons import simulate_responses

    cfg = _cli.settings(TRAINED, "full" if full else "quick", overrides)
    size = cfg["size"]
    k_perm, k_a, k_b, k_m = jax.random.split(jax.random.PRNGKey(seed), 4)
    x = np.asarray(data.digits(size), np.float32)
    perm = np.asarray(jax.random.permutation(k_perm, x.shape[0]))
    x_test, x_train = x[perm[: cfg["n_images"]]], x[perm[cfg["n_images"]:]]
    pop_a, pop_b = lnp_pair(size)
    t0 = time.perf_counter()
    net_a, info_a = _images.train_on(k_a, pop_a, x_train, channels=cfg["channels"], steps=cfg["steps"],
                                     copies=cfg["copies"])
    # B: fine-tune A's network on B's responses, so the two networks' errors are shared where the
    # populations agree and the change maps show the change of the population more than noise.
    kr, kt = jax.random.split(k_b)
    xs_b, rs_b = simulate_responses(kr, pop_b, x_train, cfg["copies"])
    fin = cfg["finetune_steps"]
    net_b = train(net_a, xs_b, rs_b, TrainConfig(steps=fin, batch_size=64, learning_rate=3e-4,
                                                 warmup_steps=min(100, fin // 5)), key=kt).model
    t_train = time.perf_counter() - t0
    near = near_bump(size)
    t0 = time.perf_counter()
    changes = change_maps(k_m, ((net_a, pop_a), (net_b, pop_b)), x_test, ("ilocal", "specific_surprise"),
                          cfg["n_replicates"], levels=network_levels(cfg["n_levels"]),
                          n_samples=cfg["n_samples"], n_steps=cfg["n_steps"], chunk=2048)
    return dict(setting="LNP, trained UNets", settings=dict(cfg, seed=seed, full=full), training=info_a,
                train_seconds=t_train, map_seconds=time.perf_counter() - t0, stimuli=x_test,
                near_area_fraction=float(near.mean()), changed_neuron=changed_neuron(), bump_center=BUMP,
                radius=RADIUS, size=size, **_summarise(changes, near, size))


def zero_shot_pair(prior, pop_a, pop_b, key, n_particles: int, n_steps: int, shape=None):
    """``((D_a, pop_a), (D_b, pop_b))``: zero-shot conditional denoisers of ONE prior for A and B with the
    SAME seed ``key``. The particles depend on the prior, the input and the seed only, so A and B see
    the same particle sets for the same inputs (common random numbers): the prior network's error is
    common to both and cancels in B - A, and identical populations give a change of exactly 0.
    shape: the stimulus shape when ``prior`` has no ``shape`` attribute."""
    from jaxdecomp.diffusion import zero_shot_denoiser

    mk = lambda pop: zero_shot_denoiser(prior, pop, key=key, n_particles=n_particles,  # noqa: E731
                                        method="particles", n_steps=n_steps, shape=shape)
    return (mk(pop_a), pop_a), (mk(pop_b), pop_b)


def _ess_summary(report, action: str) -> dict:
    return dict(ok=bool(report.ok), refused=not report.ok, action=action, min_ess=report.min_ess,
                log_snr=report.log_snr, median=report.median, q10=report.q10, minimum=report.minimum)


def run_zero_shot(full: bool = False, seed: int = 0, cache_dir=PRIOR_CACHE, ess_action: str = "warn",
                  **overrides) -> dict:
    """The paper's setting with ONE trained prior UNet and the zero-shot conditional (module docstring).

    ess_action: what to do when ``check_ess`` (on A, at the estimator's levels) refuses: ``"raise"``,
    ``"warn"`` (default: the digits problem is a known harmless collapse, docs/zeroshot.md §5; the
    JSON records the ESS per level and that the run went on) or ``"ignore"``."""
    from jaxdecomp import data
    from jaxdecomp.diffusion import grid_denoiser
    from jaxdecomp.diffusion.schedules import network_levels

    if ess_action not in ("raise", "warn", "ignore"):
        raise ValueError(f"ess_action: expected 'raise', 'warn' or 'ignore', got {ess_action!r}")
    cfg = _cli.settings(ZERO_SHOT, "full" if full else "quick", overrides)
    size, n_img = cfg["size"], cfg["n_images"]
    k_perm, k_prior, k_zs, k_m = jax.random.split(jax.random.PRNGKey(seed), 4)
    x = np.asarray(data.digits(size), np.float32)
    perm = np.asarray(jax.random.permutation(k_perm, x.shape[0]))
    held = max(N_HELD_OUT, n_img, cfg["check_images"])
    x_test, x_train = x[perm[:n_img]], x[perm[held:]]
    pop_a, pop_b = lnp_pair(size)
    t0 = time.perf_counter()
    prior, info = _images.train_prior(k_prior, x_train, channels=cfg["channels"], steps=cfg["steps"],
                                      cache_dir=cache_dir)
    t_train = time.perf_counter() - t0
    pair = zero_shot_pair(prior, pop_a, pop_b, k_zs, cfg["n_particles"], cfg["n_steps"])
    lv = network_levels(cfg["n_levels"])
    out = dict(setting="LNP, one prior UNet + zero-shot conditional (particles)", settings=dict(cfg, seed=seed, full=full),
               prior=info, prior_seconds=t_train, stimuli=x_test, near_area_fraction=float(near_bump(size).mean()),
               changed_neuron=changed_neuron(), bump_center=BUMP, radius=RADIUS, size=size)
    t0 = time.perf_counter()
    report = pair[0][0].check_ess(jax.random.fold_in(k_m, 99), x_test, levels=lv, n_samples=cfg["ess_samples"],
                                  min_ess=min(10.0, float(cfg["n_particles"])), action="ignore")
    out["ess"] = _ess_summary(report, ess_action)
    out["ess_seconds"] = time.perf_counter() - t0
    if not report.ok and ess_action != "ignore":
        msg = (f"check_ess refused (median ESS below {report.min_ess:g} of K={cfg['n_particles']} at "
               f"{int(np.sum(report.median < report.min_ess))} of {report.median.size} levels; min median "
               f"{report.median.min():.3g}); going on (ess_action='warn'), see docs/zeroshot.md §5")
        if ess_action == "raise":
            raise ValueError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    kw = dict(levels=lv, n_samples=cfg["n_samples"], chunk=1024)
    changes, secs = {}, {}
    for i, name in enumerate(("ilocal", "specific_surprise")):
        t0 = time.perf_counter()
        changes.update(change_maps(jax.random.fold_in(k_m, i), pair, x_test, (name,), cfg["n_replicates"], **kw))
        secs[name] = time.perf_counter() - t0
    out.update(map_seconds=secs, **_summarise(changes, near_bump(size), size))
    if cfg["check_images"]:
        # sanity check of the network prior: the same zero-shot estimate with the EXACT empirical prior
        # (uniform over the prior's training digits) on the same stimuli, same estimator key
        t0 = time.perf_counter()
        xc = x[perm[: cfg["check_images"]]]
        exact = grid_denoiser(x_train.reshape(x_train.shape[0], -1), np.ones(x_train.shape[0]), None,
                              shape=(size, size))
        k_c = jax.random.fold_in(k_m, 7)
        res = {}
        for name, pr in (("trained_prior", prior), ("exact_empirical_prior", exact)):
            (D, pop), _ = zero_shot_pair(pr, pop_a, pop_b, k_zs, cfg["n_particles"], cfg["n_steps"])
            r = E.ilocal(k_c, D, pop, xc, **kw)
            res[name] = dict(total=np.asarray(r.total), stderr=np.asarray(r.stderr))
        res["seconds"] = time.perf_counter() - t0
        out["prior_check"] = res
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out", help="folder for the PNG and JSON (default: experiments/out)")
    p.add_argument("--trained", action="store_true",
                   help="the paper's LNP setting: one trained prior UNet + the zero-shot conditional")
    p.add_argument("--two-networks", action="store_true",
                   help="with --trained: the older version, a conditional UNet for A fine-tuned for B")
    p.add_argument("--full", action="store_true", help="with --trained: 32x32 digits, longer training (GPU)")
    p.add_argument("--prior-cache", default=PRIOR_CACHE, help=f"folder of cached prior networks (default {PRIOR_CACHE})")
    p.add_argument("--ess-action", default="warn", choices=("raise", "warn", "ignore"),
                   help="zero-shot: what to do when check_ess refuses (default warn, recorded in the JSON)")
    p.add_argument("--size", type=int, default=16, help="image side of the exact setting (default 16)")
    p.add_argument("--n-images", type=int, default=8, help="test stimuli of the exact setting (default 8)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if (args.full or args.two_networks) and not args.trained:
        p.error("--full and --two-networks apply to --trained")
    t0 = time.perf_counter()
    if args.trained and args.two_networks:
        out, stem = run_trained(args.full, args.seed), "fig8_rf_perturbation_two_networks"
    elif args.trained:
        out = run_zero_shot(args.full, args.seed, cache_dir=args.prior_cache, ess_action=args.ess_action)
        stem = "fig8_rf_perturbation_trained"
    else:
        out, stem = run(args.size, args.n_images, seed=args.seed), "fig8_rf_perturbation"
    out["seconds"] = time.perf_counter() - t0
    names = [n for n in MEASURES if n in out]
    for name in names:
        r = out[name]
        print(f"{name}: share of the squared change within {RADIUS} of the new bump: pooled "
              f"{r['pooled_share']:.3f} +- {r['pooled_share_se']:.3f}; per stimulus {np.round(r['share_near_bump'], 3)} "
              f"(area fraction {out['near_area_fraction']:.3f})")
    if "ess" in out:
        e = out["ess"]
        print(f"ESS (median per level, K={out['settings']['n_particles']}): {np.round(e['median'], 2)} at log-SNR "
              f"{np.round(e['log_snr'], 1)}; refused: {e['refused']} (action {e['action']})")
    if "prior_check" in out:
        pc = out["prior_check"]
        for k in ("trained_prior", "exact_empirical_prior"):
            print(f"prior check, I_local totals with the {k}: {np.round(pc[k]['total'], 2)} +- {np.round(pc[k]['stderr'], 2)}")
    print(f"{out['seconds']:.0f} s")
    from jaxdecomp.plotting import map_figure, save

    fig = map_figure(out["stimuli"], {f"change of {n}": out[n]["change_maps"] for n in names}, signed=True)
    fig.suptitle(f"Fig. 8 ({out['setting']}): change of each map when one RF gains a bump at (0.6, 0.6)",
                 fontsize=9)
    save(fig, out, args.out, stem)
    return out


if __name__ == "__main__":
    main()
