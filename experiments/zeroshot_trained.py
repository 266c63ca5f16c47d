"""Zero-shot I_local with a TRAINED prior network against the trained two-network estimator.

The question (issue 15): when the encoder is known, is one unconditional prior network plus the
zero-shot conditional (``diffusion.zero_shot_denoiser``, likelihood-weighted particles) at least as
accurate as the usual estimator, a response-conditioned network trained with condition dropout (which
gives the conditional and the unconditional denoisers), at equal training compute?

Truth problem: ``trained_vs_exact.case_gmm`` (Gaussian-mixture prior in d = 8, 4 components, 4
linear-Gaussian neurons; exact I_local at 20 held-out stimuli by the estimator with the exact
denoisers and 1,024 draws per level). Both networks are the same MLP (hidden 128, depth 2), trained
on the same 10,000 stimuli for the same number of steps and batch size (equal training compute; the
two-network estimator also sees the 10,000 paired responses). Rows:

* ``two-network``: ``estimate.ilocal`` with the conditional network (reverse-diffusion posterior
  sampling, ``n_steps`` steps), as in ``trained_vs_exact.py``; and the same with half the steps
  (the sampler's own discretisation error; with the default ``edm`` step grid it is within about 1%
  at 16 steps on this task with the exact denoiser, ``experiments/sampler_steps.py``);
* ``zero-shot, trained prior``: the prior network inside ``zero_shot_denoiser`` (K particles by
  reverse diffusion with the prior network);
* ``zero-shot, exact prior, reverse-diffusion particles``: the exact prior denoiser as a plain
  function, so particles come from the same reverse-diffusion sampler (separates the prior
  network's error from the sampler's discretisation);
* ``zero-shot, exact prior, exact particles``: the exact prior with its exact posterior sampling
  (the particle method's own error: O(1/K) after pairing and the jackknife);
* ``exact``: the exact conditional denoiser (the task's own), same draws.

Each row: median |relative error| over stimuli, the mean relative error ± its SE, the share of
stimuli whose truth lies within 2 reported SE, and the seconds (training; maps, compilation
included). Writes zeroshot_trained.png / .json. ``--quick``: fewer steps, stimuli and draws.
"""

from __future__ import annotations

import argparse
import time

import jax
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from experiments import _cli, trained_vs_exact as T
from jaxdecomp import estimate as E
from jaxdecomp.diffusion import MLPDenoiser, TrainConfig, train, zero_shot_denoiser
from jaxdecomp.plotting import save

SETTINGS = {
    "default": dict(steps=8000, n_stimuli=20, n_samples=24, n_steps=32, n_particles=64, zs_steps=32),
    "quick": dict(steps=1500, n_stimuli=8, n_samples=32, n_steps=16, n_particles=32, zs_steps=16),
}


def _row(name, est, truth, truth_se, seconds, **extra) -> dict:
    v = np.asarray(est.total, np.float64)
    s = np.asarray(est.stderr, np.float64)
    rel = v / truth - 1
    z = (v - truth) / np.hypot(s, truth_se)
    return dict(name=name, ilocal=v.tolist(), stderr=s.tolist(),
                relative_error=rel.tolist(),
                median_abs_relative_error=float(np.median(np.abs(rel))),
                rms_relative_error=float(np.sqrt(np.mean(rel ** 2))),
                mean_relative_error=float(rel.mean()),
                mean_relative_error_se=float(rel.std(ddof=1) / np.sqrt(len(rel))),
                within_2se=float(np.mean(np.abs(z) <= 2)), seconds=float(seconds), **extra)


def _paired(rows) -> list[dict]:
    """Paired comparison of each zero-shot row with the two-network row on the same stimuli.

    Accuracy is the mean squared relative error (bias and Monte Carlo spread together); the
    difference of squared errors is averaged over stimuli, with its SE across stimuli.
    """
    base = np.asarray(rows[0]["relative_error"])
    out = []
    for r in rows[1:]:
        diff = np.asarray(r["relative_error"]) ** 2 - base ** 2
        out.append(dict(row=r["name"], against=rows[0]["name"], mean_sq_diff=float(diff.mean()),
                        se=float(diff.std(ddof=1) / np.sqrt(len(diff)))))
    return out


