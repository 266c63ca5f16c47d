"""Side-by-side MI benchmark on the closed-form tasks of ``mi_tasks.py``.

Estimators: ours (``jaxdecomp.estimate.estimate`` with defaults; ``ours-standardize`` / ``ours-copula``
with that ``transform``) and,
through a worker script run in a SEPARATE virtual environment (``--peers-python``; peers are never
jaxdecomp dependencies), CCA, KSG (k = 5), InfoNCE and MINE from ``benchmark-mi`` and MMG from
``diffusion-mi``. A peer whose venv is not given, or that fails to import or run, is skipped with a note.

Writes ``mi_benchmark.json`` (task, truth, value, stderr, seconds per estimator), ``mi_benchmark.md``
(table and count within 10% of the truth) and ``mi_benchmark.png`` (estimate vs truth) in ``--out``.

Usage: python -m experiments.benchmarks.mi_benchmark [--quick] [--tasks a,b] [--n 10000]
           [--peers-python /work/peers/.venv/bin/python] [--peers cca,ksg,infonce,mine,mmg]
           [--peer-steps 10000] [--ours-steps N] [--out experiments/out]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments.benchmarks import mi_tasks

HERE = Path(__file__).resolve().parent
PEERS = ("cca", "ksg", "infonce", "mine", "mmg")
OURS = {"ours": "auto", "ours-standardize": "standardize", "ours-copula": "copula"}    # name: transform


def run_ours(x, r, transform, steps, seed):
    import jax
    from jaxdecomp.estimate import estimate
    kw = {"key": jax.random.PRNGKey(seed), "transform": transform}
    if steps is not None:
        from jaxdecomp.diffusion.training import TrainConfig
        kw["config"] = TrainConfig(steps=steps, progress=False)
    t0 = time.perf_counter()
    est = estimate(x, r, **kw)
    i = est.info
    return {"value": float(est.value), "stderr": float(est.stderr), "seconds": time.perf_counter() - t0,
            "error": None, "gap": [float(v) for v in i["gap"]], "orthogonal": [float(v) for v in i["orthogonal"]],
            "mc_stderr": float(i["mc_stderr"]), "training_stderr": float(i["training_stderr"]),
            "form_stderr": float(i.get("form_stderr", 0.0)), "crossfit": bool(i.get("crossfit", False)),
            "form": i.get("form"), "correction": float(i.get("correction", 0.0))}


def run_peer(python, name, npz, steps, seed, timeout):
    t0 = time.perf_counter()
    try:
        p = subprocess.run([python, str(HERE / "_mi_peers.py"), npz, name, "--steps", str(steps),
                            "--seed", str(seed)], capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "JAX_PLATFORMS": "cpu"})
    except subprocess.TimeoutExpired:
        return {"value": None, "stderr": None, "seconds": time.perf_counter() - t0, "error": f"timeout {timeout}s"}
    for line in p.stdout.splitlines()[::-1]:
        if line.startswith("MI_PEER_JSON "):
            out = json.loads(line[len("MI_PEER_JSON "):])
            out.pop("estimator", None)
            return out
    return {"value": None, "stderr": None, "seconds": time.perf_counter() - t0,
            "error": f"worker exit {p.returncode}: {p.stderr[-300:]}"}


def within(v, truth, rel=0.1):
    return v is not None and abs(v - truth) <= rel * truth


def markdown(rows, estimators, notes):
    lines = ["| task | dx | dr | truth | " + " | ".join(estimators) + " |",
             "|---|---|---|---|" + "---|" * len(estimators)]
    for row in rows:
        cells = []
        for e in estimators:
            res = row["results"].get(e)
            if res is None or res.get("value") is None:
                cells.append("—" if res is None else "fail")
            else:
                se = f" ± {res['stderr']:.3f}" if res.get("stderr") is not None else ""
                cells.append(f"{res['value']:.3f}{se} ({res['seconds']:.0f}s)")
        lines.append(f"| {row['task']} | {row['dim_x']} | {row['dim_r']} | {row['truth']:.3f} | " + " | ".join(cells) + " |")
    counts = []
    for e in estimators:
        done = [r for r in rows if r["results"].get(e, {}).get("value") is not None]
        ok = sum(within(r["results"][e]["value"], r["truth"]) for r in done)
        counts.append(f"{ok}/{len(done)}")
    lines.append("| **within 10%** | | | | " + " | ".join(counts) + " |")
    cover = []       # calibration: the truth within 2 reported standard errors (estimators that report one)
    for e in estimators:
        done = [r["results"][e] | {"truth": r["truth"]} for r in rows
                if r["results"].get(e, {}).get("value") is not None and r["results"][e].get("stderr") is not None]
        ok = sum(abs(d["value"] - d["truth"]) <= 2 * d["stderr"] for d in done)
        cover.append(f"{ok}/{len(done)}" if done else "—")
    lines.append("| **truth within 2 SE** | | | | " + " | ".join(cover) + " |")
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def plot(rows, estimators, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    k = len(estimators)
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k, 3.2), squeeze=False)
    top = max([r["truth"] for r in rows] + [1.0]) * 1.3
    for ax, e in zip(axes[0], estimators):
        done = [r for r in rows if r["results"].get(e, {}).get("value") is not None]
        t = [r["truth"] for r in done]
        v = [r["results"][e]["value"] for r in done]
        se = [2 * (r["results"][e].get("stderr") or 0.0) for r in done]
        ax.plot([0, top], [0, top], "k-", lw=0.8)
        ax.fill_between([0, top], [0, 0.9 * top], [0, 1.1 * top], color="0.85", label="truth ± 10%")
        ax.errorbar(t, v, yerr=se if any(se) else None, fmt="o", ms=3.5, elinewidth=0.8,
                    label="estimate ± 2 SE" if any(se) else "estimate (no SE)")
        ax.legend(fontsize=6, loc="upper left")
        ax.set_title(e, fontsize=9)
        ax.set_xlabel("true MI (nats)")
        ax.set_xlim(0, top)
        ax.set_ylim(0, max([top] + v))
    axes[0][0].set_ylabel("estimate (nats)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=None, help="samples per task (default 10000; 2000 with --quick)")
    p.add_argument("--quick", action="store_true", help="4 tasks, 2000 samples, 300 training steps for ours, 500 for peers")
    p.add_argument("--tasks", default=None, help="comma-separated task names (default: all, or the quick set)")
    p.add_argument("--peers-python", default=None, help="python of the peers venv (e.g. /work/peers/.venv/bin/python)")
    p.add_argument("--peers", default=",".join(PEERS))
    p.add_argument("--peer-steps", type=int, default=None, help="InfoNCE/MINE/MMG steps (default 10000; 500 with --quick)")
    p.add_argument("--peer-timeout", type=float, default=1800)
    p.add_argument("--ours", default="ours", help="which of ours (estimate() defaults), ours-standardize "
                   "(transform='standardize'), ours-copula (transform='copula') to run ('' for none)")
    p.add_argument("--ours-steps", type=int, default=None, help="override TrainConfig.steps (default: estimate's own; 300 with --quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="experiments/out")
    a = p.parse_args()
    n = a.n or (2000 if a.quick else 10_000)
    peer_steps = a.peer_steps or (500 if a.quick else 10_000)
    ours_steps = a.ours_steps or (300 if a.quick else None)
    names = a.tasks.split(",") if a.tasks else (list(mi_tasks.QUICK) if a.quick else [t.name for t in mi_tasks.TASKS])
    tasks = [mi_tasks.get(s) for s in names]
    ours = [s for s in a.ours.split(",") if s]
    notes = [f"n = {n} samples per task, seed {a.seed}; "
             + ((f"ours ({', '.join(ours)}): estimate() defaults"
                 + (f" except TrainConfig(steps={ours_steps})" if ours_steps else "")) if ours else "ours: not run")
             + f"; InfoNCE/MINE/MMG: {peer_steps} steps; KSG k = 5; CCA: Gaussian closed form of the sample."]
    peers = [s for s in a.peers.split(",") if s]
    if not a.peers_python or not Path(a.peers_python).exists():
        notes.append(f"peers skipped: --peers-python {'not given' if not a.peers_python else a.peers_python + ' missing'}")
        peers = []
    estimators = ours + peers
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            x, r = task.sample(a.seed, n)
            npz = os.path.join(tmp, f"{task.name}.npz")
            np.savez(npz, x=x, r=r)
            row = {"task": task.name, "family": task.family, "dim_x": task.dim_x, "dim_r": task.dim_r,
                   "truth": task.true_mi, "n": n, "results": {}}
            for e in estimators:
                if e in OURS:
                    try:
                        res = run_ours(x, r, OURS[e], ours_steps, a.seed)
                    except Exception as err:  # noqa: BLE001
                        res = {"value": None, "stderr": None, "seconds": None, "error": repr(err)[:300]}
                else:
                    res = run_peer(a.peers_python, e, npz, peer_steps, a.seed, a.peer_timeout)
                row["results"][e] = res
                v = res.get("value")
                print(f"{task.name:26s} {e:12s} truth {task.true_mi:.3f}  "
                      + (f"est {v:.3f}" if v is not None else f"FAILED {res.get('error')}")
                      + f"  {res.get('seconds') or 0:.1f}s", flush=True)
            rows.append(row)
            for e in estimators:               # a peer that failed to import is a note, not a number
                err = row["results"][e].get("error")
                if err and not any(n_.startswith(f"{e}:") for n_ in notes):
                    notes.append(f"{e}: {err}")
            (out / "mi_benchmark.json").write_text(json.dumps({"rows": rows, "notes": notes}, indent=1))
            (out / "mi_benchmark.md").write_text(markdown(rows, estimators, notes))
    if rows:
        plot(rows, estimators, out / "mi_benchmark.png")
    print(markdown(rows, estimators, notes))


if __name__ == "__main__":
    main()
