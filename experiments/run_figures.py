"""Run every figure experiment of the exact engine (paper Figs. 1, 2, 3, additivity).

Usage (from the repository root): python -m experiments.run_figures --out out
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

SCRIPTS = ["fig1_locality", "fig2_prior", "fig3_data_processing", "fig5_additivity"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out", help="folder for the PNG and JSON files (default: out)")
    args = p.parse_args()
    root = Path(__file__).resolve().parents[1]
    out = str(Path(args.out).resolve())
    t0 = time.perf_counter()
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, "-m", f"experiments.{script}", "--out", out], check=True, cwd=root)
    print(f"all figures written to {Path(args.out).resolve()} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
