"""How far the MI benchmark's own evaluation pairs scatter, before any network is involved (issue 13).

An estimator that averages a per-pair value over ``m`` evaluation pairs cannot beat the scatter of
those pairs' own pointwise MI ``log p(x, r) / (p(x) p(r))``, whose mean has SD ``sd / sqrt(m)``. This
script computes it exactly for every task of ``mi_tasks.py`` (closed-form densities,
``mi_tasks.pointwise_mi``) and, for an UNBIASED estimator with exactly that error, the chance of
landing outside +/-10% of the truth when it is evaluated on 20% of the pairs (a holdout split) or on
all of them (cross-fitting, ``estimate(..., crossfit=True)``, the default).

Usage: ``python -m experiments.benchmarks.mi_sample_truth [--n 10000 --seed 0 --holdout 0.2]`` (seconds, numpy only).
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.special import ndtr

from experiments.benchmarks.mi_tasks import TASKS, pointwise_mi


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--holdout", type=float, default=0.2)
    a = p.parse_args(argv)
    m = int(round(a.holdout * a.n))
    print(f"n = {a.n} pairs (seed {a.seed}); P(miss) = chance that an unbiased estimate with the pairs' own "
          f"error is outside +/-10%, evaluated on {m} pairs (holdout {a.holdout:g}) or on all {a.n}")
    print(f"{'task':24s} {'truth':>7s} {'sample':>7s} {'SE(m)':>7s} {'SE(n)':>7s} {'P(miss) m':>10s} {'P(miss) n':>10s}")
    miss_m = miss_n = 0.0
    for t in TASKS:
        v = pointwise_mi(t, a.seed, a.n)
        sd = v.std(ddof=1)
        se_m, se_n = sd / np.sqrt(m), sd / np.sqrt(a.n)
        pm, pn = (2 * ndtr(-0.1 * t.true_mi / s) for s in (se_m, se_n))
        miss_m, miss_n = miss_m + pm, miss_n + pn
        print(f"{t.name:24s} {t.true_mi:7.3f} {v.mean():7.3f} {se_m:7.4f} {se_n:7.4f} {pm:10.3f} {pn:10.3f}")
    print(f"expected tasks outside 10% for an unbiased estimator: {miss_m:.2f} of {len(TASKS)} on {m} pairs, "
          f"{miss_n:.2f} on all {a.n}")


if __name__ == "__main__":
    main()
