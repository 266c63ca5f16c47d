"""CPU cores as JAX devices: the demo's three phases timed with 1, 2, ... forced CPU devices, side by side.

Each device count runs in its own child process (the count is fixed when JAX starts), one after the
other on an otherwise idle machine, with the demo's default settings on 16x16 digits and a UNet of the
demo's size (its weights do not change the cost):

* training: seconds per step of ``diffusion.train`` (batch 64 split over the devices; compile and setup
  cancelled by differencing two runs);
* maps: ``estimate.pixel_maps`` of ``--images`` digits (32 levels x 16 draws x 16 reverse-diffusion
  steps; one image per device in flight), after a compile call;
* MI: ``estimate.mutual_information`` on ``--pairs`` pairs (32 levels, 2 noise draws; the pairs split
  over the devices), after a compile call.

Usage (from the repository root): python -m experiments.benchmarks.cpu_devices [--devices 1 2] [--out DIR]
Writes cpu_devices.json in ``--out`` and prints each phase's time and its ratio to one device.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def child(n_images, n_pairs, train_steps):
    import jax
    import numpy as np

    from experiments.benchmarks.estimator_throughput import block
    from jaxdecomp import data, estimate, neurons
    from jaxdecomp.diffusion import TrainConfig, build_denoiser, denoiser_spec, schedules, train

    x = np.asarray(data.digits(16), dtype=np.float32)
    pop = neurons.lnp_population((16, 16))
    net = build_denoiser(denoiser_spec((16, 16), 49, (32, 64)), 0)
    out = dict(devices=len(jax.devices()))

    xs = x[:256]
    rs = np.asarray(jax.vmap(pop.sample)(jax.random.split(jax.random.PRNGKey(1), len(xs)), xs))
    cfg = lambda n: TrainConfig(steps=n, batch_size=64, progress=False, checkpoint_every=10**9)  # noqa: E731
    t0 = time.perf_counter()
    train(net, xs, rs, cfg(2))
    short = time.perf_counter() - t0
    t0 = time.perf_counter()
    train(net, xs, rs, cfg(2 + train_steps))
    out["train_seconds_per_step"] = (time.perf_counter() - t0 - short) / train_steps

    kw = dict(n_levels=32, n_samples=16, n_steps=16, progress=False)
    xi = x[:n_images]
    estimate.pixel_maps(jax.random.PRNGKey(0), net, pop, xi[: out["devices"]], **kw)   # compile per device
    t0 = time.perf_counter()
    estimate.pixel_maps(jax.random.PRNGKey(1), net, pop, xi, **kw)
    out["maps_seconds_per_image"] = (time.perf_counter() - t0) / n_images

    xm = x[:n_pairs]
    rm = np.asarray(jax.vmap(pop.sample)(jax.random.split(jax.random.PRNGKey(2), n_pairs), xm))
    lv = schedules.network_levels(32)
    mi = lambda k: estimate.mutual_information(k, net, xm, rm, levels=lv, n_noise=2, population=pop)  # noqa: E731
    block(mi(jax.random.PRNGKey(0)))
    t0 = time.perf_counter()
    block(mi(jax.random.PRNGKey(1)))
    out["mi_seconds"] = time.perf_counter() - t0
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--pairs", type=int, default=400)
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--out", default="experiments/out/benchmarks")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args.images, args.pairs, args.train_steps)), flush=True)
        return None
    from experiments.benchmarks.estimator_throughput import cpu_name

    rows = []
    for n in args.devices:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu")
        cmd = [sys.executable, "-m", "experiments.benchmarks.cpu_devices", "--child", "--images", str(args.images),
               "--pairs", str(args.pairs), "--train-steps", str(args.train_steps)]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
        if res.returncode != 0 or not line:
            raise RuntimeError(f"child with {n} devices failed:\n{res.stderr[-3000:]}")
        row = json.loads(line[0][len("RESULT "):])
        row["wall_seconds"] = time.perf_counter() - t0
        rows.append(row)
        base = rows[0]
        print(f"{n} device(s): training {row['train_seconds_per_step'] * 1e3:.0f} ms/step "
              f"(x{base['train_seconds_per_step'] / row['train_seconds_per_step']:.2f}), maps "
              f"{row['maps_seconds_per_image']:.2f} s/image (x{base['maps_seconds_per_image'] / row['maps_seconds_per_image']:.2f}), "
              f"MI {row['mi_seconds']:.1f} s for {args.pairs} pairs (x{base['mi_seconds'] / row['mi_seconds']:.2f})",
              flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = dict(machine=cpu_name(), cores=os.cpu_count(), images=args.images, pairs=args.pairs, rows=rows)
    (out / "cpu_devices.json").write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
