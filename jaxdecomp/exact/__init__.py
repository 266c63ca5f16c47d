"""Exact grid engine: every stimulus-wise information measure for 1-D and 2-D stimuli.

A prior is a :class:`Grid` of points and masses; a population comes from
:mod:`jaxdecomp.neurons` (any :class:`~jaxdecomp.neurons.Encoder` whose response cells are
registered: :func:`register_cells`, e.g. :func:`finite_support` for finitely many
responses). Each measure is a function ``measure(grid, population)`` returning one value
per grid point (nats), computed in float64 and returned as numpy float64 (not traceable:
under ``jax.jit`` / ``jax.grad`` it raises a TypeError).

The engine checks its own accuracy: I_local and Kong-2 refuse (:class:`GridResolutionError`,
naming the ``m`` that would do) when the grid spacing is not well below the posterior SD, and
when their prior mean is off the grid's I(R;X) by more than ``COMPLETENESS_RTOL``
(``check=False``: a warning instead). Grid points must be equally spaced (a full tensor grid in 2-D).

``differentiable(measure, grid, population)`` gives the same measures as a pure,
differentiable JAX function of the population's parameters (``jax.grad`` w.r.t.
tuning-curve centres, widths, amplitudes, noise SDs), with the response cells fixed.
"""

from jaxdecomp._interfaces import Encoder
from jaxdecomp.exact._differentiable import DifferentiableMeasure, differentiable
from jaxdecomp.exact._engine import (
    COMPLETENESS_RTOL,
    MEASURE_NAMES,
    RESOLUTION_LIMIT,
    GridResolutionError,
    Integral,
    all_measures,
    cissi,
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
from jaxdecomp.exact._responses import CellOptions, Cells, finite_support, register_cells, response_cells
from jaxdecomp.exact._tensor import ilocal_tensor

__all__ = [
    "COMPLETENESS_RTOL",
    "MEASURE_NAMES",
    "RESOLUTION_LIMIT",
    "GridResolutionError",
    "CellOptions",
    "Cells",
    "DifferentiableMeasure",
    "Encoder",
    "Grid",
    "Integral",
    "all_measures",
    "cissi",
    "differentiable",
    "finite_support",
    "fisher",
    "gaussian_grid",
    "gaussian_grid_2d",
    "grid_2d",
    "grid_from_density",
    "ilocal",
    "ilocal_tensor",
    "kong2",
    "mixture_grid",
    "monte_carlo_measures",
    "mutual_information",
    "register_cells",
    "response_cells",
    "specific_information",
    "specific_surprise",
    "ssi",
]
