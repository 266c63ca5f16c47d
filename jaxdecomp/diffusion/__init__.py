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
from jaxdecomp.diffusion.checkpoint import load_model, model_info, save_model
from jaxdecomp.diffusion.models import build_denoiser, denoiser_spec, model_spec
from jaxdecomp.diffusion.networks import (MLPDenoiser, PairDenoiser, UNetDenoiser, fit_gaussian_baseline,
                                         fit_response_scaling)
from jaxdecomp.diffusion.sampling import reverse_diffusion
from jaxdecomp.diffusion.zeroshot import ZeroShotDenoiser, zero_shot_denoiser
from jaxdecomp.diffusion.training import (
    TrainConfig,
    TrainResult,
    TrainState,
    batch_indices,
    ensemble_member,
    init_ensemble,
    denoising_loss,
    init_train_state,
    log_snr_center,
    make_optimizer,
    make_train_step,
    train,
    train_ensemble,
    trained_model,
)

__all__ = [
    "GaussianMixtureDenoiser",
    "GridDenoiser",
    "MLPDenoiser",
    "PairDenoiser",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "UNetDenoiser",
    "ZeroShotDenoiser",
    "batch_indices",
    "build_denoiser",
    "denoiser_spec",
    "ensemble_member",
    "fit_gaussian_baseline",
    "fit_response_scaling",
    "gaussian_denoiser",
    "gmm_denoiser",
    "grid_denoiser",
    "init_ensemble",
    "denoising_loss",
    "init_train_state",
    "load_model",
    "log_snr_center",
    "make_optimizer",
    "make_train_step",
    "model_info",
    "model_spec",
    "reverse_diffusion",
    "save_model",
    "schedules",
    "train",
    "train_ensemble",
    "trained_model",
    "zero_shot_denoiser",
]
