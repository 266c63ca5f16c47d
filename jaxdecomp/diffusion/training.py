"""Training denoiser networks by eps-prediction over continuous log-SNR.

The loss is ``E || net(z, a, r) - eps ||^2`` with ``a`` drawn from a truncated logistic over
the log-SNR range, ``eps ~ N(0, I)`` and the variance-preserving ``z = alpha x + sigma eps``
(:func:`jaxdecomp.diffusion.schedules.add_noise`). With responses and ``cond_drop > 0`` the
response is replaced by the learned null embedding for a random fraction of examples, so one
network learns both the conditional and the unconditional denoiser.

Pure pieces, usable from your own loop, under ``jax.jit``, ``jax.vmap`` and ``jax.sharding``:

* :class:`TrainState`: a pytree ``(step, params, ema_params, opt_state, buffers)``;
  :func:`init_train_state` builds one from an NNX network, :func:`init_ensemble` stacks
  several along a leading member axis, :func:`trained_model` turns one back into a network.
* :func:`make_optimizer`: the optax transformation of a :class:`TrainConfig` (clip + AdamW
  with warm-up and cosine decay, weight decay on kernels only).
* :func:`make_train_step`: ``step(state, batch, key) -> (state, metrics)``, a pure function;
  step ``s`` draws its noise from ``jax.random.fold_in(key, s)``, so ``key`` is the run key
  and is passed unchanged every step. ``jax.vmap(step)`` over stacked states, batches and
  keys trains an ensemble in one program.
* :func:`batch_indices`: the host-side batch of step ``s``, a function of ``(key, s)`` only.

:func:`train` is the host loop around them (batching, progress bar, orbax checkpoints, the
loss log, resume) and :func:`train_ensemble` the same loop over a vmapped step. A checkpoint
directory is locked for the run and only ever continued by the same run: checkpoints record
a run fingerprint (model, data, key, configuration) and a different run is refused with
:class:`~jaxdecomp.diffusion.checkpoint.CheckpointMismatch` unless ``overwrite=True`` (see
:func:`train`'s ``resume`` / ``overwrite``). Data
parallel with ``jax.sharding``: the batch is sharded over a 1-D ``Mesh`` of all devices on
axis ``"data"``, everything else is replicated; the same code runs on one device.

Reproducible and resumable: step ``s`` uses ``jax.random.fold_in(key, s)`` and a batch that
depends only on ``(key, s)``, so a run resumed from a checkpoint at step ``s`` repeats
exactly the updates of an uninterrupted run.

A loop of your own that reproduces ``train(model, x, r, config, key=key)``::

    loc = log_snr_center(x, config)
    state = init_train_state(model, config, r=r)
    step = jax.jit(make_train_step(model, config, log_snr_loc=loc))
    for s in range(config.steps):
        idx = batch_indices(key, s, len(x), config.batch_size)
        state, metrics = step(state, (x[idx], r[idx]), key)
    net = trained_model(model, state)          # EMA weights
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from jaxdecomp._checks import check_float, check_int, check_key, check_resume
from jaxdecomp._files import array_fingerprint
from jaxdecomp.diffusion import checkpoint as _ckpt
from jaxdecomp.diffusion.networks import PairDenoiser, response_statistics
from jaxdecomp.diffusion.schedules import add_noise, truncated_logistic_sample

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "batch_indices",
    "ensemble_member",
    "init_ensemble",
    "init_train_state",
    "log_snr_center",
    "make_optimizer",
    "make_train_step",
    "train",
    "train_ensemble",
    "trained_model",
]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (validated on construction).

    steps: number of optimiser updates. batch_size: global batch (divisible by the
    device count). learning_rate, warmup_steps: peak AdamW rate after a linear warm-up,
    then cosine decay to 0 at ``steps``. weight_decay: AdamW decay on kernels (ndim >= 2)
    only. ema_decay: EMA rate, ramped as ``min(ema_decay, (1+s)/(10+s))`` so short runs
    are not dominated by the initial weights. grad_clip: global-norm clip.
    log_snr_range: ``(lo, hi)`` of the training log-SNR. log_snr_loc, log_snr_scale:
    logistic sampling density of log-SNR; ``loc=None`` uses ``log(1 / Var(x))`` (noise
    variance equal to the mean per-coordinate data variance), clipped into the range.
    cond_drop: probability of replacing ``r`` by the null embedding (0 = conditional only).
    checkpoint_every, keep_checkpoints: checkpoint period (steps) and how many to keep.
    log_every: loss-log period (the logged value is the mean loss since the last log).
    progress: show a tqdm bar. seed: PRNG seed used when ``train`` gets no ``key``.
    """

    steps: int = 2000
    batch_size: int = 256
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    log_snr_range: tuple[float, float] = (-10.0, 14.0)
    log_snr_loc: float | None = None
    log_snr_scale: float = 2.0
    cond_drop: float = 0.2
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 50
    progress: bool = True
    seed: int = 0

    def __post_init__(self):
        def pos_int(name, allow_zero=False):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if allow_zero else 1):
                kind = "non-negative" if allow_zero else "positive"
                raise ValueError(f"{name}: expected a {kind} int, got {v!r}")

        def num(name, lo=None, hi=None, lo_open=False, hi_open=False):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                raise ValueError(f"{name}: expected a finite number, got {v!r}")
            if lo is not None and (v < lo or (lo_open and v == lo)):
                raise ValueError(f"{name}: expected {'>' if lo_open else '>='} {lo}, got {v!r}")
            if hi is not None and (v > hi or (hi_open and v == hi)):
                raise ValueError(f"{name}: expected {'<' if hi_open else '<='} {hi}, got {v!r}")

        for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every"):
            pos_int(name)
        pos_int("warmup_steps", allow_zero=True)
        pos_int("seed", allow_zero=True)
        num("learning_rate", lo=0, lo_open=True)
        num("weight_decay", lo=0)
        num("ema_decay", lo=0, hi=1, hi_open=True)
        num("grad_clip", lo=0, lo_open=True)
        num("log_snr_scale", lo=0, lo_open=True)
        num("cond_drop", lo=0, hi=1, hi_open=True)
        rng = self.log_snr_range
        try:
            lo, hi = (float(v) for v in rng)
        except (TypeError, ValueError) as err:
            raise ValueError(f"log_snr_range: expected (lo, hi), got {rng!r}") from err
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"log_snr_range: expected finite lo < hi, got {rng!r}")
        object.__setattr__(self, "log_snr_range", (lo, hi))
        if self.log_snr_loc is not None:
            num("log_snr_loc")
        if not isinstance(self.progress, bool):
            raise TypeError(f"progress: expected a bool, got {type(self.progress).__name__}")


