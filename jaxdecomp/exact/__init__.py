"""Exact grid engine: every stimulus-wise information measure for 1-D and 2-D stimuli.

A prior is a :class:`Grid` of points and masses; a population comes from
:mod:`jaxdecomp.neurons`. Each measure is a function ``measure(grid, population)``
returning one value per grid point (nats), computed in float64.

``differentiable(measure, grid, population)`` gives the same measures as a pure,
differentiable JAX function of the population's parameters (``jax.grad`` w.r.t.
tuning-curve centres, widths, amplitudes, noise SDs), with the response cells fixed.
"""

from jaxdecomp.exact._engine import (
    MEASURE_NAMES,
    DifferentiableMeasure,
    Integral,
    all_measures,
    cissi,
    differentiable,
    fisher,
    ilocal,
    kong2,
    monte_carlo_measures,
    mutual_information,
    specific_information,
    specific_surprise,
    ssi,
)
from jaxdecomp.exact._grid import (
    Grid,
    gaussian_grid,
    gaussian_grid_2d,
    grid_2d,
    grid_from_density,
    mixture_grid,
)
from jaxdecomp.exact._responses import response_cells

__all__ = [
    "MEASURE_NAMES",
    "DifferentiableMeasure",
    "Grid",
    "Integral",
    "all_measures",
    "cissi",
    "differentiable",
    "fisher",
    "gaussian_grid",
    "gaussian_grid_2d",
    "grid_2d",
    "grid_from_density",
    "ilocal",
    "kong2",
    "mixture_grid",
    "monte_carlo_measures",
    "mutual_information",
    "response_cells",
    "specific_information",
    "specific_surprise",
    "ssi",
]
