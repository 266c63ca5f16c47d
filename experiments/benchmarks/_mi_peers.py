"""Peer MI estimators, run in a SEPARATE virtual environment (never a jaxdecomp dependency).

Usage (inside the peers venv): python _mi_peers.py IN.npz ESTIMATOR [--steps N] [--seed S]
IN.npz holds ``x`` and ``r``. Prints one JSON line: {"estimator", "value", "stderr", "seconds", "error"}.
ESTIMATOR: cca, ksg, infonce, mine (benchmark-mi) or mmg (diffusion-mi).
"""
import argparse
import json
import sys
import time

import numpy as np


def run(name, x, r, steps, seed):
    if name == "mmg":
        from dmi.estimators import MMGEstimator      # diffusion-mi
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(x))
        n_test = len(x) // 5
        te, tr = perm[:n_test], perm[n_test:]
        mx, sx, mr, sr = x[tr].mean(0), x[tr].std(0), r[tr].mean(0), r[tr].std(0)
        xs, rs = (x - mx) / sx, (r - mr) / sr
        m = MMGEstimator(x_shape=(x.shape[1],), y_shape=(r.shape[1],), max_n_steps=steps, seed=seed)
        m.fit(xs[tr], rs[tr], xs[te], rs[te])
        return float(m.estimate(xs[te], rs[te])), None
    from bmi import estimators as be
    if name == "cca":
        est = be.CCAMutualInformationEstimator()
    elif name == "ksg":
        est = be.KSGEnsembleFirstEstimator(neighborhoods=(5,))
    elif name == "infonce":
        est = be.InfoNCEEstimator(max_n_steps=steps, verbose=False, seed=seed)
    elif name == "mine":
        est = be.MINEEstimator(max_n_steps=steps, verbose=False, seed=seed)
    else:
        raise ValueError(f"unknown estimator {name!r}")
    return float(est.estimate(x, r)), None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("npz")
    p.add_argument("estimator")
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    d = np.load(a.npz)
    t0 = time.perf_counter()
    out = {"estimator": a.estimator, "value": None, "stderr": None, "error": None}
    try:
        out["value"], out["stderr"] = run(a.estimator, d["x"], d["r"], a.steps, a.seed)
    except Exception as err:  # noqa: BLE001 -- reported, not raised: one failing peer must not stop the table
        out["error"] = f"{type(err).__name__}: {err}"[:500]
    out["seconds"] = time.perf_counter() - t0
    sys.stdout.write("\nMI_PEER_JSON " + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
