"""Benchmark: one gradient step of I_local with respect to a 32x32 stimulus.

``jax.grad`` of ``estimate.ilocal(...).total`` w.r.t. the image, with the paper's LNP population
(49 Poisson neurons, ``neurons.lnp_population((32, 32))``) and a freshly initialised small UNet
(``UNetDenoiser((32, 32), n_neurons=49, channels=(16, 32))``; untrained: only the cost matters).
The unbiased gradient includes the score-function term of the sampled responses
(``score_gradient=True``, the default); the pathwise-only gradient is timed beside it.

Samplers: ``posterior_mean`` (no extra network call) and ``posterior_sample`` with
``--steps`` reverse-diffusion steps (its draw is not differentiated: the score enters through
Tweedie). Settings (defaults): ``--levels 8`` Gauss-Legendre log-SNR nodes on [-10, 14] plus
tails, ``--samples 4`` draws per level, so 32 (level, draw) evaluations per gradient step.
Compile time (first call) is reported apart from the steady-state time per step (median
of ``--repeats`` calls, each with a fresh key), and beside it the time of the value alone. Prints a table and writes
``gradient_step.json`` in ``--out``.

Usage (from the repository root): python -m experiments.benchmarks.gradient_step [--levels 8 --samples 4 --steps 4]
"""

import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.benchmarks.exact_engine import cpu_name
from jaxdecomp import estimate, neurons
from jaxdecomp.diffusion import UNetDenoiser
from jaxdecomp.diffusion import schedules as S


def device_name():
    d = jax.devices()[0]
    return getattr(d, "device_kind", str(d)) if d.platform != "cpu" else cpu_name()


def _time(fn, x, repeats):
    """(first call incl. trace + compile, warm calls with fresh keys, last output)."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(x, jax.random.PRNGKey(0)))
    first = time.perf_counter() - t0
    warm = []
    for i in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(x, jax.random.PRNGKey(i + 1)))
        warm.append(time.perf_counter() - t0)
    return first, warm, out


def bench(sampler, score, net, pop, x, lv, args):
    """Seconds of the first call (trace + compile + run) and the median of warm calls, for the
    gradient step and (``score=True`` rows) for the value alone."""

    def loss(img, key):
        return estimate.ilocal(key, net, pop, img, response_sampler=sampler, levels=lv, n_samples=args.samples,
                               n_steps=args.steps, score_gradient=score).total

    first, warm, (v, g) = _time(jax.jit(jax.value_and_grad(loss)), x, args.repeats)
    row = dict(sampler=sampler, score_gradient=score, first_call_s=first, step_s_median=float(np.median(warm)),
               step_s=warm, value=float(v), grad_norm=float(jnp.linalg.norm(g)),
               grad_finite=bool(jnp.all(jnp.isfinite(g))))
    if score:
        f_first, f_warm, _ = _time(jax.jit(loss), x, args.repeats)
        row.update(value_only_first_call_s=f_first, value_only_s_median=float(np.median(f_warm)))
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out/benchmarks")
    p.add_argument("--levels", type=int, default=8, help="Gauss-Legendre log-SNR nodes")
    p.add_argument("--samples", type=int, default=4, help="(x_g, r) draws per level")
    p.add_argument("--steps", type=int, default=4, help="reverse-diffusion steps of posterior_sample")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--samplers", default="posterior_mean,posterior_sample")
    p.add_argument("--no-pathwise", action="store_true", help="skip the pathwise-only (score_gradient=False) rows")
    args = p.parse_args()
    shape = (32, 32)
    pop = neurons.lnp_population(shape)
    net = UNetDenoiser(shape, n_neurons=49, channels=(16, 32), rngs=nnx.Rngs(0))
    x = jax.random.uniform(jax.random.PRNGKey(42), shape, minval=-1.0, maxval=1.0)
    lv = S.levels("gauss_legendre", -10.0, 14.0, args.levels)
    rows = []
    for sampler in args.samplers.split(","):
        for score in ((True,) if args.no_pathwise else (True, False)):
            rows.append(bench(sampler, score, net, pop, x, lv, args))
            r = rows[-1]
            print(f"{sampler:17s} score={str(score):5s} first {r['first_call_s']:7.2f} s  "
                  f"step {r['step_s_median']:7.3f} s", flush=True)
    info = dict(machine=device_name(), backend=jax.default_backend(), cores=os.cpu_count(), jax=jax.__version__,
                date=time.strftime("%Y-%m-%d"), stimulus=list(shape),
                population="lnp_population((32, 32)), 49 Poisson",
                network="UNetDenoiser(channels=(16, 32)), untrained", levels=args.levels, samples=args.samples,
                evaluations_per_step=(args.levels + 1) * args.samples, reverse_steps=args.steps,
                note="levels + 1: the low-noise tail node at lo=-10; the high-noise tail is the exact Fisher term")
    print(f"device: {info['machine']} ({info['backend']}, {info['cores']} cores), jax {info['jax']}; "
          f"{args.levels} levels x {args.samples} draws, {args.steps} reverse steps")
    print(f"{'sampler':17s} {'score':>5s} {'compile+1st (s)':>16s} {'step (s)':>9s} {'value only (s)':>15s}")
    for r in rows:
        vo = f"{r['value_only_s_median']:15.3f}" if "value_only_s_median" in r else f"{'':15s}"
        print(f"{r['sampler']:17s} {str(r['score_gradient']):>5s} {r['first_call_s']:16.2f} "
              f"{r['step_s_median']:9.3f} {vo}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gradient_step.json").write_text(json.dumps(dict(info=info, rows=rows), indent=1))


if __name__ == "__main__":
    main()
