"""Information from denoisers: I_local pixel maps, Kong-2, specific surprise and population MI.

Every estimator takes ``(key, denoiser, ...)`` where the denoiser satisfies the contract
``eps_hat = denoiser(x_noisy, log_snr, r)`` of :mod:`jaxdecomp.diffusion`.
"""

from jaxdecomp.estimate._estimators import (
    RESPONSE_SAMPLERS,
    Estimate,
    MapResult,
    ilocal,
    kong2,
    mutual_information,
    small_noise_tail,
    specific_surprise,
)
from jaxdecomp.estimate._ensemble import EnsembleMapResult, over_ensemble
from jaxdecomp.estimate._dataset import StoreLocked, StoreMismatch, decompose_dataset, load_dataset_maps
from jaxdecomp.estimate._fit import estimate
from jaxdecomp.estimate._maps import map_correlations, pixel_maps
from jaxdecomp.estimate._tensor import TensorResult, ilocal_tensor

__all__ = [
    "RESPONSE_SAMPLERS",
    "Estimate",
    "EnsembleMapResult",
    "StoreLocked",
    "StoreMismatch",
    "decompose_dataset",
    "load_dataset_maps",
    "estimate",
    "MapResult",
    "map_correlations",
    "ilocal",
    "ilocal_tensor",
    "TensorResult",
    "kong2",
    "mutual_information",
    "over_ensemble",
    "pixel_maps",
    "small_noise_tail",
    "specific_surprise",
]
