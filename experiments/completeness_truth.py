"""Completeness with trained networks, where the truth is known: which population-MI estimate does
the mean of network I_local agree with, and which is right?

Setting of ``image_truth.py`` (``jaxdecomp.tasks.digits_mixture``: digit-fitted 10-component Gaussian mixture on 8x8 images, 49
linear-Gaussian neurons), where the exact I(R;X) (Monte Carlo with exact log densities) and exact
I_local are available. A UNet is trained as the demo trains its own: ``n_images`` prior draws, each
with ``copies`` simulated responses, ``steps`` Adam steps. Then, as in ``jaxdecomp demo``:

* I(R;X) from held-out pairs in the orthogonal and the gap form (network levels up to log-SNR 8),
* the mean of network I_local (reverse-diffusion posterior sampling) over test stimuli,
* and, for the same stimuli, exact I_local.

Prints and writes completeness_truth.png/json: every estimate with its standard error and its relative
error against the exact I(R;X). ``--n-images``/``--copies``/``--steps`` move the training budget;
``--fresh`` draws new responses for every training batch (``train(..., population=encoder)``).
"""

import argparse
import time

import jax
import numpy as np
from flax import nnx

from jaxdecomp import estimate as E
from jaxdecomp import tasks
from jaxdecomp.diffusion import TrainConfig, UNetDenoiser, fit_gaussian_baseline, train
from jaxdecomp.diffusion.schedules import network_levels


def run(n_images: int = 1400, copies: int = 4, steps: int = 2000, n_test: int = 24, n_mi: int = 400,
        n_levels: int = 32, n_samples: int = 16, n_steps: int = 16, size: int = 8, seed: int = 0,
        fresh: bool = False, gaussian_baseline: bool = False) -> dict:
    task = tasks.digits_mixture(size)
    pop = task.encoder
    k = jax.random.split(jax.random.PRNGKey(seed), 8)
    x_prior = np.asarray(task.sample_prior(k[0], n_images))
    net = UNetDenoiser((size, size), n_neurons=task.n_neurons, channels=(32, 64), gaussian_baseline=gaussian_baseline,
                       rngs=nnx.Rngs(seed))
    tcfg = TrainConfig(steps=steps, batch_size=64, progress=False)
    t0 = time.perf_counter()
    x = np.repeat(x_prior, copies, axis=0)
    r = np.asarray(jax.vmap(pop.sample)(jax.random.split(k[1], x.shape[0]), x))
    if gaussian_baseline:   # moments of the training pairs only
        fit_gaussian_baseline(net, x, r)
    if fresh:   # the encoder is known: new responses for every batch inside the training step
        model = train(net, x_prior, config=tcfg, key=k[2], population=pop).model
    else:
        model = train(net, x, r, tcfg, key=k[2]).model
    t_train = time.perf_counter() - t0
    lv = network_levels(n_levels)
    x_mi = task.sample_prior(k[3], n_mi)
    r_mi = jax.vmap(pop.sample)(jax.random.split(k[4], n_mi), x_mi)
    est = {}
    for form in ("orthogonal", "gap"):
        m = E.mutual_information(k[5], model, x_mi, r_mi, levels=lv, n_noise=2, form=form)
        est[f"mi_{form}"] = (float(m.value), float(m.stderr))
    xt = task.sample_prior(k[6], n_test)
    net_il = np.asarray(E.ilocal(k[7], model, pop, xt, levels=lv, n_samples=n_samples, n_steps=n_steps, chunk=2048).total)
    exact_il = np.asarray(task.ilocal(k[7], xt, n_samples=256).total)
    sem = lambda v: float(np.std(v, ddof=1) / np.sqrt(len(v)))  # noqa: E731
    est["mean_ilocal_network"] = (float(net_il.mean()), sem(net_il))
    est["mean_ilocal_exact_same_stimuli"] = (float(exact_il.mean()), sem(exact_il))
    mi_est = task.mutual_information(jax.random.PRNGKey(seed + 7), 50_000)
    mi, mi_se = mi_est.value, mi_est.stderr
    truth = float(mi)
    rel = {name: v[0] / truth - 1 for name, v in est.items()}
    paired = net_il - exact_il
    return dict(settings=dict(n_images=n_images, copies=copies, steps=steps, n_test=n_test, n_mi=n_mi, n_levels=n_levels,
                              n_samples=n_samples, n_steps=n_steps, size=size, seed=seed, fresh=fresh,
                              gaussian_baseline=gaussian_baseline),
                train_seconds=t_train, exact_mi=truth, exact_mi_se=float(mi_se), estimates=est, relative_errors=rel,
                network_minus_exact_ilocal=(float(paired.mean()), sem(paired)),
                network_ilocal=net_il, exact_ilocal=exact_il)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out")
    p.add_argument("--n-images", type=int, default=1400, help="training stimuli (the demo: about 1,400 digits)")
    p.add_argument("--copies", type=int, default=4, help="simulated responses per training stimulus (demo: 4)")
    p.add_argument("--steps", type=int, default=2000, help="training steps (demo: 2,000)")
    p.add_argument("--fresh", action="store_true",
                   help="new responses r ~ p(r|x) for every training batch (the encoder is known) instead of "
                        "--copies fixed responses per stimulus")
    p.add_argument("--gaussian-baseline", action="store_true",
                   help="the UNet predicts a residual on a Gaussian denoiser fitted to the training pairs")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = run(args.n_images, args.copies, args.steps, seed=args.seed, fresh=args.fresh,
              gaussian_baseline=args.gaussian_baseline)
    resp = "fresh responses every step" if args.fresh else f"{args.copies} responses"
    print(f"exact I(R;X) = {out['exact_mi']:.3f} +- {out['exact_mi_se']:.3f} nats "
          f"(training {out['train_seconds']:.0f} s, {args.n_images} stimuli x {resp}, {args.steps} steps)")
    for name, (v, se) in out["estimates"].items():
        print(f"  {name:32s} {v:7.3f} +- {se:.3f}   ({100 * out['relative_errors'][name]:+.1f}% vs exact MI)")
    d, dse = out["network_minus_exact_ilocal"]
    print(f"  network - exact I_local, paired over the test stimuli: {d:+.3f} +- {dse:.3f}")
    from jaxdecomp.plotting import plt, save

    names = list(out["estimates"])
    vals = [out["estimates"][n][0] for n in names]
    ses = [out["estimates"][n][1] for n in names]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh(range(len(names)), vals, xerr=ses, color="0.6")
    ax.axvline(out["exact_mi"], color="k", ls="--", label="exact I(R;X)")
    ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
    ax.set_xlabel("nats")
    ax.set_title(f"{args.n_images} stimuli x {resp}, {args.steps} steps", fontsize=9)
    ax.legend(fontsize=8)
    save(fig, out, args.out, "completeness_truth_fresh" if args.fresh else "completeness_truth")
    return out


if __name__ == "__main__":
    main()
