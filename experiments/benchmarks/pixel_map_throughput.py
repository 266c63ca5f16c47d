"""Pixel-map throughput: I_local maps per second with the paper's protocol, batched over images.

The paper's protocol is 24 DDPM noise levels x 50 samples of ``(x_t, r)`` per image with the
posterior-mean response sampler (two UNet calls per sample: 2,400 calls per image). This
script times ``jaxdecomp.estimate.ilocal`` on a batch of 32x32 (and 16x16) images with the
49-neuron LNP population and a UNet of the demo's size (its weights do not change the cost),
after one compile call, and reports images per second. The reverse-diffusion sampler
(``posterior_sample``, ``--n-steps`` extra calls per sample) is timed too, and the UNet's
training throughput (images per second through the jitted train step).

Usage (from the repository root): python -m experiments.benchmarks.pixel_map_throughput [--out DIR] [--batch 8] [--dtype bfloat16]
Writes pixel_map_throughput.json in ``--out``.
"""

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.benchmarks.estimator_throughput import block, device_name
from jaxdecomp import estimate, neurons
from jaxdecomp.diffusion import TrainConfig, UNetDenoiser, schedules, train


def time_maps(net, pop, x, sampler, n_samples, n_steps, chunk, repeats=2):
    lv = schedules.levels("paper")
    fn = lambda k: estimate.ilocal(k, net, pop, x, levels=lv, response_sampler=sampler,  # noqa: E731
                                   n_samples=n_samples, n_steps=n_steps, chunk=chunk)
    t0 = time.perf_counter()
    block(fn(jax.random.PRNGKey(0)))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(repeats):
        block(fn(jax.random.PRNGKey(i + 1)))
    sec = (time.perf_counter() - t0) / repeats
    return dict(sampler=sampler, n_levels=len(lv.log_snr), n_samples=n_samples,
                n_steps=n_steps if sampler == "posterior_sample" else 0, batch=int(x.shape[0]),
                first_call_seconds=first, seconds=sec, images_per_s=x.shape[0] / sec)


def time_training(net, pop, size, batch, steps):
    x = np.asarray(jax.random.uniform(jax.random.PRNGKey(0), (4 * batch, size, size), minval=-1, maxval=1))
    r = np.asarray(jax.vmap(pop.sample)(jax.random.split(jax.random.PRNGKey(1), len(x)), x))
    cfg = lambda n: TrainConfig(steps=n, batch_size=batch, progress=False, checkpoint_every=10**9)  # noqa: E731
    t0 = time.perf_counter()
    train(net, x, r, cfg(2))
    short = time.perf_counter() - t0
    t0 = time.perf_counter()
    train(net, x, r, cfg(2 + steps))
    long = time.perf_counter() - t0
    sec = (long - short) / steps   # per step, compile and setup cancelled
    return dict(size=size, batch=batch, seconds_per_step=sec, images_per_s=batch / sec)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out/benchmarks")
    p.add_argument("--batch", type=int, default=4, help="images per estimator call")
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 32])
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64])
    p.add_argument("--n-samples", type=int, default=50)
    p.add_argument("--n-steps", type=int, default=8, help="reverse-diffusion steps for posterior_sample")
    p.add_argument("--chunk", type=int, default=2048)
    p.add_argument("--train-batch", type=int, default=64)
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--samplers", nargs="+", default=["posterior_mean", "posterior_sample"],
                   choices=["posterior_mean", "posterior_sample"])
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    rows, train_rows = [], []
    for size in args.sizes:
        pop = neurons.lnp_population((size, size))
        net = UNetDenoiser((size, size), n_neurons=49, channels=tuple(args.channels), dtype=dtype, rngs=nnx.Rngs(0))
        x = jnp.asarray(jax.random.uniform(jax.random.PRNGKey(2), (args.batch, size, size), minval=-1, maxval=1))
        for sampler in args.samplers:
            row = dict(size=size, **time_maps(net, pop, x, sampler, args.n_samples, args.n_steps, args.chunk,
                                              args.repeats))
            rows.append(row)
            print(f"{size}x{size} {sampler:17s} batch {row['batch']}: {row['images_per_s']:.4f} images/s "
                  f"({row['seconds']:.1f} s per call; first call {row['first_call_seconds']:.1f} s)", flush=True)
        tr = time_training(net, pop, size, args.train_batch, args.train_steps)
        train_rows.append(tr)
        print(f"{size}x{size} training: {tr['images_per_s']:.0f} images/s at batch {tr['batch']}", flush=True)
    res = dict(device=device_name(), backend=jax.default_backend(), dtype=args.dtype, channels=args.channels,
               maps=rows, training=train_rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pixel_map_throughput.json").write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
