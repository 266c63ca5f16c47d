"""Noise schedules: log-SNR, noise variance, variance-preserving inputs, DDPM tables, quadrature.

Conventions (used by every denoiser and estimator in jaxdecomp):

* A blurred stimulus is ``x_g = x + sqrt(g) eps`` (variance exploding, VE); ``g``
  is the noise variance of ``docs/ilocal.md`` §3 and the log-SNR is ``a = -log g``.
* Denoisers receive **variance-preserving** inputs (VP) ``z = alpha x + sigma eps``
  with ``alpha^2 = sigmoid(a)``, ``sigma^2 = sigmoid(-a)``, so ``alpha^2 + sigma^2 = 1``
  and ``sigma^2 / alpha^2 = g``. The same ``eps`` appears in both forms, so a
  denoiser predicts ``eps`` regardless of which form was used to build its input.
* ``g <-> a`` is written once, in :mod:`jaxdecomp._quadrature`; VP <-> VE once, here.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdecomp._quadrature import gauss_legendre, log_snr_from_variance, trapezoid, variance_from_log_snr

__all__ = [
    "DDPMSchedule",
    "Levels",
    "add_noise",
    "check_levels",
    "ddpm_linear",
    "gauss_legendre",
    "levels",
    "log_snr_from_variance",
    "NETWORK_LOG_SNR",
    "network_levels",
    "paper_levels",
    "to_variance_exploding",
    "to_variance_preserving",
    "trapezoid",
    "truncated_logistic_log_pdf",
    "truncated_logistic_sample",
    "variance_from_log_snr",
    "vp_coefficients",
]


def vp_coefficients(log_snr):
    """``(alpha, sigma)`` of the variance-preserving form at log-SNR ``a``: ``alpha^2 = sigmoid(a)``."""
    log_snr = jnp.asarray(log_snr)
    return jnp.sqrt(jax.nn.sigmoid(log_snr)), jnp.sqrt(jax.nn.sigmoid(-log_snr))


def _bcast(log_snr, x):
    """Broadcast a per-example log-SNR ``(B,)`` or scalar against ``x`` of shape ``(B, ...)`` or ``(...)``."""
    log_snr = jnp.asarray(log_snr)
    return jnp.reshape(log_snr, log_snr.shape + (1,) * (jnp.ndim(x) - log_snr.ndim))


def add_noise(x, eps, log_snr):
    """Variance-preserving noisy input ``z = alpha x + sigma eps`` (what denoisers receive)."""
    alpha, sigma = vp_coefficients(_bcast(log_snr, x))
    return alpha * x + sigma * eps


def to_variance_exploding(z, log_snr):
    """VP input ``z`` -> VE ``x_g = z / alpha = x + sqrt(g) eps``."""
    alpha, _ = vp_coefficients(_bcast(log_snr, z))
    return z / alpha


def to_variance_preserving(x_g, log_snr):
    """VE ``x_g = x + sqrt(g) eps`` -> VP input ``z = alpha x_g = alpha x + sigma eps``."""
    alpha, _ = vp_coefficients(_bcast(log_snr, x_g))
    return alpha * x_g


class DDPMSchedule(NamedTuple):
    """A discrete DDPM schedule, index ``t = 1..T`` stored at position ``t - 1``.

    ``alpha_bar`` is ``prod_{s<=t} (1 - beta_s)``; ``variance`` is ``g_t = (1 - alpha_bar_t) / alpha_bar_t``
    (so ``x_t / sqrt(alpha_bar_t) = x + sqrt(g_t) eps``) and ``log_snr = -log g_t``.
    """

    betas: np.ndarray
    alpha_bar: np.ndarray
    variance: np.ndarray
    log_snr: np.ndarray


def ddpm_linear(n_steps: int = 1000, beta_min: float = 1e-4, beta_max: float = 0.02) -> DDPMSchedule:
    """The DDPM linear-beta schedule (Ho et al. 2020; the paper's): ``beta_t`` linear in ``t``."""
    if int(n_steps) < 2:
        raise ValueError(f"n_steps: expected at least 2, got {n_steps}")
    if not (0 < beta_min < beta_max < 1):
        raise ValueError(f"beta_min, beta_max: expected 0 < beta_min < beta_max < 1, got {beta_min}, {beta_max}")
    betas = np.linspace(beta_min, beta_max, int(n_steps), dtype=np.float64)
    log_alpha_bar = np.cumsum(np.log1p(-betas))
    alpha_bar = np.exp(log_alpha_bar)
    variance = -np.expm1(log_alpha_bar) / alpha_bar
    return DDPMSchedule(betas, alpha_bar, variance, -np.log(variance))


def paper_levels(schedule: DDPMSchedule | None = None, every: int = 40, last: int = 960) -> np.ndarray:
    """Log-SNR of the paper's 24 timesteps ``t = 40, 80, ..., 960`` of the linear DDPM schedule."""
    schedule = ddpm_linear() if schedule is None else schedule
    t = np.arange(every, last + 1, every)
    return schedule.log_snr[t - 1]


class Levels(NamedTuple):
    """Quadrature over log-SNR: nodes ``log_snr (L,)`` and weights ``weights (L,)``.

    ``sum_l weights[l] f(log_snr[l])`` approximates ``int f(a) da`` over the covered range.
    ``tails`` says whether estimators add the extrapolated tails beyond ``[lo, hi]``
    (the integrand of I_local decays like ``e^{a}`` for ``a -> -inf`` and like ``e^{-a}``
    for ``a -> +inf``, so each tail integrates to the integrand's value at the end).
    """

    log_snr: np.ndarray
    weights: np.ndarray
    lo: float
    hi: float
    tails: bool


def check_levels(levels, name: str = "levels") -> Levels:
    """Validate a :class:`Levels` (hand-made ones included); return it, or raise naming ``name``.

    Requires 1-D ``log_snr`` and ``weights`` of equal non-zero length, finite values, ``lo < hi``,
    nodes inside ``[lo, hi]``, non-negative weights and a bool ``tails``.
    """
    if not isinstance(levels, Levels):
        raise TypeError(f"{name}: expected a jaxdecomp.diffusion.schedules.Levels, got {type(levels).__name__}")
    try:
        a = np.asarray(levels.log_snr, dtype=np.float64)
        w = np.asarray(levels.weights, dtype=np.float64)
        lo, hi = float(levels.lo), float(levels.hi)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: log_snr, weights, lo and hi must be numbers ({err})") from err
    if a.ndim != 1 or a.shape != w.shape or a.size == 0:
        raise ValueError(f"{name}: log_snr and weights must be equal-length 1-D arrays, got {a.shape} and {w.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(w)) and np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name}: the log-SNR range and weights must be finite")
    if not lo < hi:
        raise ValueError(f"{name}: expected lo < hi (log-SNR range [lo, hi]), got lo = {lo:g}, hi = {hi:g}")
    tol = 1e-6 * (hi - lo)
    if a.min() < lo - tol or a.max() > hi + tol:
        raise ValueError(f"{name}: log_snr nodes must lie in [lo, hi] = [{lo:g}, {hi:g}], got range "
                         f"[{a.min():g}, {a.max():g}]")
    if np.any(w < 0):
        raise ValueError(f"{name}: quadrature weights must be non-negative, got minimum {w.min():.6g}")
    if not isinstance(levels.tails, (bool, np.bool_)):
        raise TypeError(f"{name}: tails must be a bool, got {type(levels.tails).__name__}")
    return levels


def levels(rule: str = "gauss_legendre", lo: float = -10.0, hi: float = 14.0, n: int = 48,
           tails: bool = True) -> Levels:
    """Build the log-SNR quadrature used by the estimators.

    rule: ``"gauss_legendre"`` (default), ``"trapezoid"``, or ``"paper"`` (the 24 DDPM timesteps
    of the paper integrated with the trapezoid rule in log-SNR, no tails; ``lo/hi/n`` ignored).
    """
    if rule == "paper":
        a = np.sort(paper_levels())
        w = np.zeros_like(a)
        d = np.diff(a)
        w[:-1] += 0.5 * d
        w[1:] += 0.5 * d
        return Levels(a, w, float(a[0]), float(a[-1]), False)
    if rule == "gauss_legendre":
        a, w = gauss_legendre(lo, hi, n)
    elif rule == "trapezoid":
        a, w = trapezoid(lo, hi, n)
    else:
        raise ValueError(f"rule: expected 'gauss_legendre', 'trapezoid' or 'paper', got {rule!r}")
    return Levels(a, w, float(lo), float(hi), bool(tails))


#: log-SNR range ``(lo, hi)`` of :func:`network_levels` (quadrature for trained networks).
NETWORK_LOG_SNR = (-10.0, 8.0)


def network_levels(n_levels: int) -> Levels:
    """Gauss-Legendre log-SNR levels for trained networks: ``[-10, 8]`` plus tails.

    The finest level is 8, not the analytic default 14: a briefly trained network's error at tiny
    noise inflates the orthogonal integrand (BENCHMARKS.md, "finest level" probe: on LNP digits the
    held-out MI forms 27.1 / 12.8 nats at 14 come to 13.3 / 10.4 at 8). Above 8, I_local adds the
    exact Fisher tail ``1/2 g J_ii(x)`` and the population MI extrapolates its last node.

    n_levels: number of quadrature nodes, a positive int.
    """
    if isinstance(n_levels, bool) or not isinstance(n_levels, (int, np.integer)) or n_levels < 1:
        raise ValueError(f"n_levels: expected a positive int, got {n_levels!r}")
    return levels("gauss_legendre", *NETWORK_LOG_SNR, int(n_levels))


def _logistic_cdf(a, loc, scale):
    return jax.nn.sigmoid((a - loc) / scale)


def truncated_logistic_sample(key, shape, lo: float, hi: float, loc: float = 0.0, scale: float = 1.0):
    """Log-SNR samples from a logistic(loc, scale) truncated to ``[lo, hi]`` (inverse CDF).

    Used to importance-sample noise levels for training and for unbiased Monte Carlo
    integration: ``int f da = E[f(a) / p(a)]`` with ``p`` from :func:`truncated_logistic_log_pdf`.
    """
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        raise ValueError(f"log-SNR range: expected finite lo < hi, got [{lo}, {hi}]")
    if not scale > 0:
        raise ValueError(f"scale: expected a positive logistic scale, got {scale}")
    c_lo, c_hi = _logistic_cdf(lo, loc, scale), _logistic_cdf(hi, loc, scale)
    u = jax.random.uniform(key, shape, minval=c_lo, maxval=c_hi)
    a = loc + scale * (jnp.log(u) - jnp.log1p(-u))
    return jnp.clip(a, lo, hi)


def truncated_logistic_log_pdf(a, lo: float, hi: float, loc: float = 0.0, scale: float = 1.0):
    """Log-density of :func:`truncated_logistic_sample` at ``a`` (``-inf`` outside ``[lo, hi]``)."""
    zs = (jnp.asarray(a) - loc) / scale
    log_pdf = -zs - 2.0 * jax.nn.softplus(-zs) - jnp.log(scale)
    mass = _logistic_cdf(hi, loc, scale) - _logistic_cdf(lo, loc, scale)
    inside = (a >= lo) & (a <= hi)
    return jnp.where(inside, log_pdf - jnp.log(mass), -jnp.inf)
