"""Neuron models ``p(r | x)``: rate models (tuning curves) and noise models.

A population is a pytree with ``rate``, ``sample``, ``log_prob`` and ``fisher``
for one stimulus; see :mod:`jaxdecomp.neurons._populations`.
"""

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
