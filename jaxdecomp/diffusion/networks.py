"""Denoiser networks (Flax NNX): ``eps_hat = net(x_noisy, log_snr, r)``.

All networks follow the package's denoiser contract (:mod:`jaxdecomp.diffusion.schedules`):
``x_noisy`` is the variance-preserving input ``z = alpha x + sigma eps``, ``log_snr`` is
``a = -log g`` and ``r`` is a neural response ``(n_neurons,)`` or ``None``; the network
returns the predicted ``eps`` with the shape of ``x_noisy``, as float32.

Every ``__call__`` accepts ONE example (``x_noisy.shape == net.shape``, scalar ``log_snr``,
``r: (n,)``) or a BATCH (``x_noisy: (B, *net.shape)``, ``log_snr: (B,)`` or scalar,
``r: (B, n)``); the two are told apart by ``x_noisy.ndim``. The single-example call
works under ``jax.vmap`` and the module can be passed through ``jax.jit`` (NNX modules
are pytrees).

Conditioning: a Fourier embedding of ``log_snr / 10`` (fixed frequencies) through an
MLP, plus, for conditional networks (``n_neurons`` given), an MLP embedding of the
standardised response ``(r - r_shift) / r_scale``. The standardisation buffers are
:class:`ResponseStats` variables (not trained) that :func:`fit_response_scaling` or the
trainer sets from the data. A learned null embedding replaces the response embedding
where ``r is None`` or where the boolean ``drop`` mask is True, so one network trained
with condition dropout gives both the unconditional and the conditional denoiser.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdecomp._checks import as_array, check_int, check_shape

__all__ = [
    "MLPDenoiser",
    "PairDenoiser",
    "GaussianStats",
    "ResponseStats",
    "UNetDenoiser",
    "fit_gaussian_baseline",
    "fit_response_scaling",
    "response_statistics",
]

Array = Any

#: log-SNR is divided by this before the Fourier features (log-SNR spans roughly [-12, 16]).
_LOG_SNR_UNIT = 10.0


class ResponseStats(nnx.Variable):
    """Non-trainable buffer holding response standardisation statistics (``r_shift``, ``r_scale``)."""


class GaussianStats(nnx.Variable):
    """Non-trainable buffer of a Gaussian baseline (:func:`fit_gaussian_baseline`): moments of the data."""


# ----------------------------------------------------------------------------- helpers
def _check_shape(shape) -> tuple[int, ...]:
    return check_shape(shape)


def _check_n_neurons(n_neurons):
    return None if n_neurons is None else check_int("n_neurons", n_neurons, minimum=1)


def _check_pos_int(name: str, value) -> int:
    return check_int(name, value, minimum=1)


def _fourier_frequencies(n_fourier: int) -> np.ndarray:
    """Fixed angular frequencies ``(n_fourier,)``: geometric from 1/2 to 64 rad per log-SNR unit of 10."""
    return (np.geomspace(0.5, 64.0, n_fourier) if n_fourier > 1 else np.array([1.0])).astype(np.float32)


def _prepare_inputs(shape, n_neurons, x_noisy, log_snr, r, drop):
    """Validate and batch the call arguments.

    Returns ``(x (B, *shape) float32, a (B,) float32, r (B, n) float32 | None,
    drop (B,) bool | None, single: bool)``.
    """
    x_noisy = jnp.asarray(x_noisy)
    if not jnp.issubdtype(x_noisy.dtype, jnp.floating):
        raise TypeError(f"x_noisy: expected a floating-point array, got dtype {x_noisy.dtype}")
    k = len(shape)
    if x_noisy.ndim == k and tuple(x_noisy.shape) == shape:
        single = True
        x = x_noisy[None]
    elif x_noisy.ndim == k + 1 and tuple(x_noisy.shape[1:]) == shape:
        single = False
        x = x_noisy
    else:
        raise ValueError(
            f"x_noisy: expected shape {shape} (one example) or (B, *{shape}) (a batch), "
            f"got {tuple(x_noisy.shape)}"
        )
    b = x.shape[0]
    a = jnp.asarray(log_snr, dtype=jnp.float32)
    if single:
        if a.ndim != 0:
            raise ValueError(f"log_snr: expected a scalar for one example, got shape {tuple(a.shape)}")
        a = a[None]
    else:
        if a.ndim == 0:
            a = jnp.broadcast_to(a, (b,))
        elif a.shape != (b,):
            raise ValueError(f"log_snr: expected a scalar or shape ({b},) for a batch of {b}, got {tuple(a.shape)}")

    if r is not None:
        if n_neurons is None:
            raise ValueError("r: this network is unconditional (n_neurons=None); pass r=None")
        r = jnp.asarray(r)
        if single:
            if r.shape != (n_neurons,):
                raise ValueError(f"r: expected shape ({n_neurons},) for one example, got {tuple(r.shape)}")
            r = r[None]
        elif r.shape != (b, n_neurons):
            raise ValueError(f"r: expected shape ({b}, {n_neurons}) for a batch of {b}, got {tuple(r.shape)}")
        r = r.astype(jnp.float32)

    if drop is not None:
        drop = jnp.asarray(drop)
        if drop.dtype != jnp.bool_:
            raise TypeError(f"drop: expected a boolean mask, got dtype {drop.dtype}")
        if single:
            if drop.ndim != 0:
                raise ValueError(f"drop: expected a scalar bool for one example, got shape {tuple(drop.shape)}")
            drop = drop[None]
        elif drop.ndim == 0:
            drop = jnp.broadcast_to(drop, (b,))
        elif drop.shape != (b,):
            raise ValueError(f"drop: expected a scalar or shape ({b},) for a batch of {b}, got {tuple(drop.shape)}")
    return x.astype(jnp.float32), a, r, drop, single


class _Conditioning(nnx.Module):
    """Embedding ``(B, emb_dim)`` of ``(log_snr, r)``; ``r`` standardised with the ``ResponseStats`` buffers."""

    def __init__(self, n_neurons, emb_dim, n_fourier, dtype, rngs):
        self.n_neurons = n_neurons
        self.n_fourier = n_fourier
        self.dtype = dtype
        kw = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.t1 = nnx.Linear(2 * n_fourier + 1, emb_dim, **kw)
        self.t2 = nnx.Linear(emb_dim, emb_dim, **kw)
        if n_neurons is not None:
            self.r_shift = ResponseStats(jnp.zeros((n_neurons,), jnp.float32))
            self.r_scale = ResponseStats(jnp.ones((n_neurons,), jnp.float32))
            self.r1 = nnx.Linear(n_neurons, emb_dim, **kw)
            self.r2 = nnx.Linear(emb_dim, emb_dim, **kw)
            self.null = nnx.Param(jax.random.normal(rngs.params(), (emb_dim,), jnp.float32) * 0.02)

    def __call__(self, a, r, drop):
        u = (a / _LOG_SNR_UNIT)[:, None]                                     # (B, 1)
        ang = u * jnp.asarray(_fourier_frequencies(self.n_fourier))[None, :]  # (B, F)
        feats = jnp.concatenate([u, jnp.sin(ang), jnp.cos(ang)], axis=-1).astype(self.dtype)
        emb = self.t2(jax.nn.silu(self.t1(feats)))
        if self.n_neurons is None:
            return emb
        null = self.null[...].astype(emb.dtype)[None, :]
        if r is None:
            return emb + null
        rs = (r - self.r_shift[...][None, :]) / self.r_scale[...][None, :]
        remb = self.r2(jax.nn.silu(self.r1(rs.astype(self.dtype))))
        if drop is not None:
            remb = jnp.where(drop[:, None], null, remb)
        return emb + remb


def _film(h, mod, axis_shape):
    """``h * (1 + scale) + shift`` with ``(scale, shift) = split(mod)``; ``mod: (B, 2C)`` broadcast over ``axis_shape``."""
    scale, shift = jnp.split(mod, 2, axis=-1)
    expand = (slice(None),) + (None,) * axis_shape + (slice(None),)
    return h * (1.0 + scale[expand]) + shift[expand]


# ----------------------------------------------------------------------------- MLP
class _MLPBlock(nnx.Module):
    def __init__(self, hidden, emb_dim, dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.norm = nnx.LayerNorm(hidden, **kw)
        self.film = nnx.Linear(emb_dim, 2 * hidden, kernel_init=nnx.initializers.zeros, **kw)
        self.l1 = nnx.Linear(hidden, hidden, **kw)
        self.l2 = nnx.Linear(hidden, hidden, **kw)

    def __call__(self, h, c):
        y = _film(self.norm(h), self.film(c), 0)
        y = self.l2(jax.nn.silu(self.l1(jax.nn.silu(y))))
        return h + y


class _ResponseStatsAccess:
    """``r_shift`` / ``r_scale``: the response-standardisation buffers of a conditional network."""

    @property
    def r_shift(self) -> ResponseStats:
        return _stats(self, "r_shift")

    @property
    def r_scale(self) -> ResponseStats:
        return _stats(self, "r_scale")


class MLPDenoiser(_ResponseStatsAccess, nnx.Module):
    """Residual MLP noise predictor for stimuli of any ``shape`` (flattened internally).

    Args:
      shape: stimulus shape (e.g. ``(d,)`` or ``(H, W)``); stored as the static ``self.shape``.
      n_neurons: response size for a conditional network, ``None`` for unconditional only.
      hidden, depth: width and number of residual blocks (LayerNorm, FiLM, SiLU).
      emb_dim: conditioning embedding size; n_fourier: number of fixed log-SNR frequencies.
      dtype: computation dtype (params are float32; output float32).
      gaussian_baseline: when True the network predicts a RESIDUAL on top of the exact denoiser of a
        Gaussian fitted to the data (:func:`fit_gaussian_baseline`): ``eps_hat = eps_gauss(z, a, r) +
        mlp(z, a, r)``. The MLP's output layer starts at zero, so an untrained network is the Gaussian
        denoiser (exact for jointly Gaussian data, the linear-MMSE one otherwise) and training only has
        to learn what is not Gaussian. Until fitted, the baseline is that of ``N(0, I)`` data
        independent of ``r``.
      rngs: ``nnx.Rngs`` for initialisation.

    Call: ``net(x_noisy, log_snr, r=None, *, drop=None)`` -> ``eps_hat`` float32 with the
    shape of ``x_noisy`` (see module docstring for single / batched forms).
    """

    def __init__(self, shape, *, n_neurons=None, hidden: int = 256, depth: int = 3, emb_dim: int = 128,
                 n_fourier: int = 16, dtype=jnp.float32, gaussian_baseline: bool = False, rngs: nnx.Rngs):
        self.shape = _check_shape(shape)
        self.n_neurons = _check_n_neurons(n_neurons)
        hidden = _check_pos_int("hidden", hidden)
        depth = _check_pos_int("depth", depth)
        emb_dim = _check_pos_int("emb_dim", emb_dim)
        n_fourier = _check_pos_int("n_fourier", n_fourier)
        self.dtype = dtype
        d = math.prod(self.shape)
        kw = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.cond = _Conditioning(self.n_neurons, emb_dim, n_fourier, dtype, rngs)
        self.inp = nnx.Linear(d, hidden, **kw)
        self.blocks = nnx.List([_MLPBlock(hidden, emb_dim, dtype, rngs) for _ in range(depth)])
        self.out_norm = nnx.LayerNorm(hidden, **kw)
        self.out = nnx.Linear(hidden, d, kernel_init=nnx.initializers.zeros, **kw)
        self.gaussian_baseline = bool(gaussian_baseline)
        if self.gaussian_baseline:
            self.baseline = _GaussianBaseline(d, self.n_neurons)

    def __call__(self, x_noisy, log_snr, r=None, *, drop=None):
        x, a, r, drop, single = _prepare_inputs(self.shape, self.n_neurons, x_noisy, log_snr, r, drop)
        b = x.shape[0]
        c = jax.nn.silu(self.cond(a, r, drop))
        h = self.inp(x.reshape(b, -1).astype(self.dtype))
        for block in self.blocks:
            h = block(h, c)
        out = self.out(jax.nn.silu(self.out_norm(h))).astype(jnp.float32)
        if self.gaussian_baseline:
            out = out + self.baseline(x.reshape(b, -1), a, r, drop)
        out = out.reshape((b,) + self.shape)
        return out[0] if single else out


class _GaussianBaseline(nnx.Module):
    """The exact eps-denoiser of Gaussian data, from moments held in :class:`GaussianStats` buffers.

    Unconditional: ``x ~ N(mu, U diag(lam) U^T)``; conditional: ``x | r ~ N(mu + B (r - mu_r),
    Uc diag(lam_c) Uc^T)``. For ``z = alpha x + sigma eps``:
    ``E[eps | z] = sigma U diag(1 / (alpha^2 lam + sigma^2)) U^T (z - alpha m)``.
    """

    def __init__(self, d: int, n_neurons):
        eye, zeros, ones = jnp.eye(d, dtype=jnp.float32), jnp.zeros((d,), jnp.float32), jnp.ones((d,), jnp.float32)
        self.mean, self.vecs, self.vals = GaussianStats(zeros), GaussianStats(eye), GaussianStats(ones)
        self.conditional = n_neurons is not None
        if self.conditional:
            self.r_mean = GaussianStats(jnp.zeros((n_neurons,), jnp.float32))
            self.coef = GaussianStats(jnp.zeros((d, n_neurons), jnp.float32))
            self.cvecs, self.cvals = GaussianStats(eye), GaussianStats(ones)

    @staticmethod
    def _eps(z, a, m, vecs, vals):
        alpha2, sigma2 = jax.nn.sigmoid(a)[:, None], jax.nn.sigmoid(-a)[:, None]
        u = (z - jnp.sqrt(alpha2) * m) @ vecs                                    # (B, d) in the eigenbasis
        return jnp.sqrt(sigma2) * ((u / (alpha2 * vals[None, :] + sigma2)) @ vecs.T)

    def __call__(self, z, a, r, drop):
        mean = self.mean[...][None, :]
        if not self.conditional or r is None:
            return self._eps(z, a, mean, self.vecs[...], self.vals[...])
        m = mean + (r - self.r_mean[...][None, :]) @ self.coef[...].T
        eps_c = self._eps(z, a, m, self.cvecs[...], self.cvals[...])
        if drop is None:
            return eps_c
        return jnp.where(drop[:, None], self._eps(z, a, mean, self.vecs[...], self.vals[...]), eps_c)


# ----------------------------------------------------------------------------- UNet
def _groups(groups: int, channels: int) -> int:
    return math.gcd(groups, channels)


class _ResBlock(nnx.Module):
    def __init__(self, cin, cout, emb_dim, groups, dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.n1 = nnx.GroupNorm(cin, num_groups=_groups(groups, cin), **kw)
        self.c1 = nnx.Conv(cin, cout, (3, 3), **kw)
        self.n2 = nnx.GroupNorm(cout, num_groups=_groups(groups, cout), **kw)
        self.film = nnx.Linear(emb_dim, 2 * cout, kernel_init=nnx.initializers.zeros, **kw)
        self.c2 = nnx.Conv(cout, cout, (3, 3), **kw)
        self.skip = nnx.Conv(cin, cout, (1, 1), **kw) if cin != cout else None

    def __call__(self, h, c):
        y = self.c1(jax.nn.silu(self.n1(h)))
        y = jax.nn.silu(_film(self.n2(y), self.film(c), 2))
        y = self.c2(y)
        return (h if self.skip is None else self.skip(h)) + y


class UNetDenoiser(_ResponseStatsAccess, nnx.Module):
    """Convolutional UNet noise predictor for images ``(H, W)`` or ``(H, W, C)``.

    Args:
      shape: ``(H, W)`` or ``(H, W, C)``; ``H`` and ``W`` must be divisible by
        ``2 ** (len(channels) - 1)`` (one halving per level after the first).
      n_neurons: response size for a conditional network, ``None`` for unconditional only.
      channels: feature channels per resolution level.
      n_res: residual blocks per level (GroupNorm, adaptive scale/shift from the
        conditioning embedding, SiLU, 3x3 convs); skip connections join matching levels.
      emb_dim, n_fourier: conditioning embedding size and number of log-SNR frequencies.
      groups: GroupNorm groups (reduced to ``gcd(groups, channels)`` where needed).
      dtype: computation dtype (params float32; output float32).
      gaussian_baseline: predict a residual on top of a fitted Gaussian denoiser, as in
        :class:`MLPDenoiser` (:func:`fit_gaussian_baseline`; the pixel covariance is ``(H W C)^2``).
        Measured worse on images (``experiments/completeness_truth.py --gaussian-baseline``: gap MI
        +14% against -11% without, network I_local +30% against +5%); off by default.
      rngs: ``nnx.Rngs``.

    Call: ``net(x_noisy, log_snr, r=None, *, drop=None)`` -> ``eps_hat`` float32 with the
    shape of ``x_noisy``.
    """

    def __init__(self, shape, *, n_neurons=None, channels: Sequence[int] = (32, 64, 128), n_res: int = 1,
                 emb_dim: int = 128, n_fourier: int = 16, groups: int = 8, dtype=jnp.float32,
                 gaussian_baseline: bool = False, rngs: nnx.Rngs):
        self.shape = _check_shape(shape)
        if len(self.shape) not in (2, 3):
            raise ValueError(f"shape: expected (H, W) or (H, W, C), got {self.shape}")
        self.n_neurons = _check_n_neurons(n_neurons)
        try:
            channels = tuple(_check_pos_int("channels", c) for c in channels)
        except TypeError as err:
            raise TypeError(f"channels: expected a sequence of positive ints, got {channels!r}") from err
        if not channels:
            raise ValueError("channels: expected at least one level, got ()")
        n_res = _check_pos_int("n_res", n_res)
        emb_dim = _check_pos_int("emb_dim", emb_dim)
        n_fourier = _check_pos_int("n_fourier", n_fourier)
        groups = _check_pos_int("groups", groups)
        factor = 2 ** (len(channels) - 1)
        h_, w_ = self.shape[:2]
        if h_ % factor or w_ % factor:
            raise ValueError(
                f"shape: H and W must be divisible by 2**(len(channels)-1) = {factor} for "
                f"{len(channels)} levels, got H={h_}, W={w_}; use fewer channels levels or pad the images"
            )
        self.dtype = dtype
        self.n_levels = len(channels)
        cin = 1 if len(self.shape) == 2 else self.shape[2]
        kw = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.cond = _Conditioning(self.n_neurons, emb_dim, n_fourier, dtype, rngs)
        self.conv_in = nnx.Conv(cin, channels[0], (3, 3), **kw)
        down, downsample = [], []
        ch = channels[0]
        for i, c in enumerate(channels):
            blocks = []
            for _ in range(n_res):
                blocks.append(_ResBlock(ch, c, emb_dim, groups, dtype, rngs))
                ch = c
            down.append(nnx.List(blocks))
            if i < len(channels) - 1:
                downsample.append(nnx.Conv(c, c, (3, 3), strides=(2, 2), **kw))
        self.down = nnx.List(down)
        self.downsample = nnx.List(downsample)
        self.mid = _ResBlock(ch, ch, emb_dim, groups, dtype, rngs)
        up, upsample = [], []
        for i in reversed(range(len(channels))):
            c = channels[i]
            blocks = [_ResBlock(ch + c, c, emb_dim, groups, dtype, rngs)]
            blocks += [_ResBlock(c, c, emb_dim, groups, dtype, rngs) for _ in range(n_res - 1)]
            ch = c
            up.append(nnx.List(blocks))
            if i > 0:
                upsample.append(nnx.Conv(c, c, (3, 3), **kw))
        self.up = nnx.List(up)
        self.upsample = nnx.List(upsample)
        self.out_norm = nnx.GroupNorm(ch, num_groups=_groups(groups, ch), **kw)
        self.conv_out = nnx.Conv(ch, cin, (3, 3), kernel_init=nnx.initializers.zeros, **kw)
        self.gaussian_baseline = bool(gaussian_baseline)
        if self.gaussian_baseline:
            self.baseline = _GaussianBaseline(math.prod(self.shape), self.n_neurons)

    def __call__(self, x_noisy, log_snr, r=None, *, drop=None):
        x, a, r, drop, single = _prepare_inputs(self.shape, self.n_neurons, x_noisy, log_snr, r, drop)
        b = x.shape[0]
        c = jax.nn.silu(self.cond(a, r, drop))
        h = x.reshape((b,) + self.shape[:2] + (-1,)).astype(self.dtype)   # (B, H, W, C)
        h = self.conv_in(h)
        skips = []
        for i, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, c)
            skips.append(h)
            if i < self.n_levels - 1:
                h = self.downsample[i](h)
        h = self.mid(h, c)
        for j, blocks in enumerate(self.up):
            i = self.n_levels - 1 - j
            h = jnp.concatenate([h, skips[i]], axis=-1)
            for block in blocks:
                h = block(h, c)
            if i > 0:
                h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
                h = self.upsample[j](h)
        out = self.conv_out(jax.nn.silu(self.out_norm(h))).astype(jnp.float32).reshape((b,) + self.shape)
        if self.gaussian_baseline:
            out = out + self.baseline(x.reshape(b, -1), a, r, drop).reshape((b,) + self.shape)
        return out[0] if single else out


# ----------------------------------------------------------------------------- pair / scaling
def _stats(net, name: str) -> ResponseStats:
    if net.n_neurons is None:
        raise AttributeError(f"{name}: this network is unconditional (n_neurons=None) and has no response statistics")
    return getattr(net.cond, name)


class PairDenoiser(nnx.Module):
    """Two separately trained networks used as one denoiser (as in the paper).

    ``unconditional`` (``n_neurons=None`` or a conditional net used with its null
    embedding) is called when ``r is None``; ``conditional`` otherwise. Both must share
    ``shape``. Exposes ``shape`` and ``n_neurons`` (the conditional network's).
    """

    def __init__(self, unconditional: nnx.Module, conditional: nnx.Module):
        for name, net in (("unconditional", unconditional), ("conditional", conditional)):
            if not hasattr(net, "shape") or not hasattr(net, "n_neurons"):
                raise TypeError(f"{name}: expected a denoiser network with .shape and .n_neurons, got {type(net).__name__}")
        if tuple(unconditional.shape) != tuple(conditional.shape):
            raise ValueError(
                f"unconditional, conditional: shapes differ: {tuple(unconditional.shape)} vs {tuple(conditional.shape)}"
            )
        if conditional.n_neurons is None:
            raise ValueError("conditional: expected a network with n_neurons set, got n_neurons=None")
        self.unconditional = unconditional
        self.conditional = conditional
        self.shape = tuple(conditional.shape)
        self.n_neurons = conditional.n_neurons

    def __call__(self, x_noisy, log_snr, r=None, *, drop=None):
        if drop is not None:
            raise ValueError("drop: PairDenoiser has separate networks; pass r=None for the unconditional one")
        if r is None:
            return self.unconditional(x_noisy, log_snr, None)
        return self.conditional(x_noisy, log_snr, r)


def response_statistics(r, *, floor: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron ``(mean (n,), std (n,))`` of responses ``r: (N, n)``, as float32.

    The std is floored at ``floor * max(std)`` (and at 1 if every neuron is constant), so
    silent neurons (all-zero Poisson counts) do not blow up the standardisation.
    """
    r = np.asarray(r, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 1:
        raise ValueError(f"r: expected shape (N, n_neurons) with N >= 1, got {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("r: contains NaN or infinite values")
    mean = r.mean(axis=0)
    std = r.std(axis=0)
    top = std.max()
    std = np.maximum(std, floor * top) if top > 0 else np.ones_like(std)
    return mean.astype(np.float32), std.astype(np.float32)


def fit_gaussian_baseline(model: nnx.Module, x, r=None, *, floor: float = 1e-6, ridge: bool = True) -> nnx.Module:
    """Fit the Gaussian baseline of an ``MLPDenoiser`` / ``UNetDenoiser(..., gaussian_baseline=True)``, in place.

    ``x: (N, *model.shape)`` training stimuli and, for a conditional network, ``r: (N, n_neurons)``
    their responses (required then). Sets the mean and eigen-decomposed covariance of ``x`` and, with
    ``r``, the linear regression of ``x`` on ``r`` and the eigen-decomposed residual covariance
    (float64 moments; eigenvalues floored at ``floor`` times the largest). Fit on the TRAINING pairs
    only: a baseline fitted on held-out pairs would leak them into the estimate. Returns ``model``.

    The regression is a ridge regression whose penalty is chosen by leave-one-out error
    (``sklearn.linear_model.RidgeCV`` over a log grid from ``1e-8`` to ``10`` times the largest
    squared singular value of the centred responses; the smallest is ordinary least squares) and the
    residual covariance is the generalised-cross-validation one, ``RSS / N / (1 - df / N)^2`` (``df``
    the ridge's effective number of parameters plus the intercept), so that it estimates the error
    on NEW pairs, not the smaller in-sample one. Plain least squares with many
    responses fits noise: in 50 dimensions at 8,000 pairs (2,500 coefficients) its held-out error
    lowered ``estimate(x, r)``'s MI by about 11% (``BENCHMARKS.md``). ``ridge=False`` gives least
    squares and the in-sample (maximum-likelihood) residual covariance.
    """
    if not getattr(model, "gaussian_baseline", False):
        raise ValueError("model: has no Gaussian baseline (build the network with gaussian_baseline=True)")
    d = math.prod(model.shape)
    x = as_array("x", x)
    if x.ndim < 2 or x.shape[1:] != tuple(model.shape) or x.shape[0] < 2:
        raise ValueError(f"x: expected shape (N >= 2, *{tuple(model.shape)}), got {x.shape}")
    x = x.reshape(x.shape[0], d)
    floor = float(floor)

    def eig(cov):
        vals, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
        return vecs, np.maximum(vals, floor * max(float(vals.max()), 1e-30))

    base = model.baseline
    mu = x.mean(0)
    xc = x - mu
    vecs, vals = eig(xc.T @ xc / x.shape[0])
    base.mean[...], base.vecs[...], base.vals[...] = (jnp.asarray(v, jnp.float32) for v in (mu, vecs, vals))
    if model.n_neurons is not None:
        if r is None:
            raise ValueError("r: the model is conditional; pass the training responses (N, n_neurons)")
        r = as_array("r", r)
        if r.shape != (x.shape[0], model.n_neurons):
            raise ValueError(f"r: expected shape ({x.shape[0]}, {model.n_neurons}), got {r.shape}")
        n_pairs = x.shape[0]
        mr = r.mean(0)
        rc = r - mr
        sv2 = np.linalg.svd(rc, compute_uv=False) ** 2
        top = max(float(sv2.max()), 1e-30)
        if ridge:
            from sklearn.linear_model import RidgeCV

            fit = RidgeCV(alphas=top * np.logspace(-8, 1, 37)).fit(rc, xc)       # leave-one-out choice
            coef, alpha = np.asarray(fit.coef_, np.float64).reshape(d, -1), float(fit.alpha_)
            df = float(np.sum(sv2 / (sv2 + alpha))) + 1.0                     # + the intercept
            gcv = max(1.0 - df / n_pairs, 1.0 / n_pairs) ** 2    # residual covariance on NEW pairs
        else:
            coef = np.linalg.solve(rc.T @ rc + 1e-10 * top * np.eye(rc.shape[1]), rc.T @ xc).T   # (d, n)
            gcv = 1.0
        res = xc - rc @ coef.T
        cvecs, cvals = eig(res.T @ res / n_pairs / gcv)
        base.r_mean[...], base.coef[...], base.cvecs[...], base.cvals[...] = (
            jnp.asarray(v, jnp.float32) for v in (mr, coef, cvecs, cvals))
    elif r is not None:
        raise ValueError("r: the model is unconditional (n_neurons=None); pass r=None")
    return model


def fit_response_scaling(model: nnx.Module, r) -> nnx.Module:
    """Set ``model.r_shift`` / ``model.r_scale`` to the per-neuron mean / std of ``r: (N, n)``, in place.

    For a :class:`PairDenoiser` the conditional network is updated. Returns ``model``.
    """
    net = model.conditional if isinstance(model, PairDenoiser) else model
    if getattr(net, "n_neurons", None) is None:
        raise ValueError("model: is unconditional (n_neurons=None); it has no response scaling to fit")
    r = np.asarray(r)
    if r.ndim != 2 or r.shape[1] != net.n_neurons:
        raise ValueError(f"r: expected shape (N, {net.n_neurons}), got {r.shape}")
    mean, std = response_statistics(r)
    net.r_shift[...] = jnp.asarray(mean)
    net.r_scale[...] = jnp.asarray(std)
    return model
