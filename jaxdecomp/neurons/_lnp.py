"""LNP and linear-Gaussian image encoders for one image ``x: (H, W)`` in [-1, 1] (private).

* :func:`lnp_population` (:class:`LNPRates`): the paper's 49 Gaussian-RF LNP neurons
  (Fig. 4/6), Poisson.
* :func:`linear_gaussian_population` (:class:`LinearImageRates`): ``r = A x + sigma n``
  with the LNP receptive fields, Gaussian noise (exact Gaussian-mixture oracles).

Geometry: :mod:`jaxdecomp.neurons._geometry`.

Input checks (every model): ``x`` of the wrong shape (concrete or traced) raises a
``ValueError`` naming ``x``; a concrete ``x`` with values outside
``[-1 - PIXEL_TOLERANCE, 1 + PIXEL_TOLERANCE]`` (or NaN) raises ``ValueError``
(:func:`jaxdecomp._checks.check_images`). Under ``jit`` / ``vmap`` / ``grad`` the
value check is skipped (values are unknown there).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxdecomp._checks import check_float, check_images
from jaxdecomp._interfaces import Array
from jaxdecomp.neurons._geometry import as_float, check_image_shape, gaussian_rf_weights, lattice_centers
from jaxdecomp.neurons._populations import (
    GaussianPopulation,
    PoissonPopulation,
    gaussian_population,
    poisson_population,
)


@struct.dataclass
class LNPRates:
    """LNP rates ``f_n(x) = gain * sigmoid(slope * w_n^T (x + offset))`` for one image.

    W: (n, H*W) receptive fields (x flattened row-major; ``+offset`` added per pixel);
    gain, slope, offset: scalars (); centers: (n, 2) the RF centres ``(row, col)`` used
    to build ``W`` (informational: editing ``centers`` does not move ``W``).
    Call: ``x: (H, W) in [-1, 1] -> (n,)`` spikes per trial.
    """

    W: Array
    gain: Array
    slope: Array
    offset: Array
    centers: Array
    shape: tuple = struct.field(pytree_node=False, default=(32, 32))

    def drive(self, x):
        """Linear drive ``w_n^T (x + offset)``, shape (n,)."""
        x = check_images(x, self.shape, batched=False)
        return self.W @ (jnp.reshape(x, (-1,)) + self.offset)

    def __call__(self, x):
        return self.gain * jax.nn.sigmoid(self.slope * self.drive(x))


def lnp_population(
    shape=(32, 32),
    *,
    grid: int = 7,
    extent: float = 0.7,
    rf_sigma: float = 0.1,
    gain: float = 40.0,
    slope: float = 0.4,
    offset: float = 0.1,
) -> PoissonPopulation:
    """The paper's LNP population (Fig. 4/6): ``grid**2`` Poisson neurons on an image (H, W).

    ``f_n(x) = gain * sigmoid(slope * w_n^T (x + offset))`` with Gaussian receptive fields
    of width ``rf_sigma`` (image coordinates [-1, 1]^2, pixel centres) centred on a
    ``grid x grid`` lattice over [-extent, extent]^2. At other sizes than 32x32 the weights
    are multiplied by :func:`resolution_scale` (the pixel-area ratio), so the same
    continuous image gives (nearly) the same rates at any resolution.
    Returns a PoissonPopulation; the rate model is ``pop.rates`` (:class:`LNPRates`).
    """
    shape = check_image_shape(shape)
    c = lattice_centers(grid, extent)
    W = gaussian_rf_weights(shape, c, rf_sigma)
    rates = LNPRates(
        W=as_float(W),
        gain=as_float(check_float("gain", gain, positive=True)),
        slope=as_float(check_float("slope", slope)),
        offset=as_float(check_float("offset", offset)),
        centers=as_float(c),
        shape=shape,
    )
    return poisson_population(rates)


# ----------------------------------------------------------------------------- linear Gaussian


@struct.dataclass
class LinearImageRates:
    """Linear rates ``f(x) = A x + b`` for one image; A: (n, H*W), b: (n,), centers: (n, 2).

    Call: ``x: (H, W) in [-1, 1] -> (n,)``. Meant for Gaussian noise.
    """

    A: Array
    b: Array
    centers: Array
    shape: tuple = struct.field(pytree_node=False, default=(32, 32))

    @property
    def W(self):
        """Alias of ``A``, shape (n, H*W)."""
        return self.A

    def __call__(self, x):
        x = check_images(x, self.shape, batched=False)
        return self.A @ jnp.reshape(x, (-1,)) + self.b


def linear_gaussian_population(
    shape=(32, 32),
    *,
    grid: int = 7,
    extent: float = 0.7,
    rf_sigma: float = 0.1,
    gain: float = 1.0,
    sigma: float = 1.0,
) -> GaussianPopulation:
    """Linear-Gaussian encoder ``r = gain * W x + sigma * noise`` with the LNP receptive fields.

    ``W`` (n, H*W) is :func:`gaussian_rf_weights` (resolution-scaled like the LNP). Gaussian
    mixture priors with this encoder give closed-form denoisers and posteriors (``docs/ground_truth.md`` §3).
    The matrix ``A = gain * W`` is ``pop.rates.A``; the noise SD is ``pop.sigma``.
    """
    shape = check_image_shape(shape)
    gain = check_float("gain", gain)
    sigma = check_float("sigma", sigma, positive=True)
    c = lattice_centers(grid, extent)
    A = gain * gaussian_rf_weights(shape, c, rf_sigma)
    rates = LinearImageRates(A=as_float(A), b=jnp.zeros((A.shape[0],), jnp.result_type(float)), centers=as_float(c), shape=shape)
    return gaussian_population(rates, sigma)
