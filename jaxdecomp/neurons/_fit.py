"""Fitting encoders to recorded stimulus-response data, system-identification metrics, and
fitted-encoder files (private; public through :mod:`jaxdecomp.neurons`).

* :func:`fit_encoder`: maximum-likelihood fit (optax Adam, full batch or minibatches) of

  - ``model="lnp"``: a GLM / LNP population ``f_n(x) = g(w_n . x + b_n)`` with learnable
    linear filters (:class:`GLMRates`), ``g`` = ``exp``, ``softplus`` or ``gain_n * sigmoid``
    (``linear`` for Gaussian noise), smoothness (discrete Laplacian) and L1 penalties on the
    filters;
  - ``model="cnn"``: the CNN retina architecture (:class:`~jaxdecomp.neurons.CNNRetina`: two
    softplus convolutions, a spatial mask x feature readout, ``gain * softplus``), the masks
    parametrised by a softmax so they stay non-negative and sum to 1;

  with Poisson (counts) or Gaussian (fixed per-neuron SD) noise. The data are split into a
  training and a validation set BY STIMULUS (all repeats of a stimulus fall on one side), and
  the fit stops early on the validation log-likelihood (the best parameters are kept).
  The result's ``encoder`` is an ordinary :class:`~jaxdecomp.neurons.PoissonPopulation` /
  :class:`~jaxdecomp.neurons.GaussianPopulation` (the :class:`~jaxdecomp.Encoder` contract:
  ``rate``, ``sample``, ``log_prob``, ``fisher_diag``, ``fisher``), usable by every estimator.
* :func:`encoder_metrics`: held-out log-likelihood over the null model (bits/spike for
  Poisson), correlation with the trial-averaged response and the fraction of explainable
  variance explained (needs repeats), per neuron and pooled. Formulas: ``docs/recordings.md``.
* :func:`save_encoder` / :func:`load_encoder` / :func:`encoder_info`: a folder with
  ``encoder.json`` (spec, per-array and file SHA-256 digests, metadata) and ``weights.npz``;
  written atomically, never silently overwritten, refused when corrupt or mismatched.

Responses ``r``: ``(N, n)`` (one trial per stimulus) or ``(N, repeats, n)``; stimuli ``x``:
``(N, *shape)`` (images ``(N, H, W)`` must lie in [-1, 1]). Units: nats unless said otherwise.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdecomp._checks import check_bool, check_float, check_images, check_int, check_key, is_concrete
from jaxdecomp._files import swap_into_place, temporary_sibling
from jaxdecomp._interfaces import Array, Encoder
from jaxdecomp.neurons._populations import (
    GaussianPopulation,
    PoissonPopulation,
    gaussian_log_density,
    gaussian_population,
    poisson_log_pmf,
    poisson_population,
)
from jaxdecomp.neurons._retina import CNNRetina

__all__ = [
    "FIT_MODELS",
    "NONLINEARITIES",
    "FitResult",
    "GLMRates",
    "check_recordings",
    "encoder_info",
    "encoder_metrics",
    "fit_encoder",
    "load_encoder",
    "save_encoder",
]

FIT_MODELS = ("lnp", "cnn")
NOISE_MODELS = ("poisson", "gaussian")
NONLINEARITIES = ("exp", "softplus", "sigmoid", "linear")
ENCODER_FORMAT = "jaxdecomp-fitted-encoder"
ENCODER_FORMAT_VERSION = 1
_SPEC_JSON = "encoder.json"
_WEIGHTS = "weights.npz"
_LN2 = math.log(2.0)


# ----------------------------------------------------------------------------- the GLM rate model


def _nonlinear(name: str, u, gain):
    if name == "exp":
        return jnp.exp(u)
    if name == "softplus":
        return jax.nn.softplus(u)
    if name == "sigmoid":
        return gain * jax.nn.sigmoid(u)
    return u  # linear


@struct.dataclass
class GLMRates:
    """GLM / LNP rates ``f_n(x) = g(W[n] . vec(x) + b[n])`` for one stimulus ``x`` of ``shape``.

    W: (n, prod(shape)) linear filters (``x`` flattened row-major); b: (n,) biases; gain: (n,)
    output gains (used by ``"sigmoid"`` only: ``g(u) = gain * sigmoid(u)``; ones otherwise);
    nonlinearity: ``"exp"``, ``"softplus"``, ``"sigmoid"`` or ``"linear"`` (Gaussian noise only).
    Call: ``x: shape -> (n,)``. :meth:`filters` gives ``W`` as ``(n, *shape)``.
    """

    W: Array
    b: Array
    gain: Array
    shape: tuple = struct.field(pytree_node=False, default=(8, 8))
    nonlinearity: str = struct.field(pytree_node=False, default="softplus")

    def _check(self, x):
        if len(self.shape) == 2:  # an image: the package's image check (shape, and [-1, 1] when concrete)
            return check_images(x, self.shape, batched=False)
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.result_type(float))
        if tuple(x.shape) != tuple(self.shape):
            raise ValueError(f"x: expected a stimulus of shape {tuple(self.shape)}, got shape {tuple(x.shape)}")
        if is_concrete(x) and not bool(jnp.all(jnp.isfinite(x))):
            raise ValueError("x: contains NaN or infinite values")
        return x

    def drive(self, x):
        """Linear drive ``W vec(x) + b``, shape (n,)."""
        x = self._check(x)
        return self.W @ jnp.reshape(x, (-1,)).astype(self.W.dtype) + self.b

    def __call__(self, x):
        return _nonlinear(self.nonlinearity, self.drive(x), self.gain)

    def filters(self):
        """The filters as ``(n, *shape)``."""
        return jnp.reshape(self.W, (self.W.shape[0],) + tuple(self.shape))


# ----------------------------------------------------------------------------- input checks


def _as_float_array(name: str, value) -> np.ndarray:
    if isinstance(value, jax.core.Tracer):
        raise TypeError(f"{name}: expected concrete data, got a traced value (call fit_encoder outside jit)")
    try:
        arr = np.asarray(value)
    except Exception as err:  # noqa: BLE001
        raise TypeError(f"{name}: expected a numeric array, got {type(value).__name__}") from err
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.number)):
        raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    return arr


def check_recordings(x, r, *, noise: str = "poisson", x_name: str = "x", r_name: str = "r",
                     n_neurons: int | None = None):
    """Validate recorded stimuli and responses; return ``(x float32 (N, *S), r float32 (N, R, n))``.

    x: ``(N, *S)`` finite stimuli (a batch of images ``(N, H, W)`` must lie in [-1, 1]);
    r: ``(N, n)`` or ``(N, R, n)`` responses (R repeats of every stimulus); for
    ``noise="poisson"`` non-negative integer counts. ``n_neurons``: the expected ``n``.
    Errors name ``x_name`` / ``r_name`` (the CLI passes its flags).
    """
    if noise not in NOISE_MODELS:
        raise ValueError(f"noise: expected one of {NOISE_MODELS}, got {noise!r}")
    xa = _as_float_array(x_name, x)
    if xa.ndim < 2:
        raise ValueError(f"{x_name}: expected a batch of stimuli (N, ...) with at least one stimulus axis, got "
                         f"shape {xa.shape}")
    if xa.shape[0] < 1 or xa.size == 0:
        raise ValueError(f"{x_name}: expected a non-empty batch of stimuli, got shape {xa.shape}")
    n_bad = int(np.sum(~np.isfinite(xa)))
    if n_bad:
        raise ValueError(f"{x_name}: contains NaN or infinite values ({n_bad} entries)")
    if xa.ndim == 3:
        xa = check_images(xa.astype(np.float32), name=x_name)
    ra = _as_float_array(r_name, r)
    if ra.ndim not in (2, 3):
        raise ValueError(f"{r_name}: expected responses (N, n_neurons) or (N, repeats, n_neurons), got shape "
                         f"{ra.shape}")
    if ra.shape[0] != xa.shape[0]:
        hint = ""
        if ra.ndim == 2 and xa.shape[0] > 0 and ra.shape[0] % xa.shape[0] == 0:
            hint = (f"; if these are {ra.shape[0] // xa.shape[0]} repeats of every stimulus, store them as "
                    f"(N, repeats, n_neurons) = ({xa.shape[0]}, {ra.shape[0] // xa.shape[0]}, {ra.shape[1]})")
        raise ValueError(f"{r_name}: expected one response row per stimulus of {x_name} (N = {xa.shape[0]}), got "
                         f"shape {ra.shape}{hint}")
    if ra.ndim == 2:
        ra = ra[:, None, :]
    if ra.shape[1] < 1:
        raise ValueError(f"{r_name}: the repeats axis (axis 1 of (N, repeats, n_neurons)) is empty, shape {ra.shape}")
    if ra.shape[2] < 1:
        raise ValueError(f"{r_name}: expected at least one neuron (last axis), got shape {ra.shape}")
    if n_neurons is not None and ra.shape[2] != n_neurons:
        raise ValueError(f"{r_name}: expected {n_neurons} neurons on the last axis (the encoder's), got shape "
                         f"{ra.shape}")
    n_bad = int(np.sum(~np.isfinite(ra)))
    if n_bad:
        raise ValueError(f"{r_name}: contains NaN or infinite values ({n_bad} entries); drop the affected "
                         f"trials or stimuli before fitting")
    if noise == "poisson":
        if np.any(ra < 0):
            raise ValueError(f"{r_name}: Poisson responses must be non-negative spike counts, got minimum "
                             f"{float(ra.min()):.6g}")
        if not np.all(ra == np.round(ra)):
            bad = ra[ra != np.round(ra)].ravel()[0]
            raise ValueError(f"{r_name}: Poisson responses must be integer spike counts, got {float(bad):.6g} "
                             f"(use noise='gaussian' for continuous responses such as firing rates or "
                             f"calcium signals)")
    return np.asarray(xa, np.float32), np.asarray(ra, np.float32)


def _split(key, n_stim: int, val_fraction: float):
    """Permute stimulus indices with ``key``; ``(train_idx, val_idx)`` sorted."""
    n_val = int(round(val_fraction * n_stim))
    n_train = n_stim - n_val
    if n_val < 1 or n_train < 2:
        raise ValueError(
            f"x: {n_stim} stimuli are too few for a train/validation split by stimulus with val_fraction="
            f"{val_fraction:g} ({n_train} training, {n_val} validation; at least 2 training and 1 validation "
            f"stimulus are needed); record more stimuli or change val_fraction")
    perm = np.asarray(jax.random.permutation(key, n_stim))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# ----------------------------------------------------------------------------- parameters


def _inv_link(name: str, m):
    m = np.asarray(m, np.float64)
    if name == "exp":
        return np.log(np.maximum(m, 1e-3))
    if name == "softplus":
        m = np.maximum(m, 1e-3)
        return np.where(m > 20, m, np.log(np.expm1(m)))
    return m  # linear (sigmoid handled by the caller)


def _init_lnp(key, X, rbar, nonlinearity):
    n, d = rbar.shape[1], X.shape[1]
    m = rbar.mean(axis=0)
    if nonlinearity == "sigmoid":
        b = np.zeros(n)
        graw = _inv_link("softplus", 2.0 * np.maximum(m, 1e-3))  # gain = 2 mean: sigmoid(0) = 1/2
    else:
        b = _inv_link(nonlinearity, m)
        graw = np.zeros(n)
    W = 1e-3 * jax.random.normal(key, (n, d))
    return dict(W=jnp.asarray(W, jnp.float32), b=jnp.asarray(b, jnp.float32), gain_raw=jnp.asarray(graw, jnp.float32))


def _lnp_model(p, shape, nonlinearity):
    gain = jax.nn.softplus(p["gain_raw"]) if nonlinearity == "sigmoid" else jnp.ones_like(p["b"])
    return GLMRates(W=p["W"], b=p["b"], gain=gain, shape=tuple(shape), nonlinearity=nonlinearity)


def _init_cnn(key, X, rbar, shape, channels, kernel):
    from jaxdecomp.neurons._retina import _init_retina

    n = rbar.shape[1]
    base = _init_retina(key, shape, 1, channels, kernel, 0.2, 0.0, 1.0)
    feats = 0.1 * jax.random.normal(jax.random.fold_in(key, 1), (n, channels[1]))
    m = np.maximum(rbar.mean(axis=0), 1e-3)
    return dict(conv1_kernel=base.conv1_kernel, conv1_bias=base.conv1_bias, conv2_kernel=base.conv2_kernel,
                conv2_bias=base.conv2_bias, mask_logits=jnp.zeros((n,) + tuple(shape), jnp.float32),
                features=jnp.asarray(feats, jnp.float32),
                readout_bias=jnp.asarray(_inv_link("softplus", m), jnp.float32),
                gain_raw=jnp.full((n,), float(np.log(np.expm1(1.0))), jnp.float32))


def _cnn_model(p, shape):
    n = p["mask_logits"].shape[0]
    mask = jax.nn.softmax(jnp.reshape(p["mask_logits"], (n, -1)), axis=1).reshape(p["mask_logits"].shape)
    return CNNRetina(conv1_kernel=p["conv1_kernel"], conv1_bias=p["conv1_bias"], conv2_kernel=p["conv2_kernel"],
                     conv2_bias=p["conv2_bias"], mask=mask, features=p["features"], readout_bias=p["readout_bias"],
                     gain=jax.nn.softplus(p["gain_raw"]), centers=jnp.zeros((n, 2), jnp.float32), shape=tuple(shape))


def _laplacian_penalty(filters):
    """``sum_n w_n^T L w_n`` for the grid-graph Laplacian ``L``: squared differences of neighbouring
    entries along every stimulus axis. filters: (n, *S) -> (n,)."""
    tot = jnp.zeros((filters.shape[0],), filters.dtype)
    for ax in range(1, filters.ndim):
        if filters.shape[ax] > 1:
            tot = tot + jnp.sum(jnp.diff(filters, axis=ax) ** 2, axis=tuple(range(1, filters.ndim)))
    return tot


# ----------------------------------------------------------------------------- fitting


class FitResult(NamedTuple):
    """What :func:`fit_encoder` returns.

    encoder: the fitted population (:class:`~jaxdecomp.neurons.PoissonPopulation` or
    :class:`~jaxdecomp.neurons.GaussianPopulation`; its rate model is ``encoder.rates``);
    metrics: :func:`encoder_metrics` on the validation stimuli; history: ``(k, 3)`` rows of
    (step, training objective, validation log-likelihood in nats per trial); best_step: the step
    whose parameters were kept; train_idx / val_idx: the stimulus indices of the split;
    config: the settings (JSON-serialisable), stored by :func:`save_encoder`.
    """

    encoder: Encoder
    metrics: dict
    history: np.ndarray
    best_step: int
    train_idx: np.ndarray
    val_idx: np.ndarray
    config: dict


def fit_encoder(key, x, r, *, model: str = "lnp", noise: str = "poisson", nonlinearity: str | None = None,
                smooth: float = 0.0, l1: float = 0.0, val_fraction: float = 0.2, steps: int = 3000,
                learning_rate: float = 0.02, batch_size: int | None = None, eval_every: int = 25,
                patience: int = 8, channels=(8, 8), kernel=(9, 5), verbose: bool = False) -> FitResult:
    """Maximum-likelihood fit of an encoder ``p(r | x)`` to recorded stimuli and responses.

    Args:
      key: a PRNG key; split into the train/validation split, the initialisation and minibatches.
      x: stimuli ``(N, *S)``; images ``(N, H, W)`` in [-1, 1].
      r: responses ``(N, n)`` or ``(N, repeats, n)``; Poisson: non-negative integer counts.
      model: ``"lnp"`` (GLM: one linear filter + bias per neuron, then ``nonlinearity``) or
        ``"cnn"`` (the CNN retina architecture; images only; Poisson noise only).
      noise: ``"poisson"`` or ``"gaussian"`` (per-neuron SD fitted by maximum likelihood after
        the mean).
      nonlinearity: ``"exp"``, ``"softplus"`` (default for Poisson), ``"sigmoid"`` (with a
        learnable gain per neuron) or ``"linear"`` (default for Gaussian; Gaussian only).
      smooth: weight of the Laplacian smoothness penalty ``sum (neighbour differences of w_n)^2``;
      l1: weight of the L1 penalty ``sum |w_n|`` (both per neuron, added to that neuron's mean
        negative log-likelihood per trial; ``"cnn"``: on the first-layer kernels and the masks'
        logits are not penalised).
      val_fraction: fraction of the STIMULI held out for validation (all their repeats).
      steps: maximum optimisation steps (Adam, ``learning_rate``); ``batch_size``: stimuli per
        step (``None``: all training stimuli, full batch).
      eval_every, patience: the validation log-likelihood is computed every ``eval_every`` steps;
        the fit stops after ``patience`` evaluations without improvement and keeps the best.

    Returns:
      :class:`FitResult` (``.encoder`` implements the :class:`~jaxdecomp.Encoder` contract).

    Raises ``ValueError`` / ``TypeError`` naming the argument for bad input (negative or
    non-integer counts for Poisson, mismatched ``N``, NaN, too few stimuli for the split, ...).
    """
    key = check_key(key)
    if model not in FIT_MODELS:
        raise ValueError(f"model: expected one of {FIT_MODELS}, got {model!r}")
    if noise not in NOISE_MODELS:
        raise ValueError(f"noise: expected one of {NOISE_MODELS}, got {noise!r}")
    if nonlinearity is None:
        nonlinearity = "softplus" if noise == "poisson" else "linear"
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity: expected one of {NONLINEARITIES}, got {nonlinearity!r}")
    if nonlinearity == "linear" and noise == "poisson":
        raise ValueError("nonlinearity: 'linear' rates can go negative, which Poisson noise forbids; choose exp, "
                         "softplus or sigmoid (or noise='gaussian')")
    smooth = check_float("smooth", smooth, positive=True, allow_zero=True)
    l1 = check_float("l1", l1, positive=True, allow_zero=True)
    val_fraction = check_float("val_fraction", val_fraction, positive=True)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a float in (0, 1), got {val_fraction}")
    steps = check_int("steps", steps, minimum=1)
    learning_rate = check_float("learning_rate", learning_rate, positive=True)
    eval_every = check_int("eval_every", eval_every, minimum=1)
    patience = check_int("patience", patience, minimum=1)
    verbose = check_bool("verbose", verbose)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    x, r = check_recordings(x, r, noise=noise)
    shape = tuple(x.shape[1:])
    if model == "cnn":
        if len(shape) != 2:
            raise ValueError(f"model: 'cnn' needs images x of shape (N, H, W), got x of shape {x.shape}")
        if noise != "poisson":
            raise ValueError("noise: model='cnn' is fitted with Poisson noise only")
        channels = tuple(int(c) for c in channels)
        kernel = tuple(int(k) for k in kernel)
    k_split, k_init, k_batch = jax.random.split(key, 3)
    train_idx, val_idx = _split(k_split, x.shape[0], val_fraction)
    R = r.shape[1]
    rbar = r.mean(axis=1)  # (N, n): the sufficient statistic (Poisson and fixed-SD Gaussian)
    Xt, Rt = jnp.asarray(x[train_idx]), jnp.asarray(rbar[train_idx])
    Xv, Rv = jnp.asarray(x[val_idx]), jnp.asarray(rbar[val_idx])
    n_train = Xt.shape[0]

    if model == "lnp":
        params = _init_lnp(k_init, Xt.reshape(n_train, -1), rbar[train_idx], nonlinearity)
        build = lambda p: _lnp_model(p, shape, nonlinearity)  # noqa: E731

        def penalty(p):
            w = p["W"]
            return jnp.mean(smooth * _laplacian_penalty(w.reshape((w.shape[0],) + shape))
                            + l1 * jnp.sum(jnp.abs(w), axis=1))
    else:
        params = _init_cnn(k_init, Xt, rbar[train_idx], shape, channels, kernel)
        build = lambda p: _cnn_model(p, shape)  # noqa: E731

        def penalty(p):
            k1 = jnp.moveaxis(p["conv1_kernel"][:, :, 0, :], -1, 0)  # (C1, k, k)
            return smooth * jnp.sum(_laplacian_penalty(k1)) + l1 * jnp.sum(jnp.abs(p["features"]))

    def mean_rates(p, X):
        m = build(p)
        fwd = m._forward if model == "cnn" else (lambda xx: _nonlinear(nonlinearity, m.W @ jnp.reshape(xx, (-1,))
                                                                      + m.b, m.gain))
        return jax.vmap(fwd)(X)

    def nll(p, X, Rb):
        """Mean negative log-likelihood per trial and neuron (constants dropped)."""
        f = mean_rates(p, X)
        if noise == "poisson":
            tiny = jnp.finfo(f.dtype).tiny
            return jnp.mean(f - Rb * jnp.log(jnp.maximum(f, tiny)))
        return 0.5 * jnp.mean((Rb - f) ** 2)

    def objective(p, X, Rb):
        return nll(p, X, Rb) + penalty(p)

    import optax  # here, not at module level: importing jaxdecomp.neurons must not load the training stack

    opt = optax.adam(learning_rate)
    opt_state = opt.init(params)

    @jax.jit
    def run_chunk(p, s, step0):
        def body(carry, i):
            p, s = carry
            if batch_size is None or batch_size >= n_train:
                X, Rb = Xt, Rt
            else:
                idx = jax.random.randint(jax.random.fold_in(k_batch, step0 + i), (batch_size,), 0, n_train)
                X, Rb = Xt[idx], Rt[idx]
            loss, g = jax.value_and_grad(objective)(p, X, Rb)
            upd, s = opt.update(g, s, p)
            return (optax.apply_updates(p, upd), s), loss
        (p, s), losses = jax.lax.scan(body, (p, s), jnp.arange(eval_every))
        return p, s, jnp.mean(losses)

    val_nll = jax.jit(nll)
    best = (float(val_nll(params, Xv, Rv)), params, 0)
    history = [(0, float(objective(params, Xt, Rt)), np.nan)]
    bad, step = 0, 0
    while step < steps:
        params, opt_state, loss = run_chunk(params, opt_state, step)
        step += eval_every
        v = float(val_nll(params, Xv, Rv))
        if not np.isfinite(v) or not np.isfinite(float(loss)):
            raise ValueError(
                f"learning_rate: the fit diverged at step {step} (objective {float(loss):.4g}); lower learning_rate "
                f"(now {learning_rate:g}) or use nonlinearity='softplus'")
        history.append((step, float(loss), v))
        if verbose:
            print(f"step {step}: train objective {float(loss):.5f}, validation nll {v:.5f}", flush=True)
        if v < best[0] - 1e-7:
            best, bad = (v, params, step), 0
        else:
            bad += 1
            if bad >= patience:
                break
    params, best_step = best[1], best[2]
    rates = build(params)
    if model == "cnn":
        rates = rates.replace(centers=_mask_centres(rates.mask))
    if noise == "poisson":
        encoder = poisson_population(rates)
    else:
        f = np.asarray(jax.vmap(rates)(jnp.asarray(x[train_idx])))
        resid = r[train_idx] - f[:, None, :]
        sigma = np.sqrt(np.maximum(np.mean(resid**2, axis=(0, 1)), 1e-12))
        encoder = gaussian_population(rates, jnp.asarray(sigma, jnp.float32))
    hist = np.asarray(history, np.float64)
    hist[:, 2] = -hist[:, 2] * _per_trial_scale(noise, rbar.shape[1])  # report LL per trial (constants dropped)
    metrics = encoder_metrics(encoder, x[val_idx], r[val_idx])
    config = dict(model=model, noise=noise, nonlinearity=nonlinearity if model == "lnp" else "softplus",
                  smooth=smooth, l1=l1, val_fraction=val_fraction, steps=steps, steps_run=int(step),
                  best_step=int(best_step), learning_rate=learning_rate, batch_size=batch_size,
                  eval_every=eval_every, patience=patience, n_stimuli=int(x.shape[0]), repeats=int(R),
                  n_neurons=int(r.shape[2]), shape=list(shape), n_train=int(len(train_idx)), n_val=int(len(val_idx)))
    if model == "cnn":
        config.update(channels=list(channels), kernel=list(kernel))
    return FitResult(encoder, metrics, hist, int(best_step), train_idx, val_idx, config)


def _per_trial_scale(noise, n):
    return n  # nll is a mean over neurons: times n gives the per-trial (all neurons) value


def _mask_centres(mask):
    """Centre of mass of each mask (n, H, W) in image coordinates [-1, 1] (row, col)."""
    from jaxdecomp.neurons._geometry import pixel_coordinates

    pix = jnp.asarray(pixel_coordinates(tuple(mask.shape[1:])), mask.dtype)  # (H, W, 2)
    return jnp.einsum("nhw,hwc->nc", mask, pix)


# ----------------------------------------------------------------------------- metrics


def _log_probs_each(encoder, X, r):
    """Per-trial, per-neuron log-probabilities (N, R, n) and the rates (N, n)."""
    f = jax.vmap(encoder.rate)(X)
    if isinstance(encoder, GaussianPopulation):
        sig = jnp.broadcast_to(jnp.asarray(encoder.sigma), f.shape[-1:])
        lp = gaussian_log_density(r, f[:, None, :], sig[None, None, :])
    else:  # Poisson populations, and any other encoder read as Poisson with its rates
        lp = poisson_log_pmf(r, f[:, None, :])
    return lp, f


def _corr(a, b):
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=0) / np.where(den > 0, den, 1.0), np.nan)


def encoder_metrics(encoder, x, r, *, batch_size: int = 1024) -> dict:
    """Standard system-identification metrics of ``encoder`` on stimuli ``x`` and responses ``r``.

    Args:
      encoder: an :class:`~jaxdecomp.Encoder` (Poisson or Gaussian population; any other is
        scored as Poisson with its rates).
      x: ``(N, *S)`` stimuli (held-out ones, for a fair score); r: ``(N, n)`` or ``(N, R, n)``.

    Returns a dict (numpy arrays ``(n,)`` per neuron, floats pooled):

    * ``log_likelihood``: mean log p(r | x) per trial (all neurons), nats;
    * ``bits_per_spike`` / ``bits_per_spike_pooled`` (Poisson): ``(LL_model - LL_null) /
      (spikes * ln 2)``, the null model a constant rate per neuron equal to its mean count in
      ``r``; per neuron and pooled over neurons (sums of both terms). Gaussian:
      ``bits_per_trial`` / ``bits_per_trial_pooled`` against a constant Gaussian (mean, SD of r);
    * ``correlation`` (n,) and ``correlation_mean``: Pearson correlation over stimuli of the
      model rate and the trial-averaged response;
    * with ``R >= 2`` repeats: ``fev`` (n,) the fraction of explainable variance explained
      ``1 - (MSE - s2) / (Var - s2)`` (MSE over trials, ``s2`` the mean over stimuli of the
      unbiased across-repeat variance, ``Var`` the variance of all trials); ``fev_mean`` over
      neurons with positive explainable variance and ``fev_pooled`` (ratio of sums);
      ``explainable_fraction`` (n,) ``(Var - s2) / Var``. ``fev`` of a neuron without
      explainable variance is NaN (and excluded from the pooled values; ``n_fev_excluded``).
      With one trial per stimulus these are ``None``.
    """
    if not isinstance(encoder, Encoder):
        raise TypeError(f"encoder: expected a jaxdecomp Encoder, got {type(encoder).__name__}")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    poisson = not isinstance(encoder, GaussianPopulation)
    xa = _as_float_array("x", x)
    if xa.ndim < 2:
        raise ValueError(f"x: expected a batch of stimuli (N, ...), got shape {xa.shape}")
    n = encoder.n_neurons(jnp.asarray(xa[0], jnp.float32))
    xa, ra = check_recordings(xa, r, noise="poisson" if poisson else "gaussian", n_neurons=n)
    lps, fs = [], []
    fn = jax.jit(lambda X, Rr: _log_probs_each(encoder, X, Rr))
    for i in range(0, xa.shape[0], batch_size):
        lp, f = fn(jnp.asarray(xa[i:i + batch_size]), jnp.asarray(ra[i:i + batch_size]))
        lps.append(np.asarray(lp, np.float64))
        fs.append(np.asarray(f, np.float64))
    lp, f = np.concatenate(lps), np.concatenate(fs)
    r64 = ra.astype(np.float64)
    N, R, _ = r64.shape
    out: dict[str, Any] = dict(n_stimuli=int(N), n_repeats=int(R), n_neurons=int(n),
                               log_likelihood=float(lp.sum() / (N * R)))
    ll_model = lp.sum(axis=(0, 1))
    m = r64.mean(axis=(0, 1))
    if poisson:
        ll_null = np.asarray(poisson_log_pmf(jnp.asarray(r64), jnp.asarray(np.broadcast_to(m, r64.shape)))).sum((0, 1))
        spikes = r64.sum(axis=(0, 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out["bits_per_spike"] = np.where(spikes > 0, (ll_model - ll_null) / (np.maximum(spikes, 1) * _LN2), np.nan)
        out["bits_per_spike_pooled"] = float((ll_model - ll_null).sum() / (max(spikes.sum(), 1.0) * _LN2))
    else:
        sd = np.maximum(r64.std(axis=(0, 1)), 1e-12)
        ll_null = np.asarray(gaussian_log_density(r64, m[None, None, :], sd[None, None, :])).sum((0, 1))
        out["bits_per_trial"] = (ll_model - ll_null) / (N * R * _LN2)
        out["bits_per_trial_pooled"] = float((ll_model - ll_null).sum() / (N * R * _LN2))
    rbar = r64.mean(axis=1)
    out["correlation"] = _corr(f, rbar)
    c = out["correlation"]
    out["correlation_mean"] = float(np.nanmean(c)) if np.any(np.isfinite(c)) else None
    if R >= 2:
        mse = ((r64 - f[:, None, :]) ** 2).mean(axis=(0, 1))
        s2 = r64.var(axis=1, ddof=1).mean(axis=0)
        var = r64.reshape(N * R, -1).var(axis=0, ddof=1)
        expl = var - s2
        ok = expl > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            fev = np.where(ok, 1.0 - (mse - s2) / np.where(ok, expl, 1.0), np.nan)
            out["explainable_fraction"] = np.where(var > 0, expl / np.where(var > 0, var, 1.0), np.nan)
        out["fev"] = fev
        out["fev_mean"] = float(np.mean(fev[ok])) if ok.any() else None
        out["fev_pooled"] = float(1.0 - (mse[ok] - s2[ok]).sum() / expl[ok].sum()) if ok.any() else None
        out["n_fev_excluded"] = int((~ok).sum())
    else:
        out.update(fev=None, fev_mean=None, fev_pooled=None, explainable_fraction=None, n_fev_excluded=None)
    return out


# ----------------------------------------------------------------------------- files


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(u) for k, u in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(u) for u in v]
    if isinstance(v, (np.ndarray, jax.Array)):
        return _jsonable(np.asarray(v).tolist())
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v


def _array_digest(a: np.ndarray) -> str:
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _encoder_arrays(encoder) -> tuple[dict, dict]:
    """(spec, arrays) of a fitted-encoder-shaped population."""
    if not isinstance(encoder, (PoissonPopulation, GaussianPopulation)):
        raise TypeError(f"encoder: expected a PoissonPopulation or GaussianPopulation on a GLMRates or CNNRetina "
                        f"rate model (what fit_encoder returns), got {type(encoder).__name__}")
    rates = encoder.rates
    noise = "poisson" if isinstance(encoder, PoissonPopulation) else "gaussian"
    if isinstance(rates, GLMRates):
        spec = dict(model="lnp", nonlinearity=rates.nonlinearity, shape=list(rates.shape),
                    n_neurons=int(rates.W.shape[0]))
        arrays = dict(W=rates.W, b=rates.b, gain=rates.gain)
    elif isinstance(rates, CNNRetina):
        spec = dict(model="cnn", nonlinearity="softplus", shape=list(rates.shape), n_neurons=int(rates.mask.shape[0]))
        arrays = rates.params()
    else:
        raise TypeError(f"encoder: its rate model must be GLMRates or CNNRetina, got {type(rates).__name__}")
    if noise == "gaussian":
        arrays["sigma"] = jnp.broadcast_to(jnp.asarray(encoder.sigma), (spec["n_neurons"],))
    spec["noise"] = noise
    return spec, {k: np.asarray(v, np.float32) for k, v in arrays.items()}


def save_encoder(path, encoder, *, overwrite: bool = False, metadata: dict | None = None) -> Path:
    """Save a fitted encoder to the folder ``path``: ``encoder.json`` + ``weights.npz``.

    ``encoder.json`` holds the format tag, the spec (model, noise, nonlinearity, stimulus
    shape, number of neurons), the SHA-256 of ``weights.npz`` and of every array, and
    ``metadata`` (JSON-serialisable; e.g. ``FitResult.config`` and the validation metrics).
    Written to a temporary sibling and renamed into place. ``overwrite`` follows
    :func:`jaxdecomp.diffusion.save_model`: an existing ``path`` raises ``FileExistsError``
    unless ``overwrite=True``, and a non-empty folder that is not a saved encoder is never
    replaced. Returns the (absolute) path.
    """
    overwrite = check_bool("overwrite", overwrite)
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata: expected a dict, got {type(metadata).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    spec, arrays = _encoder_arrays(encoder)
    meta = _jsonable(dict(metadata or {}))
    try:
        json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"metadata: expected JSON-serialisable values ({err})") from err
    path = Path(path).absolute()
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"path: '{path}' already exists; pass overwrite=True to replace it")
        if not path.is_dir() or (any(path.iterdir()) and not (path / _SPEC_JSON).is_file()):
            raise FileExistsError(f"path: '{path}' exists and is not a saved encoder; refusing to replace it")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    blob = buf.getvalue()
    info = dict(format=ENCODER_FORMAT, version=ENCODER_FORMAT_VERSION, spec=spec,
                arrays={k: dict(shape=list(v.shape), dtype=str(v.dtype), sha256=_array_digest(v))
                        for k, v in arrays.items()},
                weights_sha256=hashlib.sha256(blob).hexdigest(), metadata=meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        tmp.mkdir()
        (tmp / _WEIGHTS).write_bytes(blob)
        (tmp / _SPEC_JSON).write_text(json.dumps(info, indent=1, allow_nan=False))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_into_place(tmp, path)
    return path


def encoder_info(path) -> dict:
    """The parsed ``encoder.json`` of a saved encoder folder (spec, digests, metadata)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path: no saved encoder at '{path}'")
    if not path.is_dir():
        raise ValueError(f"path: '{path}' is a file, not an encoder folder written by save_encoder")
    js = path / _SPEC_JSON
    if not js.is_file():
        raise ValueError(f"path: '{path}' holds no {_SPEC_JSON}; it is not an encoder folder written by "
                         f"save_encoder / `jaxdecomp fit`")
    try:
        info = json.loads(js.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"path: '{js}' is corrupt (not valid JSON: {err})") from None
    if not isinstance(info, dict) or info.get("format") != ENCODER_FORMAT:
        raise ValueError(f"path: '{js}' is not a fitted-encoder file (format tag {info.get('format') if isinstance(info, dict) else None!r})")
    if info.get("version") != ENCODER_FORMAT_VERSION:
        raise ValueError(f"path: '{path}' has encoder format version {info.get('version')!r}; this jaxdecomp reads "
                         f"version {ENCODER_FORMAT_VERSION}")
    for k in ("spec", "arrays", "weights_sha256"):
        if k not in info:
            raise ValueError(f"path: '{js}' is corrupt (no {k!r} entry)")
    return info


