"""Offline stimulus sets: bundled digits, natural-image patches, dead leaves.

Nothing here downloads: ``digits`` and ``natural_patches`` read files that ship
with scikit-learn, ``dead_leaves`` is generated in JAX from a key.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdecomp._checks import check_bool, check_float, check_int, check_key

# Resize method for ``digits``: bicubic (Keys, a = -0.5) keeps strokes sharper than
# bilinear (8 -> 16 -> 8 by block averaging correlates 0.99 with the originals against
# 0.98 for bilinear); its slight overshoot at stroke edges is clipped to [-1, 1].
_DIGITS_RESIZE = "cubic"


@functools.lru_cache(maxsize=1)
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)  # (1797, 8, 8) in 0..16
    labels = np.asarray(bunch.target, dtype=np.int32)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def digits(size: int = 16, *, return_labels: bool = False):
    """Handwritten digits bundled with scikit-learn (UCI optdigits), 1797 images.

    The 8×8 originals (ink counts 0..16) are mapped to ``x / 16 * 2 - 1`` so the
    background is -1 and full ink is +1, resized with ``jax.image.resize``
    (bicubic, ``method="cubic"``) and clipped to [-1, 1] (cubic overshoots a little
    at stroke edges).

    Args:
      size: output side length, an int >= 8 (8, 16, 32, 64 are typical; 8 returns
        the originals).
      return_labels: also return the digit classes.

    Returns:
      images: ``(1797, size, size) float32`` numpy array in [-1, 1];
      with ``return_labels``, a tuple ``(images, labels)`` with labels
      ``(1797,) int32`` in 0..9.
    """
    size = check_int("size", size, minimum=8)
    return_labels = check_bool("return_labels", return_labels)
    raw, labels = _sklearn_digits()
    x = raw / 16.0 * 2.0 - 1.0
    if size != 8:
        out = jax.image.resize(
            jnp.asarray(x, jnp.float32), (x.shape[0], size, size), _DIGITS_RESIZE, antialias=True
        )
        x = np.asarray(out)
    x = np.clip(x, -1.0, 1.0).astype(np.float32)
    if return_labels:
        return x, labels.copy()
    return x


@functools.lru_cache(maxsize=1)
def _sklearn_photos_gray() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    grays = []
    for img in bunch.images:  # (427, 640, 3) uint8 each: china.jpg, flower.jpg
        rgb = np.asarray(img, dtype=np.float64)
        # ITU-R BT.601 luma, 0..255
        gray = rgb @ np.array([0.299, 0.587, 0.114])
        gray.setflags(write=False)
        grays.append(gray)
    return tuple(grays)


def _block_average(img: np.ndarray, scale: int) -> np.ndarray:
    if scale == 1:
        return img
    h, w = (img.shape[0] // scale) * scale, (img.shape[1] // scale) * scale
    return img[:h, :w].reshape(h // scale, scale, w // scale, scale).mean(axis=(1, 3))


def natural_patches(n: int, size: int = 64, *, seed: int = 0, scale: int = 1) -> np.ndarray:
    """Grayscale patches of the two photographs bundled with scikit-learn.

    The photographs (``china.jpg`` and ``flower.jpg``, 427×640 RGB) are converted to
    luma (BT.601 weights), optionally down-scaled by averaging ``scale × scale``
    blocks (rows/columns that do not fill a block are dropped), and ``n`` patches are
    cut at positions drawn by ``numpy.random.default_rng(seed)``: for each patch an
    image (uniformly) and a top-left corner (uniformly over valid positions).
    Intensities use one fixed global map, ``pixel / 255 * 2 - 1``, NOT a per-patch
    normalisation, so contrast differs between patches as it does in the photos.

    Args:
      n: number of patches, int >= 1.
      size: patch side in (down-scaled) pixels, 1 <= size <= ``427 // scale``.
      seed: seed of the numpy Generator choosing positions.
      scale: integer down-scaling factor (>= 1) applied before cutting.

    Returns:
      ``(n, size, size) float32`` numpy array in [-1, 1]; the same for the same
      ``(n, size, seed, scale)``.
    """
    n = check_int("n", n, minimum=1)
    size = check_int("size", size, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    scale = check_int("scale", scale, minimum=1)
    photos = [_block_average(g, scale) for g in _sklearn_photos_gray()]
    limit = min(min(p.shape) for p in photos)
    if size > limit:
        raise ValueError(
            f"size: expected <= {limit} (the smaller photo side after down-scaling by "
            f"scale={scale}), got {size}"
        )
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(photos), size=n)
    out = np.empty((n, size, size), dtype=np.float32)
    for i, k in enumerate(which):
        img = photos[k]
        top = rng.integers(0, img.shape[0] - size + 1)
        left = rng.integers(0, img.shape[1] - size + 1)
        out[i] = img[top : top + size, left : left + size] / 255.0 * 2.0 - 1.0
    np.clip(out, -1.0, 1.0, out=out)
    return out


def _power_law_radii(u, r_min: float, r_max: float, alpha: float):
    """Inverse CDF of p(r) ∝ r^-alpha on [r_min, r_max] at uniforms ``u``."""
    if abs(alpha - 1.0) < 1e-9:
        return r_min * (r_max / r_min) ** u
    e = 1.0 - alpha
    lo, hi = r_min**e, r_max**e
    return (lo + u * (hi - lo)) ** (1.0 / e)


def _dead_leaves_one(
    key, size: int, n_discs: int, r_min: float, r_max: float, alpha: float, supersample: int
):
    k_bg, k_c, k_r, k_v = jax.random.split(key, 4)
    background = jax.random.uniform(k_bg, (), minval=-1.0, maxval=1.0)
    centers = jax.random.uniform(k_c, (n_discs, 2))
    radii = _power_law_radii(jax.random.uniform(k_r, (n_discs,)), r_min, r_max, alpha)
    values = jax.random.uniform(k_v, (n_discs,), minval=-1.0, maxval=1.0)
    fine = size * supersample
    coords = (jnp.arange(fine, dtype=jnp.float32) + 0.5) / fine  # (sub)pixel centres in (0, 1)
    yy, xx = coords[:, None], coords[None, :]

    def drop(img, disc):
        (cy, cx), r, v = disc
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        return jnp.where(inside, v, img), None

    img0 = jnp.full((fine, fine), background, dtype=jnp.float32)
    img, _ = jax.lax.scan(drop, img0, (centers, radii, values))
    if supersample > 1:
        img = img.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
        img = jnp.clip(img, -1.0, 1.0)
    return img


@functools.partial(
    jax.jit, static_argnames=("size", "n_discs", "r_min", "r_max", "alpha", "supersample")
)
def _dead_leaves_batch(
    keys, size: int, n_discs: int, r_min: float, r_max: float, alpha: float, supersample: int
):
    one = functools.partial(
        _dead_leaves_one,
        size=size,
        n_discs=n_discs,
        r_min=r_min,
        r_max=r_max,
        alpha=alpha,
        supersample=supersample,
    )
    return jax.vmap(one)(keys)


def dead_leaves(
    key,
    n: int,
    size: int = 32,
    *,
    n_discs: int = 200,
    r_min: float = 0.01,
    r_max: float = 0.5,
    alpha: float = 3.0,
    supersample: int = 1,
) -> jax.Array:
    """Dead-leaves images: occluding discs with power-law radii.

    Each image starts as a uniform grey (level uniform in [-1, 1], an infinitely
    large bottom leaf) and ``n_discs`` discs fall on it one after the other, later
    discs occluding earlier ones. Disc centres are uniform on the unit square (the
    image), radii follow ``p(r) ∝ r^-alpha`` on ``[r_min, r_max]`` in units of the
    image width, grey levels are uniform in [-1, 1]. ``alpha = 3`` is the
    scale-invariant case (power spectrum ≈ 1/f² roughly between 1/(2π r_max)
    and 1/(2π r_min) cycles per image width). With ``supersample=1`` a pixel takes the
    grey of the top disc containing its centre, so images are exactly piecewise
    constant but edges alias. The slope of the radially averaged power spectrum
    fitted over 1..size/2 cycles/image is about -1.4 at size 32, -1.8 at 64 and
    -2.2 at 128 (aliasing and the cut-off at r_max flatten it at small sizes).
    ``supersample=s`` renders at ``s × size`` and averages ``s × s`` blocks
    (anti-aliased edges; no longer exactly piecewise constant; memory and time
    grow as s²).
    Vectorised over pixels and images; a ``lax.scan`` runs over discs.

    With the defaults (200 discs, r in [0.01, 0.5], alpha 3) the discs cover about
    35% of the image on average (widely varying), the rest shows the background
    grey; raise ``n_discs`` (e.g. 2000) for a nearly fully covered texture.

    Args:
      key: PRNG key; the output is a deterministic function of it.
      n: number of images, int >= 1.
      size: image side in pixels, int >= 1.
      n_discs: discs per image, int >= 1.
      r_min, r_max: radius range, 0 < r_min < r_max (image width = 1).
      alpha: power-law exponent (any finite real; 1 means log-uniform radii).
      supersample: sub-pixels per pixel side, int >= 1 (1: point sampling).

    Returns:
      ``(n, size, size) float32`` jax Array in [-1, 1].
    """
    key = check_key(key)
    n = check_int("n", n, minimum=1)
    size = check_int("size", size, minimum=1)
    n_discs = check_int("n_discs", n_discs, minimum=1)
    r_min = check_float("r_min", r_min)
    r_max = check_float("r_max", r_max)
    alpha = check_float("alpha", alpha)
    supersample = check_int("supersample", supersample, minimum=1)
    if not 0.0 < r_min < r_max:
        raise ValueError(
            f"r_min, r_max: expected 0 < r_min < r_max, got r_min={r_min}, r_max={r_max}"
        )
    keys = jax.random.split(key, n)
    return _dead_leaves_batch(
        keys,
        size=size,
        n_discs=n_discs,
        r_min=r_min,
        r_max=r_max,
        alpha=alpha,
        supersample=supersample,
    )
