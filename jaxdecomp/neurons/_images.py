"""Image encoders: rate models for one image ``x: (H, W)`` with pixel values in [-1, 1].

Every model here is a rate model (a ``flax.struct`` pytree whose array fields are
differentiable parameters) called as ``rates(x) -> (n,)`` for ONE image; the
constructors plug it into :func:`~jaxdecomp.neurons.poisson_population` or
:func:`~jaxdecomp.neurons.gaussian_population`, so ``rate``, ``sample``,
``log_prob`` and the closed-form ``fisher`` / ``fisher_diag`` come from there.

Geometry shared by all models: image coordinates are the pixel centres on
``linspace(-1, 1, H) x linspace(-1, 1, W)``; a point is written ``(row, col)``
(``p[0]`` grows downwards with the row index, ``p[1]`` rightwards with the
column index). Receptive-field centres sit on a ``grid x grid`` lattice spanning
``[-extent, extent]^2``, ordered row-major (neuron ``i * grid + j``).

Input checks (every model): a concrete or traced ``x`` of the wrong shape raises
``ValueError`` naming ``x``; a concrete ``x`` with values outside
``[-1 - 1e-3, 1 + 1e-3]`` (or NaN) raises ``ValueError``. Under ``jit`` /
``vmap`` / ``grad`` the value check is skipped (values are unknown there).

Models
------
* :func:`lnp_population` (:class:`LNPRates`): the paper's 49 Gaussian-RF LNP neurons
  (Fig. 4/6), Poisson.
* :func:`gabor_population` (:class:`GaborRates`): Gabor simple cells or energy-model
  complex cells, Poisson.
* :func:`cnn_retina_population` (:class:`CNNRetina`): conv core + spatial-mask x
  feature readout (Fig. 7), Poisson; :func:`save_retina_params` /
  :func:`load_retina_params`.
* :func:`linear_gaussian_population` (:class:`LinearImageRates`): ``r = A x + sigma n``
  with the LNP receptive fields, Gaussian noise (exact Gaussian-mixture oracles).
* :func:`image_population`: the registry over :data:`IMAGE_MODELS`.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdecomp._checks import is_concrete
from jaxdecomp.neurons._populations import (
    GaussianPopulation,
    PoissonPopulation,
    gaussian_population,
    poisson_population,
)

Array = Any

#: Tolerance of the pixel-range check: values in [-1 - tol, 1 + tol] are accepted.
PIXEL_TOLERANCE = 1e-3

#: The resolution at which the paper's LNP weights are defined (w^T x is kept equal
#: at other resolutions, see :func:`gaussian_rf_weights`).
REFERENCE_SHAPE = (32, 32)

IMAGE_MODELS = ("lnp", "gabor", "energy", "cnn_retina", "linear_gaussian")


# ----------------------------------------------------------------------------- validation


def _check_shape_arg(shape) -> tuple[int, int]:
    try:
        shp = tuple(int(s) for s in shape)
        ok = len(shp) == 2 and all(int(s) == s for s in shape)
    except (TypeError, ValueError):
        ok = False
    if not ok or min(shp) < 2:
        raise ValueError(f"shape: expected (H, W) with H, W >= 2 integers, got {shape!r}")
    return shp


def _check_int(name: str, v, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {v!r}")
    return int(v)


def _check_pos(name: str, v, allow_zero: bool = False) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {v!r}") from None
    if not np.isfinite(f) or f < 0 or (f == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name}: expected a finite {kind} number, got {v!r}")
    return f


def _check_finite(name: str, v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {v!r}") from None
    if not np.isfinite(f):
        raise ValueError(f"{name}: expected a finite number, got {v!r}")
    return f


def check_image(x, shape: tuple[int, int]):
    """Validate one image for a model of ``shape`` and return it as a float array.

    x: (H, W). Shape is checked always (static); values in
    ``[-1 - PIXEL_TOLERANCE, 1 + PIXEL_TOLERANCE]`` only for concrete ``x``.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"x: expected an image of shape {tuple(shape)}, got shape {tuple(x.shape)}")
    if is_concrete(x):
        arr = np.asarray(x)
        lo, hi = -1.0 - PIXEL_TOLERANCE, 1.0 + PIXEL_TOLERANCE
        if not np.all((arr >= lo) & (arr <= hi)):
            if np.any(np.isnan(arr)):
                raise ValueError("x: contains NaN; pixel values must lie in [-1, 1]")
            raise ValueError(
                f"x: pixel values must lie in [-1, 1] (tolerance {PIXEL_TOLERANCE:g}), "
                f"got min {arr.min():.6g}, max {arr.max():.6g}"
            )
    return x