_ARRAY_SHAPES = {
    "lnp": lambda n, S, c: dict(W=(n, int(np.prod(S))), b=(n,), gain=(n,)),
}


def load_encoder(path, *, shape=None) -> Encoder:
    """Load an encoder saved by :func:`save_encoder` (or ``jaxdecomp fit``).

    The SHA-256 of ``weights.npz`` and of every array are checked against ``encoder.json``,
    and the arrays against the spec; a corrupt or mismatched folder raises ``ValueError``
    naming the path. ``shape``: when given, the stimulus shape the encoder must take.
    """
    info = encoder_info(path)
    path = Path(path)
    spec = info["spec"]
    wfile = path / _WEIGHTS
    if not wfile.is_file():
        raise ValueError(f"path: '{path}' is corrupt: {_WEIGHTS} is missing")
    blob = wfile.read_bytes()
    if hashlib.sha256(blob).hexdigest() != info["weights_sha256"]:
        raise ValueError(f"path: '{wfile}' does not match the digest recorded at save time (corrupt or edited)")
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            arrays = {k: np.array(z[k]) for k in z.files}
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"path: '{wfile}' is not a readable .npz ({err})") from None
    if set(arrays) != set(info["arrays"]):
        raise ValueError(f"path: '{path}': arrays {sorted(arrays)} differ from those recorded {sorted(info['arrays'])}")
    for k, a in arrays.items():
        if _array_digest(a) != info["arrays"][k].get("sha256"):
            raise ValueError(f"path: '{path}': array {k!r} does not match the digest recorded at save time")
    try:
        model, noise = spec["model"], spec["noise"]
        S, n = tuple(int(s) for s in spec["shape"]), int(spec["n_neurons"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"path: '{path}': the spec in {_SPEC_JSON} is incomplete ({err!r})") from None
    if model not in FIT_MODELS or noise not in NOISE_MODELS:
        raise ValueError(f"path: '{path}': unknown model {model!r} or noise {noise!r} in the spec")
    if shape is not None and tuple(int(s) for s in shape) != S:
        raise ValueError(f"shape: the encoder at '{path}' takes stimuli of shape {S}, not {tuple(shape)}")
    if model == "lnp":
        want = _ARRAY_SHAPES["lnp"](n, S, None)
        for k, s in want.items():
            if k not in arrays or arrays[k].shape != s:
                raise ValueError(f"path: '{path}': array {k!r} has shape {arrays.get(k, np.empty(0)).shape}, the spec "
                                 f"needs {s}")
        nl = spec.get("nonlinearity")
        if nl not in NONLINEARITIES:
            raise ValueError(f"path: '{path}': unknown nonlinearity {nl!r} in the spec")
        rates = GLMRates(W=jnp.asarray(arrays["W"]), b=jnp.asarray(arrays["b"]), gain=jnp.asarray(arrays["gain"]),
                         shape=S, nonlinearity=nl)
    else:
        params = {k: v for k, v in arrays.items() if k != "sigma"}
        try:
            rates = CNNRetina.from_params(params, S)
        except ValueError as err:
            raise ValueError(f"path: '{path}': {err}") from None
        if rates.mask.shape[0] != n:
            raise ValueError(f"path: '{path}': {rates.mask.shape[0]} neurons in the weights, {n} in the spec")
    if noise == "poisson":
        if "sigma" in arrays:
            raise ValueError(f"path: '{path}': a Poisson encoder with a 'sigma' array")
        return poisson_population(rates)
    if "sigma" not in arrays or arrays["sigma"].shape != (n,):
        raise ValueError(f"path: '{path}': a Gaussian encoder needs 'sigma' of shape ({n},)")
    return gaussian_population(rates, jnp.asarray(arrays["sigma"]))
