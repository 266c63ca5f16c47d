"""Diffusion machinery: noise schedules, the denoiser contract, exact and learned denoisers.

The denoiser contract: ``eps_hat = denoiser(x_noisy, log_snr, r)`` for ONE example, with
``x_noisy = alpha x + sigma eps`` variance-preserving (:mod:`~jaxdecomp.diffusion.schedules`),
``log_snr = -log g`` and ``r`` a response ``(n,)`` or ``None`` (unconditional). Analytic
oracles (:func:`gmm_denoiser`, :func:`gaussian_denoiser`, :func:`grid_denoiser`) and trained Flax NNX networks
both satisfy it.
"""

from jaxdecomp.diffusion import schedules
from jaxdecomp.diffusion.analytic import (
    GaussianMixtureDenoiser,
    GridDenoiser,
    gaussian_denoiser,
    gmm_denoiser,
    grid_denoiser,
)
from jaxdecomp.diffusion.checkpoint import load_model, save_model
from jaxdecomp.diffusion.networks import MLPDenoiser, PairDenoiser, UNetDenoiser, fit_response_scaling
from jaxdecomp.diffusion.sampling import reverse_diffusion
from jaxdecomp.diffusion.training import TrainConfig, TrainResult, train

__all__ = [
    "GaussianMixtureDenoiser",
    "GridDenoiser",
    "MLPDenoiser",
    "PairDenoiser",
    "TrainConfig",
    "TrainResult",
    "UNetDenoiser",
    "fit_response_scaling",
    "gaussian_denoiser",
    "gmm_denoiser",
    "grid_denoiser",
    "load_model",
    "reverse_diffusion",
    "save_model",
    "schedules",
    "train",
]
