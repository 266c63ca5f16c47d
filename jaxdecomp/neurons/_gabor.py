"""Gabor simple cells and energy-model complex cells for one image ``x: (H, W)`` in [-1, 1] (private).

:func:`gabor_population` (:class:`GaborRates`, Poisson) with the quadrature filter pairs of
:func:`gabor_filters`. Geometry: :mod:`jaxdecomp.neurons._geometry`.

Input checks (every model): ``x`` of the wrong shape (concrete or traced) raises a
``ValueError`` naming ``x``; a concrete ``x`` with values outside
``[-1 - PIXEL_TOLERANCE, 1 + PIXEL_TOLERANCE]`` (or NaN) raises ``ValueError``
(:func:`jaxdecomp._checks.check_images`). Under ``jit`` / ``vmap`` / ``grad`` the
value check is skipped (values are unknown there).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdecomp._checks import check_float, check_images, check_int
from jaxdecomp._interfaces import Array
from jaxdecomp.neurons._geometry import as_float, check_image_shape, lattice_centers, pixel_coordinates
from jaxdecomp.neurons._populations import PoissonPopulation, poisson_population


@struct.dataclass
class GaborRates:
    """Gabor simple cells or energy-model complex cells for one image.

    even, odd: (n, H*W) the cosine- and sine-phase Gabor filters (zero-mean, each with
    L1 norm ``drive``); gain, baseline: scalars (); centers: (n, 2); orientations: (n,)
    radians. ``kind="simple"``: ``f = baseline + gain * softplus(even @ x)``;
    ``kind="complex"``: ``f = baseline + gain * ((even @ x)^2 + (odd @ x)^2)``.
    Call: ``x: (H, W) in [-1, 1] -> (n,)`` non-negative.
    """

    even: Array
    odd: Array
    gain: Array
    baseline: Array
    centers: Array
    orientations: Array
    shape: tuple = struct.field(pytree_node=False, default=(32, 32))
    kind: str = struct.field(pytree_node=False, default="simple")

    def __call__(self, x):
        x = jnp.reshape(check_images(x, self.shape, batched=False), (-1,))
        ue = self.even @ x
        if self.kind == "simple":
            return self.baseline + self.gain * jax.nn.softplus(ue)
        uo = self.odd @ x
        return self.baseline + self.gain * (ue**2 + uo**2)


def gabor_filters(shape, centers, orientations, *, wavelength: float = 0.25, sigma: float = 0.1, drive: float = 1.0):
    """Quadrature Gabor pairs ``(even, odd)``, each (n, H*W), for neuron ``n`` at
    ``centers[n]`` (n, 2) with carrier direction ``orientations[n]`` (radians, 0 = along the
    column axis, i.e. vertical stripes).

    ``env * cos(2 pi d.(p - c) / wavelength)`` (and sin), envelope SD ``sigma``; the envelope
    times a constant is subtracted so each filter sums to 0 (no response to uniform
    luminance), then each is scaled to L1 norm ``drive``: ``|g^T x| <= drive`` for x in
    [-1, 1], at every resolution.
    """
    wavelength = check_float("wavelength", wavelength, positive=True)
    sigma = check_float("sigma", sigma, positive=True)
    drive = check_float("drive", drive, positive=True)
    c = np.asarray(centers, np.float64)
    th = np.asarray(orientations, np.float64)
    p = pixel_coordinates(shape).reshape(-1, 2)
    dp = p[None, :, :] - c[:, None, :]  # (n, P, 2)
    env = np.exp(-0.5 * np.sum(dp**2, axis=-1) / sigma**2)
    phase = 2 * np.pi * (dp[..., 0] * np.sin(th)[:, None] + dp[..., 1] * np.cos(th)[:, None]) / wavelength
    out = []
    for carrier in (np.cos(phase), np.sin(phase)):
        g = env * carrier
        g = g - env * (g.sum(1, keepdims=True) / env.sum(1, keepdims=True))
        g = drive * g / np.sum(np.abs(g), axis=1, keepdims=True)
        out.append(g)
    return out[0], out[1]


def gabor_population(
    shape=(32, 32),
    *,
    grid: int = 4,
    n_orientations: int = 4,
    wavelength: float = 0.25,
    sigma: float = 0.1,
    gain: float = 10.0,
    baseline: float = 0.5,
    kind: str = "simple",
    extent: float = 0.7,
    drive: float | None = None,
) -> PoissonPopulation:
    """Gabor simple cells (``kind="simple"``) or energy-model complex cells (``"complex"``).

    ``grid**2 * n_orientations`` Poisson neurons: positions on a ``grid x grid`` lattice over
    [-extent, extent]^2, orientations ``k pi / n_orientations``; neuron index
    ``position * n_orientations + k``. Filters: :func:`gabor_filters` (wavelength and
    envelope SD in image units, zero-mean, L1 norm ``drive``, hence resolution-invariant).

    * simple: ``f = baseline + gain * softplus(g_even^T x)``; ``drive`` defaults to 4, so a
      preferred/anti-preferred pattern drives the softplus to about +-4 (rates from
      ``baseline`` to ``baseline + 4 gain``; ``baseline + 0.69 gain`` on a blank image).
    * complex: ``f = baseline + gain * ((g_even^T x)^2 + (g_odd^T x)^2)``; ``drive`` defaults
      to 1, so the energy lies in [0, 2] (about 0.6 for a full-contrast preferred grating).
    """
    shape = check_image_shape(shape)
    if kind not in ("simple", "complex"):
        raise ValueError(f"kind: expected 'simple' or 'complex', got {kind!r}")
    grid = check_int("grid", grid, minimum=1)
    n_orientations = check_int("n_orientations", n_orientations, minimum=1)
    gain = check_float("gain", gain, positive=True, allow_zero=True)
    baseline = check_float("baseline", baseline, positive=True, allow_zero=True)
    if drive is None:
        drive = 4.0 if kind == "simple" else 1.0
    pos = lattice_centers(grid, extent)
    th = np.arange(n_orientations) * np.pi / n_orientations
    centers = np.repeat(pos, n_orientations, axis=0)
    orient = np.tile(th, pos.shape[0])
    even, odd = gabor_filters(shape, centers, orient, wavelength=wavelength, sigma=sigma, drive=drive)
    rates = GaborRates(
        even=as_float(even),
        odd=as_float(odd),
        gain=as_float(gain),
        baseline=as_float(baseline),
        centers=as_float(centers),
        orientations=as_float(orient),
        shape=shape,
        kind=kind,
    )
    return poisson_population(rates)