# ----------------------------------------------------------------------------- geometry


def pixel_coordinates(shape) -> np.ndarray:
    """Pixel-centre coordinates, shape (H, W, 2) as ``(row, col)``, each in linspace(-1, 1)."""
    H, W = _check_shape_arg(shape)
    rr, cc = np.meshgrid(np.linspace(-1.0, 1.0, H), np.linspace(-1.0, 1.0, W), indexing="ij")
    return np.stack([rr, cc], axis=-1)


def lattice_centers(grid: int = 7, extent: float = 0.7) -> np.ndarray:
    """Centres of a ``grid x grid`` lattice spanning [-extent, extent]^2, shape (grid**2, 2), row-major."""
    grid = _check_int("grid", grid)
    extent = _check_pos("extent", extent, allow_zero=True)
    v = np.linspace(-extent, extent, grid) if grid > 1 else np.zeros(1)
    rr, cc = np.meshgrid(v, v, indexing="ij")
    return np.stack([rr.ravel(), cc.ravel()], axis=1)


def resolution_scale(shape) -> float:
    """Pixel-area ratio ``(31 / (H - 1)) * (31 / (W - 1))`` relative to the 32x32 reference.

    With pixel centres on linspace(-1, 1, H) a pixel covers ``(2/(H-1)) * (2/(W-1))`` of
    the image, so ``sum_p w(p) x(p)`` times this factor approximates the same integral
    at every resolution (exactly 1 at 32x32).
    """
    H, W = _check_shape_arg(shape)
    (H0, W0) = REFERENCE_SHAPE
    return ((H0 - 1) / (H - 1)) * ((W0 - 1) / (W - 1))


