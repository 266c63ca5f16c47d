"""Shared command line of the experiment scripts."""

import argparse
import time


def parse(description: str):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default="experiments/out", help="folder for the PNG and JSON (default: experiments/out)")
    return p.parse_args()


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def settings(table: dict, name: str, overrides: dict) -> dict:
    """A copy of ``table[name]`` with ``overrides`` applied; an unknown override is an error naming it."""
    cfg = dict(table[name])
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"overrides: unknown settings {sorted(unknown)}; expected some of {sorted(cfg)}")
    cfg.update(overrides)
    return cfg
