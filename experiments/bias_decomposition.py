"""Where a trained network's I_local error comes from: swap each learned part for the exact one.

Truth problem: the 8-D Gaussian mixture of ``trained_vs_exact.gmm_task`` (4 components, 4
linear-Gaussian neurons), exact denoisers and exact posterior sampling. A conditional MLP (128 x 2,
condition dropout 0.2, so it is the unconditional denoiser too) is trained with fresh responses every
step (``train(population=)``) on 10,000 prior stimuli, and an unconditional MLP of the same size on the
same stimuli. I_local at ``--stimuli`` prior draws is then computed with hybrid denoisers, all with the
SAME key (common random numbers, so the differences between rows are sharper than each row's SE):

* the conditional network ``eps(x_a, a, r)``, the unconditional ``eps(x_a, a)``, and the posterior
  sampler that draws ``x' ~ p(x | x_g)`` (then ``r ~ p(r | x')``) are each either the network's (reverse
  diffusion with the unconditional denoiser, ``--n-steps`` steps) or exact;
* rows: all network; network with the exact sampler; one network swapped for the exact one; the
  separate prior network in the unconditional role; and the exact denoisers with reverse diffusion
  (the sampler's own discretisation error).

Repeated for ``--seeds`` trainings, because one network's error is as large as the effects measured.
Writes bias_decomposition.json / .png to ``--out``.

    python -m experiments.bias_decomposition --out experiments/out [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx, struct

from experiments import trained_vs_exact as T
from jaxdecomp import estimate as E
from jaxdecomp.diffusion import MLPDenoiser, TrainConfig, train
from jaxdecomp.plotting import save


@struct.dataclass
class Hybrid:
    """``cond`` for ``r`` given, ``uncond`` for ``r=None``; no exact sampler (reverse diffusion with ``self``)."""
    cond: Any
    uncond: Any
    shape: tuple = struct.field(pytree_node=False, default=(8,))

    def __call__(self, z, a, r=None):
        return self.uncond(z, a, None) if r is None else self.cond(z, a, r)


@struct.dataclass
class HybridExactSampler(Hybrid):
    """The same with the exact posterior sampler of ``sampler``."""
    sampler: Any = None

    def posterior_sample(self, key, z, a, r=None):
        return self.sampler.posterior_sample(key, z, a, r)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out")
    p.add_argument("--seeds", type=int, default=3, help="independent trainings (default 3)")
    p.add_argument("--steps", type=int, default=4000, help="training steps per network (default 4000)")
    p.add_argument("--stimuli", type=int, default=20)
    p.add_argument("--draws", type=int, default=128, help="draws per level (default 128)")
    p.add_argument("--n-steps", type=int, default=32, help="reverse-diffusion steps (default 32)")
    p.add_argument("--quick", action="store_true", help="1 seed, 500 steps, 6 stimuli, 16 draws: a smoke run")
    a = p.parse_args(argv)
    seeds, steps, n_stim, draws = (1, 500, 6, 16) if a.quick else (a.seeds, a.steps, a.stimuli, a.draws)
    t_all = time.perf_counter()
    task = T.gmm_task()
    ex = task.denoiser
    x = np.asarray(task.sample_prior(jax.random.PRNGKey(100), 10_000), np.float32)
    xs = np.asarray(task.sample_prior(jax.random.PRNGKey(5), n_stim))
    t = np.asarray(task.ilocal(jax.random.PRNGKey(12), xs, response_sampler="posterior_sample",
                               n_samples=1024).total, np.float64)
    cfg = TrainConfig(steps=steps, batch_size=256, learning_rate=1e-3, warmup_steps=200, progress=False)
    key = jax.random.PRNGKey(4)
    kw = dict(n_samples=draws, n_steps=a.n_steps)

    def rel(den):
        return np.asarray(E.ilocal(key, den, task.encoder, xs, **kw).total, np.float64) / t - 1

    rows: dict[str, list] = {}
    for s in range(seeds):
        net = train(MLPDenoiser((8,), n_neurons=4, hidden=128, depth=2, rngs=nnx.Rngs(s)), x, config=cfg,
                    key=jax.random.PRNGKey(300 + s), population=task.encoder).model
        prior = train(MLPDenoiser((8,), n_neurons=None, hidden=128, depth=2, rngs=nnx.Rngs(100 + s)), x, None,
                      TrainConfig(**{**cfg.__dict__, "cond_drop": 0.0}), key=jax.random.PRNGKey(700 + s)).model
        arms = {
            "all network (reverse diffusion with the network)": Hybrid(net, net),
            "network denoisers, exact sampler": HybridExactSampler(net, net, sampler=ex),
            "network conditional, exact unconditional and sampler": HybridExactSampler(net, ex, sampler=ex),
            "exact conditional, network unconditional, exact sampler": HybridExactSampler(ex, net, sampler=ex),
            "network conditional + separate prior network (reverse diffusion with it)": Hybrid(net, prior),
            "network conditional + separate prior network, exact sampler": HybridExactSampler(net, prior, sampler=ex),
        }
        if s == 0:
            arms["exact denoisers, reverse diffusion"] = Hybrid(ex, ex)
            arms["exact denoisers, exact sampler"] = HybridExactSampler(ex, ex, sampler=ex)
        for name, den in arms.items():
            rows.setdefault(name, []).append(rel(den))
        print(f"seed {s}: " + "; ".join(f"{n.split(' (')[0]} {100 * v[-1].mean():+.1f}%" for n, v in rows.items()
                                        if len(v) == s + 1), flush=True)
    base = np.asarray(rows["all network (reverse diffusion with the network)"])
    table = []
    for name, vals in rows.items():
        v = np.asarray(vals)                                   # (seeds, stimuli)
        per_seed = v.mean(1)
        d = v - base[: len(v)]                                  # paired with the all-network row
        table.append(dict(row=name, mean_relative_error=float(v.mean()), per_seed=per_seed.tolist(),
                          se_over_stimuli=float(v.mean(0).std(ddof=1) / np.sqrt(v.shape[1])),
                          spread_over_seeds=float(per_seed.std(ddof=1)) if len(per_seed) > 1 else None,
                          minus_all_network=float(d.mean()),
                          minus_all_network_se=float(d.mean(0).std(ddof=1) / np.sqrt(d.shape[1]))))
    for r in table:
        spread = "" if r["spread_over_seeds"] is None else f", seeds {', '.join(f'{100 * q:+.1f}' for q in r['per_seed'])}"
        print(f"{r['row']:78s} {100 * r['mean_relative_error']:+.2f} ± {100 * r['se_over_stimuli']:.2f}%"
              f"  (vs all network {100 * r['minus_all_network']:+.2f} ± {100 * r['minus_all_network_se']:.2f}%){spread}")
    out = dict(task=task.name, settings=dict(seeds=seeds, steps=steps, stimuli=n_stim, draws=draws,
                                             n_steps=a.n_steps, train_stimuli=10_000),
               truth=t.tolist(), rows=table, seconds=time.perf_counter() - t_all)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(table) + 1.2))
    err = [r["spread_over_seeds"] or r["se_over_stimuli"] for r in table]
    ax.barh(range(len(table)), [100 * r["mean_relative_error"] for r in table], xerr=[100 * e for e in err],
            color="0.6", capsize=2)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(table)), [r["row"] for r in table], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("mean relative error of I_local (%), ± spread over trainings")
    ax.set_title(f"{task.name}: which part of the trained estimator errs ({seeds} trainings, {steps} steps)",
                 fontsize=8)
    save(fig, out, a.out, "bias_decomposition")
    return out


if __name__ == "__main__":
    main()
