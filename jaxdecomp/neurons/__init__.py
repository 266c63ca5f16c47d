"""Neuron models ``p(r | x)``: rate models (tuning curves) and noise models.

A population is a pytree subclassing the public abstract :class:`Encoder`, with ``rate``,
``sample``, ``log_prob``, ``fisher_diag`` and ``fisher`` for one stimulus; see
:mod:`jaxdecomp.neurons._populations`. Write your own encoder by subclassing :class:`Encoder`.

Image encoders (one image ``x: (H, W)`` in [-1, 1]; private modules ``_geometry``,
``_lnp``, ``_gabor``, ``_retina``, ``_registry``):
``lnp_population`` (the paper's 7x7 Gaussian-RF LNP grid), ``gabor_population``
(simple / energy-model complex cells), ``cnn_retina_population`` (conv core +
mask x feature readout; ``save_retina_params`` / ``load_retina_params``),
``linear_gaussian_population`` (exact Gaussian-mixture oracles) and the registry
``image_population(name, shape, **kw)`` over ``IMAGE_MODELS``.

Fitting to recordings (private module ``_fit``, ``docs/recordings.md``): ``fit_encoder``
(alias ``fit``; LNP/GLM or CNN-retina architecture, Poisson or Gaussian, split by stimulus,
early stopping), ``encoder_metrics`` (bits/spike, correlation, FEV), ``save_encoder`` /
``load_encoder`` / ``encoder_info`` (fitted-encoder folders).
"""

from jaxdecomp._interfaces import Encoder
from jaxdecomp.neurons._gabor import GaborRates, gabor_filters, gabor_population
from jaxdecomp.neurons._geometry import gaussian_rf_weights, lattice_centers, pixel_coordinates, resolution_scale
from jaxdecomp.neurons._lnp import LinearImageRates, LNPRates, linear_gaussian_population, lnp_population
from jaxdecomp.neurons._registry import IMAGE_MODELS, image_population
from jaxdecomp.neurons._retina import CNNRetina, cnn_retina_population, load_retina_params, save_retina_params
from jaxdecomp.neurons._populations import (
    GaussianPopulation,
    JointPopulation,
    PoissonPopulation,
    TransformedPopulation,
    abs_response,
    gaussian_population,
    joint_population,
    poisson_population,
    transform_response,
)
from jaxdecomp.neurons._rates import (
    GaussianBumps,
    Linear,
    Sigmoids,
    VonMises,
    gaussian_bumps,
    linear,
    sigmoids,
    von_mises,
)
from jaxdecomp.neurons._simulate import simulate_responses
from jaxdecomp.neurons._fit import (
    FitResult,
    GLMRates,
    check_recordings,
    encoder_info,
    encoder_metrics,
    fit_encoder,
    load_encoder,
    save_encoder,
)

fit = fit_encoder  #: alias of :func:`fit_encoder`

__all__ = [
    "Encoder",
    "IMAGE_MODELS",
    "CNNRetina",
    "GaborRates",
    "LinearImageRates",
    "LNPRates",
    "cnn_retina_population",
    "gabor_filters",
    "gabor_population",
    "gaussian_rf_weights",
    "image_population",
    "lattice_centers",
    "linear_gaussian_population",
    "lnp_population",
    "load_retina_params",
    "pixel_coordinates",
    "resolution_scale",
    "save_retina_params",
    "GaussianBumps",
    "GaussianPopulation",
    "JointPopulation",
    "Linear",
    "PoissonPopulation",
    "Sigmoids",
    "TransformedPopulation",
    "VonMises",
    "abs_response",
    "gaussian_bumps",
    "gaussian_population",
    "joint_population",
    "linear",
    "poisson_population",
    "sigmoids",
    "simulate_responses",
    "transform_response",
    "von_mises",
    "FitResult",
    "GLMRates",
    "check_recordings",
    "encoder_info",
    "encoder_metrics",
    "fit",
    "fit_encoder",
    "load_encoder",
    "save_encoder",
]
