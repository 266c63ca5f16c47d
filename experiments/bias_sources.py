"""Where the bias of a learned I_local comes from: a fixed set of paired responses vs fresh responses.

Ground truth: a Gaussian-mixture prior in d = 5 (3 components) with 4 linear-Gaussian neurons
(``jaxdecomp.tasks.gaussian_mixture``: exact denoisers, exact posterior sampling, exact MI by
Monte Carlo of exact log densities). The same small MLP denoiser (condition dropout gives both
denoisers) is trained for the same number of steps on the same 10,000 stimuli in two ways:

* ``fixed``: one response per stimulus drawn once (10,000 fixed pairs, what
  ``simulate_responses`` + ``train(net, x, r)`` does);
* ``fresh``: the encoder is known, so every step draws new responses ``r ~ p(r | x)`` for its
  batch inside the jitted step (``train(net, x, population=encoder)``): the network never sees
  the same pair twice.

For each arm: held-out denoising loss (fresh stimuli and responses) against the last training
loss, the population MI (orthogonal and gap forms, held-out pairs) against the exact MI, and
I_local(x) at 20 held-out stimuli (``estimate.ilocal``, reverse-diffusion posterior sampling)
against the truth (exact denoisers, exact posterior sampling, 1024 draws per level): signed and
absolute median relative error, and the coverage of ``|est - truth| <= 2 SE`` (SE of the estimate
and of the truth combined). Writes ``bias_sources.json`` and ``bias_sources.png`` to ``--out``.

    python -m experiments.bias_sources --out experiments/out [--steps 4000] [--seeds 1]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from experiments import trained_vs_exact as T
from jaxdecomp import estimate as E
from jaxdecomp import tasks
from jaxdecomp.diffusion import MLPDenoiser, TrainConfig, train
from jaxdecomp.diffusion.schedules import add_noise, truncated_logistic_sample
from jaxdecomp.diffusion.training import log_snr_center
from jaxdecomp.plotting import save

N_TRAIN, N_HELD, N_STIM = 10_000, 2_000, 20


def make_task(dim: int = 5):
    """``dim = 5``: 3 components (the default); ``dim = 8``: the 4-component mixture of
    ``trained_vs_exact.case_gmm``. Both with 4 linear-Gaussian neurons, noise SD 0.5."""
    if dim == 8:
        return T.gmm_task()
    if dim != 5:
        raise ValueError(f"dim: expected 5 or 8, got {dim}")
    rng = np.random.default_rng(5)
    d, K, n = 5, 3, 4
    return tasks.gaussian_mixture(np.full(K, 1 / K), rng.normal(size=(K, d)) * 1.2,
                                  rng.uniform(0.2, 0.5, size=(K, d)), rng.normal(size=(n, d)) * 0.6, 0.5,
                                  name=f"gmm_d{d}_{K}_linear_gaussian")


def heldout_loss(model, x, r, cfg, key, loc, n_rep=4):
    """Mean eps-prediction loss of ``model`` (conditional, no dropout) on held-out pairs, the training
    objective's log-SNR density; with its standard error over the pairs."""
    lo, hi = cfg.log_snr_range
    losses = []
    for i in range(n_rep):
        ka, ke = jax.random.split(jax.random.fold_in(key, i))
        a = truncated_logistic_sample(ka, (x.shape[0],), lo, hi, loc, cfg.log_snr_scale)
        eps = jax.random.normal(ke, x.shape, jnp.float32)
        z = add_noise(jnp.asarray(x), eps, a)
        pred = jax.jit(lambda z, a, r: model(z, a, r))(z, a, jnp.asarray(r))
        losses.append(np.asarray(jnp.mean(jnp.square(pred - eps), axis=-1)))
    per = np.mean(losses, axis=0)
    return float(per.mean()), float(per.std(ddof=1) / np.sqrt(len(per)))


