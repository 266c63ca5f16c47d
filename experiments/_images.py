"""Shared pieces of the image experiments (Fig. 4/6, 7, 8): training a response-conditioned UNet on
simulated pairs, and the statistics that turn the paper's image findings into numbers."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from jaxdecomp.diffusion import TrainConfig, build_denoiser, denoiser_spec, train
from jaxdecomp.neurons import simulate_responses


def train_on(key, population, x_train, *, channels, steps: int, batch: int = 64, copies: int = 2,
             checkpoint_dir=None, lr: float = 1e-3, n_neurons: int = 49):
    """Simulate ``copies`` responses per training image and train one conditional UNet (condition
    dropout gives the unconditional denoiser too). Returns ``(model, info dict)``."""
    k_resp, k_train = jax.random.split(key)
    xs, rs = simulate_responses(k_resp, population, np.asarray(x_train, np.float32), copies)
    net = build_denoiser(denoiser_spec(x_train.shape[1:], n_neurons, channels))
    t0 = time.perf_counter()
    res = train(net, xs, rs, TrainConfig(steps=steps, batch_size=batch, learning_rate=lr, warmup_steps=min(200, steps // 5),
                                         checkpoint_every=max(steps // 4, 1)),
                checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir), key=k_train)
    info = dict(pairs=int(xs.shape[0]), steps=int(res.step), channels=list(channels),
                seconds=time.perf_counter() - t0, final_loss=float(res.losses[-1, 1]))
    return res.model, info


def train_prior(key, x_train, *, channels, steps: int, batch: int = 64, lr: float = 1e-3, cache_dir=None):
    """Train one UNCONDITIONAL UNet prior denoiser on ``x_train`` (for the zero-shot estimators, which
    need only the prior and a known encoder). With ``cache_dir``, the trained network is saved there
    (``diffusion.save_model``) under a name that digests the data, the settings and the key, and
    reloaded (its digests checked) when the same settings come again. Returns ``(model, info dict)``."""
    import hashlib
    import json

    from jaxdecomp.diffusion import load_model, save_model

    x_train = np.asarray(x_train, np.float32)
    settings = dict(channels=list(channels), steps=int(steps), batch=int(batch), lr=float(lr),
                    key=[int(v) for v in np.asarray(jax.random.key_data(key)).ravel()],
                    data=hashlib.sha256(f"{x_train.shape}".encode() + x_train.tobytes()).hexdigest())
    tag = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    path = None if cache_dir is None else Path(cache_dir) / f"prior-{tag}"
    if path is not None and path.exists():
        t0 = time.perf_counter()
        model = load_model(path)
        return model, dict(settings, cached=str(path), seconds=time.perf_counter() - t0)
    net = build_denoiser(denoiser_spec(x_train.shape[1:], None, channels))
    t0 = time.perf_counter()
    res = train(net, x_train, None, TrainConfig(steps=steps, batch_size=batch, learning_rate=lr,
                                                warmup_steps=min(200, steps // 5), cond_drop=0.0,
                                                checkpoint_every=max(steps // 4, 1)), key=key)
    info = dict(settings, images=int(x_train.shape[0]), seconds=time.perf_counter() - t0,
                final_loss=float(res.losses[-1, 1]))
    if path is not None:
        save_model(path, res.model, metadata={"experiment_prior": info})
        info["cached"] = str(path)
    return res.model, info


def edge_strength(x) -> np.ndarray:
    """Gradient magnitude of images ``(..., H, W)`` (central differences, pixel units)."""
    x = np.asarray(x, np.float64)
    gy, gx = np.gradient(x, axis=(-2, -1))
    return np.hypot(gy, gx)


def rf_region(shape, centers, radius: float) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the pixels within ``radius`` (image units, [-1, 1]^2) of any RF centre."""
    from jaxdecomp.neurons import pixel_coordinates

    pix = pixel_coordinates(tuple(shape)).reshape(-1, 2)
    d2 = np.sum((pix[:, None, :] - np.asarray(centers)[None]) ** 2, -1).min(1)
    return (d2 <= radius**2).reshape(shape)


def maps_and_statistics(key, model, population, x_test, cfg, region, suffix: str):
    """I_local and Fisher maps of ``x_test`` (``jaxdecomp.estimate.pixel_maps`` with ``cfg``'s n_levels,
    n_samples, n_steps), their seconds, and the edge / region statistics. Keys of the region
    statistics end in ``suffix`` (e.g. ``"rf"``). Returns ``(maps, seconds, stats)``."""
    from jaxdecomp.estimate import pixel_maps

    t0 = time.perf_counter()
    maps = pixel_maps(key, model, population, x_test, n_levels=cfg["n_levels"], n_samples=cfg["n_samples"],
                      n_steps=cfg["n_steps"])
    seconds = time.perf_counter() - t0
    stats = {
        "region_pixel_share": float(region.mean()),
        f"fisher_share_in_{suffix}": share_in(maps["fisher"], region),
        f"ilocal_share_in_{suffix}": share_in(maps["ilocal"], region),
        "edge_corr_ilocal": edge_correlations(x_test, maps["ilocal"]),
        "edge_corr_fisher": edge_correlations(x_test, maps["fisher"]),
        f"edge_corr_ilocal_in_{suffix}": edge_correlations(x_test, maps["ilocal"], region),
        f"edge_corr_fisher_in_{suffix}": edge_correlations(x_test, maps["fisher"], region),
    }
    return maps, seconds, stats


def _corr(a, b) -> float:
    a, b = np.ravel(a) - np.mean(a), np.ravel(b) - np.mean(b)
    den = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / den) if den > 0 else float("nan")


def edge_correlations(images, maps, region=None) -> np.ndarray:
    """Per image, the Pearson correlation over pixels (those in ``region`` if given) between a map
    and the image's edge strength. ``images, maps: (B, H, W)``; returns ``(B,)``."""
    e = edge_strength(images)
    m = np.asarray(maps)
    if region is not None:
        return np.array([_corr(mi[region], ei[region]) for mi, ei in zip(m, e)])
    return np.array([_corr(mi, ei) for mi, ei in zip(m, e)])


def share_in(maps, region) -> np.ndarray:
    """Per map, the share of its (non-negative) total inside ``region``; ``maps: (B, H, W)``."""
    m = np.abs(np.asarray(maps, np.float64)).reshape(len(maps), -1)
    return m[:, np.ravel(region)].sum(1) / m.sum(1)
