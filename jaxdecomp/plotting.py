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


def map_figure(images, maps: dict, titles=None, signed: bool = False, *, units: str = "nats/pixel",
               totals: dict | None = None, stderrs: dict | None = None, se_maps: dict | None = None,
               shared_scale: bool = False, suptitle: str | None = None, colorbar: bool = True):
    """Rows: the images, then one row per map (e.g. Fisher, I_local), then one row per SE map;
    one column per image.

    images: ``(n, H, W)`` in [-1, 1]. maps: ``{row label: (n, H, W) array}``. titles: ``n``
    column titles or None. ``signed``: the maps are changes (any sign); draw them with a
    diverging colour map whose scale is symmetric about 0. units: colour-bar label of the map
    rows (default ``"nats/pixel"``; pass ``{label: units}`` for per-row units). totals /
    stderrs: ``{row label: (n,)}`` per-panel totals and their standard errors, written in each
    panel's title as ``total ± SE``. se_maps: ``{row label: (n, H, W)}`` standard-error maps,
    drawn as extra rows in the same units. shared_scale: one colour scale per row (the row's
    maximum) instead of one per panel, so panels of a row compare. suptitle: figure title
    (e.g. a trust verdict). colorbar: a colour bar beside every map panel. Returns the figure.
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4) or images.shape[0] < 1:
        raise ValueError(f"images: expected shape (n, H, W) or (n, H, W, C) with n >= 1, got {images.shape}")
    n = images.shape[0]
    if not isinstance(maps, dict):
        raise TypeError(f"maps: expected a dict {{label: (n, H, W) array}}, got {type(maps).__name__}")
    se_maps = dict(se_maps or {})
    for what, d in (("maps", maps), ("se_maps", se_maps)):
        for name, m in d.items():
            if np.shape(m)[:1] != (n,):
                raise ValueError(f"{what}[{name!r}]: expected {n} maps (one per image), got shape {np.shape(m)}")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles: expected {n} titles (one per image), got {len(titles)}")
    totals, stderrs = dict(totals or {}), dict(stderrs or {})
    rows_def = [(name, np.asarray(m), signed, False) for name, m in maps.items()]
    rows_def += [(name, np.asarray(m), False, True) for name, m in se_maps.items()]
    rows = 1 + len(rows_def)
    width = 2.1 if colorbar else 1.7
    fig, axes = plt.subplots(rows, n, figsize=(width * n, 1.85 * rows + (0.35 if suptitle else 0)), squeeze=False)
    for j in range(n):
        axes[0, j].imshow(images[j], cmap="gray", vmin=-1, vmax=1)
        if titles is not None:
            axes[0, j].set_title(titles[j], fontsize=8)
    for i, (name, m, sgn, is_se) in enumerate(rows_def, start=1):
        unit = units.get(name, "nats/pixel") if isinstance(units, dict) else units
        row_lim = float(np.max(np.abs(m))) if shared_scale else None
        row_lo = None if (sgn or not shared_scale) else float(min(0.0, np.min(m)))
        for j in range(n):
            lim = row_lim if shared_scale else float(np.max(np.abs(m[j])))
            if sgn:
                vmin, vmax = -lim, lim
            else:
                vmin = row_lo if shared_scale else None
                vmax = lim if shared_scale else None
            im = axes[i, j].imshow(m[j], cmap="RdBu_r" if sgn else ("viridis" if is_se else "magma"),
                                   vmin=vmin, vmax=vmax)
            if colorbar:
                cb = fig.colorbar(im, ax=axes[i, j], fraction=0.046, pad=0.03)
                cb.ax.tick_params(labelsize=6)
                if j == n - 1 or not shared_scale:
                    cb.set_label(unit, fontsize=6)
            if name in totals:
                t = float(np.asarray(totals[name])[j])
                se = stderrs.get(name)
                txt = f"{t:.3g}" + (f" ± {float(np.asarray(se)[j]):.2g}" if se is not None else "")
                axes[i, j].set_title(txt, fontsize=7)
            if j == 0:
                axes[i, j].set_ylabel(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()) if suptitle else None)
    if suptitle:
        fig.suptitle(suptitle, fontsize=8, wrap=True)
    return fig


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