def run_arm(arm, task, x, r, held, truth, steps, seed, n_samples, n_steps):
    d = x.shape[1]
    net = MLPDenoiser((d,), n_neurons=task.n_neurons, hidden=128, depth=2, rngs=nnx.Rngs(seed))
    cfg = TrainConfig(steps=steps, batch_size=256, learning_rate=1e-3, warmup_steps=200, progress=False)
    key = jax.random.PRNGKey(300 + seed)
    t0 = time.perf_counter()
    if arm == "fixed":
        res = train(net, x, r, cfg, key=key)
    else:
        res = train(net, x, config=cfg, key=key, population=task.encoder)
    train_s = time.perf_counter() - t0
    loc = log_snr_center(x, cfg)
    hl, hl_se = heldout_loss(res.model, held["x"], held["r"], cfg, jax.random.PRNGKey(7), loc)
    # training loss of the same kind on the training pairs (fixed arm: the pairs it saw)
    tl, tl_se = heldout_loss(res.model, x[:N_HELD], r[:N_HELD], cfg, jax.random.PRNGKey(7), loc)
    k1, k2 = jax.random.split(jax.random.PRNGKey(400 + seed))
    mi_o = E.mutual_information(k1, res.model, held["x"], held["r"], n_noise=4)
    mi_g = E.mutual_information(k1, res.model, held["x"], held["r"], n_noise=4, form="gap")
    t0 = time.perf_counter()
    il = jax.block_until_ready(E.ilocal(k2, res.model, task.encoder, truth["x"], response_sampler="posterior_sample",
                  n_samples=n_samples, n_steps=n_steps))
    il_s = time.perf_counter() - t0
    est, se = np.asarray(il.total, np.float64), np.asarray(il.stderr, np.float64)
    rel = est / truth["ilocal"] - 1
    z = (est - truth["ilocal"]) / np.hypot(se, truth["ilocal_se"])
    return dict(arm=arm, seed=seed, train_steps=steps, train_seconds=train_s, final_train_loss=float(res.losses[-1, 1]),
                loss_on_training_pairs=tl, loss_on_training_pairs_se=tl_se, heldout_loss=hl, heldout_loss_se=hl_se,
                mi_orthogonal=float(mi_o.value), mi_orthogonal_se=float(mi_o.stderr),
                mi_gap=float(mi_g.value), mi_gap_se=float(mi_g.stderr),
                mi_orthogonal_relative_error=float(mi_o.value) / truth["mi"] - 1,
                mi_gap_relative_error=float(mi_g.value) / truth["mi"] - 1,
                ilocal=est.tolist(), ilocal_se=se.tolist(), ilocal_seconds=il_s,
                ilocal_median_relative_error=float(np.median(rel)),
                ilocal_median_abs_relative_error=float(np.median(np.abs(rel))),
                ilocal_mean_relative_error=float(np.mean(rel)),
                ilocal_coverage_2se=float(np.mean(np.abs(z) <= 2)), ilocal_z=z.tolist(),
                ilocal_median_relative_se=float(np.median(se / truth["ilocal"])))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out")
    p.add_argument("--steps", type=int, default=4000, help="training steps per network (default 4000)")
    p.add_argument("--seeds", type=int, default=1, help="networks per arm (default 1)")
    p.add_argument("--n-samples", type=int, default=64, help="ilocal draws per level (default 64)")
    p.add_argument("--n-steps", type=int, default=32, help="reverse-diffusion steps per posterior sample (32)")
    p.add_argument("--quick", action="store_true", help="300 steps, 16 draws: a smoke run, not the claim")
    p.add_argument("--dim", type=int, default=5, choices=(5, 8), help="the mixture's dimension (5 or 8)")
    p.add_argument("--arms", default="fixed,fresh", help="comma-separated arms to run (default fixed,fresh)")
    args = p.parse_args(argv)
    arms = tuple(a for a in args.arms.split(",") if a)
    if not arms or set(arms) - {"fixed", "fresh"}:
        p.error(f"--arms: expected a comma-separated subset of fixed,fresh, got {args.arms!r}")
    steps, n_samples = (300, 16) if args.quick else (args.steps, args.n_samples)
    t_all = time.perf_counter()
    task = make_task(args.dim)
    x_all, r_all = task.sample(jax.random.PRNGKey(100), N_TRAIN + N_HELD)
    x_all, r_all = np.asarray(x_all, np.float32), np.asarray(r_all, np.float32)
    x, r = x_all[:N_TRAIN], r_all[:N_TRAIN]
    held = dict(x=x_all[N_TRAIN:], r=r_all[N_TRAIN:])
    mi = task.mutual_information(jax.random.PRNGKey(11), 400_000)
    xs = held["x"][:N_STIM]
    t0 = time.perf_counter()
    tr = task.ilocal(jax.random.PRNGKey(12), xs, n_samples=1024)
    truth = dict(x=xs, ilocal=np.asarray(tr.total, np.float64), ilocal_se=np.asarray(tr.stderr, np.float64),
                 mi=float(mi.value), mi_se=float(mi.stderr), seconds=time.perf_counter() - t0)
    print(f"truth: I(R;X) = {truth['mi']:.4f} ± {truth['mi_se']:.4f} nats; I_local at {N_STIM} held-out stimuli "
          f"{truth['ilocal'].min():.3f}..{truth['ilocal'].max():.3f} (median SE {np.median(truth['ilocal_se']):.4f})",
          flush=True)
    rows = []
    for seed in range(args.seeds):
        for arm in arms:
            row = run_arm(arm, task, x, r, held, truth, steps, seed, n_samples, args.n_steps)
            rows.append(row)
            print(f"{arm:5s} seed {seed}: {steps} steps in {row['train_seconds']:.0f} s; loss train-pairs "
                  f"{row['loss_on_training_pairs']:.4f}, held-out {row['heldout_loss']:.4f} ± "
                  f"{row['heldout_loss_se']:.4f}; MI orth {row['mi_orthogonal']:.3f} "
                  f"({100 * row['mi_orthogonal_relative_error']:+.1f}%), gap {row['mi_gap']:.3f} "
                  f"({100 * row['mi_gap_relative_error']:+.1f}%); I_local median rel. error "
                  f"{100 * row['ilocal_median_relative_error']:+.1f}% (|.| "
                  f"{100 * row['ilocal_median_abs_relative_error']:.1f}%), coverage of 2 SE "
                  f"{100 * row['ilocal_coverage_2se']:.0f}% ({row['ilocal_seconds']:.0f} s)", flush=True)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    t = truth["ilocal"]
    for row, c in zip(rows, [{"fixed": "C3", "fresh": "C0"}[a] for a in arms] * args.seeds):
        ax.errorbar(t, row["ilocal"], yerr=2 * np.asarray(row["ilocal_se"]), fmt="o", ms=3, color=c, alpha=0.8,
                    label=f"{row['arm']} (seed {row['seed']}): median {100 * row['ilocal_median_relative_error']:+.0f}%")
    lim = [0, 1.1 * max(t.max(), max(max(r_["ilocal"]) for r_ in rows))]
    ax.plot(lim, lim, color="0.5", lw=0.8)
    ax.set_xlabel("exact I_local(x) (nats)")
    ax.set_ylabel("trained MLP I_local(x) ± 2 SE (nats)")
    ax.set_title(f"{steps} steps, 10,000 stimuli: fixed pairs vs fresh r", fontsize=9)
    ax.legend(fontsize=7)
    data = dict(task=task.name, d=5, n_neurons=task.n_neurons, n_train_stimuli=N_TRAIN, n_heldout=N_HELD,
                n_stimuli=N_STIM, ilocal_n_samples=n_samples, ilocal_n_steps=args.n_steps, steps=steps,
                truth=dict(mi=truth["mi"], mi_se=truth["mi_se"], ilocal=t.tolist(), ilocal_se=truth["ilocal_se"].tolist(),
                           seconds=truth["seconds"]),
                arms=rows, seconds=time.perf_counter() - t_all,
                fields=dict(heldout_loss="eps-prediction MSE per coordinate on 2,000 held-out (x, r) pairs",
                            loss_on_training_pairs="same loss on 2,000 of the training stimuli with their training "
                                                   "responses (the fixed arm saw exactly these pairs)",
                            ilocal_median_relative_error="median over the 20 stimuli of est / truth - 1 (signed)",
                            ilocal_coverage_2se="fraction of stimuli with |est - truth| <= 2 hypot(SE_est, SE_truth)",
                            mi_gap_relative_error="gap-form MI on held-out pairs / exact MI - 1"))
    png, js = save(fig, data, args.out, "bias_sources" if args.dim == 5 else f"bias_sources_d{args.dim}")
    print(f"wrote {png} and {js} ({data['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