@struct.dataclass
class TrainState:
    """Everything that changes during training, as a pytree of arrays.

    step: ``()`` int32, updates done. params / ema_params: ``nnx.State`` of the network's
    ``nnx.Param`` variables (optimiser weights / their exponential moving average).
    opt_state: the optax state. buffers: ``nnx.State`` of the other variables (the response
    standardisation ``r_shift`` / ``r_scale``), carried unchanged.

    An ensemble state (:func:`init_ensemble`) has the same structure with a leading member
    axis on every leaf (``step: (E,)``).
    """

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: Any
    buffers: Any


class TrainResult(NamedTuple):
    """Outcome of :func:`train`.

    model: the network with EMA weights (use this one). raw_model: the last optimiser
    weights. losses: ``(L, 2)`` float64 rows ``(step, mean loss since previous row)``.
    step: number of updates done. resumed_from: checkpoint step resumed from, or None.
    """

    model: nnx.Module
    raw_model: nnx.Module
    losses: np.ndarray
    step: int
    resumed_from: int | None


# ----------------------------------------------------------------------------- helpers
def _as_data(name: str, arr) -> np.ndarray:
    try:
        out = np.asarray(arr)
    except Exception as err:  # noqa: BLE001
        raise TypeError(f"{name}: expected a numeric array, got {type(arr).__name__}") from err
    if not (np.issubdtype(out.dtype, np.floating) or np.issubdtype(out.dtype, np.integer)
            or out.dtype == np.bool_):
        raise TypeError(f"{name}: expected a numeric array, got dtype {out.dtype}")
    out = out.astype(np.float32)
    if out.ndim == 0 or out.shape[0] < 1:
        raise ValueError(f"{name}: expected at least one example along axis 0, got shape {out.shape}")
    bad = ~np.isfinite(out)
    if bad.any():
        first = np.argwhere(bad)[0]
        raise ValueError(f"{name}: contains {int(bad.sum())} NaN or infinite values (first at index {tuple(int(i) for i in first)})")
    return out


def _key_words(key) -> list[int]:
    return [int(w) for w in np.asarray(jax.random.key_data(key)).ravel().astype(np.uint32)]


