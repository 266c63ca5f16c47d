"""Subprocess helper for tests/test_training.py: trains a tiny conditional MLP and saves its weights.

Usage: python tests/_train_worker.py OUT.npz [--ckpt DIR] [--steps N] [--sleep SECONDS]

Prints one JSON line with the device count and the devices the training batch was sharded over.
Environment (set by the test): JAX_PLATFORMS=cpu, PYTHONPATH=<repository root> (or an installed
jaxdecomp), optionally XLA_FLAGS=--xla_force_host_platform_device_count=4. Importable as
``tests._train_worker`` (the repository root is on pytest's pythonpath).
"""

import argparse
import json
import time

import jax
import numpy as np
from flax import nnx

from jaxdecomp.diffusion.networks import MLPDenoiser
from jaxdecomp.diffusion.training import TrainConfig, train

STEPS = 30


def data():
    rng = np.random.default_rng(123)
    x = (0.5 + 0.8 * rng.standard_normal((200, 3))).astype(np.float32)
    r = rng.poisson(np.exp(0.5 * x[:, :2])).astype(np.float32)
    return x, r


def make_model():
    return MLPDenoiser((3,), n_neurons=2, hidden=32, depth=1, emb_dim=16, n_fourier=4, rngs=nnx.Rngs(7))


def config(steps=STEPS):
    return TrainConfig(steps=steps, batch_size=32, learning_rate=3e-3, warmup_steps=5, checkpoint_every=5,
                       keep_checkpoints=3, log_every=5, progress=False, seed=11)


def flat(model):
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(nnx.state(model))}


def save(out, res):
    """Write the EMA and raw weights and the loss log of a TrainResult to ``out`` (.npz)."""
    arrays = {"ema" + k: v for k, v in flat(res.model).items()}
    arrays.update({"raw" + k: v for k, v in flat(res.raw_model).items()})
    np.savez(out, losses=res.losses, **arrays)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--check-divisible", action="store_true",
                    help="also report the error for a batch size not divisible by the device count")
    args = ap.parse_args()
    seen = set()

    def hook(step, xb):
        seen.update(d.id for d in xb.sharding.device_set)
        if args.sleep:
            time.sleep(args.sleep)

    x, r = data()
    res = train(make_model(), x, r, config(args.steps), checkpoint_dir=args.ckpt, _step_callback=hook)
    save(args.out, res)
    info = {"devices": len(jax.devices()), "batch_devices": sorted(seen), "step": res.step,
            "resumed_from": res.resumed_from}
    if args.check_divisible:
        bad = TrainConfig(steps=1, batch_size=len(jax.devices()) + 2, progress=False)
        try:
            train(make_model(), x, r, bad)
            info["divisible_error"] = ""
        except ValueError as err:
            info["divisible_error"] = str(err)
    print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
