"""Noise levels: the log-SNR <-> noise-variance conversion and quadrature over log-SNR.

Convention used everywhere in jaxdecomp: a blurred stimulus ``x_g = x + sqrt(g) z``
has noise variance ``g``; its log signal-to-noise ratio is ``a = -log g``
(for variance-preserving inputs ``x_t = alpha x + sigma z`` this is
``log(alpha^2 / sigma^2)`` and ``g = sigma^2 / alpha^2``). These two functions
are the only place the conversion is written.

Integrals over ``g`` are done in ``a``: ``int f(g) dg = int f(g(a)) g(a) da``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def variance_from_log_snr(log_snr):
    """Noise variance ``g = exp(-a)`` of log-SNR ``a``."""
    return jnp.exp(-log_snr)


def log_snr_from_variance(g):
    """Log-SNR ``a = -log g`` of noise variance ``g`` (> 0)."""
    return -jnp.log(g)


def gauss_legendre(lo: float, hi: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on ``[lo, hi]`` (exact for polynomials of degree 2n-1)."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        raise ValueError(f"log-SNR range: expected finite lo < hi, got [{lo}, {hi}]")
    if int(n) < 1:
        raise ValueError(f"n_levels: expected a positive integer, got {n}")
    t, w = np.polynomial.legendre.leggauss(int(n))
    half = 0.5 * (hi - lo)
    return lo + half * (t + 1.0), half * w


def trapezoid(lo: float, hi: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Trapezoid nodes and weights on ``[lo, hi]`` with ``n >= 2`` equally spaced nodes."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        raise ValueError(f"log-SNR range: expected finite lo < hi, got [{lo}, {hi}]")
    if int(n) < 2:
        raise ValueError(f"n_levels: expected at least 2 nodes for the trapezoid rule, got {n}")
    a = np.linspace(lo, hi, int(n))
    w = np.full(int(n), (hi - lo) / (int(n) - 1))
    w[0] *= 0.5
    w[-1] *= 0.5
    return a, w
