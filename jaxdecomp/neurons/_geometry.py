"""Geometry shared by the image encoders (private; public names in :mod:`jaxdecomp.neurons`).

Image coordinates are the pixel centres on ``linspace(-1, 1, H) x linspace(-1, 1, W)``;
a point is written ``(row, col)`` (``p[0]`` grows downwards with the row index, ``p[1]``
rightwards with the column index). Receptive-field centres sit on a ``grid x grid``
lattice spanning ``[-extent, extent]^2``, ordered row-major (neuron ``i * grid + j``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxdecomp._checks import check_float, check_int, check_shape

#: The resolution at which the paper's LNP weights are defined (w^T x is kept equal
#: at other resolutions, see :func:`gaussian_rf_weights`).
REFERENCE_SHAPE = (32, 32)


def check_image_shape(shape) -> tuple[int, int]:
    """``shape`` as ``(H, W)`` Python ints, each >= 2; TypeError/ValueError naming ``shape``."""
    return check_shape(shape, ndim=2, minimum=2, name="shape")


def as_float(a):
    """``a`` as a jax array of the default float dtype (float32, float64 under x64)."""
    return jnp.asarray(a, dtype=jnp.result_type(float))


def pixel_coordinates(shape) -> np.ndarray:
    """Pixel-centre coordinates, shape (H, W, 2) as ``(row, col)``, each in linspace(-1, 1)."""
    H, W = check_image_shape(shape)
    rr, cc = np.meshgrid(np.linspace(-1.0, 1.0, H), np.linspace(-1.0, 1.0, W), indexing="ij")
    return np.stack([rr, cc], axis=-1)


def lattice_centers(grid: int = 7, extent: float = 0.7) -> np.ndarray:
    """Centres of a ``grid x grid`` lattice spanning [-extent, extent]^2, shape (grid**2, 2), row-major."""
    grid = check_int("grid", grid, minimum=1)
    extent = check_float("extent", extent, positive=True, allow_zero=True)
    v = np.linspace(-extent, extent, grid) if grid > 1 else np.zeros(1)
    rr, cc = np.meshgrid(v, v, indexing="ij")
    return np.stack([rr.ravel(), cc.ravel()], axis=1)


def resolution_scale(shape) -> float:
    """Pixel-area ratio ``(31 / (H - 1)) * (31 / (W - 1))`` relative to the 32x32 reference.

    With pixel centres on linspace(-1, 1, H) a pixel covers ``(2/(H-1)) * (2/(W-1))`` of
    the image, so ``sum_p w(p) x(p)`` times this factor approximates the same integral
    at every resolution (exactly 1 at 32x32).
    """
    H, W = check_image_shape(shape)
    (H0, W0) = REFERENCE_SHAPE
    return ((H0 - 1) / (H - 1)) * ((W0 - 1) / (W - 1))


def gaussian_rf_weights(shape, centers, rf_sigma: float = 0.1, *, scale: bool = True) -> np.ndarray:
    """Gaussian receptive fields ``w_n(p) = exp(-|p - c_n|^2 / (2 rf_sigma^2))``, shape (n, H*W).

    centers: (n, 2) in image coordinates ``(row, col)``. With ``scale=True`` the weights are
    multiplied by :func:`resolution_scale` so that ``w_n^T x`` of the same continuous image
    is the same at any resolution (the paper's numbers at 32x32).
    """
    rf_sigma = check_float("rf_sigma", rf_sigma, positive=True)
    c = np.asarray(centers, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 2:
        raise ValueError(f"centers: expected shape (n, 2), got {c.shape}")
    p = pixel_coordinates(shape).reshape(-1, 2)
    d2 = np.sum((p[None, :, :] - c[:, None, :]) ** 2, axis=-1)
    w = np.exp(-0.5 * d2 / rf_sigma**2)
    return w * resolution_scale(shape) if scale else w
