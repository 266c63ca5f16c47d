"""Pixel maps of a batch of images: I_local beside the population's exact Fisher diagonal,
with a per-pixel Monte Carlo standard error."""

from __future__ import annotations

import time

import jax
import numpy as np

from jaxdecomp import _parallel
from jaxdecomp.diffusion.schedules import network_levels
from jaxdecomp.estimate import _estimators as _est

__all__ = ["map_correlations", "pixel_maps"]

#: images above which ``pixel_maps`` shows a progress bar (one step per image)
PROGRESS_MIN_IMAGES = 2


def pixel_maps(key, denoiser, population, x, *, n_levels=32, n_samples=16, n_steps=16,
               response_sampler="posterior_sample", progress=None, log=None):
    """I_local and Fisher pixel maps of a batch of images ``x (B, H, W)``, as numpy arrays.

    Args:
      key: a PRNG key.
      denoiser: ``eps_hat = denoiser(x_noisy, log_snr, r)``, typically a trained network.
      population: the encoder ``p(r | x)``; needs ``sample`` and ``fisher_diag``.
      x: images ``(B, H, W)`` in [-1, 1].
      n_levels: log-SNR nodes of :func:`jaxdecomp.diffusion.schedules.network_levels`.
      n_samples: ``(x_g, r)`` draws per level. n_steps: reverse-diffusion steps per
        posterior sample (``response_sampler="posterior_sample"``).
      response_sampler: see :func:`jaxdecomp.estimate.ilocal`.
      progress: show a tqdm bar over the images (default: when ``B >= PROGRESS_MIN_IMAGES``).
      log: ``print``-like callable for a "compiling" note before the first (compiled) image, or None.

    The images are done one per local device at a time (one compiled program per device; with several
    devices, e.g. the CPU cores exposed as devices by the command line, they run in parallel: see
    ``jaxdecomp._parallel``). Image ``i`` uses ``jax.random.split(key, B)[i]``, the key
    :func:`jaxdecomp.estimate.ilocal` gives it in a batch, so the map, total and SE are those of
    ``ilocal(key, denoiser, population, x, levels=network_levels(n_levels), ...)`` up to float rounding,
    whatever the number of devices.

    Returns a dict: ``ilocal (B, H, W)`` nats per pixel, ``ilocal_total (B,)`` = I_local(x),
    ``ilocal_se (B,)`` its Monte Carlo standard error, ``ilocal_pixel_se (B, H, W)`` the Monte Carlo
    standard error of each pixel of the map (from the spread of the per-draw contributions at each
    level, combined over levels with the squared quadrature weights; the quadrature error is not
    included), ``ilocal_pixel_snr (B,)`` the median over pixels of ``ilocal / ilocal_pixel_se`` per
    image, and ``fisher (B, H, W)`` the Fisher diagonal ``J_ii(x)`` of the population.
    """
    if not callable(getattr(population, "fisher_diag", None)):
        raise TypeError(f"population: expected an encoder with fisher_diag(x), got {type(population).__name__}")
    st = _est._ilocal_setup(key, denoiser, population, x, response_sampler=response_sampler,
                            levels=network_levels(n_levels), n_samples=n_samples, n_steps=n_steps, chunk=2048,
                            stimulus_shape=None, fisher_correction=True)
    xj, batched = st.x, st.batched
    if not batched:
        xj = xj[None]
    B = int(xj.shape[0])
    keys = jax.random.split(st.key, B) if batched else st.key[None]
    show = (B >= PROGRESS_MIN_IMAGES) if progress is None else bool(progress)
    from tqdm.auto import tqdm

    # one image per local device in flight (jaxdecomp._parallel); image i keeps its key keys[i]
    devices = jax.local_devices()[:B]
    consts = _parallel.replicas((st.denoiser, population, st.nodes, st.weights, st.g_hi), devices)
    # every image's inputs placed on its device before any image is dispatched: slicing an array that
    # lives on device 0 would otherwise queue behind device 0's running image and serialise the devices
    inputs = [(keys[i], xj[i]) for i in range(B)]
    if len(devices) > 1:
        inputs = [jax.device_put(kx, devices[i % len(devices)]) for i, kx in enumerate(inputs)]
    jax.block_until_ready(inputs)
    out = []
    t0 = time.perf_counter()
    bar = tqdm(total=B, desc="I_local maps", disable=not show, dynamic_ncols=True)
    try:
        for start in range(0, B, len(devices)):
            if start == 0 and log is not None:
                log(f"compiling the I_local estimator ({len(st.nodes)} levels x {st.n_samples} draws"
                    f"{f' x {st.n_steps} reverse-diffusion steps' if response_sampler == 'posterior_sample' else ''}"
                    f"; the first image includes the compile"
                    f"{f', once per device ({len(devices)} devices)' if len(devices) > 1 else ''})")
            pending = []
            for d, i in enumerate(range(start, min(B, start + len(devices)))):
                den, pop, nodes, weights, g_hi = consts[d]
                ki, xi = inputs[i]
                pending.append(_est._ilocal_jit(ki, den, pop, xi, nodes, weights, g_hi, n_samples=st.n_samples,
                                                sampler=response_sampler, n_steps=st.n_steps, chunk=st.chunk,
                                                fisher_tail=st.fisher_tail, batched=False, score_gradient=False,
                                                pixel_se=True))
            for res, pix in pending:
                out.append([np.asarray(v) for v in (*res, pix)])
                bar.update(1)
            if start == 0 and log is not None:
                log(f"first {'image' if len(pending) == 1 else f'{len(pending)} images'} done in "
                    f"{time.perf_counter() - t0:.0f} s (compile included)")
    finally:
        bar.close()
    m, tot, se, pix_se = (np.stack([o[j] for o in out]) for j in range(4))
    fisher = np.asarray(jax.jit(jax.vmap(population.fisher_diag))(xj))
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(pix_se > 0, m / pix_se, np.inf)
    pix_snr = np.median(snr.reshape(B, -1), axis=1)
    if not batched:
        m, tot, se, pix_se, fisher, pix_snr = m[0], tot[0], se[0], pix_se[0], fisher[0], pix_snr[0]
    return dict(ilocal=m, ilocal_total=tot, ilocal_se=se, ilocal_pixel_se=pix_se, ilocal_pixel_snr=pix_snr,
                fisher=fisher)


