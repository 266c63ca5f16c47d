"""Figures (matplotlib). Never imported by the core library."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import matplotlib

# Scripts write files: use the non-interactive backend, unless inside IPython/Jupyter (inline
# figures) or the user chose a backend.
if "IPython" not in sys.modules and "MPLBACKEND" not in os.environ:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LABELS = {
    "ilocal": r"$I_{local}$",
    "fisher": "Fisher $J(x)$",
    "specific_information": r"$I_{sp}$",
    "ssi": r"$I_{SSI}$",
    "specific_surprise": r"$I_{surp}$ (Kong-1)",
    "cissi": r"$I_{CiSSI}$",
    "kong2": "Kong-2",
}
MEASURES = ["ilocal", "fisher", "specific_information", "ssi", "specific_surprise", "cissi", "kong2"]


def measure_panels(x, conditions: dict, measures=MEASURES, *, axes=None, styles=None, xlabel="stimulus x"):
    """One panel per measure, one line per condition.

    conditions: {label: {measure name: (m,) array}}; returns the axes used.
    """
    if axes is None:
        _, axes = plt.subplots(1, len(measures), figsize=(3.0 * len(measures), 2.6))
    axes = np.atleast_1d(axes)
    styles = styles or {}
    for ax, name in zip(axes, measures):
        for label, curves in conditions.items():
            ax.plot(x, curves[name], label=label, **styles.get(label, {}))
        ax.axhline(0.0, color="0.8", lw=0.6, zorder=0)
        ax.set_title(LABELS.get(name, name), fontsize=10)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel("nats")
    axes[0].legend(fontsize=8)
    return axes


def to_jsonable(obj):
    """numpy arrays and scalars -> lists and floats, recursively."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def save(fig, data: dict, out_dir, name: str) -> tuple[Path, Path]:
    """Write ``name.png`` and ``name.json`` into ``out_dir`` (created if needed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png, js = out / f"{name}.png", out / f"{name}.json"
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    js.write_text(json.dumps(to_jsonable(data), indent=1))
    return png, js
