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
    specific_surprise,
)
from jaxdecomp.estimate._fit import estimate
from jaxdecomp.estimate._maps import pixel_maps

__all__ = [
    "RESPONSE_SAMPLERS",
    "Estimate",
    "estimate",
    "MapResult",
    "ilocal",
    "kong2",
    "mutual_information",
    "pixel_maps",
    "specific_surprise",
]
