"""Experiment scripts: one per paper figure or study, each writing a PNG and a JSON of its numbers.

A package: run a script from the repository root as ``python -m experiments.NAME --out DIR``
(e.g. ``python -m experiments.fig2_prior --out out``; all exact-engine figures:
``python -m experiments.run_figures --out out``; benchmarks: ``python -m experiments.benchmarks.NAME``).
Scripts use the library's public names only; ground-truth problems come from :mod:`jaxdecomp.tasks`.
"""