def gaussian_rf_weights(shape, centers, rf_sigma: float = 0.1, *, scale: bool = True) -> np.ndarray:
    """Gaussian receptive fields ``w_n(p) = exp(-|p - c_n|^2 / (2 rf_sigma^2))``, shape (n, H*W).

    centers: (n, 2) in image coordinates ``(row, col)``. With ``scale=True`` the weights are
    multiplied by :func:`resolution_scale` so that ``w_n^T x`` of the same continuous image
    is the same at any resolution (the paper's numbers at 32x32).
    """
    rf_sigma = _check_pos("rf_sigma", rf_sigma)
    c = np.asarray(centers, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 2:
        raise ValueError(f"centers: expected shape (n, 2), got {c.shape}")
    p = pixel_coordinates(shape).reshape(-1, 2)
    d2 = np.sum((p[None, :, :] - c[:, None, :]) ** 2, axis=-1)
    w = np.exp(-0.5 * d2 / rf_sigma**2)
    return w * resolution_scale(shape) if scale else w


def _f32(a):
    return jnp.asarray(a, dtype=jnp.result_type(float))


# ----------------------------------------------------------------------------- LNP


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
        x = check_image(x, self.shape)
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
    Returns a PoissonPopulation; the rate model is ``pop.rates.model`` (:class:`LNPRates`).
    """
    shape = _check_shape_arg(shape)
    c = lattice_centers(grid, extent)
    W = gaussian_rf_weights(shape, c, rf_sigma)
    rates = LNPRates(
        W=_f32(W),
        gain=_f32(_check_pos("gain", gain)),
        slope=_f32(_check_finite("slope", slope)),
        offset=_f32(_check_finite("offset", offset)),
        centers=_f32(c),
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
        x = check_image(x, self.shape)
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
    mixture priors with this encoder give closed-form denoisers and posteriors (SCIENCE.md §5).
    The matrix ``A = gain * W`` is ``pop.rates.model.A``; the noise SD is ``pop.sigma``.
    """
    shape = _check_shape_arg(shape)
    gain = _check_finite("gain", gain)
    sigma = _check_pos("sigma", sigma)
    c = lattice_centers(grid, extent)
    A = gain * gaussian_rf_weights(shape, c, rf_sigma)
    rates = LinearImageRates(A=_f32(A), b=jnp.zeros((A.shape[0],), jnp.result_type(float)), centers=_f32(c), shape=shape)
    return gaussian_population(rates, sigma)


# ----------------------------------------------------------------------------- Gabor / energy


@struct.dataclass
class GaborRates:
    """Gabor simple cells or energy-model complex cells for one image.

    even, odd: (n, H*W) the cosine- and sine-phase Gabor filters (zero-mean, each with
    L1 norm ``drive``); gain, baseline: scalars (); centers: (n, 2); orientations: (n,)
    radians. ``kind="simple"``: ``f = baseline + gain * softplus(even @ x)``;
    ``kind="complex"``: ``f = baseline + gain * ((even @ x)^2 + (odd @ x)^2)``.
    Call: ``x: (H, W) in [-1, 1] -> (n,)`` non-negative.
    """

    even: Array
    odd: Array
    gain: Array
    baseline: Array
    centers: Array
    orientations: Array
    shape: tuple = struct.field(pytree_node=False, default=(32, 32))
    kind: str = struct.field(pytree_node=False, default="simple")

    def __call__(self, x):
        x = jnp.reshape(check_image(x, self.shape), (-1,))
        ue = self.even @ x
        if self.kind == "simple":
            return self.baseline + self.gain * jax.nn.softplus(ue)
        uo = self.odd @ x
        return self.baseline + self.gain * (ue**2 + uo**2)


def gabor_filters(shape, centers, orientations, *, wavelength: float = 0.25, sigma: float = 0.1, drive: float = 1.0):
    """Quadrature Gabor pairs ``(even, odd)``, each (n, H*W), for neuron ``n`` at
    ``centers[n]`` (n, 2) with carrier direction ``orientations[n]`` (radians, 0 = along the
    column axis, i.e. vertical stripes).

    ``env * cos(2 pi d.(p - c) / wavelength)`` (and sin), envelope SD ``sigma``; the envelope
    times a constant is subtracted so each filter sums to 0 (no response to uniform
    luminance), then each is scaled to L1 norm ``drive``: ``|g^T x| <= drive`` for x in
    [-1, 1], at every resolution.
    """
    wavelength = _check_pos("wavelength", wavelength)
    sigma = _check_pos("sigma", sigma)
    drive = _check_pos("drive", drive)
    c = np.asarray(centers, np.float64)
    th = np.asarray(orientations, np.float64)
    p = pixel_coordinates(shape).reshape(-1, 2)
    dp = p[None, :, :] - c[:, None, :]  # (n, P, 2)
    env = np.exp(-0.5 * np.sum(dp**2, axis=-1) / sigma**2)
    phase = 2 * np.pi * (dp[..., 0] * np.sin(th)[:, None] + dp[..., 1] * np.cos(th)[:, None]) / wavelength
    out = []
    for carrier in (np.cos(phase), np.sin(phase)):
        g = env * carrier
        g = g - env * (g.sum(1, keepdims=True) / env.sum(1, keepdims=True))
        g = drive * g / np.sum(np.abs(g), axis=1, keepdims=True)
        out.append(g)
    return out[0], out[1]


def gabor_population(
    shape=(32, 32),
    *,
    grid: int = 4,
    n_orientations: int = 4,
    wavelength: float = 0.25,
    sigma: float = 0.1,
    gain: float = 10.0,
    baseline: float = 0.5,
    kind: str = "simple",
    extent: float = 0.7,
    drive: float | None = None,
) -> PoissonPopulation:
    """Gabor simple cells (``kind="simple"``) or energy-model complex cells (``"complex"``).

    ``grid**2 * n_orientations`` Poisson neurons: positions on a ``grid x grid`` lattice over
    [-extent, extent]^2, orientations ``k pi / n_orientations``; neuron index
    ``position * n_orientations + k``. Filters: :func:`gabor_filters` (wavelength and
    envelope SD in image units, zero-mean, L1 norm ``drive``, hence resolution-invariant).

    * simple: ``f = baseline + gain * softplus(g_even^T x)``; ``drive`` defaults to 4, so a
      preferred/anti-preferred pattern drives the softplus to about +-4 (rates from
      ``baseline`` to ``baseline + 4 gain``; ``baseline + 0.69 gain`` on a blank image).
    * complex: ``f = baseline + gain * ((g_even^T x)^2 + (g_odd^T x)^2)``; ``drive`` defaults
      to 1, so the energy lies in [0, 2] (about 0.6 for a full-contrast preferred grating).
    """
    shape = _check_shape_arg(shape)
    if kind not in ("simple", "complex"):
        raise ValueError(f"kind: expected 'simple' or 'complex', got {kind!r}")
    grid = _check_int("grid", grid)
    n_orientations = _check_int("n_orientations", n_orientations)
    gain = _check_pos("gain", gain, allow_zero=True)
    baseline = _check_pos("baseline", baseline, allow_zero=True)
    if drive is None:
        drive = 4.0 if kind == "simple" else 1.0
    pos = lattice_centers(grid, extent)
    th = np.arange(n_orientations) * np.pi / n_orientations
    centers = np.repeat(pos, n_orientations, axis=0)
    orient = np.tile(th, pos.shape[0])
    even, odd = gabor_filters(shape, centers, orient, wavelength=wavelength, sigma=sigma, drive=drive)
    rates = GaborRates(
        even=_f32(even),
        odd=_f32(odd),
        gain=_f32(gain),
        baseline=_f32(baseline),
        centers=_f32(centers),
        orientations=_f32(orient),
        shape=shape,
        kind=kind,
    )
    return poisson_population(rates)


# ----------------------------------------------------------------------------- CNN retina

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
        return self._core(check_image(x, self.shape))

    def drive(self, x):
        """Readout drive ``u`` before the output softplus, shape (n,)."""
        return self._drive(check_image(x, self.shape))

    def __call__(self, x):
        return _retina_rates(self, check_image(x, self.shape))

    def params(self) -> dict:
        """The parameters as a dict of numpy arrays (the format of :func:`save_retina_params`)."""
        return {k: np.asarray(getattr(self, k)) for k in _RETINA_KEYS}

    @classmethod
    def from_params(cls, params: dict, shape=None) -> "CNNRetina":
        """Build from a dict of arrays (validated; ``shape`` (H, W) checked against the mask)."""
        p = _validate_retina_params(params, shape)
        return cls(**{k: _f32(v) for k, v in p.items()}, shape=tuple(p["mask"].shape[1:]))


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
        H, W = _check_shape_arg(shape)
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
    img = jnp.einsum("ij,bjk,lk->bil", _f32(Br), z, _f32(Bc))
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
        conv1_kernel=_f32(w1),
        conv1_bias=jnp.zeros((C1,), jnp.result_type(float)),
        conv2_kernel=_f32(w2),
        conv2_bias=jnp.zeros((C2,), jnp.result_type(float)),
        mask=_f32(m.reshape((n,) + tuple(shape))),
        features=_f32(feats),
        readout_bias=jnp.zeros((n,), jnp.result_type(float)),
        gain=jnp.ones((n,), jnp.result_type(float)),
        centers=_f32(centers),
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
    shape = _check_shape_arg(shape)
    if params is not None:
        if key is not None:
            raise ValueError("key: give either key (random init) or params (loaded weights), not both")
        return poisson_population(CNNRetina.from_params(params, shape))
    grid = _check_int("grid", grid)
    try:
        C1, C2 = (int(c) for c in channels)
        ok = C1 >= 1 and C2 >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"channels: expected two positive integers (C1, C2), got {channels!r}")
    try:
        k1, k2 = (int(k) for k in kernel)
        ok = k1 >= 1 and k2 >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"kernel: expected two positive integers (k1, k2), got {kernel!r}")
    mask_sigma = _check_pos("mask_sigma", mask_sigma)
    mean_rate = _check_pos("mean_rate", mean_rate)
    if key is None:
        key = jax.random.PRNGKey(0)
    model = _init_retina(key, shape, grid, (C1, C2), (k1, k2), mask_sigma, extent, mean_rate)
    return poisson_population(model)


