"""Learned I_local with the network in the error bar: bias and calibration of trained ensembles where the truth is known.

Truth problems: the Gaussian-mixture priors of ``bias_sources.make_task`` (d = 5, 3 components; d = 8,
4 components), each with 4 linear-Gaussian neurons, exact I_local by the estimator with the exact
denoisers and exact posterior sampling (1,024 draws per level) at ``--stimuli`` held-out prior draws.

Training (the encoder is known, so every step draws fresh responses; ``train_ensemble(population=)``
trains the K members in one vmapped program): K conditional MLPs (128 x 2, condition dropout 0.2, which
gives the unconditional denoiser too) and K unconditional MLPs (the same size, ``cond_drop=0``), all on
the same 10,000 prior stimuli, ``--steps`` steps, batch 256. Rows, each with reverse-diffusion posterior
sampling (``--n-steps`` steps) and ``--draws`` draws per level:

* ``one network``: member 0 alone (``estimate.ilocal``; its SE is Monte Carlo only);
* ``ensemble, one network per member``: ``estimate.over_ensemble`` over the K conditional networks;
* ``ensemble, conditional + separate prior``: member k is ``PairDenoiser(prior_k, conditional_k)``,
  so the unconditional denoiser and the posterior sampler use a network trained only for that.

Each row: median |relative error|, mean relative error +- its SE over stimuli, share of stimuli with
the truth within 2 reported SE (the truth's own SE combined), the median relative SE and its network
part. Writes ensemble_calibration.json / .png to ``--out``.

    python -m experiments.ensemble_calibration --out experiments/out [--dims 5,8] [--quick]
"""

from __future__ import annotations

import argparse
import time

import jax
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from experiments import _cli
from experiments.bias_sources import make_task
from jaxdecomp import estimate as E
from jaxdecomp.diffusion import MLPDenoiser, PairDenoiser, TrainConfig, train_ensemble
from jaxdecomp.plotting import save

SETTINGS = {
    "default": dict(members=3, steps=4000, stimuli=40, draws=128, n_steps=32, truth_draws=1024, n_train=10_000),
    "quick": dict(members=2, steps=600, stimuli=8, draws=32, n_steps=16, truth_draws=256, n_train=4000),
}


def _row(name, total, se, t, ts, seconds, net_se=None) -> dict:
    total, se = np.asarray(total, np.float64), np.asarray(se, np.float64)
    rel = total / t - 1
    z = (total - t) / np.hypot(se, ts)
    return dict(name=name, ilocal=total.tolist(), stderr=se.tolist(), relative_error=rel.tolist(),
                median_abs_relative_error=float(np.median(np.abs(rel))), mean_relative_error=float(rel.mean()),
                mean_relative_error_se=float(rel.std(ddof=1) / np.sqrt(len(rel))),
                within_2se=float(np.mean(np.abs(z) <= 2)), median_relative_se=float(np.median(se / t)),
                median_relative_network_se=None if net_se is None else float(np.median(np.asarray(net_se) / t)),
                seconds=float(seconds))


