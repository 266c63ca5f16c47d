"""Run every figure experiment of the exact engine (paper Figs. 1, 2, 3, additivity).

Usage: python experiments/run_figures.py --out out
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

SCRIPTS = ["fig1_locality.py", "fig2_prior.py", "fig3_data_processing.py", "fig5_additivity.py"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out", help="folder for the PNG and JSON files (default: out)")
    args = p.parse_args()
    here = Path(__file__).resolve().parent
    t0 = time.perf_counter()
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, str(here / script), "--out", args.out], check=True)
    print(f"all figures written to {Path(args.out).resolve()} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
