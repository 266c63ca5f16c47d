"""Benchmark of the exact grid engine: first call (includes compilation) and warm call.

Cases: the full Fig. 2 computation (all measures, two priors, 401-point grids), and
I_local on a 51 x 51 2-D grid with two Poisson neurons. Prints a table and writes JSON.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np

from jaxdecomp import exact
from jaxdecomp import neurons as N


def fig2():
    pop = N.gaussian_population(N.linear(1.0), 0.5)
    exact.all_measures(exact.gaussian_grid(0.0, 1.0, m=401), pop)
    exact.all_measures(exact.mixture_grid([-1.0, 1.0], 0.1, m=401, lo=-4.5, hi=4.5), pop)


def ilocal_2d():
    grid = exact.gaussian_grid_2d(m=51, width=6.0)
    pop = N.poisson_population(N.gaussian_bumps(np.array([[-1.0, 0.0], [1.0, 0.5]]), 1.0, 6.0, 0.5))
    exact.ilocal(grid, pop)


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out/benchmarks")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    rows = []
    for name, fn in (("fig2_all_measures", fig2), ("ilocal_2d_51x51_2poisson", ilocal_2d)):
        first = timed(fn)
        warm = [timed(fn) for _ in range(args.repeats)]
        rows.append(dict(case=name, first_call_s=first, warm_call_s_median=float(np.median(warm)), warm_calls=warm))
    info = dict(machine=cpu_name(), cores=__import__("os").cpu_count(), jax=jax.__version__,
                backend=jax.default_backend(), date=time.strftime("%Y-%m-%d"))
    print(f"machine: {info['machine']} ({info['cores']} cores), jax {info['jax']} on {info['backend']}")
    print(f"{'case':28s} {'first call (s)':>15s} {'warm call (s)':>14s}")
    for r in rows:
        print(f"{r['case']:28s} {r['first_call_s']:15.2f} {r['warm_call_s_median']:14.2f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "exact_engine.json").write_text(json.dumps(dict(info=info, rows=rows), indent=1))


if __name__ == "__main__":
    main()
