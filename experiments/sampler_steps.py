"""The reverse-diffusion sampler's own bias in I_local: step count and step grid, with exact denoisers.

``estimate.ilocal``'s default response sampler draws ``x' ~ p(x | x_g)`` by reverse diffusion when the
denoiser has no exact ``posterior_sample`` (every trained network), and the zero-shot denoiser draws
its particles the same way. This script isolates that error: the task's EXACT denoiser is hidden
behind a plain function (so the estimator must use reverse diffusion) and compared, with common random
numbers (same key, same stimuli), against the same estimator with the exact posterior sampler. What is
left is the sampler's discretisation error, nothing else (no network).

Tasks (``jaxdecomp.tasks.gaussian_mixture``, exact denoisers):
* ``gmm8``: the 8-D, 4-component mixture with 4 linear-Gaussian neurons of ``trained_vs_exact.case_gmm``;
* ``gmm16``: a 16-D, 6-component mixture (component SDs 0.2-0.8) with 6 linear-Gaussian neurons.

Rows: grid (``"log_snr"``: uniform in log-SNR, the old default; ``"edm"``: uniform in sigma^(1/7),
the default now) x steps; the mean relative difference of I_local(x) from the exact-sampler value over
the stimuli, with its SE across stimuli. Writes ``sampler_steps.json`` / ``.png`` to ``--out``.

    python -m experiments.sampler_steps --out experiments/out [--quick]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments import trained_vs_exact as T
from jaxdecomp import estimate as E
from jaxdecomp import tasks
from flax import struct

from jaxdecomp.diffusion import sampling
from jaxdecomp.plotting import save

SETTINGS = {
    "default": dict(n_stimuli=12, n_samples=48, steps=(8, 16, 32, 64)),
    "quick": dict(n_stimuli=4, n_samples=16, steps=(8, 32)),
}


def task_gmm8():
    task = T.gmm_task()     # trained_vs_exact.case_gmm's task and stimuli, without its truth run
    return "gmm8", task.denoiser, task.encoder, T.gmm_stimuli(task, jax.random.PRNGKey(100))


def task_gmm16():
    d, rng = 16, np.random.default_rng(16)
    task = tasks.gaussian_mixture(np.full(6, 1 / 6), rng.normal(size=(6, d)) * 1.5, rng.uniform(0.05, 0.6, size=(6, d)),
                                  rng.normal(size=(6, d)) * 0.8, 0.4, name="gmm_d16_6")
    return "gmm16", task.denoiser, task.encoder, np.asarray(task.sample_prior(jax.random.PRNGKey(3), 20))


@struct.dataclass
class ReverseDiffusionSampled:
    """The exact denoiser ``den`` whose ``posterior_sample`` is reverse diffusion (``n_steps`` steps on
    ``grid``) with that same denoiser: what the estimator does for a denoiser without an exact sampler."""
    den: Any
    n_steps: int = struct.field(pytree_node=False)
    grid: str = struct.field(pytree_node=False)
    shape: tuple = struct.field(pytree_node=False)

    def __call__(self, x_noisy, log_snr, r=None):
        return self.den(x_noisy, log_snr, r)

    def posterior_sample(self, key, x_noisy, log_snr, r=None):
        return sampling.reverse_diffusion(key, self.den, x_noisy, log_snr, r, n_steps=self.n_steps, grid=self.grid)


def run(quick: bool = False) -> dict:
    cfg = SETTINGS["quick" if quick else "default"]
    out = []
    for make in (task_gmm8, task_gmm16):
        name, den, pop, xs = make()
        xs = xs[: cfg["n_stimuli"]]
        key = jax.random.PRNGKey(200)
        kw = dict(n_samples=cfg["n_samples"], chunk=2048)
        ref = np.asarray(E.ilocal(key, den, pop, xs, **kw).total)
        for grid in sampling.GRIDS:
            for n_steps in cfg["steps"]:
                sampled = ReverseDiffusionSampled(den, n_steps, grid, tuple(xs.shape[1:]))
                t0 = time.perf_counter()
                v = np.asarray(E.ilocal(key, sampled, pop, xs, **kw).total)
                rel = v / ref - 1
                row = dict(task=name, grid=grid, n_steps=n_steps, mean_relative=float(rel.mean()),
                           se=float(rel.std(ddof=1) / np.sqrt(len(rel))), seconds=time.perf_counter() - t0)
                out.append(row)
                print(f"{name} {grid:8s} {n_steps:3d} steps: {100 * row['mean_relative']:+6.2f} "
                      f"± {100 * row['se']:.2f}% vs the exact sampler", flush=True)
    return dict(settings=dict(cfg), rows=out)


def figure(res):
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, name in zip(axes, ("gmm8", "gmm16")):
        for grid, c in zip(sampling.GRIDS, ("C0", "C3")):
            rows = [r for r in res["rows"] if r["task"] == name and r["grid"] == grid]
            ax.errorbar([r["n_steps"] for r in rows], [100 * r["mean_relative"] for r in rows],
                        yerr=[200 * r["se"] for r in rows], marker="o", color=c, capsize=3, label=f"grid={grid}")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("reverse-diffusion steps")
        ax.set_title(name)
    axes[0].set_ylabel("I_local vs exact sampler (%, ±2 SE)")
    axes[0].legend()
    fig.tight_layout()
    return fig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out", help="folder for the PNG and JSON (default: experiments/out)")
    p.add_argument("--quick", action="store_true", help="fewer stimuli, draws and step counts")
    a = p.parse_args(argv)
    res = run(quick=a.quick)
    png, js = save(figure(res), res, a.out, "sampler_steps")
    print(f"wrote {png} and {js}")


if __name__ == "__main__":
    main()