def run_dim(dim: int, cfg: dict, seed: int = 0) -> dict:
    task = make_task(dim)
    K = cfg["members"]
    x = np.asarray(task.sample_prior(jax.random.PRNGKey(100 + seed), cfg["n_train"]), np.float32)
    xs = np.asarray(task.sample_prior(jax.random.PRNGKey(6 + seed), cfg["stimuli"]))
    t0 = time.perf_counter()
    tr = task.ilocal(jax.random.PRNGKey(12), xs, response_sampler="posterior_sample", n_samples=cfg["truth_draws"])
    t, ts = np.asarray(tr.total, np.float64), np.asarray(tr.stderr, np.float64)
    t_truth = time.perf_counter() - t0
    tcfg = TrainConfig(steps=cfg["steps"], batch_size=256, learning_rate=1e-3, warmup_steps=200, progress=False)
    mlp = lambda n, i: MLPDenoiser((dim,), n_neurons=n, hidden=128, depth=2, rngs=nnx.Rngs(i))  # noqa: E731
    t0 = time.perf_counter()
    conds = [r.model for r in train_ensemble([mlp(task.n_neurons, 10 + i) for i in range(K)], x, config=tcfg,
                                             keys=[jax.random.PRNGKey(500 + 10 * seed + i) for i in range(K)],
                                             population=task.encoder)]
    t_cond = time.perf_counter() - t0
    t0 = time.perf_counter()
    priors = [r.model for r in train_ensemble([mlp(None, 20 + i) for i in range(K)], x, None,
                                              TrainConfig(**{**tcfg.__dict__, "cond_drop": 0.0}),
                                              keys=[jax.random.PRNGKey(600 + 10 * seed + i) for i in range(K)])]
    t_prior = time.perf_counter() - t0
    print(f"d = {dim}: truth at {len(xs)} stimuli in {t_truth:.0f} s; {K} conditional networks in {t_cond:.0f} s, "
          f"{K} priors in {t_prior:.0f} s ({cfg['steps']} steps each, one program per kind)", flush=True)
    kw = dict(n_samples=cfg["draws"], n_steps=cfg["n_steps"])
    key = jax.random.PRNGKey(4 + seed)
    rows = []
    t0 = time.perf_counter()
    one = jax.block_until_ready(E.ilocal(key, conds[0], task.encoder, xs, **kw))
    rows.append(_row("one network (Monte Carlo SE only)", one.total, one.stderr, t, ts, time.perf_counter() - t0))
    for name, dens in ((f"ensemble of {K}, one network per member", conds),
                       (f"ensemble of {K}, conditional + separate prior", [PairDenoiser(p, c) for p, c in
                                                                           zip(priors, conds)])):
        t0 = time.perf_counter()
        ens = E.over_ensemble(E.ilocal, key, dens, task.encoder, xs, **kw)
        rows.append(_row(name, ens.total, ens.stderr, t, ts, time.perf_counter() - t0, ens.network_stderr))
    for r in rows:
        print(f"  {r['name']:48s} median |rel. error| {100 * r['median_abs_relative_error']:.1f}%, mean "
              f"{100 * r['mean_relative_error']:+.1f} ± {100 * r['mean_relative_error_se']:.1f}%, truth within 2 SE "
              f"{100 * r['within_2se']:.0f}%, median SE {100 * r['median_relative_se']:.1f}%"
              + ("" if r["median_relative_network_se"] is None else
                 f" (network part {100 * r['median_relative_network_se']:.1f}%)") + f", {r['seconds']:.0f} s",
              flush=True)
    return dict(task=task.name, dim=dim, truth=t.tolist(), truth_se=ts.tolist(), truth_seconds=t_truth,
                train_seconds=dict(conditional=t_cond, prior=t_prior), rows=rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out", help="folder for the PNG and JSON (default: experiments/out)")
    p.add_argument("--dims", default="5,8", help="comma-separated mixture dimensions, 5 and/or 8 (default 5,8)")
    p.add_argument("--steps", type=int, default=None, help="training steps of every network")
    p.add_argument("--seed", type=int, default=0, help="stimuli, training data and keys")
    p.add_argument("--quick", action="store_true", help="2 members, 600 steps, 8 stimuli: a smoke run, not the claim")
    args = p.parse_args(argv)
    try:
        dims = [int(d) for d in args.dims.split(",") if d]
    except ValueError:
        p.error(f"--dims: expected comma-separated integers (5 and/or 8), got {args.dims!r}")
    if not dims or set(dims) - {5, 8}:
        p.error(f"--dims: expected 5 and/or 8, got {args.dims!r}")
    cfg = _cli.settings(SETTINGS, "quick" if args.quick else "default",
                        {} if args.steps is None else dict(steps=args.steps))
    t0 = time.perf_counter()
    res = [run_dim(d, cfg, args.seed) for d in dims]
    out = dict(settings=dict(cfg, seed=args.seed), results=res, seconds=time.perf_counter() - t0,
               fields=dict(median_abs_relative_error="median over stimuli of |estimate / truth - 1|",
                           within_2se="share of stimuli with |estimate - truth| <= 2 hypot(SE, SE of the truth)",
                           median_relative_network_se="median of the network part of the SE over the truth"))
    fig, axes = plt.subplots(1, len(res), figsize=(4.6 * len(res), 4.2), squeeze=False)
    for ax, r in zip(axes[0], res):
        t = np.asarray(r["truth"])
        for row, c in zip(r["rows"], ("C3", "C0", "C2")):
            ax.errorbar(t, row["ilocal"], yerr=2 * np.asarray(row["stderr"]), fmt="o", ms=3, color=c, alpha=0.8,
                        capsize=1.5, label=f"{row['name']}: {100 * row['median_abs_relative_error']:.1f}%, "
                                           f"{100 * row['within_2se']:.0f}% in 2 SE")
        lim = [0.95 * t.min(), 1.05 * t.max()]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xlabel("exact I_local(x) (nats)")
        ax.set_ylabel("trained I_local(x) ± 2 SE (nats)")
        ax.set_title(f"{r['task']}: {cfg['members']} networks, {cfg['steps']} steps", fontsize=9)
        ax.legend(fontsize=6)
    save(fig, out, args.out, "ensemble_calibration")
    print(f"done in {out['seconds']:.0f} s")
    return out


if __name__ == "__main__":
    main()