def map_correlations(maps_a, maps_b, *, names=("maps_a", "maps_b")) -> np.ndarray:
    """Pixel-wise Pearson correlation of each pair of maps: ``maps_a[i]`` against ``maps_b[i]``.

    ``maps_a``, ``maps_b``: ``(B, *shape)`` arrays (e.g. the ``ilocal`` maps of two independent runs on
    the same images, or a network map against the exact one). Returns ``(B,)`` correlations in [-1, 1].
    Raises ``ValueError`` naming the argument for mismatched shapes, an empty batch, non-finite values
    or a constant map (its correlation is undefined). ``names``: the argument names used in errors.
    """
    a, b = np.asarray(maps_a, dtype=np.float64), np.asarray(maps_b, dtype=np.float64)
    if a.ndim < 2 or a.shape != b.shape:
        raise ValueError(f"{names[0]}, {names[1]}: expected two batches of maps (B, ...) of one shape, got "
                         f"{a.shape} and {b.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{names[0]}: the batch is empty")
    for arr, name in ((a, names[0]), (b, names[1])):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: the maps contain NaN or inf")
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    for n, name in ((na, names[0]), (nb, names[1])):
        bad = np.flatnonzero(n == 0)
        if bad.size:
            raise ValueError(f"{name}: map {int(bad[0])} is constant, so its correlation is undefined")
    return np.clip(np.einsum("ij,ij->i", a, b) / (na * nb), -1.0, 1.0)
