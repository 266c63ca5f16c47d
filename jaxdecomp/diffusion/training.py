"""Training denoiser networks by eps-prediction over continuous log-SNR.

``train(model, x, r)`` minimises ``E || net(z, a, r) - eps ||^2`` with ``a`` drawn from a
truncated logistic over the log-SNR range, ``eps ~ N(0, I)`` and the variance-preserving
``z = alpha x + sigma eps`` (:func:`jaxdecomp.diffusion.schedules.add_noise`). With responses
and ``cond_drop > 0`` the response is replaced by the learned null embedding for a random
fraction of examples, so one network learns both the conditional and the unconditional
denoiser.

Functional core: the NNX module is split into ``graphdef`` + parameter state + buffer
state; one ``jax.jit``-compiled step maps ``(params, opt_state, ema, batch, key, step)`` to
new state and the loss. Data parallel with ``jax.sharding``: the batch is sharded over a
1-D ``Mesh`` of all devices on axis ``"data"``, everything else is replicated; the same
code runs on one device.

Reproducible and resumable: step ``s`` uses ``jax.random.fold_in(key, s)`` and a batch that
depends only on ``(key, s)``, so a run resumed from a checkpoint at step ``s`` repeats
exactly the updates of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from jaxdecomp.diffusion import checkpoint as _ckpt
from jaxdecomp.diffusion.networks import PairDenoiser, response_statistics
from jaxdecomp.diffusion.schedules import add_noise, truncated_logistic_sample

__all__ = ["TrainConfig", "TrainResult", "train"]


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


def _write_csv(path: Path, rows) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w") as f:
        f.write("step,loss\n")
        for s, v in rows:
            f.write(f"{int(s)},{v:.8g}\n")
    tmp.replace(path)


def _put_global(arr: np.ndarray, sharding) -> jax.Array:
    """Place a host array (identical on every process) as a global array with ``sharding``."""
    return jax.make_array_from_callback(arr.shape, sharding, lambda idx: arr[idx])


# ----------------------------------------------------------------------------- train
def train(model: nnx.Module, x, r=None, config: TrainConfig = TrainConfig(), *, checkpoint_dir=None, key=None,
          _step_callback: Callable[[int, jax.Array], Any] | None = None) -> TrainResult:
    """Train a denoiser network; returns :class:`TrainResult` (``result.model`` has the EMA weights).

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
      checkpoint_dir: directory for orbax checkpoints and ``loss_log.csv``. If it already
        holds checkpoints, training resumes from the newest readable one (corrupt ones
        are moved aside with a warning, see :func:`checkpoint.latest_good`) and continues
        to ``config.steps``. Resume with the same data, key and config to reproduce an
        uninterrupted run exactly (a different ``steps`` changes the cosine schedule).
      key: PRNG key; default ``jax.random.PRNGKey(config.seed)``.

    Raises:
      TypeError / ValueError naming the argument on bad input.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")
    if isinstance(model, PairDenoiser):
        raise TypeError("model: got a PairDenoiser; train its unconditional and conditional networks separately")
    if not isinstance(model, nnx.Module) or not hasattr(model, "shape") or not hasattr(model, "n_neurons"):
        raise TypeError(f"model: expected an NNX denoiser network with .shape and .n_neurons, got {type(model).__name__}")
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
    n = x.shape[0]

    devices = jax.devices()
    if config.batch_size % len(devices):
        raise ValueError(f"config.batch_size: {config.batch_size} is not divisible by the number of devices "
                         f"({len(devices)}); the batch is split evenly across devices")
    mesh = Mesh(np.array(devices), ("data",))
    repl = NamedSharding(mesh, P())
    batch_sh = NamedSharding(mesh, P("data"))

    if key is None:
        key = jax.random.PRNGKey(config.seed)
    words = _key_words(key)
    lo, hi = config.log_snr_range
    if config.log_snr_loc is None:
        var = float(np.mean(np.var(x, axis=0, dtype=np.float64)))
        loc = float(np.clip(-np.log(max(var, 1e-12)), lo, hi))
    else:
        loc = float(config.log_snr_loc)
    scale = float(config.log_snr_scale)
    use_drop = r is not None and config.cond_drop > 0
    cond_drop = float(config.cond_drop)

    # ---- functional state
    net = nnx.clone(model)
    if r is not None:
        mean, std = response_statistics(r)
        net.r_shift[...] = jnp.asarray(mean)
        net.r_scale[...] = jnp.asarray(std)
    graphdef, params, buffers = nnx.split(net, nnx.Param, ...)

    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, config.warmup_steps, max(config.steps, config.warmup_steps + 1), end_value=0.0)
    tx = optax.chain(
        optax.clip_by_global_norm(config.grad_clip),
        optax.adamw(schedule, weight_decay=config.weight_decay,
                    mask=lambda p: jax.tree.map(lambda a: jnp.ndim(a) >= 2, p)),
    )
    state = {
        "params": params,
        "opt_state": tx.init(params),
        "ema": jax.tree.map(jnp.array, params),
        "buffers": buffers,
        "step": jnp.zeros((), jnp.int32),
    }
    state = jax.device_put(state, repl)

    rows: list[tuple[int, float]] = []
    acc_sum, acc_n = 0.0, 0
    start, resumed_from = 0, None
    ckptr = None
    csv_path = None
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        restored = _ckpt.latest_good(checkpoint_dir, template=state)
        if restored is not None:
            state = restored.state
            start = resumed_from = int(restored.step)
            if int(state["step"]) != start:
                raise ValueError(f"checkpoint_dir: step {start} in '{checkpoint_dir}' holds a state for step "
                                 f"{int(state['step'])}; the directory mixes runs")
            meta = restored.meta
            rows = [(int(s), float(v)) for s, v in meta.get("losses", [])]
            acc_sum, acc_n = float(meta.get("acc_sum", 0.0)), int(meta.get("acc_n", 0))
            if meta.get("key") is not None and list(meta["key"]) != words:
                warnings.warn(f"checkpoint_dir: resuming '{checkpoint_dir}' with a different key than the run that "
                              f"wrote it; the continued run will not match an uninterrupted one", stacklevel=2)
        ckptr = _ckpt.Checkpointer(checkpoint_dir, keep=config.keep_checkpoints)
        csv_path = checkpoint_dir / "loss_log.csv"
        _write_csv(csv_path, rows)

    # ---- the jitted step
    batch = config.batch_size
    ema_decay = float(config.ema_decay)

    def step_fn(state, xb, rb, key):
        step = state["step"]
        ka, ke, kd = jax.random.split(jax.random.fold_in(key, step), 3)
        a = truncated_logistic_sample(ka, (batch,), lo, hi, loc, scale)
        eps = jax.random.normal(ke, xb.shape, jnp.float32)
        z = add_noise(xb, eps, a)
        drop = jax.random.bernoulli(kd, cond_drop, (batch,)) if use_drop else None

        def loss_fn(p):
            m = nnx.merge(graphdef, p, state["buffers"])
            pred = m(z, a, rb, drop=drop)
            return jnp.mean(jnp.square(pred - eps))

        loss, grads = jax.value_and_grad(loss_fn)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        s = step.astype(jnp.float32)
        decay = jnp.minimum(ema_decay, (1.0 + s) / (10.0 + s))
        ema = optax.incremental_update(params, state["ema"], 1.0 - decay)
        new = {"params": params, "opt_state": opt_state, "ema": ema, "buffers": state["buffers"], "step": step + 1}
        return new, loss

    jstep = jax.jit(step_fn, out_shardings=(repl, repl))
    key_dev = jax.device_put(key, repl)
    batcher = _Batcher(words, n, batch)

    def save(step):
        meta = {"losses": [[s, v] for s, v in rows], "acc_sum": acc_sum, "acc_n": acc_n, "key": words,
                "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}}
        ckptr.save(step, state, meta)

    bar = tqdm(total=config.steps, initial=min(start, config.steps), disable=not config.progress,
               desc="train", dynamic_ncols=True)
    acc_dev, acc_cnt = None, 0          # device-side loss sum since the last host sync
    try:
        for s in range(start, config.steps):
            idx = batcher(s)
            xb = _put_global(x[idx], batch_sh)
            rb = _put_global(r[idx], batch_sh) if r is not None else None
            state, loss = jstep(state, xb, rb, key_dev)
            acc_dev = loss if acc_dev is None else acc_dev + loss
            acc_cnt += 1
            done = s + 1
            is_log = done % config.log_every == 0 or done == config.steps
            is_ckpt = ckptr is not None and (done % config.checkpoint_every == 0 or done == config.steps)
            if is_log or is_ckpt:
                acc_sum += float(acc_dev)
                acc_n += acc_cnt
                acc_dev, acc_cnt = None, 0
                if not math.isfinite(acc_sum):
                    last = ckptr.all_steps()[-1] if ckptr is not None and ckptr.all_steps() else None
                    raise FloatingPointError(
                        f"train: the loss became non-finite between steps {done - acc_n} and {done}"
                        + (f"; the last checkpoint (step {last}) in '{checkpoint_dir}' is untouched"
                           if last is not None else "")
                        + "; lower config.learning_rate or check x / r")
            if is_log:
                rows.append((done, acc_sum / acc_n))
                acc_sum, acc_n = 0.0, 0
                bar.set_postfix(loss=f"{rows[-1][1]:.4g}")
                if csv_path is not None:
                    _write_csv(csv_path, rows)
            if is_ckpt:
                save(done)
            bar.update(1)
            if _step_callback is not None:
                _step_callback(done, xb)
    finally:
        bar.close()
        if ckptr is not None:
            ckptr.close()

    final = int(state["step"])
    ema_model = nnx.merge(graphdef, state["ema"], state["buffers"])
    raw_model = nnx.merge(graphdef, state["params"], state["buffers"])
    losses = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
    return TrainResult(ema_model, raw_model, losses, int(final), resumed_from)
