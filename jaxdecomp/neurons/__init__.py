"""Neuron models ``p(r | x)``: rate models (tuning curves) and noise models.

A population is a pytree with ``rate``, ``sample``, ``log_prob`` and ``fisher``
for one stimulus; see :mod:`jaxdecomp.neurons._populations`.

Image encoders (one image ``x: (H, W)`` in [-1, 1]; see :mod:`jaxdecomp.neurons._images`):
``lnp_population`` (the paper's 7x7 Gaussian-RF LNP grid), ``gabor_population``
(simple / energy-model complex cells), ``cnn_retina_population`` (conv core +
mask x feature readout; ``save_retina_params`` / ``load_retina_params``),
``linear_gaussian_population`` (exact Gaussian-mixture oracles) and the registry
``image_population(name, shape, **kw)`` over ``IMAGE_MODELS``.
"""

from jaxdecomp.neurons._images import (
    IMAGE_MODELS,
    CNNRetina,
    GaborRates,
    LinearImageRates,
    LNPRates,
    cnn_retina_population,
    gabor_filters,
    gabor_population,
    gaussian_rf_weights,
    image_population,
    lattice_centers,
    linear_gaussian_population,
    lnp_population,
    load_retina_params,
    pixel_coordinates,
    resolution_scale,
    save_retina_params,
)
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

__all__ = [
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
    "transform_response",
    "von_mises",
]
