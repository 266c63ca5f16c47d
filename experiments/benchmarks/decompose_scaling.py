"""Dataset-scale decomposition throughput: I_local maps per second against device count and chunk size.

Times :func:`jaxdecomp.estimate.decompose_dataset` (stimuli sharded over a 1-D mesh of all devices,
streamed in chunks to a store) on the paper's 49-neuron LNP Poisson population on 8x8 digits with the
EXACT empirical-prior denoiser of :func:`jaxdecomp.tasks.digits_lnp` (64 stored digits; exact posterior
draws), so the cost is the estimator's own, not a network's. For each forced CPU device count
(``XLA_FLAGS=--xla_force_host_platform_device_count=D``, one subprocess each) and chunk size: one
compile call on one chunk, then a timed run over ``--chunks`` chunks into a fresh store (chunk files
written, as in real use). Memory: each device evaluates one stimulus at a time, so its working set
is XLA's ``memory_analysis`` (arguments + outputs + temporaries) of the single-stimulus ``ilocal``
program, whatever the chunk; the host holds ``2 * 4 * H * W`` bytes of maps per stimulus of a chunk.
On a CPU, forced devices share the same cores: the table shows the overhead of sharding, not a
speed-up; on accelerators each device adds its own compute.

Usage (from the repository root):
  python -m experiments.benchmarks.decompose_scaling [--devices 1 2 4] [--chunks-sizes 8 32] [--out DIR]
Prints a table and writes ``decompose_scaling.json`` in ``--out``.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def worker(chunk_sizes, n_chunks, n_levels, n_samples):
    import jax
    import numpy as np

    from jaxdecomp import estimate, tasks
    from jaxdecomp.diffusion import schedules

    task = tasks.digits_lnp(8, n_stimuli=64)
    den, pop = task.denoiser, task.encoder
    opts = dict(n_levels=n_levels, n_samples=n_samples, progress=False)
    n_dev = jax.device_count()
    for chunk in chunk_sizes:
        x = np.asarray(task.sample_prior(jax.random.PRNGKey(1), chunk * n_chunks))
        key = jax.random.PRNGKey(0)
        t0 = time.perf_counter()
        estimate.decompose_dataset(key, den, pop, x[:chunk], chunk=chunk, return_maps=False, **opts)
        first = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as store:
            t0 = time.perf_counter()
            estimate.decompose_dataset(jax.random.PRNGKey(2), den, pop, x, store, chunk=chunk, return_maps=False,
                                       **opts)
            sec = time.perf_counter() - t0
        # memory: each device evaluates one stimulus at a time (lax.map), so its working memory is that of
        # one single-stimulus ilocal program; the host keeps the outputs (maps) of a chunk
        mem = None
        try:
            lv = schedules.network_levels(n_levels)
            one = jax.jit(lambda k, xi: estimate.ilocal(k, den, pop, xi, levels=lv, n_samples=n_samples, n_steps=16,
                                                        chunk=2048, score_gradient=False))
            ma = one.lower(key, x[0]).compile().memory_analysis()
            mem = dict(device_working_set=ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes,
                       temp=ma.temp_size_in_bytes, host_output=int(2 * x[0].nbytes + 8))
        except Exception as err:  # noqa: BLE001 - memory analysis is optional on some backends
            mem = dict(error=f"{type(err).__name__}: {err}"[:200])
        print(json.dumps(dict(devices=n_dev, chunk=chunk, stimuli=int(len(x)), first_call_seconds=first,
                              seconds=sec, maps_per_s=len(x) / sec, memory_bytes=mem)), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out/benchmarks")
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--chunk-sizes", type=int, nargs="+", default=[8, 32])
    p.add_argument("--chunks", type=int, default=3, help="chunks per timed run")
    p.add_argument("--n-levels", type=int, default=8)
    p.add_argument("--n-samples", type=int, default=8)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.chunk_sizes, args.chunks, args.n_levels, args.n_samples)
    rows = []
    for d in args.devices:
        env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"),
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
        env["XLA_FLAGS"] = " ".join(flags + ([f"--xla_force_host_platform_device_count={d}"] if d > 1 else []))
        cmd = [sys.executable, "-m", "experiments.benchmarks.decompose_scaling", "--worker", "--chunks",
               str(args.chunks), "--n-levels", str(args.n_levels), "--n-samples", str(args.n_samples),
               "--chunk-sizes", *map(str, args.chunk_sizes)]
        res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600)
        if res.returncode:
            raise RuntimeError(f"worker with {d} devices failed:\n{res.stderr[-3000:]}")
        rows += [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")]
    print(f"{'devices':>7} {'chunk':>6} {'stimuli':>7} {'compile+1st s':>13} {'run s':>7} {'maps/s':>8} "
          f"{'device KiB/stim in flight':>26}")
    for r in rows:
        m = r["memory_bytes"] or {}
        kib = f"{m['device_working_set'] / 1024:.1f}" if "device_working_set" in m else "n/a"
        print(f"{r['devices']:>7} {r['chunk']:>6} {r['stimuli']:>7} {r['first_call_seconds']:>13.2f} "
              f"{r['seconds']:>7.2f} {r['maps_per_s']:>8.2f} {kib:>26}")
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = dict(machine=cpu, cpus=os.cpu_count(),
                date=time.strftime("%Y-%m-%d"), problem="digits_lnp 8x8, 64-digit exact prior, 49 LNP neurons",
                n_levels=args.n_levels, n_samples=args.n_samples, response_sampler="posterior_sample (exact)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "decompose_scaling.json").write_text(json.dumps(dict(info=info, rows=rows), indent=1))
    print(f"wrote {out / 'decompose_scaling.json'}")


if __name__ == "__main__":
    main()
