"""Reverse diffusion: draw ``x ~ p(x | x_noisy)`` with a denoiser, in the package's VP convention."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdecomp.diffusion.schedules import vp_coefficients

__all__ = ["GRIDS", "reverse_diffusion"]

#: step grids of :func:`reverse_diffusion`
GRIDS = ("edm", "log_snr")

#: exponent of the ``"edm"`` grid (Karras et al. 2022's rho): steps uniform in ``sigma**(1/rho)``
EDM_RHO = 7.0


def _grid(a0, a_end, n_steps: int, grid: str, dtype):
    """The ``n_steps + 1`` log-SNR levels from ``a0`` up to ``max(a_end, a0)`` (increasing)."""
    u = jnp.linspace(0.0, 1.0, int(n_steps) + 1, dtype=dtype)
    a_end = jnp.maximum(jnp.asarray(a_end, dtype), a0)
    if grid == "log_snr":
        return a0 + (a_end - a0) * u
    # VE noise SD sigma = exp(-a/2); uniform in sigma^(1/rho), from sigma(a0) down to sigma(a_end)
    p_hi, p_lo = jnp.exp(-a0 / (2.0 * EDM_RHO)), jnp.exp(-a_end / (2.0 * EDM_RHO))
    g = -2.0 * EDM_RHO * jnp.log(p_hi + u * (p_lo - p_hi))
    return g.at[0].set(a0).at[-1].set(a_end)


def reverse_diffusion(key, denoiser, x_noisy, log_snr, r=None, *, n_steps: int = 32, log_snr_end: float = 14.0,
                      order: int = 2, grid: str = "edm"):
    """Stochastic reverse diffusion from level ``log_snr`` down to ``log_snr_end`` in ``n_steps`` steps.

    For ONE example (batch with ``jax.vmap``); draws from ``p(x | x_noisy)`` (``r=None``) or
    ``p(x | x_noisy, r)``, up to a discretisation error that vanishes as ``n_steps`` grows.
    Costs ``n_steps + 1`` denoiser calls.

    ``grid="edm"`` (default): steps uniform in ``sigma**(1/7)`` (``sigma = exp(-log_snr/2)``, the VE
    noise SD; the schedule of Karras et al. 2022), which spends more steps at high noise, where the
    posterior mean moves fastest, than ``grid="log_snr"`` (uniform in log-SNR, the old default).
    Measured by the I_local estimator's response sampler (``experiments/sampler_steps.py``: the exact
    denoiser behind a plain function, against the exact posterior sampler, 12 stimuli, common random
    numbers, SE about 1.2%), I_local relative to the exact sampler, log_snr / edm grid:

    ========================================  ===============  ===============  ===============
    task                                       8 steps          16 steps         32 steps
    ========================================  ===============  ===============  ===============
    8-D, 4-component mixture, 4 neurons        -24.9% / +0.0%   -8.1% / -0.6%    -2.2% / +0.8%
    16-D, 6-component mixture, 6 neurons       -25.3% / +1.0%   -8.1% / -1.0%    -3.1% / -0.5%
    ========================================  ===============  ===============  ===============

    A start level above ``log_snr_end`` runs no further than the start (the last step is empty).

    Each step is the exact Gaussian bridge of the VP process ``q(z_t | z_s, x)`` with the
    denoiser's estimate ``x_hat`` of ``x`` plugged in (written with ``expm1`` so nearby
    levels lose no precision; ``f = 1 - e^{a_s - a_t}``)::

        z_t = (alpha_t/alpha_s) e^{a_s-a_t} z_s + alpha_t f x_hat + sigma_t sqrt(f) n

    ``order=1`` uses ``x_hat`` of the current level (the DDPM ancestral sampler, error O(1/K));
    ``order=2`` (default) extrapolates ``x_hat`` linearly from the previous level, a second-order
    multistep correction (an SDE variant of DPM-Solver++(2M)). Measured on a 1-D bimodal
    posterior (``tests/estimate/test_estimate.py``): the posterior SD is 6% low with ``order=1`` and
    1% low with ``order=2`` at 64 steps; at 16 steps (order 2) 2% low with the ``"edm"`` grid, 7%
    with ``"log_snr"``.
    The last step returns the posterior mean at ``log_snr_end``.
    """
    if int(n_steps) < 1:
        raise ValueError(f"n_steps: expected a positive number of reverse-diffusion steps, got {n_steps}")
    if order not in (1, 2):
        raise ValueError(f"order: expected 1 or 2, got {order}")
    if grid not in GRIDS:
        raise ValueError(f"grid: expected one of {GRIDS}, got {grid!r}")
    z0 = jnp.asarray(x_noisy)
    a0 = jnp.asarray(log_snr, dtype=z0.dtype)
    grid = _grid(a0, log_snr_end, int(n_steps), grid, z0.dtype)

    def step(carry, inp):
        z, x_prev, h_prev = carry
        a_s, a_t, k, i = inp
        alpha_s, sigma_s = vp_coefficients(a_s)
        alpha_t, sigma_t = vp_coefficients(a_t)
        x_hat = (z - sigma_s * denoiser(z, a_s, r)) / alpha_s
        h = a_t - a_s
        x_use = x_hat
        if order == 2:
            ok = (i > 0) & (h_prev > 0)
            ratio = h / jnp.where(ok, h_prev, 1.0)
            x_use = jnp.where(ok, x_hat + 0.5 * ratio * (x_hat - x_prev), x_hat)
        frac = -jnp.expm1(-h)
        noise = jax.random.normal(k, z.shape, dtype=z.dtype)
        z_t = (alpha_t / alpha_s) * jnp.exp(-h) * z + alpha_t * frac * x_use + sigma_t * jnp.sqrt(frac) * noise
        return (z_t, x_hat, h), None

    keys = jax.random.split(key, int(n_steps))
    init = (z0, jnp.zeros_like(z0), jnp.ones((), z0.dtype))
    (z_end, _, _), _ = jax.lax.scan(step, init, (grid[:-1], grid[1:], keys, jnp.arange(int(n_steps))))
    alpha_e, sigma_e = vp_coefficients(grid[-1])
    return (z_end - sigma_e * denoiser(z_end, grid[-1], r)) / alpha_e
