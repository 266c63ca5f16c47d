"""Truth on images: trained UNet pixel maps against exact I_local maps.

Prior: a 10-component full-covariance Gaussian mixture fitted (scikit-learn) to the
bundled handwritten digits; population: 49 linear-Gaussian neurons with Gaussian
receptive fields on a 7x7 lattice (r = A x + 0.5 noise): ``jaxdecomp.tasks.digits_mixture``. Here the denoisers are exact,
so exact I_local pixel maps follow (exact posterior sampling, 256 samples per level).
A UNet trained on 320,000 fresh pairs drawn from that model (fewer pairs over-fit the
conditional network, which inflates the totals) gives estimated maps (reverse-
diffusion posterior sampling). Reported per test stimulus: the pixel-wise correlation
of the two maps and the relative error of the totals. Writes image_truth.png/json.
"""

import argparse
import time

import jax
import numpy as np
from flax import nnx

from jaxdecomp import estimate as E
from jaxdecomp import tasks
from jaxdecomp.diffusion import TrainConfig, UNetDenoiser, train
from jaxdecomp.diffusion.schedules import levels


TASKS = ("mixture", "lnp")


def make_task(name: str, size: int):
    """``mixture``: digit-fitted Gaussian mixture, 49 linear-Gaussian neurons (``tasks.digits_mixture``);
    ``lnp``: the empirical prior over the bundled digits with the paper's 49 LNP Poisson neurons
    (``tasks.digits_lnp``, exact through the discrete-prior denoisers): the demo's own setting."""
    if name == "mixture":
        return tasks.digits_mixture(size)
    if name == "lnp":
        return tasks.digits_lnp(size)
    raise ValueError(f"task: expected one of {TASKS}, got {name!r}")