def _retina_of(rates) -> CNNRetina:
    if isinstance(rates, CNNRetina):
        return rates
    model = getattr(getattr(rates, "rates", None), "model", None)
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


# ----------------------------------------------------------------------------- registry


def image_population(name: str, shape=(32, 32), **kw):
    """Build an image population by name (one of :data:`IMAGE_MODELS`) for images (H, W).

    ``"lnp"``: :func:`lnp_population`; ``"gabor"``: :func:`gabor_population` (simple cells
    unless ``kind`` is given); ``"energy"``: :func:`gabor_population` with
    ``kind="complex"``; ``"cnn_retina"``: :func:`cnn_retina_population`;
    ``"linear_gaussian"``: :func:`linear_gaussian_population`. Keywords pass through.
    """
    if name == "lnp":
        return lnp_population(shape, **kw)
    if name == "gabor":
        return gabor_population(shape, **kw)
    if name == "energy":
        if kw.get("kind", "complex") != "complex":
            raise ValueError(f"kind: the 'energy' model is kind='complex', got {kw['kind']!r}")
        kw = {**kw, "kind": "complex"}
        return gabor_population(shape, **kw)
    if name == "cnn_retina":
        return cnn_retina_population(shape, **kw)
    if name == "linear_gaussian":
        return linear_gaussian_population(shape, **kw)
    raise ValueError(f"name: unknown image model {name!r}; choose one of {', '.join(IMAGE_MODELS)}")
