"""The CNN retina image encoder (the paper's Fig. 7 model) and its parameter files (private).

:func:`cnn_retina_population` (:class:`CNNRetina`, Poisson): a two-layer convolutional
core and a spatial-mask x feature readout, tiled as a mosaic; randomly initialised
(and calibrated on smooth probe images) or loaded with :func:`load_retina_params`
(files written by :func:`save_retina_params`, ``np.savez``).

Input checks (every model): ``x`` of the wrong shape (concrete or traced) raises a
``ValueError`` naming ``x``; a concrete ``x`` with values outside
``[-1 - PIXEL_TOLERANCE, 1 + PIXEL_TOLERANCE]`` (or NaN) raises ``ValueError``
(:func:`jaxdecomp._checks.check_images`). Under ``jit`` / ``vmap`` / ``grad`` the
value check is skipped (values are unknown there).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdecomp._checks import check_float, check_images, check_int, check_shape
from jaxdecomp._interfaces import Array
from jaxdecomp.neurons._geometry import as_float, check_image_shape, gaussian_rf_weights, lattice_centers, pixel_coordinates
from jaxdecomp.neurons._populations import PoissonPopulation, poisson_population

_RETINA_KEYS = (
    "conv1_kernel",
    "conv1_bias",
    "conv2_kernel",
    "conv2_bias",
    "mask",
    "features",
    "readout_bias",
    "gain",
    "centers",
)


@struct.dataclass
class CNNRetina:
    """CNN retina rates for one image (the paper's Fig. 7 model, randomly initialised or loaded).

    Core: two 'SAME' convolutions with softplus, ``x (H, W) -> (H, W, C1) -> (H, W, C2)``
    (NHWC, batch 1). Readout of neuron n: ``u_n = features[n] . sum_p mask[n, p] core(x)[p]
    + readout_bias[n]``, rate ``gain[n] * softplus(u_n)``.

    conv1_kernel: (k1, k1, 1, C1) HWIO; conv1_bias: (C1,); conv2_kernel: (k2, k2, C1, C2);
    conv2_bias: (C2,); mask: (n, H, W) non-negative, each sums to 1; features: (n, C2);
    readout_bias: (n,); gain: (n,) > 0; centers: (n, 2) mosaic positions (informational).
    Call: ``x: (H, W) in [-1, 1] -> (n,)`` positive rates. Forward-mode derivatives in ``x``
    go through a custom JVP that builds the rate Jacobian with n reverse passes, so the
    populations' ``fisher`` / ``fisher_diag`` (which use ``jax.jacfwd``) cost n VJPs, not H*W JVPs.
    """

    conv1_kernel: Array
    conv1_bias: Array
    conv2_kernel: Array
    conv2_bias: Array
    mask: Array
    features: Array
    readout_bias: Array
    gain: Array
    centers: Array
    shape: tuple = struct.field(pytree_node=False, default=(64, 64))

    @staticmethod
    def _conv(h, kernel, bias):
        out = jax.lax.conv_general_dilated(
            h, kernel, window_strides=(1, 1), padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jax.nn.softplus(out + bias[None, None, None, :])

    def _core(self, x):
        h = jnp.reshape(x, (1,) + tuple(self.shape) + (1,)).astype(self.conv1_kernel.dtype)
        h = self._conv(h, self.conv1_kernel, self.conv1_bias)
        h = self._conv(h, self.conv2_kernel, self.conv2_bias)
        return h[0]

    def _drive(self, x):
        pooled = jnp.einsum("nhw,hwc->nc", self.mask, self._core(x))
        return jnp.sum(self.features * pooled, axis=1) + self.readout_bias

    def _forward(self, x):
        return self.gain * jax.nn.softplus(self._drive(x))

    def core(self, x):
        """Convolutional features of one image (H, W), shape (H, W, C2)."""
        return self._core(check_images(x, self.shape, batched=False))

    def drive(self, x):
        """Readout drive ``u`` before the output softplus, shape (n,)."""
        return self._drive(check_images(x, self.shape, batched=False))

    def __call__(self, x):
        return _retina_rates(self, check_images(x, self.shape, batched=False))

    def params(self) -> dict:
        """The parameters as a dict of numpy arrays (the format of :func:`save_retina_params`)."""
        return {k: np.asarray(getattr(self, k)) for k in _RETINA_KEYS}

    @classmethod
    def from_params(cls, params: dict, shape=None) -> "CNNRetina":
        """Build from a dict of arrays (validated; ``shape`` (H, W) checked against the mask)."""
        p = _validate_retina_params(params, shape)
        return cls(**{k: as_float(v) for k, v in p.items()}, shape=tuple(p["mask"].shape[1:]))


@jax.custom_jvp
def _retina_rates(model: CNNRetina, x):
    """``model._forward(x)`` with a JVP rule that builds d rates / d x by reverse mode.

    ``fisher`` / ``fisher_diag`` take the rate Jacobian with ``jax.jacfwd``, i.e. one
    tangent per pixel pushed through the conv core (H*W passes). Here the Jacobian
    (n, H, W) is computed once from the primal by n VJPs and every x-tangent costs a
    matrix-vector product; parameter tangents use an ordinary JVP. The rule is linear
    in the tangents, so reverse mode and higher derivatives work as usual.
    """
    return model._forward(x)


@_retina_rates.defjvp
def _retina_rates_jvp(primals, tangents):
    model, x = primals
    dmodel, dx = tangents
    f, pullback = jax.vjp(model._forward, x)
    n = f.shape[0]
    (jac,) = jax.vmap(pullback)(jnp.eye(n, dtype=f.dtype))  # (n, H, W)
    df_x = jnp.reshape(jac, (n, -1)) @ jnp.reshape(dx, (-1,)).astype(f.dtype)
    _, df_model = jax.jvp(lambda m: m._forward(x), (model,), (dmodel,))
    return f, df_x + df_model


def _validate_retina_params(params, shape=None) -> dict:
    """Check keys and shapes of CNN retina parameters; return a dict of float numpy arrays."""
    if not isinstance(params, dict) and not hasattr(params, "keys"):
        raise TypeError(f"params: expected a dict of arrays, got {type(params).__name__}")
    keys = set(params.keys())
    missing = [k for k in _RETINA_KEYS if k not in keys]
    extra = sorted(keys - set(_RETINA_KEYS))
    if missing or extra:
        raise ValueError(
            f"params: expected exactly the keys {list(_RETINA_KEYS)}; missing {missing}, unexpected {extra}"
        )
    p = {}
    for k in _RETINA_KEYS:
        try:
            p[k] = np.asarray(params[k], dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"params['{k}']: expected a numeric array") from None
        if not np.all(np.isfinite(p[k])):
            raise ValueError(f"params['{k}']: contains NaN or infinite values")

    def need(k, expected, what):
        got = p[k].shape
        ok = len(got) == len(expected) and all(e is None or e == g for e, g in zip(expected, got))
        if not ok:
            exp = "(" + ", ".join("?" if e is None else str(e) for e in expected) + ")"
            raise ValueError(f"params['{k}']: expected shape {exp} ({what}), got {got}")

    k1 = p["conv1_kernel"]
    need("conv1_kernel", (None, None, 1, None), "k1, k1, 1, C1")
    if k1.shape[0] != k1.shape[1]:
        raise ValueError(f"params['conv1_kernel']: expected a square kernel (k1, k1, 1, C1), got {k1.shape}")
    C1 = k1.shape[3]
    need("conv1_bias", (C1,), "C1")
    need("conv2_kernel", (None, None, C1, None), "k2, k2, C1, C2")
    k2 = p["conv2_kernel"]
    if k2.shape[0] != k2.shape[1]:
        raise ValueError(f"params['conv2_kernel']: expected a square kernel (k2, k2, C1, C2), got {k2.shape}")
    C2 = k2.shape[3]
    need("conv2_bias", (C2,), "C2")
    need("mask", (None, None, None), "n, H, W")
    n = p["mask"].shape[0]
    if shape is not None:
        H, W = check_image_shape(shape)
        need("mask", (n, H, W), f"n, H, W for shape={(H, W)}")
    need("features", (n, C2), "n, C2")
    need("readout_bias", (n,), "n")
    need("gain", (n,), "n")
    need("centers", (n, 2), "n, 2")
    if np.any(p["mask"] < 0):
        raise ValueError("params['mask']: must be non-negative")
    if np.any(p["gain"] <= 0):
        raise ValueError("params['gain']: must be positive")
    return p


def _smooth_probe_images(key, shape, count: int, blur: float = 0.1) -> jnp.ndarray:
    """``count`` random smooth images (count, H, W) in [-1, 1] (blurred white noise)."""
    pix = pixel_coordinates(shape)
    rows, cols = pix[:, 0, 0], pix[0, :, 1]
    Br = np.exp(-0.5 * (rows[:, None] - rows[None, :]) ** 2 / blur**2)
    Bc = np.exp(-0.5 * (cols[:, None] - cols[None, :]) ** 2 / blur**2)
    z = jax.random.normal(key, (count,) + tuple(shape))
    img = jnp.einsum("ij,bjk,lk->bil", as_float(Br), z, as_float(Bc))
    return img / jnp.max(jnp.abs(img), axis=(1, 2), keepdims=True)


_DRIVE_SD = 1.5


def _init_retina(key, shape, grid, channels, kernel, mask_sigma, extent, mean_rate) -> CNNRetina:
    C1, C2 = channels
    k1, k2 = kernel
    keys = jax.random.split(key, 4)
    # He-normal: variance 2 / fan_in
    w1 = jax.random.normal(keys[0], (k1, k1, 1, C1)) * np.sqrt(2.0 / (k1 * k1))
    w2 = jax.random.normal(keys[1], (k2, k2, C1, C2)) * np.sqrt(2.0 / (k2 * k2 * C1))
    centers = lattice_centers(grid, extent)
    m = gaussian_rf_weights(shape, centers, mask_sigma, scale=False)
    m = m / m.sum(axis=1, keepdims=True)
    n = centers.shape[0]
    # positive-ish feature weights: |N(0, 1)| * sqrt(2 / C2)
    feats = jnp.abs(jax.random.normal(keys[2], (n, C2))) * np.sqrt(2.0 / C2)
    model = CNNRetina(
        conv1_kernel=as_float(w1),
        conv1_bias=jnp.zeros((C1,), jnp.result_type(float)),
        conv2_kernel=as_float(w2),
        conv2_bias=jnp.zeros((C2,), jnp.result_type(float)),
        mask=as_float(m.reshape((n,) + tuple(shape))),
        features=as_float(feats),
        readout_bias=jnp.zeros((n,), jnp.result_type(float)),
        gain=jnp.ones((n,), jnp.result_type(float)),
        centers=as_float(centers),
        shape=tuple(shape),
    )
    probes = _smooth_probe_images(keys[3], shape, 16)
    return _calibrate_retina(model, probes, jnp.float32(mean_rate))


@jax.jit
def _calibrate_retina(model: CNNRetina, probes, mean_rate):
    """Calibrate the readout on probe images (count, H, W): scale each neuron's (positive)
    feature weights so its drive has SD ``_DRIVE_SD`` over the probes, centre the drive with
    the readout bias, and set the gain so its mean rate over the probes is ``mean_rate``."""
    u = jax.vmap(model._drive)(probes)  # (count, n)
    model = model.replace(features=model.features * (_DRIVE_SD / jnp.maximum(jnp.std(u, axis=0), 1e-6))[:, None])
    u = jax.vmap(model._drive)(probes)
    bias = -jnp.mean(u, axis=0)
    mean_sp = jnp.mean(jax.nn.softplus(u + bias[None, :]), axis=0)
    return model.replace(readout_bias=bias, gain=mean_rate / mean_sp)


def cnn_retina_population(
    shape=(64, 64),
    *,
    key=None,
    params=None,
    grid: int = 7,
    channels=(8, 8),
    kernel=(9, 5),
    mask_sigma: float = 0.12,
    extent: float = 0.7,
    mean_rate: float = 3.0,
) -> PoissonPopulation:
    """A CNN retina (:class:`CNNRetina`) tiled as a ``grid x grid`` mosaic, Poisson spike counts.

    Either initialise from ``key`` (He-normal conv kernels, zero conv biases, positive
    feature weights ``|N(0,1)|``, Gaussian spatial masks of SD ``mask_sigma`` at lattice
    positions over [-extent, extent]^2 normalised to sum 1; then, on 16 random smooth probe
    images drawn from ``key``, each neuron's feature weights are rescaled so its drive has
    SD 1.5, its readout bias centres the drive at 0 and its gain sets its mean rate to
    ``mean_rate`` spikes), or load ``params`` (a dict as from :func:`load_retina_params`
    or ``CNNRetina.params()``; then ``grid``, ``channels``, ``kernel``, ``mask_sigma``,
    ``extent`` and ``mean_rate`` are ignored and ``shape`` must match the mask).
    ``key=None`` and ``params=None`` uses ``jax.random.PRNGKey(0)`` (a fixed retina).
    Kernel sizes are in pixels (the core is not resolution-invariant; the masks are).
    """
    shape = check_image_shape(shape)
    if params is not None:
        if key is not None:
            raise ValueError("key: give either key (random init) or params (loaded weights), not both")
        return poisson_population(CNNRetina.from_params(params, shape))
    grid = check_int("grid", grid, minimum=1)
    C1, C2 = check_shape(channels, ndim=2, minimum=1, name="channels")
    k1, k2 = check_shape(kernel, ndim=2, minimum=1, name="kernel")
    mask_sigma = check_float("mask_sigma", mask_sigma, positive=True)
    mean_rate = check_float("mean_rate", mean_rate, positive=True)
    if key is None:
        key = jax.random.PRNGKey(0)
    model = _init_retina(key, shape, grid, (C1, C2), (k1, k2), mask_sigma, extent, mean_rate)
    return poisson_population(model)


def _retina_of(rates) -> CNNRetina:
    if isinstance(rates, CNNRetina):
        return rates
    model = getattr(rates, "rates", None)  # a population: its rate model is ``pop.rates``
    model = getattr(model, "model", model)  # (older populations wrapped it: ``pop.rates.model``)
    if isinstance(model, CNNRetina):
        return model
    raise TypeError(f"rates: expected a CNNRetina or a population built on one, got {type(rates).__name__}")


def save_retina_params(path, rates) -> str:
    """Save a :class:`CNNRetina` (or a population built on one) with ``np.savez``; returns the path.

    ``np.savez`` appends ``.npz`` when ``path`` lacks it; the returned path includes it.
    """
    model = _retina_of(rates)
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path = path + ".npz"
    np.savez(path, **model.params())
    return path


def load_retina_params(path, shape=None) -> dict:
    """Load CNN retina parameters saved by :func:`save_retina_params`: a validated dict of arrays.

    ``shape`` (H, W), when given, is checked against the stored masks.
    """
    path = os.fspath(path)
    if not os.path.exists(path) and os.path.exists(path + ".npz"):
        path = path + ".npz"
    if not os.path.exists(path):
        raise ValueError(f"path: no such file {path!r}")
    with np.load(path) as data:
        params = {k: np.array(data[k]) for k in data.files}
    return _validate_retina_params(params, shape)
