"""Reverse diffusion: draw ``x ~ p(x | x_noisy)`` with a denoiser, in the package's VP convention."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdecomp.diffusion.schedules import vp_coefficients

__all__ = ["reverse_diffusion"]


def reverse_diffusion(key, denoiser, x_noisy, log_snr, r=None, *, n_steps: int = 16, log_snr_end: float = 14.0):
    """Ancestral sampling from level ``log_snr`` down to ``log_snr_end`` in ``n_steps`` steps.

    For ONE example (batch with ``jax.vmap``). Each step draws ``z_t ~ q(z_t | z_s, x = x_hat)``,
    the exact Gaussian bridge of the VP process with the denoiser's estimate of ``x``
    plugged in, on a grid uniform in log-SNR; the last step returns the posterior mean
    at ``log_snr_end``. The draw is from ``p(x | x_noisy)`` (``r=None``) or ``p(x | x_noisy, r)``
    up to the discretisation error, which vanishes as ``n_steps`` grows. Costs
    ``n_steps + 1`` denoiser calls.

    The bridge is written with ``expm1`` so nearby levels lose no precision:
    ``z_t = (alpha_t/alpha_s) e^{a_s-a_t} z_s + alpha_t (1 - e^{a_s-a_t}) x_hat + sigma_t sqrt(1 - e^{a_s-a_t}) n``.
    """
    if int(n_steps) < 1:
        raise ValueError(f"n_steps: expected a positive number of reverse-diffusion steps, got {n_steps}")
    a0 = jnp.asarray(log_snr, dtype=jnp.result_type(float))
    grid = a0 + (log_snr_end - a0) * jnp.linspace(0.0, 1.0, int(n_steps) + 1)

    def step(z, inp):
        a_s, a_t, k = inp
        alpha_s, sigma_s = vp_coefficients(a_s)
        alpha_t, sigma_t = vp_coefficients(a_t)
        x_hat = (z - sigma_s * denoiser(z, a_s, r)) / alpha_s
        keep = jnp.exp(a_s - a_t)
        frac = -jnp.expm1(a_s - a_t)
        noise = jax.random.normal(k, z.shape, dtype=z.dtype)
        z_t = (alpha_t / alpha_s) * keep * z + alpha_t * frac * x_hat + sigma_t * jnp.sqrt(frac) * noise
        return z_t, None

    keys = jax.random.split(key, int(n_steps))
    z_end, _ = jax.lax.scan(step, jnp.asarray(x_noisy), (grid[:-1], grid[1:], keys))
    alpha_e, sigma_e = vp_coefficients(grid[-1])
    return (z_end - sigma_e * denoiser(z_end, grid[-1], r)) / alpha_e
