"""Pixel maps of a batch of images: I_local beside the population's exact Fisher diagonal."""

from __future__ import annotations

import jax
import numpy as np

from jaxdecomp.diffusion.schedules import network_levels
from jaxdecomp.estimate._estimators import ilocal

__all__ = ["pixel_maps"]


def pixel_maps(key, denoiser, population, x, *, n_levels=32, n_samples=16, n_steps=16,
               response_sampler="posterior_sample"):
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

    Returns a dict: ``ilocal (B, H, W)`` nats per pixel, ``ilocal_total (B,)`` = I_local(x),
    ``ilocal_se (B,)`` its Monte Carlo standard error, ``fisher (B, H, W)`` the Fisher
    diagonal ``J_ii(x)`` of the population.
    """
    if not callable(getattr(population, "fisher_diag", None)):
        raise TypeError(f"population: expected an encoder with fisher_diag(x), got {type(population).__name__}")
    lv = network_levels(n_levels)
    res = ilocal(key, denoiser, population, x, levels=lv, n_samples=n_samples, n_steps=n_steps,
                 response_sampler=response_sampler, chunk=2048)
    fisher = jax.jit(jax.vmap(population.fisher_diag))(x)
    return dict(ilocal=np.asarray(res.map), ilocal_total=np.asarray(res.total), ilocal_se=np.asarray(res.stderr),
                fisher=np.asarray(fisher))
