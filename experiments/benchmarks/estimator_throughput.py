"""Benchmark of the denoiser networks behind the estimators.

For the MLP (vector stimuli) and the UNet (16x16, 32x32 images), conditional on a
49-neuron response:
  * denoiser evaluations per second at several batch sizes, jit-compiled and vmapped
    over the per-example contract ``net(x_noisy, log_snr, r)``;
  * the same evaluations as a per-sample Python loop over a jitted single-example call,
    and the ratio (vmapped / loop), measured side by side in one run;
  * model FLOP utilisation: FLOPs from XLA's cost analysis of the compiled batched call,
    divided by the measured time and the device's peak (``--peak-tflops``; on NVIDIA
    H100/H200 the datasheet dense peak 989 TFLOP/s bf16, 67 TFLOP/s fp32 is used);
  * training steps per second of the jitted train step (forward, backward, AdamW, EMA).

Prints a table and writes ``estimator_throughput.json`` in ``--out``.
Usage (from the repository root): python -m experiments.benchmarks.estimator_throughput [--dtype bfloat16] [--large]
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
from jaxdecomp.diffusion import training
from jaxdecomp.diffusion.networks import MLPDenoiser, UNetDenoiser

N_NEURONS = 49


def device_name():
    d = jax.devices()[0]
    return getattr(d, "device_kind", str(d)) if d.platform != "cpu" else cpu_name()


def peak_flops(dtype, override):
    if override:
        return override * 1e12
    kind = device_name()
    if "H100" in kind or "H200" in kind:
        return (989e12 if dtype == jnp.bfloat16 else 67e12)
    return None


def block(x):
    return jax.tree_util.tree_map(lambda a: a.block_until_ready(), x)


def timeit(fn, *args, repeats=5, min_time=0.5):
    block(fn(*args))                                           # compile + warm
    n, t0 = 0, time.perf_counter()
    while True:
        block(fn(*args))
        n += 1
        el = time.perf_counter() - t0
        if n >= repeats and el > min_time:
            return el / n


def make(name, dtype, large):
    rngs = nnx.Rngs(0)
    if name == "mlp_d64":
        return MLPDenoiser((64,), n_neurons=N_NEURONS, hidden=512 if large else 256, depth=3, dtype=dtype, rngs=rngs)
    size = int(name.split("_")[1].split("x")[0])
    ch = (64, 128, 256) if large else (32, 64, 128)
    return UNetDenoiser((size, size), n_neurons=N_NEURONS, channels=ch, n_res=2 if large else 1, dtype=dtype, rngs=rngs)


def flops_per_example(fn, net, shape, n=16):
    """FLOPs per example from XLA's cost analysis of ``fn`` compiled for the CPU backend.

    On GPUs, convolutions lower to cuDNN custom calls that XLA's cost analysis does not
    count (on the H200 it reported 19 MFLOP per 32x32 UNet call against 2,771 counted on
    CPU for the same program), so the FLOPs of the same computation are counted on CPU.
    """
    cpu = jax.devices("cpu")[0]
    args = jax.device_put((net, jnp.zeros((n,) + shape), jnp.zeros((n,)), jnp.zeros((n, N_NEURONS))), cpu)
    with jax.default_device(cpu):
        cost = jax.jit(fn.__wrapped__ if hasattr(fn, "__wrapped__") else fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan"))) / n if cost else float("nan")


def bench_model(name, dtype, batches, loop_n, large, peak):
    net = make(name, dtype, large)
    shape = net.shape
    rows = []

    @jax.jit
    def batched(model, z, a, r):
        return jax.vmap(lambda zi, ai, ri: model(zi, ai, ri))(z, a, r)

    @jax.jit
    def single(model, z, a, r):
        return model(z, a, r)

    key = jax.random.PRNGKey(0)
    for b in batches:
        z = jax.random.normal(key, (b,) + shape)
        a = jnp.linspace(-5.0, 8.0, b)
        r = jax.random.poisson(key, 5.0, (b, N_NEURONS)).astype(jnp.float32)
        sec = timeit(batched, net, z, a, r)
        flops = flops_per_example(batched, net, shape) * b
        row = dict(model=name, dtype=jnp.dtype(dtype).name, batch=b, seconds=sec, evals_per_s=b / sec,
                   gflop_per_call=flops / 1e9, achieved_tflops=flops / sec / 1e12)
        if peak:
            row["mfu"] = flops / sec / peak
        rows.append(row)
    # per-sample Python loop vs one vmapped call, side by side, on loop_n examples
    z = jax.random.normal(key, (loop_n,) + shape)
    a = jnp.linspace(-5.0, 8.0, loop_n)
    r = jax.random.poisson(key, 5.0, (loop_n, N_NEURONS)).astype(jnp.float32)

    def loop(model, z, a, r):
        return [single(model, z[i], a[i], r[i]) for i in range(loop_n)]

    t_loop = timeit(loop, net, z, a, r, repeats=2, min_time=0.2)
    t_vmap = timeit(batched, net, z, a, r)
    loop_row = dict(model=name, dtype=jnp.dtype(dtype).name, n=loop_n, loop_s=t_loop, vmap_s=t_vmap,
                    speedup=t_loop / t_vmap)
    return rows, loop_row


def bench_training(name, dtype, batch, large):
    """Steps per second of ``train``'s jitted step (no checkpointing, loss logged once at the end).

    ``train`` compiles its step on every call, so runs of different lengths are differenced:
    ``(T(10 + n) - T(10)) / n`` with ``n`` sized from a first estimate to take about 10 s.
    """
    net = make(name, dtype, large)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (max(batch, 512),) + net.shape), np.float32)
    r = np.asarray(jax.random.poisson(jax.random.PRNGKey(2), 5.0, (x.shape[0], N_NEURONS)), np.float32)

    def run(steps):
        cfg = training.TrainConfig(steps=steps, batch_size=batch, progress=False, log_every=steps,
                                   checkpoint_every=10**9, warmup_steps=1)
        t0 = time.perf_counter()
        training.train(net, x, r, cfg)
        return time.perf_counter() - t0

    t10, t20 = run(10), run(20)
    guess = max((t20 - t10) / 10, 1e-4)
    n = int(np.clip(10.0 / guess, 20, 2000))
    per_step = max(run(10 + n) - t10, 1e-9) / n
    return dict(model=name, dtype=jnp.dtype(dtype).name, batch=batch, steps_timed=n, steps_per_s=1.0 / per_step,
                examples_per_s=batch / per_step)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out/benchmarks")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--batches", default=None, help="comma-separated batch sizes")
    p.add_argument("--loop-n", type=int, default=64)
    p.add_argument("--large", action="store_true", help="wider networks (accelerator setting)")
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--models", default="mlp_d64,unet_16x16,unet_32x32")
    p.add_argument("--train-batch", type=int, default=None)
    p.add_argument("--train-models", default=None, help="models whose training step is timed (default: all)")
    args = p.parse_args()
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    on_gpu = jax.default_backend() != "cpu"
    batches = [int(b) for b in args.batches.split(",")] if args.batches else ([64, 1024, 4096] if on_gpu else [1, 16, 256])
    peak = peak_flops(dtype, args.peak_tflops)
    rows, loops, train_rows = [], [], []
    for name in args.models.split(","):
        r, lr = bench_model(name, dtype, batches, args.loop_n, args.large, peak)
        rows += r
        loops.append(lr)
        if args.train_models is None or name in args.train_models.split(","):
            train_rows.append(bench_training(name, dtype, args.train_batch or (256 if on_gpu else 64), args.large))
    info = dict(machine=device_name(), backend=jax.default_backend(), cores=os.cpu_count(), jax=jax.__version__,
                date=time.strftime("%Y-%m-%d"), dtype=args.dtype, large=args.large, peak_tflops=(peak or 0) / 1e12)
    print(f"device: {info['machine']} ({info['backend']}), jax {info['jax']}, dtype {args.dtype}, large={args.large}")
    print(f"{'model':12s} {'batch':>6s} {'evals/s':>12s} {'GFLOP/call':>11s} {'TFLOP/s':>9s} {'MFU':>7s}")
    for r in rows:
        mfu = f"{100 * r['mfu']:6.1f}%" if "mfu" in r else "    n/a"
        print(f"{r['model']:12s} {r['batch']:6d} {r['evals_per_s']:12.0f} {r['gflop_per_call']:11.3f} "
              f"{r['achieved_tflops']:9.3f} {mfu}")
    for r in loops:
        print(f"{r['model']:12s} {r['n']} examples: Python loop {r['loop_s'] * 1e3:.1f} ms, vmapped "
              f"{r['vmap_s'] * 1e3:.2f} ms, speed-up {r['speedup']:.0f}x")
    for r in train_rows:
        print(f"{r['model']:12s} training batch {r['batch']}: {r['steps_per_s']:.1f} steps/s "
              f"({r['examples_per_s']:.0f} examples/s)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"estimator_throughput_{args.dtype}{'_large' if args.large else ''}.json").write_text(
        json.dumps(dict(info=info, evaluations=rows, loop_vs_vmap=loops, training=train_rows), indent=1))


if __name__ == "__main__":
    main()