def run(size: int = 8, steps: int = 10_000, n_images: int = 6, n_train: int = 320_000, seed: int = 0, hi: float = 8.0,
        task: str = "mixture", fresh: bool = False, channels=(32, 64), batch: int = 64, n_samples: int = 64,
        n_steps: int = 32, full_range: bool = True):
    """Train, then compare maps. ``hi``: the finest log-SNR level used with the network (above it the
    exact Fisher tail of the population is used, so network errors at tiny noise do not accumulate).
    ``fresh``: train on ``n_train`` prior draws (for ``lnp``: the stored digits) with new responses in
    every step (``train(..., population=encoder)``) instead of ``n_train`` fixed pairs.
    ``full_range``: also the totals with levels up to log-SNR 14 (the analytic default)."""
    tk = make_task(task, size)
    pop = tk.encoder
    k = jax.random.split(jax.random.PRNGKey(seed), 6)
    x = tk.stimuli if (task == "lnp" and fresh) else tk.sample_prior(k[0], n_train)
    net = UNetDenoiser((size, size), n_neurons=tk.n_neurons, channels=tuple(channels), rngs=nnx.Rngs(seed))
    cfg = TrainConfig(steps=steps, batch_size=batch, progress=False)
    t0 = time.perf_counter()
    if fresh:
        res = train(net, np.asarray(x), None, cfg, key=k[2], population=pop)
    else:
        r = jax.vmap(pop.sample)(jax.random.split(k[1], n_train), x)
        res = train(net, np.asarray(x), np.asarray(r), cfg, key=k[2])
    t_train = time.perf_counter() - t0
    xt = tk.sample_prior(k[3], n_images)
    exact = tk.ilocal(k[4], xt, n_samples=256)
    t0 = time.perf_counter()
    est = E.ilocal(k[5], res.model, pop, xt, n_samples=n_samples, n_steps=n_steps,
                   levels=levels("gauss_legendre", -10.0, hi, 48))
    jax.block_until_ready(est.total)
    t_maps = time.perf_counter() - t0
    corr = E.map_correlations(np.asarray(exact.map), np.asarray(est.map))
    rel = np.asarray(est.total) / np.asarray(exact.total) - 1
    z = (np.asarray(est.total) - np.asarray(exact.total)) / np.hypot(np.asarray(est.stderr), np.asarray(exact.stderr))
    mi_est = tk.mutual_information(jax.random.PRNGKey(seed + 7), 50_000 if task == "mixture" else 4_000)
    out = dict(task=task, size=size, steps=steps, fresh=fresh, channels=list(channels), batch=batch,
               finest_log_snr=hi, train_pairs="fresh" if fresh else n_train, train_stimuli=int(len(x)),
               train_seconds=t_train, map_seconds=t_maps,
               mutual_information=float(mi_est.value), mutual_information_se=float(mi_est.stderr),
               exact_totals=np.asarray(exact.total), exact_se=np.asarray(exact.stderr),
               network_totals=np.asarray(est.total), network_se=np.asarray(est.stderr),
               map_correlations=np.asarray(corr), total_relative_errors=rel, z=z,
               stimuli=np.asarray(xt), exact_maps=np.asarray(exact.map), network_maps=np.asarray(est.map))
    if full_range:
        est_full = E.ilocal(k[5], res.model, pop, xt, n_samples=n_samples, n_steps=n_steps)
        out["total_relative_errors_up_to_14"] = np.asarray(est_full.total) / np.asarray(exact.total) - 1
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out")
    p.add_argument("--task", default="mixture", choices=TASKS,
                   help="mixture: digit-fitted Gaussian mixture + 49 linear-Gaussian neurons; lnp: the empirical "
                        "digit prior + the 49 LNP Poisson neurons (the demo's setting)")
    p.add_argument("--size", type=int, default=8, help="image size (the digits' native 8, or 16)")
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--n-images", type=int, default=6)
    p.add_argument("--n-train", type=int, default=320_000,
                   help="training pairs drawn from the model (10,000 over-fit: totals up to +37%%); with --fresh "
                        "the number of prior draws (lnp: all stored digits)")
    p.add_argument("--fresh", action="store_true", help="new responses for every training batch (known encoder)")
    p.add_argument("--demo-budget", action="store_true",
                   help="the demo's training budget: 1,500 steps of batch 64, UNet (32, 64), fresh responses, "
                        "16 reverse-diffusion steps and 16 draws per level for the maps (overrides --steps)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    kw = dict(steps=args.steps, fresh=args.fresh)
    if args.demo_budget:
        kw = dict(steps=1500, fresh=True, n_samples=16, n_steps=16, full_range=False)  # jaxdecomp demo's defaults
    out = run(args.size, n_images=args.n_images, n_train=args.n_train, seed=args.seed, task=args.task, **kw)
    print(f"{args.task} {args.size}x{args.size}: trained {out['steps']} steps in {out['train_seconds']:.0f} s; "
          f"map correlation min {out['map_correlations'].min():.3f} median {np.median(out['map_correlations']):.3f}; "
          f"total relative error max |.| {np.abs(out['total_relative_errors']).max():.3f} median |.| "
          f"{np.median(np.abs(out['total_relative_errors'])):.3f}; |z| <= 2 for {int(np.sum(np.abs(out['z']) <= 2))}"
          f"/{len(out['z'])}" + (f" (levels up to log-SNR 14 instead of {out['finest_log_snr']}: "
                                 f"{np.abs(out['total_relative_errors_up_to_14']).max():.3f})"
                                 if "total_relative_errors_up_to_14" in out else ""))
    for i, (t, st, n, sn, c) in enumerate(zip(out["exact_totals"], out["exact_se"], out["network_totals"],
                                              out["network_se"], out["map_correlations"])):
        print(f"  stimulus {i}: exact {t:.3f} ± {st:.3f}, network {n:.3f} ± {sn:.3f} nats, map correlation {c:.3f}")
    from jaxdecomp.plotting import map_figure, save

    fig = map_figure(out["stimuli"], {"exact I_local": out["exact_maps"], "UNet I_local": out["network_maps"]},
                     titles=[f"r={c:.2f}" for c in out["map_correlations"]],
                     units={"exact I_local": "nats/pixel", "UNet I_local": "nats/pixel"},
                     totals={"exact I_local": out["exact_totals"], "UNet I_local": out["network_totals"]},
                     stderrs={"exact I_local": out["exact_se"], "UNet I_local": out["network_se"]}, shared_scale=True)
    name = "image_truth" + ("" if args.task == "mixture" else f"_{args.task}") + ("_demo" if args.demo_budget else "")
    save(fig, out, args.out, name)
    return out


if __name__ == "__main__":
    main()
