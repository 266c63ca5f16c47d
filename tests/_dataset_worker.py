"""Subprocess helper for tests/estimate/test_dataset.py and tests/test_multihost.py.

Usage: python tests/_dataset_worker.py OUT.npz [--store DIR] [--stall-after K]
           [--num-processes P --process-id I --port PORT] [--train]

Runs :func:`jaxdecomp.estimate.decompose_dataset` on the tiny problem of :func:`problem` and saves
the maps to OUT.npz (``OUT.p<I>.npz`` under ``jax.distributed`` with P > 1 processes). Prints one
JSON line per computed chunk (``{"chunk": k}``) and a last one with the device and process counts.
``--stall-after K``: after K computed chunks, print ``{"stalled": K}`` and sleep (the test kills it).
``--train``: also train the tiny MLP of ``tests/_train_worker.py`` for ``TRAIN_STEPS`` steps and save
its EMA weights (``w/...`` entries). Environment (set by the tests): JAX_PLATFORMS=cpu,
PYTHONPATH=<repository root>, XLA_FLAGS=--xla_force_host_platform_device_count=D.
Importable as ``tests._dataset_worker`` (nothing here touches JAX at import).
"""

import argparse
import json
import os
import sys
import time

N, CHUNK = 10, 2          # 5 chunks of 2 stimuli
TRAIN_STEPS = 10
SETTINGS = dict(n_levels=6, n_samples=4, response_sampler="posterior_mean", fisher_correction=False, progress=False)


def problem():
    """(key, denoiser, population, x) of the test problem: a 3-d Gaussian task with exact denoisers."""
    import jax
    import numpy as np

    from jaxdecomp import tasks

    task = tasks.gaussian_linear(dim=3, n_neurons=2)
    x = np.random.default_rng(1).standard_normal((N, 3)).astype(np.float32)     # the task's prior N(0, I)
    return jax.random.PRNGKey(5), task.denoiser, task.encoder, x


def run(store=None, on_chunk=None, **kw):
    from jaxdecomp.estimate import decompose_dataset

    key, den, pop, x = problem()
    opts = dict(SETTINGS, chunk=CHUNK)
    opts.update(kw)
    return decompose_dataset(key, den, pop, x, store, _on_chunk=on_chunk, **opts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--store", default=None)
    ap.add_argument("--stall-after", type=int, default=None)
    ap.add_argument("--num-processes", type=int, default=1)
    ap.add_argument("--process-id", type=int, default=0)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--train", action="store_true")
    args = ap.parse_args()

    import jax

    if args.num_processes > 1:       # before any computation
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"localhost:{args.port}", num_processes=args.num_processes,
                                   process_id=args.process_id, initialization_timeout=120)
    import numpy as np

    computed = []

    def on_chunk(k):
        computed.append(int(k))
        print(json.dumps({"chunk": int(k), "devices": jax.device_count()}), flush=True)
        if args.stall_after is not None and len(computed) >= args.stall_after:
            print(json.dumps({"stalled": len(computed)}), flush=True)
            time.sleep(600)

    maps = run(args.store, on_chunk)
    arrays = dict(maps)
    if args.train:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from tests import _train_worker as tw
        from jaxdecomp.diffusion.training import train

        x, r = tw.data()
        res = train(tw.make_model(), x, r, tw.config(TRAIN_STEPS))
        arrays.update({"w" + k: v for k, v in tw.flat(res.model).items()})
        arrays["losses"] = res.losses
    out = args.out if args.num_processes == 1 else args.out.replace(".npz", f".p{args.process_id}.npz")
    np.savez(out, **arrays)
    print(json.dumps({"devices": jax.device_count(), "local_devices": jax.local_device_count(),
                      "processes": jax.process_count(), "computed": computed}), flush=True)
    if args.num_processes > 1:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