def run(quick: bool = False, seed: int = 0, **overrides) -> dict:
    cfg = _cli.settings(SETTINGS, "quick" if quick else "default", overrides)
    case = T.case_gmm(jax.random.PRNGKey(100 + seed))
    xs = case["stimuli"][: cfg["n_stimuli"]]
    truth, truth_se = case["ilocal"][: cfg["n_stimuli"]], case["ilocal_se"][: cfg["n_stimuli"]]
    x_tr, r_tr = case["x"][: T.N_TRAIN], case["r"][: T.N_TRAIN]
    pop = case["population"]
    d = x_tr.shape[1]
    k_c, k_p, k_e = jax.random.split(jax.random.PRNGKey(200 + seed), 3)
    tcfg = TrainConfig(steps=cfg["steps"], batch_size=256, learning_rate=1e-3, warmup_steps=200, progress=False)
    t0 = time.perf_counter()
    cond = train(MLPDenoiser((d,), n_neurons=r_tr.shape[1], hidden=128, depth=2, rngs=nnx.Rngs(0)),
                 x_tr, r_tr, tcfg, key=k_c)
    t_cond = time.perf_counter() - t0
    t0 = time.perf_counter()
    prior = train(MLPDenoiser((d,), n_neurons=None, hidden=128, depth=2, rngs=nnx.Rngs(0)),
                  x_tr, None, TrainConfig(**{**tcfg.__dict__, "cond_drop": 0.0}), key=k_p)
    t_prior = time.perf_counter() - t0

    kw = dict(n_samples=cfg["n_samples"], chunk=2048)
    rows = []
    t0 = time.perf_counter()
    est = jax.block_until_ready(E.ilocal(k_e, cond.model, pop, xs, response_sampler="posterior_sample", n_steps=cfg["n_steps"], **kw))
    rows.append(_row("two-network (conditional net, condition dropout)", est, truth, truth_se,
                     time.perf_counter() - t0, train_seconds=t_cond, final_loss=float(cond.losses[-1, 1])))
    t0 = time.perf_counter()
    half = max(1, cfg["n_steps"] // 2)
    est = jax.block_until_ready(E.ilocal(k_e, cond.model, pop, xs, response_sampler="posterior_sample", n_steps=half, **kw))
    rows.append(_row(f"two-network, {half} reverse-diffusion steps", est, truth, truth_se, time.perf_counter() - t0))
    exact_den = case["denoiser"]          # the task's exact (conditional and prior) denoiser
    exact_fn = lambda z, a, r: exact_den(z, a, None)   # noqa: E731  (no posterior_sample: reverse diffusion)
    for name, prior_den in (("zero-shot, trained prior", prior.model),
                            ("zero-shot, exact prior, reverse-diffusion particles", exact_fn),
                            ("zero-shot, exact prior, exact particles", exact_den)):
        Z = zero_shot_denoiser(prior_den, pop, key=jax.random.fold_in(k_e, 1), n_particles=cfg["n_particles"],
                               n_steps=cfg["zs_steps"], shape=(d,))
        t0 = time.perf_counter()
        est = jax.block_until_ready(E.ilocal(k_e, Z, pop, xs, **kw))
        extra = dict(train_seconds=t_prior, final_loss=float(prior.losses[-1, 1])) if prior_den is prior.model else {}
        rows.append(_row(name, est, truth, truth_se, time.perf_counter() - t0, **extra))
        print(f"  {name}: median |rel. error| {100 * rows[-1]['median_abs_relative_error']:.1f}% "
              f"({rows[-1]['seconds']:.0f} s)", flush=True)
    t0 = time.perf_counter()
    est = jax.block_until_ready(E.ilocal(k_e, exact_den, pop, xs, response_sampler="posterior_sample", **kw))
    rows.append(_row("exact conditional denoiser (no network)", est, truth, truth_se, time.perf_counter() - t0))
    return dict(case=case["name"], settings=dict(cfg, seed=seed, train_pairs=T.N_TRAIN, batch=256,
                                                  hidden=128, depth=2),
                stimuli=np.asarray(xs), truth=np.asarray(truth), truth_se=np.asarray(truth_se), rows=rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out", help="folder for the PNG and JSON (default: experiments/out)")
    p.add_argument("--quick", action="store_true", help="fewer steps, stimuli and draws (a smoke run)")
    p.add_argument("--steps", type=int, default=None, help="training steps of each network")
    p.add_argument("--draws", type=int, default=None, help="Monte Carlo draws per level (n_samples) for every row")
    p.add_argument("--particles", type=int, default=None, help="zero-shot particles K (default 64)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    over = {k: v for k, v in (("steps", args.steps), ("n_samples", args.draws), ("n_particles", args.particles))
            if v is not None}
    t0 = time.perf_counter()
    out = run(args.quick, args.seed, **over)
    out["seconds"] = time.perf_counter() - t0
    for r in out["rows"]:
        print(f"{r['name']}: median |rel. error| {100 * r['median_abs_relative_error']:.1f}%, "
              f"RMS {100 * r['rms_relative_error']:.1f}%, mean "
              f"{100 * r['mean_relative_error']:+.1f} ± {100 * r['mean_relative_error_se']:.1f}%, truth within 2 SE "
              f"{100 * r['within_2se']:.0f}%, maps {r['seconds']:.0f} s"
              + (f", training {r['train_seconds']:.0f} s" if "train_seconds" in r else ""))
    out["paired"] = _paired(out["rows"])
    for c in out["paired"]:
        print(f"{c['row']} vs {c['against']}: mean (rel. error^2 - rel. error^2) {c['mean_sq_diff']:+.5f} "
              f"± {c['se']:.5f} (negative: the first row is more accurate)")
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    t = out["truth"]
    for r in out["rows"]:
        ax.errorbar(t, r["ilocal"], yerr=2 * np.asarray(r["stderr"]), fmt="o", ms=4, capsize=2,
                    label=f"{r['name']} ({100 * r['median_abs_relative_error']:.1f}%)")
    lim = [0, 1.15 * float(np.max([t.max()] + [max(r["ilocal"]) for r in out["rows"]]))]
    ax.plot(lim, lim, "k--", lw=0.8)
    ax.set_xlabel("true I_local(x) (nats)")
    ax.set_ylabel("estimated I_local(x) (nats), ± 2 SE")
    ax.set_title(f"{out['case']}: trained networks, {out['settings']['steps']} steps each", fontsize=9)
    ax.legend(fontsize=7)
    save(fig, out, args.out, "zeroshot_trained")
    return out


if __name__ == "__main__":
    main()