class _Batcher:
    """Batch indices for step ``s``: a deterministic function of ``(key, s)``.

    With ``n >= batch`` each epoch of ``n // batch`` steps walks a fresh permutation seeded by
    ``(key, epoch)`` (remainder dropped); with ``n < batch`` indices are drawn with
    replacement, seeded by ``(key, s)``.
    """

    def __init__(self, key_words, n: int, batch: int):
        self.words, self.n, self.batch = list(key_words), n, batch
        self._epoch, self._perm = None, None

    def __call__(self, step: int) -> np.ndarray:
        if self.n < self.batch:
            return np.random.default_rng(self.words + [1, step]).integers(0, self.n, self.batch)
        per_epoch = self.n // self.batch
        epoch, pos = divmod(step, per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.default_rng(self.words + [0, epoch]).permutation(self.n)
        return self._perm[pos * self.batch:(pos + 1) * self.batch]


def _write_csv(path: Path, rows, members: int | None = None) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w") as f:
        f.write("step,loss\n" if members is None else "step," + ",".join(f"loss_{i}" for i in range(members)) + "\n")
        for s, *vals in rows:
            f.write(f"{int(s)}," + ",".join(f"{v:.8g}" for v in vals) + "\n")
    tmp.replace(path)


def _put_global(arr: np.ndarray, sharding) -> jax.Array:
    """Place a host array (identical on every process) as a global array with ``sharding``."""
    return jax.make_array_from_callback(arr.shape, sharding, lambda idx: arr[idx])


def _check_model(model, name: str = "model") -> None:
    if isinstance(model, PairDenoiser):
        raise TypeError(f"{name}: got a PairDenoiser; train its unconditional and conditional networks separately")
    if not isinstance(model, nnx.Module) or not hasattr(model, "shape") or not hasattr(model, "n_neurons"):
        raise TypeError(f"{name}: expected an NNX denoiser network with .shape and .n_neurons, "
                        f"got {type(model).__name__}")


def _check_data(model, x, r):
    """Validated float32 copies of ``x: (N, *model.shape)`` and ``r: (N, n_neurons)`` (or None)."""
    shape, n_neurons = tuple(model.shape), model.n_neurons
    x = _as_data("x", x)
    if x.shape[1:] != shape:
        raise ValueError(f"x: expected shape (N, *{shape}) to match model.shape, got {x.shape}")
    if r is not None:
        if n_neurons is None:
            raise ValueError("r: the model is unconditional (n_neurons=None); pass r=None or build it with n_neurons")
        r = _as_data("r", r)
        if r.ndim != 2 or r.shape[1] != n_neurons:
            raise ValueError(f"r: expected shape (N, {n_neurons}) to match model.n_neurons, got {r.shape}")
        if r.shape[0] != x.shape[0]:
            raise ValueError(f"x, r: different numbers of examples: x has {x.shape[0]}, r has {r.shape[0]}")
    return x, r


def _check_config(config) -> None:
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")


#: ``fold_in`` tag of the per-step response key (``population=`` in :func:`make_train_step` / :func:`train`).
RESPONSE_KEY_TAG = 0x72657370
#: how many stimuli the response standardisation (``r_shift`` / ``r_scale``) is fitted on when
#: responses are drawn during training (``train(..., population=...)``).
PILOT_RESPONSES = 4096


def _check_population(population, name: str = "population") -> None:
    if not callable(getattr(population, "sample", None)):
        raise TypeError(f"{name}: expected an encoder with a sample(key, x) method (jaxdecomp.neurons), "
                        f"got {type(population).__name__}")


def _check_fresh(model, r, population) -> None:
    """``population`` (fresh responses every step) against ``r`` and the model's conditioning."""
    if population is None:
        return
    _check_population(population)
    if r is not None:
        raise ValueError("population, r: pass one of them (population draws fresh responses every step; r is "
                         "a fixed set of paired responses)")
    if model.n_neurons is None:
        raise ValueError("population: the model is unconditional (n_neurons=None); build it with n_neurons "
                         "to train on responses drawn from a population")


def _population_responses(model, population, x, key) -> np.ndarray:
    """Pilot responses ``(m, n_neurons)`` float32 to up to :data:`PILOT_RESPONSES` evenly spaced
    stimuli of ``x``: they set the network's response standardisation when ``train`` draws the
    training responses itself; checked against ``model.n_neurons``."""
    _check_population(population)
    if model.n_neurons is None:
        raise ValueError("population: the model is unconditional (n_neurons=None); build it with n_neurons to "
                         "train on responses drawn from a population")
    try:
        out = jax.eval_shape(population.sample, jax.random.PRNGKey(0), jnp.asarray(x[0]))
    except Exception as err:  # noqa: BLE001
        raise TypeError(f"population: sample(key, x) fails on one stimulus of shape {x.shape[1:]}: {err}") from err
    if tuple(out.shape) != (model.n_neurons,):
        raise ValueError(f"population: draws responses of shape {tuple(out.shape)} but the model expects "
                         f"({model.n_neurons},) (model.n_neurons)")
    m = min(len(x), PILOT_RESPONSES)
    idx = np.linspace(0, len(x) - 1, m).round().astype(int)
    kp = jax.random.fold_in(key, RESPONSE_KEY_TAG + 1)
    r = jax.jit(jax.vmap(population.sample))(jax.random.split(kp, m), jnp.asarray(x[idx]))
    return _as_data("population responses", np.asarray(r, np.float32))


def _graphdef(model):
    if isinstance(model, nnx.GraphDef):
        return model
    if isinstance(model, nnx.Module):
        return nnx.graphdef(model)
    raise TypeError(f"model: expected an NNX module or its nnx.GraphDef, got {type(model).__name__}")


def _to_ckpt(state: TrainState) -> dict:
    """The checkpoint layout (a dict; unchanged from earlier versions, so old runs resume)."""
    return {"params": state.params, "opt_state": state.opt_state, "ema": state.ema_params,
            "buffers": state.buffers, "step": state.step}


def _from_ckpt(d: dict) -> TrainState:
    return TrainState(step=d["step"], params=d["params"], ema_params=d["ema"], opt_state=d["opt_state"],
                      buffers=d["buffers"])


# ----------------------------------------------------------------------------- pure pieces
def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The optax transformation :func:`train` uses: global-norm clip, then AdamW with a linear
    warm-up to ``learning_rate`` and cosine decay to 0 at ``config.steps``; weight decay on
    parameters with ``ndim >= 2`` (kernels) only."""
    _check_config(config)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, config.warmup_steps, max(config.steps, config.warmup_steps + 1), end_value=0.0)
    return optax.chain(
        optax.clip_by_global_norm(config.grad_clip),
        optax.adamw(schedule, weight_decay=config.weight_decay,
                    mask=lambda p: jax.tree.map(lambda a: jnp.ndim(a) >= 2, p)),
    )


def log_snr_center(x, config: TrainConfig) -> float:
    """Centre of the logistic log-SNR density for data ``x: (N, ...)``.

    ``config.log_snr_loc`` when set; else ``log(1 / v)`` with ``v`` the mean per-coordinate
    variance of ``x`` (noise variance equal to the data variance), clipped into
    ``config.log_snr_range``. Host-side (numpy), float64.
    """
    _check_config(config)
    if config.log_snr_loc is not None:
        return float(config.log_snr_loc)
    lo, hi = config.log_snr_range
    var = float(np.mean(np.var(np.asarray(x), axis=0, dtype=np.float64)))
    return float(np.clip(-np.log(max(var, 1e-12)), lo, hi))


def denoising_loss(key, model: nnx.Module, x, r=None, *, population=None, config: TrainConfig = TrainConfig(),
                   log_snr_loc: float | None = None, draws: int = 4, batch: int = 256):
    """Held-out denoising loss of a trained ``model`` on stimuli ``x`` (``Estimate``, eps-MSE per coordinate).

    The training objective itself (``make_train_step``'s loss without condition dropout): for each
    stimulus, ``draws`` log-SNRs from the training density (``config.log_snr_range`` /
    ``log_snr_scale``, centred at ``log_snr_loc``: pass the TRAINING data's
    ``log_snr_center(x_train, config)``, so that two sets are scored on the same density) and Gaussian
    noise; the responses are ``r`` (one row per stimulus), or fresh draws from ``population`` (a
    known encoder), or none (an unconditional model). ``value`` is the mean over stimuli and draws,
    ``stderr`` the standard error over stimuli (their per-stimulus means are independent).

    Compare the same model on its training stimuli and on held-out ones (with the same key): a
    held-out loss above the training one by several SE says the network memorised its stimuli.
    """
    from jaxdecomp._interfaces import Estimate

    key = check_key(key)
    _check_model(model)
    _check_config(config)
    x, r = _check_data(model, x, r)
    if x.shape[0] < 2:
        raise ValueError(f"x: need at least 2 stimuli for a standard error, got {x.shape[0]}")
    draws, batch = check_int("draws", draws, 1), check_int("batch", batch, 1)
    conditional = getattr(model, "n_neurons", None) is not None
    if r is not None and population is not None:
        raise ValueError("r, population: pass one of them (r: fixed responses; population: fresh draws)")
    if conditional and r is None and population is None:
        raise ValueError("r: the model is conditional; pass the responses r (one row per stimulus) or a population")
    if not conditional and (r is not None or population is not None):
        raise ValueError("r: the model is unconditional (n_neurons=None); pass neither r nor population")
    if population is not None:
        _check_population(population)
    log_snr_loc = log_snr_center(x, config) if log_snr_loc is None else check_float("log_snr_loc", log_snr_loc)
    lo, hi = config.log_snr_range
    graphdef, state = nnx.split(model)

    @jax.jit
    def per_stimulus(state, xb, rb, k):
        m = nnx.merge(graphdef, state)
        kr, ka, ke = jax.random.split(k, 3)
        n = xb.shape[0]
        if rb is None and population is not None:
            rb = jax.vmap(population.sample)(jax.random.split(kr, n), xb).astype(jnp.float32)
        xr = jnp.repeat(xb, draws, 0)
        rr = None if rb is None else jnp.repeat(rb, draws, 0)
        a = truncated_logistic_sample(ka, (n * draws,), lo, hi, log_snr_loc, float(config.log_snr_scale))
        eps = jax.random.normal(ke, xr.shape, jnp.float32)
        err = jnp.square(m(add_noise(xr, eps, a), a, rr) - eps).reshape(n, draws, -1)
        return jnp.mean(err, axis=(1, 2))

    out = [np.asarray(per_stimulus(state, jnp.asarray(x[i:i + batch]),
                                   None if r is None else jnp.asarray(r[i:i + batch]), jax.random.fold_in(key, i)))
           for i in range(0, x.shape[0], batch)]
    v = np.concatenate(out).astype(np.float64)
    if not np.all(np.isfinite(v)):
        raise FloatingPointError("model: the denoising loss is not finite (NaN or inf weights or outputs)")
    return Estimate(np.float32(v.mean()), np.float32(v.std(ddof=1) / np.sqrt(v.size)), {"per_stimulus": v})


def batch_indices(key, step: int, n: int, batch_size: int) -> np.ndarray:
    """Indices ``(batch_size,)`` into ``N = n`` examples for step ``step`` of a run with ``key``.

    Each epoch of ``n // batch_size`` steps walks a fresh permutation seeded by
    ``(key, epoch)`` (remainder dropped); with ``n < batch_size`` indices are drawn with
    replacement, seeded by ``(key, step)``. This is exactly the batch :func:`train` uses.
    Host-side numpy; each call draws a permutation of ``n`` (``O(n)``).
    """
    for name, v in (("step", step), ("n", n), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if name == "step" else 1):
            raise ValueError(f"{name}: expected a {'non-negative' if name == 'step' else 'positive'} int, got {v!r}")
    return _Batcher(_key_words(key), int(n), int(batch_size))(int(step))


def init_train_state(model: nnx.Module, config: TrainConfig = TrainConfig(), *, r=None,
                     tx: optax.GradientTransformation | None = None) -> TrainState:
    """A fresh :class:`TrainState` (step 0) for ``model``; ``model`` itself is not modified.

    Args:
      model: an NNX denoiser network (``MLPDenoiser``, ``UNetDenoiser``, ...).
      config: gives the optimiser when ``tx`` is None (:func:`make_optimizer`).
      r: ``(N, model.n_neurons)`` training responses, or None: when given, the state's
        ``r_shift`` / ``r_scale`` buffers are the per-neuron mean / floored std of ``r``
        (what :func:`train` does).
      tx: an optax transformation to use instead of ``make_optimizer(config)``; pass the
        same one to :func:`make_train_step`.
    """
    _check_model(model)
    net = nnx.clone(model)
    if r is not None:
        if model.n_neurons is None:
            raise ValueError("r: the model is unconditional (n_neurons=None); pass r=None or build it with n_neurons")
        r = _as_data("r", r)
        if r.ndim != 2 or r.shape[1] != model.n_neurons:
            raise ValueError(f"r: expected shape (N, {model.n_neurons}) to match model.n_neurons, got {r.shape}")
        mean, std = response_statistics(r)
        net.r_shift[...] = jnp.asarray(mean)
        net.r_scale[...] = jnp.asarray(std)
    _, params, buffers = nnx.split(net, nnx.Param, ...)
    if tx is None:
        tx = make_optimizer(config)
    opt_state = tx.init(params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema_params=jax.tree.map(jnp.array, params),
                      opt_state=opt_state, buffers=buffers)


def init_ensemble(models: Sequence[nnx.Module], config: TrainConfig = TrainConfig(), *, r=None,
                  tx: optax.GradientTransformation | None = None) -> TrainState:
    """:func:`init_train_state` of each of ``models`` (same architecture, different initial
    weights, e.g. ``rngs=nnx.Rngs(i)``), stacked on a leading member axis ``(E, ...)``.

    Train it with ``jax.vmap(make_train_step(models[0], config))`` over the state, a batch
    ``(x: (E, B, ...), r: (E, B, n))`` and keys ``(E, ...)``; take member ``i`` out with
    :func:`ensemble_member`.
    """
    models = list(models)
    if not models:
        raise ValueError("models: expected at least one network, got none")
    graphdef = None
    for i, m in enumerate(models):
        _check_model(m, f"models[{i}]")
        if graphdef is None:
            graphdef = nnx.graphdef(m)
        elif nnx.graphdef(m) != graphdef:
            raise ValueError(f"models[{i}]: expected the same architecture as models[0]; an ensemble stacks "
                             f"weights of one network structure")
    if tx is None:
        tx = make_optimizer(config)
    states = [init_train_state(m, config, r=r, tx=tx) for m in models]
    return jax.tree.map(lambda *a: jnp.stack(a), *states)


def ensemble_member(state: TrainState, i: int) -> TrainState:
    """Member ``i`` of a stacked ensemble state (every leaf indexed ``[i]``)."""
    return jax.tree.map(lambda a: a[i], state)


def trained_model(model, state: TrainState, *, ema: bool = True) -> nnx.Module:
    """The network of ``state``: ``model`` (a module or its ``nnx.GraphDef``) with the EMA
    weights (``ema=True``) or the raw optimiser weights, and the state's buffers."""
    return nnx.merge(_graphdef(model), state.ema_params if ema else state.params, state.buffers)


def make_train_step(model, config: TrainConfig = TrainConfig(), *, tx: optax.GradientTransformation | None = None,
                    log_snr_loc: float | None = None, population=None) -> Callable[[TrainState, Any, jax.Array],
                                                                                    tuple[TrainState, dict]]:
    """The pure training step ``step(state, batch, key) -> (state, metrics)``.

    Args:
      model: the NNX network (or its ``nnx.GraphDef``); only its structure is used.
      config: log-SNR range / scale, ``cond_drop``, ``ema_decay`` and (when ``tx`` is None)
        the optimiser. ``steps`` / ``batch_size`` matter only through the optimiser schedule.
      tx: the optax transformation the state was initialised with (default
        ``make_optimizer(config)``).
      log_snr_loc: centre of the log-SNR density; default ``config.log_snr_loc``. Required
        when that is None: pass ``log_snr_center(x, config)`` (what :func:`train` uses).
      population: a known encoder ``p(r | x)`` (anything with ``sample(key, x)`` for ONE
        stimulus, :class:`~jaxdecomp.neurons.Encoder`), or None. When given, a batch without
        responses (``(x, None)`` or a bare ``x``) gets fresh draws ``r ~ p(r | x)`` inside the
        step, from ``jax.random.fold_in(fold_in(key, s), RESPONSE_KEY_TAG)`` (independent of the
        noise, log-SNR and dropout draws, which are unchanged): the network never sees the
        same pair twice. A batch with responses uses them as given.

    The returned ``step``:
      state: :class:`TrainState` (one member; ``jax.vmap`` the step for an ensemble).
      batch: ``(x, r)`` with ``x: (B, *model.shape)`` float32 and ``r: (B, n_neurons)`` or
        None (unconditional); a bare ``x`` means ``(x, None)``. With ``r`` and
        ``config.cond_drop > 0`` a Bernoulli(``cond_drop``) fraction of examples gets the
        null embedding.
      key: the run's PRNG key, the same every step; step ``s`` uses
        ``jax.random.fold_in(key, s)``.
      returns: the next state and ``{"loss": () float32}``, the mean squared eps error of
        the batch before the update.

    Pure (no side effects, no host round-trips): ``jax.jit`` it (with ``out_shardings``
    replicated and the batch sharded for data parallelism), ``jax.vmap`` it over stacked
    states / batches / keys, or call it eagerly.
    """
    _check_config(config)
    graphdef = _graphdef(model)
    if tx is None:
        tx = make_optimizer(config)
    if log_snr_loc is None:
        log_snr_loc = config.log_snr_loc
    if log_snr_loc is None:
        raise ValueError("log_snr_loc: config.log_snr_loc is None (centred on the data variance); "
                         "pass log_snr_loc=log_snr_center(x, config)")
    if isinstance(log_snr_loc, bool) or not isinstance(log_snr_loc, (int, float, np.integer, np.floating)) \
            or not math.isfinite(log_snr_loc):
        raise ValueError(f"log_snr_loc: expected a finite number, got {log_snr_loc!r}")
    lo, hi = config.log_snr_range
    loc, scale = float(log_snr_loc), float(config.log_snr_scale)
    cond_drop, ema_decay = float(config.cond_drop), float(config.ema_decay)
    if population is not None:
        _check_population(population)

    def step(state: TrainState, batch, key):
        xb, rb = batch if isinstance(batch, (tuple, list)) else (batch, None)
        n = xb.shape[0]
        if rb is None and population is not None:      # fresh responses: r ~ p(r | x), never the same pair twice
            kr = jax.random.fold_in(jax.random.fold_in(key, state.step), RESPONSE_KEY_TAG)
            rb = jax.lax.stop_gradient(jax.vmap(population.sample)(jax.random.split(kr, n), xb)).astype(jnp.float32)
        ka, ke, kd = jax.random.split(jax.random.fold_in(key, state.step), 3)
        a = truncated_logistic_sample(ka, (n,), lo, hi, loc, scale)
        eps = jax.random.normal(ke, xb.shape, jnp.float32)
        z = add_noise(xb, eps, a)
        drop = jax.random.bernoulli(kd, cond_drop, (n,)) if rb is not None and cond_drop > 0 else None

        def loss_fn(p):
            m = nnx.merge(graphdef, p, state.buffers)
            pred = m(z, a, rb, drop=drop)
            return jnp.mean(jnp.square(pred - eps))

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        s = state.step.astype(jnp.float32)
        decay = jnp.minimum(ema_decay, (1.0 + s) / (10.0 + s))
        ema = optax.incremental_update(params, state.ema_params, 1.0 - decay)
        new = TrainState(step=state.step + 1, params=params, ema_params=ema, opt_state=opt_state,
                         buffers=state.buffers)
        return new, {"loss": loss}

    return step


# ----------------------------------------------------------------------------- run fingerprint
# TrainConfig fields that change what a resumed run computes; ``steps`` is handled on its own
# (a larger ``steps`` continues a run), and ``seed`` only matters through the key.
_RUN_FIELDS = ("batch_size", "learning_rate", "warmup_steps", "weight_decay", "ema_decay", "grad_clip",
               "log_snr_range", "log_snr_loc", "log_snr_scale", "cond_drop")


def _array_fingerprint(a: np.ndarray | None) -> dict | None:
    """Shape, dtype and SHA-256 of the training array ``a`` (all bytes up to 256 MiB; beyond,
    the bytes of 4096 evenly spaced examples)."""
    return None if a is None else array_fingerprint(a, "examples")


def _json_value(v):
    return [float(u) for u in v] if isinstance(v, tuple) else v


def _population_fingerprint(population) -> dict | None:
    """Class and SHA-256 of the array leaves of a population (``train(..., population=...)``)."""
    if population is None:
        return None
    import hashlib

    h = hashlib.sha256()
    leaves, treedef = jax.tree.flatten(population)
    h.update(str(treedef).encode())
    for leaf in leaves:
        a = np.asarray(leaf)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return {"class": type(population).__name__, "sha256": h.hexdigest()}


def _run_fingerprint(models, x, r, config: TrainConfig, key_meta, ensemble: bool, population=None) -> dict:
    """What identifies a training run in its checkpoints' meta (see :func:`train`)."""
    from jaxdecomp.diffusion.models import model_spec

    try:
        spec = model_spec(models[0])
    except TypeError:
        spec = None
    fp = _run_fingerprint_base(models, x, r, config, key_meta, ensemble, spec)
    if population is not None:      # responses drawn during training: the population is the data
        fp["population"] = _population_fingerprint(population)
    return fp


def _run_fingerprint_base(models, x, r, config: TrainConfig, key_meta, ensemble: bool, spec) -> dict:
    return {"version": 1,
            "model": {"class": type(models[0]).__name__, "spec": spec},
            "members": len(models) if ensemble else None,
            "data": {"x": _array_fingerprint(x), "r": _array_fingerprint(r)},
            "config": {k: _json_value(getattr(config, k)) for k in _RUN_FIELDS},
            "key": key_meta,
            "steps": int(config.steps)}


def _short(v) -> str:
    text = json.dumps(v) if not isinstance(v, str) else v
    return text if len(text) <= 80 else text[:77] + "..."


def _run_differences(meta: dict, fp: dict, step: int, config: TrainConfig) -> tuple[list[str], list[str]]:
    """(differences that make the checkpoint another run's, notes worth a warning)."""
    diffs, notes = [], []
    old = meta.get("fingerprint")
    if isinstance(old, dict):
        if old.get("model") != fp["model"]:
            o, n = old.get("model") or {}, fp["model"]
            if o.get("class") != n["class"]:
                diffs.append(f"model: a {n['class']} now, a {o.get('class')} in the checkpoint")
            elif isinstance(n["spec"], dict) and isinstance(o.get("spec"), dict):
                ns, os_ = n["spec"], o["spec"]
                diffs.extend(f"model {k}: {_short(ns.get(k))} now, {_short(os_.get(k))} in the checkpoint"
                             for k in sorted(set(ns) | set(os_)) if ns.get(k) != os_.get(k))
            else:
                diffs.append(f"model: architecture {_short(n['spec'])} now, {_short(o.get('spec'))} in the checkpoint")
        if old.get("members") != fp["members"]:
            diffs.append(f"ensemble members: {fp['members']} now, {old.get('members')} in the checkpoint")
        if old.get("population") != fp.get("population"):
            o, n = old.get("population"), fp.get("population")
            diffs.append(f"population (responses drawn during training): "
                         f"{'none' if n is None else n['class'] + ' ' + n['sha256'][:12] + '...'} now, "
                         f"{'none' if o is None else str(o.get('class')) + ' ' + str(o.get('sha256'))[:12] + '...'}"
                         f" in the checkpoint")
        for name in ("x", "r"):
            o, n = (old.get("data") or {}).get(name), fp["data"][name]
            if o == n:
                continue
            if o is None or n is None:
                diffs.append(f"data {name}: {'none' if n is None else 'given'} now, "
                             f"{'none' if o is None else 'given'} in the checkpoint")
            elif o.get("shape") != n["shape"]:
                diffs.append(f"data {name}: shape {tuple(n['shape'])} now, {tuple(o.get('shape') or ())} in the "
                             f"checkpoint")
            else:
                diffs.append(f"data {name}: same shape {tuple(n['shape'])} but different values (sha256 "
                             f"{n['sha256'][:12]}... now, {str(o.get('sha256'))[:12]}... in the checkpoint)")
        old_cfg, old_key, old_steps = old.get("config") or {}, old.get("key"), old.get("steps")
    else:
        notes.append("it predates run fingerprints, so only its configuration and key were checked (not its "
                     "data or model architecture)")
        old_cfg, old_key = meta.get("config") or {}, meta.get("key")
        old_steps = old_cfg.get("steps")
    for k in _RUN_FIELDS:
        if k in old_cfg and old_cfg[k] != fp["config"][k]:
            diffs.append(f"config.{k}: {_short(fp['config'][k])} now, {_short(old_cfg[k])} in the checkpoint")
    if old_key is not None and list(old_key) != list(fp["key"]):
        diffs.append("key: a different PRNG key (or config.seed) than the run that wrote it")
    if step > config.steps:
        diffs.append(f"steps: the checkpoint is at step {step}, beyond config.steps={config.steps} (a shorter run "
                     f"cannot be recovered from a longer one)")
    elif old_steps is not None and int(old_steps) != config.steps:
        notes.append(f"it was written by a run of {int(old_steps)} steps and now continues to config.steps="
                     f"{config.steps}; the cosine learning-rate schedule changes from step {step} on, so the result "
                     f"differs from an uninterrupted {config.steps}-step run")
    return diffs, notes


_HINT = ("To continue that run, call again with the settings it was written with; to delete its checkpoints "
         "and start afresh in this directory pass overwrite=True; or choose another checkpoint_dir")


def _check_resume_args(resume, overwrite, checkpoint_dir) -> None:
    check_resume(resume, overwrite, "checkpoints")
    if resume == "must" and checkpoint_dir is None:
        raise ValueError("resume: 'must' needs a checkpoint_dir to resume from")


def _resume(ckptr, template, fp: dict, config: TrainConfig, resume: str, overwrite: bool):
    """The checkpoint to continue (a :class:`checkpoint.Restored`) or None to start afresh,
    following ``resume`` / ``overwrite`` (see :func:`train`); raises before anything changes."""
    directory = ckptr.directory
    steps = ckptr.all_steps()
    if resume == "never":
        if steps and not overwrite:
            raise FileExistsError(f"checkpoint_dir: '{directory}' already holds checkpoints (steps {steps}) and "
                                  f"resume='never'; pass overwrite=True to delete them and start afresh, "
                                  f"resume='auto' to continue them, or choose another checkpoint_dir")
        if steps:
            _discard(ckptr, "resume='never', overwrite=True")
        return None
    if not steps:
        if resume == "must":
            raise FileNotFoundError(f"checkpoint_dir: resume='must' but '{directory}' holds no checkpoint")
        return None
    try:
        restored = ckptr.latest_good(template)
        if restored is None:
            if resume == "must":
                raise FileNotFoundError(f"checkpoint_dir: resume='must' but no checkpoint in '{directory}' is "
                                        f"readable (unreadable steps were moved aside as <step>.corrupt)")
            return None
        diffs, notes = _run_differences(restored.meta, fp, int(restored.step), config)
        if diffs:
            raise _ckpt.CheckpointMismatch(directory, restored.step, diffs, name="checkpoint_dir")
    except _ckpt.CheckpointMismatch as err:
        if err.differences and err.differences[0].startswith("model or state structure"):
            meta = ckptr.read_meta(err.step)       # say which settings differ, not just which arrays
            if meta is not None:
                more, _ = _run_differences(meta, fp, err.step, config)
                if any(d.startswith(("model", "ensemble")) for d in more):   # the arrays' names say no more
                    err.differences[:] = more + ["so the saved arrays do not fit this model"]
                else:
                    err.differences[:0] = more
        if overwrite:
            _discard(ckptr, f"overwrite=True and they were written by a different run ({'; '.join(err.differences)})")
            return None
        raise _ckpt.CheckpointMismatch(err.directory, err.step, err.differences, name="checkpoint_dir",
                                       hint=_HINT) from None
    for note in notes:
        warnings.warn(f"checkpoint_dir: resuming step {restored.step} of '{directory}': {note}", stacklevel=4)
    return restored


def _discard(ckptr, why: str) -> None:
    gone = ckptr.clear()
    warnings.warn(f"checkpoint_dir: deleted the checkpoints (steps {gone}) in '{ckptr.directory}' because {why}; "
                  f"starting afresh", stacklevel=5)


# ----------------------------------------------------------------------------- host loop
def _fit(models: list, x, r, config: TrainConfig, keys: list, checkpoint_dir, step_callback, ensemble: bool,
         resume: str = "auto", overwrite: bool = False, population=None):
    """The host loop shared by :func:`train` (one model, ``ensemble=False``) and
    :func:`train_ensemble` (a vmapped step over ``len(models)`` members)."""
    devices = jax.devices()
    if config.batch_size % len(devices):
        raise ValueError(f"config.batch_size: {config.batch_size} is not divisible by the number of devices "
                         f"({len(devices)}); the batch is split evenly across devices")
    ckptr = None
    if checkpoint_dir is not None:   # writable? locked by another run? before any work
        ckptr = _ckpt.Checkpointer(Path(checkpoint_dir), keep=config.keep_checkpoints, name="checkpoint_dir")
    try:
        return _run(models, x, r, config, keys, ckptr, step_callback, ensemble, resume, overwrite,
                    population=population)
    finally:
        if ckptr is not None:
            ckptr.close()


def _run(models: list, x, r, config: TrainConfig, keys: list, ckptr, step_callback, ensemble: bool,
         resume: str, overwrite: bool, population=None):
    E = len(models)
    n = x.shape[0]
    devices = jax.devices()
    mesh = Mesh(np.array(devices), ("data",))
    repl = NamedSharding(mesh, P())
    batch_sh = NamedSharding(mesh, P(None, "data") if ensemble else P("data"))

    words = [_key_words(k) for k in keys]
    key_meta = words if ensemble else words[0]
    tx = make_optimizer(config)
    one_step = make_train_step(models[0], config, tx=tx, log_snr_loc=log_snr_center(x, config),
                               population=population if r is None else None)
    r_init = r
    if r is None and population is not None:     # responses drawn each step; standardise on a pilot draw
        r_init = _population_responses(models[0], population, x, keys[0])
    if ensemble:
        state = init_ensemble(models, config, r=r_init, tx=tx)
        key_run = jnp.stack([jnp.asarray(k) for k in keys])
        jstep = jax.jit(jax.vmap(one_step), out_shardings=(repl, repl))
    else:
        state = init_train_state(models[0], config, r=r_init, tx=tx)
        key_run = keys[0]
        jstep = jax.jit(one_step, out_shardings=(repl, repl))
    state = jax.device_put(state, repl)
    graphdef = nnx.graphdef(models[0])

    rows: list[tuple] = []                      # (step, mean loss of each member since the last row)
    acc_sum, acc_n = np.zeros(E, np.float64), 0
    start, resumed_from = 0, None
    csv_path = None
    checkpoint_dir = None
    fingerprint = None
    if ckptr is not None:
        checkpoint_dir = ckptr.directory
        fingerprint = _run_fingerprint(models, x, r, config, key_meta, ensemble, population=population)
        restored = _resume(ckptr, _to_ckpt(state), fingerprint, config, resume, overwrite)
        if restored is not None:
            state = _from_ckpt(restored.state)
            start = resumed_from = int(restored.step)
            held = sorted({int(v) for v in np.asarray(state.step).ravel()})
            if held != [start]:
                raise ValueError(f"checkpoint_dir: step {start} in '{checkpoint_dir}' holds a state for step "
                                 f"{held[0] if len(held) == 1 else held}; the directory mixes runs")
            meta = restored.meta
            rows = [(int(row[0]), *(float(v) for v in row[1:])) for row in meta.get("losses", [])]
            acc_sum = np.broadcast_to(np.asarray(meta.get("acc_sum", 0.0), np.float64), (E,)).copy()
            acc_n = int(meta.get("acc_n", 0))
        csv_path = checkpoint_dir / "loss_log.csv"
        _write_csv(csv_path, rows, E if ensemble else None)

    key_dev = jax.device_put(key_run, repl)
    batchers = [_Batcher(w, n, config.batch_size) for w in words]

    def save(step):
        meta = {"losses": [list(row) for row in rows],
                "acc_sum": [float(v) for v in acc_sum] if ensemble else float(acc_sum[0]), "acc_n": acc_n,
                "key": key_meta,
                "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()},
                "fingerprint": fingerprint}
        if ensemble:
            meta["members"] = E
        ckptr.save(step, _to_ckpt(state), meta)


    bar = tqdm(total=config.steps, initial=min(start, config.steps), disable=not config.progress,
               desc="train", dynamic_ncols=True)
    acc_dev, acc_cnt = None, 0          # device-side loss sum since the last host sync
    try:
        for s in range(start, config.steps):
            idx = np.stack([b(s) for b in batchers]) if ensemble else batchers[0](s)
            xb = _put_global(x[idx], batch_sh)
            rb = _put_global(r[idx], batch_sh) if r is not None else None
            state, metrics = jstep(state, (xb, rb), key_dev)
            loss = metrics["loss"]
            acc_dev = loss if acc_dev is None else acc_dev + loss
            acc_cnt += 1
            done = s + 1
            is_log = done % config.log_every == 0 or done == config.steps
            is_ckpt = ckptr is not None and (done % config.checkpoint_every == 0 or done == config.steps)
            if is_log or is_ckpt:
                acc_sum = acc_sum + np.asarray(acc_dev, np.float64).reshape(E)
                acc_n += acc_cnt
                acc_dev, acc_cnt = None, 0
                if not np.all(np.isfinite(acc_sum)):
                    last = ckptr.all_steps()[-1] if ckptr is not None and ckptr.all_steps() else None
                    who = (f" of ensemble member(s) {[int(i) for i in np.flatnonzero(~np.isfinite(acc_sum))]}"
                           if ensemble else "")
                    raise FloatingPointError(
                        f"train: the loss{who} became non-finite between steps {done - acc_n} and {done}"
                        + (f"; the last checkpoint (step {last}) in '{checkpoint_dir}' is untouched"
                           if last is not None else "")
                        + "; lower config.learning_rate or check x / r")
            if is_log:
                rows.append((done, *(float(v) for v in acc_sum / acc_n)))
                acc_sum, acc_n = np.zeros(E, np.float64), 0
                bar.set_postfix(loss=" ".join(f"{v:.4g}" for v in rows[-1][1:]))
                if csv_path is not None:
                    _write_csv(csv_path, rows, E if ensemble else None)
            if is_ckpt:
                save(done)
            bar.update(1)
            if step_callback is not None:
                step_callback(done, xb)
    finally:
        bar.close()

    losses = np.asarray(rows, dtype=np.float64).reshape(-1, 1 + E)
    members = [ensemble_member(state, i) for i in range(E)] if ensemble else [state]
    return [TrainResult(trained_model(graphdef, m), trained_model(graphdef, m, ema=False), losses[:, [0, 1 + i]],
                        int(m.step), resumed_from) for i, m in enumerate(members)]


# ----------------------------------------------------------------------------- train
def train(model: nnx.Module, x, r=None, config: TrainConfig = TrainConfig(), *, checkpoint_dir=None, key=None,
          resume: str = "auto", overwrite: bool = False,
          _step_callback: Callable[[int, jax.Array], Any] | None = None, population=None) -> TrainResult:
    """Train a denoiser network; returns :class:`TrainResult` (``result.model`` has the EMA weights).

    A host loop around :func:`init_train_state` and a jitted :func:`make_train_step`, with
    batches from :func:`batch_indices`.

    Args:
      model: an :class:`~jaxdecomp.diffusion.networks.MLPDenoiser` or ``UNetDenoiser``
        (any NNX module with static ``shape`` / ``n_neurons`` and the denoiser call).
        Not modified; the trained networks are new modules. Train the two halves of a
        ``PairDenoiser`` separately.
      x: ``(N, *model.shape)`` float stimuli (clean).
      r: ``(N, model.n_neurons)`` responses paired with ``x``, or None to train the
        unconditional denoiser. When given (and not resuming) the network's
        ``r_shift`` / ``r_scale`` are set to the per-neuron mean / floored std of ``r``.
      config: :class:`TrainConfig`.
      checkpoint_dir: directory for orbax checkpoints and ``loss_log.csv``; checked to be a
        writable directory (created if missing) and locked (``<checkpoint_dir>/.lock``) for
        the whole run before any work starts. What happens to checkpoints already there
        is set by ``resume`` and ``overwrite``.
      key: PRNG key; default ``jax.random.PRNGKey(config.seed)``.
      resume: ``"auto"`` (default) continues the checkpoints in ``checkpoint_dir`` if they
        were written by this same run, starts afresh if there are none, and raises
        :class:`~jaxdecomp.diffusion.checkpoint.CheckpointMismatch` if they belong to a
        different run; ``"must"`` is the same but raises ``FileNotFoundError`` when there
        is nothing readable to continue; ``"never"`` always starts afresh and raises
        ``FileExistsError`` if checkpoints are there (unless ``overwrite``).
      overwrite: allow deleting the checkpoints in ``checkpoint_dir`` (with a warning) when
        they cannot be continued: with ``resume="never"`` always, with ``"auto"`` only when
        they belong to a different run (a matching run is still continued). Steps moved
        aside as ``<step>.corrupt`` are kept.
      population: a KNOWN encoder ``p(r | x)`` (``sample(key, x)`` for one stimulus, e.g. a
        :mod:`jaxdecomp.neurons` population or a fitted encoder), used only with ``r=None``:
        every step then draws fresh responses ``r ~ p(r | x)`` for its batch inside the jitted
        step (:func:`make_train_step`), so the network never sees the same ``(x, r)`` pair
        twice (unlimited paired data at no extra cost; a fixed set of pairs is memorised and
        biases I_local, ``experiments/bias_sources.py``). ``r_shift`` / ``r_scale`` are set
        from one pilot draw for up to :data:`PILOT_RESPONSES` evenly spaced stimuli. The
        population is part of the run fingerprint (class and digest of its arrays). With
        ``population=None`` (default) nothing changes.

    Resuming. Each checkpoint records a run fingerprint: the model class, its architecture
    spec and (through the saved arrays) every variable's shape and dtype; the training data
    (shape, dtype and SHA-256 of ``x`` and ``r`` after conversion to float32: all bytes up to
    256 MiB, beyond that 4096 evenly spaced examples); the key; the ``TrainConfig`` fields
    that change the updates (``batch_size``, ``learning_rate``, ``warmup_steps``,
    ``weight_decay``, ``ema_decay``, ``grad_clip``, ``log_snr_range`` / ``loc`` / ``scale``,
    ``cond_drop``); not ``progress``, ``log_every``, ``checkpoint_every`` or
    ``keep_checkpoints``, which may change between sessions, and not the initial weight
    values (the checkpoint's trained weights replace them). Any difference is a different
    run, reported by ``CheckpointMismatch`` (a ``ValueError``) listing what differs; nothing
    is renamed or deleted. ``steps`` is not part of the fingerprint: a ``config.steps``
    larger than the checkpoint's step continues training (a warning says when it differs
    from the steps of the run that wrote it: the cosine schedule then changes, so the
    result differs from an uninterrupted run of the new length); a ``config.steps`` smaller
    than the newest checkpoint's step is a mismatch (the longer model is never returned as
    a shorter one). Only checkpoints of the right structure that fail to read back or to
    match their digests are corrupt: they are moved aside with a warning and the previous
    step is used (:func:`checkpoint.latest_good`). Resume with the same data, key and
    config to reproduce an uninterrupted run exactly.

    Raises:
      TypeError / ValueError naming the argument on bad input; ``ValueError`` naming
      ``checkpoint_dir`` if it is not a writable directory;
      :class:`~jaxdecomp.diffusion.checkpoint.CheckpointLocked` if another run holds it;
      ``CheckpointMismatch`` / ``FileExistsError`` / ``FileNotFoundError`` as above.
    """
    _check_config(config)
    _check_model(model)
    x, r = _check_data(model, x, r)
    _check_fresh(model, r, population)
    _check_resume_args(resume, overwrite, checkpoint_dir)
    if key is None:
        key = jax.random.PRNGKey(config.seed)
    return _fit([model], x, r, config, [key], checkpoint_dir, _step_callback, ensemble=False, resume=resume,
                overwrite=overwrite, population=population)[0]


def train_ensemble(models: Sequence[nnx.Module], x, r=None, config: TrainConfig = TrainConfig(), *, keys=None,
                   checkpoint_dir=None, resume: str = "auto", overwrite: bool = False,
                   population=None) -> list[TrainResult]:
    """Train ``E = len(models)`` networks of one architecture in one program (a ``jax.vmap``
    of :func:`make_train_step`); returns one :class:`TrainResult` per member.

    Member ``i`` starts from ``models[i]``'s weights and uses ``keys[i]`` for its noise and
    batch order, so it equals ``train(models[i], x, r, config, key=keys[i])`` up to float
    rounding of the batched matrix products. ``keys``: a sequence of ``E`` PRNG keys (or a
    stacked ``(E, 2)`` array); default ``fold_in(PRNGKey(config.seed), i)``. Checkpoints
    (``checkpoint_dir``) hold the stacked state and resume like :func:`train`'s (same
    ``resume`` / ``overwrite`` choices and run fingerprint, plus the number of members and
    all ``E`` keys); the loss log has one column per member. Use the members' spread as
    network variability. ``population``: a known encoder, as in :func:`train` (``r=None``;
    every member draws its own fresh responses each step, from its own key).
    """
    _check_config(config)
    models = list(models)
    if not models:
        raise ValueError("models: expected at least one network, got none")
    for i, m in enumerate(models):
        _check_model(m, f"models[{i}]")
    x, r = _check_data(models[0], x, r)
    _check_fresh(models[0], r, population)
    if keys is None:
        base = jax.random.PRNGKey(config.seed)
        keys = [jax.random.fold_in(base, i) for i in range(len(models))]
    keys = list(keys)
    if len(keys) != len(models):
        raise ValueError(f"keys: expected one key per model ({len(models)}), got {len(keys)}")
    _check_resume_args(resume, overwrite, checkpoint_dir)
    return _fit(models, x, r, config, keys, checkpoint_dir, None, ensemble=True, resume=resume, overwrite=overwrite,
                population=population)
