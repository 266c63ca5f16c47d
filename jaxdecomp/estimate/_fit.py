"""``estimate(x, r)``: mutual information from paired samples alone (trains a denoiser)."""

from __future__ import annotations

import numpy as np
import jax
from flax import nnx
from scipy.special import ndtri

from jaxdecomp._interfaces import Estimate
from jaxdecomp.diffusion.networks import MLPDenoiser, UNetDenoiser, fit_gaussian_baseline
from jaxdecomp.diffusion.schedules import Levels, network_levels
import jax.numpy as jnp

from jaxdecomp.diffusion.schedules import add_noise, truncated_logistic_sample
from jaxdecomp.diffusion.training import (TrainConfig, batch_indices, init_ensemble,
                                          log_snr_center, make_optimizer, make_train_step, train,
                                          train_ensemble)
from jaxdecomp.estimate._estimators import _check_count, mutual_information

TRANSFORMS = ("auto", "standardize", "copula")
MIN_PAIRS = 10            # fewer pairs than this cannot train a denoiser and hold out pairs for an SE
DISAGREEMENT_SE = 3.0     # |gap - orthogonal| beyond this many (paired) standard errors is flagged
DIRECTIONS = ("x|r", "r|x", "both")
ENSEMBLE = 3             # default ensemble size (see the estimate docstring)


# ------------------------------------------------------------------ input checks
def _as_float(name: str, a) -> np.ndarray:
    """float64 copy of ``a``; integers and booleans are converted (booleans to 0 / 1)."""
    try:
        arr = np.asarray(a)
    except Exception as err:  # noqa: BLE001
        raise TypeError(f"{name}: expected a numeric array, got {type(a).__name__}") from err
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise TypeError(f"{name}: expected a real numeric (float, integer or boolean) array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}: contains NaN or infinite values ({int(bad.sum())}, first at index {first})")
    return arr


def min_pairs(holdout: float = 0.2) -> int:
    """The fewest pairs :func:`estimate` accepts at this ``holdout``: at least :data:`MIN_PAIRS`, with
    at least 2 held-out pairs (for a standard error) and 2 training pairs (for the standardisation)."""
    n = MIN_PAIRS
    while int(round(holdout * n)) < 2 or n - int(round(holdout * n)) < 2:
        n += 1
    return n


# ------------------------------------------------------------------ marginal transforms
def _fit_standardize(train_cols: np.ndarray) -> dict:
    return {"kind": "standardize", "shift": train_cols.mean(0), "scale": train_cols.std(0)}


def _fit_copula(train_cols: np.ndarray) -> list:
    """Per column: the training values' distinct sorted values and their mid-rank ECDF levels
    ``(midrank) / (n + 1)`` (ties share one level), in ``(0, 1)``."""
    n = train_cols.shape[0]
    out = []
    for c in train_cols.T:
        vals, counts = np.unique(c, return_counts=True)
        before = np.concatenate([[0], np.cumsum(counts)[:-1]])
        out.append((vals, (before + (counts + 1) / 2.0) / (n + 1.0)))
    return out


def _apply_copula(cols: np.ndarray, fitted: list) -> np.ndarray:
    """Normal quantiles of the training ECDF, linearly interpolated between training values (and held at
    its end levels beyond the training range). On the training values themselves this is exactly
    ``ndtri(midrank / (n + 1))``."""
    u = np.stack([np.interp(c, vals, levels) for c, (vals, levels) in zip(cols.T, fitted)], axis=1)
    return ndtri(u)


def _constant_columns(train_cols: np.ndarray, all_cols: np.ndarray, name: str, notes: list) -> np.ndarray:
    """Mask of the columns to keep; a note for each dropped one."""
    const_train = train_cols.max(0) == train_cols.min(0)
    const_all = all_cols.max(0) == all_cols.min(0)
    for j in np.flatnonzero(const_all):
        notes.append(f"{name}: column {j} is constant (every pair has {all_cols[0, j]:g}); it carries no "
                     "information and was dropped")
    for j in np.flatnonzero(const_train & ~const_all):
        notes.append(f"{name}: column {j} is constant on the training pairs (but not on all pairs); the network "
                     "could learn nothing from it, so it was dropped and the estimate omits its share")
    return ~const_train


def _transform(cols: np.ndarray, fit: np.ndarray, transform: str, per_column: bool):
    """(transformed float32 columns, the fitted parameters), fitted on rows ``fit`` only."""
    train_cols = cols[fit]
    if transform == "copula":
        fitted = _fit_copula(train_cols)
        return _apply_copula(cols, fitted).astype(np.float32), {"kind": "copula", "ecdf": fitted}
    if per_column:
        p = _fit_standardize(train_cols)
    else:   # images: one shift and scale for all pixels (keeps the spatial structure)
        p = {"kind": "standardize", "shift": np.full(cols.shape[1], train_cols.mean()),
             "scale": np.full(cols.shape[1], train_cols.std())}
    scale = np.where(p["scale"] > 0, p["scale"], 1.0)
    return ((cols - p["shift"]) / scale).astype(np.float32), p


def _zero(notes, info, why):
    notes.append(why)
    info.update(model=None, losses=None, raw_value=0.0, clipped=False, orthogonal=None, gap=None,
                form_disagreement_se=None, diagnostic=None, models=None, member_values=None, mc_stderr=0.0,
                training_stderr=0.0, form_stderr=0.0, statistical_stderr=0.0, correction=0.0,
                directions=None, validation=None)
    return Estimate(0.0, 0.0, info)


# ------------------------------------------------------------------ training with a validation split
def _validation_draws(key, xv: np.ndarray, cv: np.ndarray, config: TrainConfig, loc: float, draws: int):
    """FIXED noise draws for the validation loss (the same at every evaluation, so the curve compares
    weights, not draws): ``draws`` (log-SNR from the training density, eps) per validation pair."""
    xv, cv = np.repeat(xv, draws, 0), np.repeat(cv, draws, 0)
    ka, ke = jax.random.split(key)
    lo, hi = config.log_snr_range
    a = truncated_logistic_sample(ka, (xv.shape[0],), lo, hi, loc, config.log_snr_scale)
    eps = jax.random.normal(ke, xv.shape, jnp.float32)
    return add_noise(jnp.asarray(xv), eps, a), a, eps, jnp.asarray(cv)


def _make_val_loss(graphdef, per_member: bool = False):
    """(conditional, unconditional) mean squared eps error of each stacked member on fixed draws
    (``per_member``: each member has its own noisy stimuli ``z`` and responses ``c``, axis 0)."""
    def one(params, buffers, z, a, eps, c):
        m = nnx.merge(graphdef, params, buffers)
        return jnp.mean(jnp.square(m(z, a, c) - eps)), jnp.mean(jnp.square(m(z, a, None) - eps))
    data_axis = 0 if per_member else None
    return jax.jit(jax.vmap(one, in_axes=(0, 0, data_axis, None, None, data_axis)))


@jax.jit
def _keep_best(improved, ema, best):
    return jax.tree.map(lambda e, b: jnp.where(improved.reshape((-1,) + (1,) * (e.ndim - 1)), e, b), ema, best)


def _fitted_baselines(models: list, x: np.ndarray, c: np.ndarray) -> list:
    """Copies of the members whose Gaussian baseline (``MLPDenoiser(gaussian_baseline=True)``) is fitted
    to the training pairs ``(x, c)``; members without one are returned as they are."""
    out, fitted = [], {}
    for m in models:
        if getattr(m, "gaussian_baseline", False):
            if id(m) not in fitted:
                fitted[id(m)] = fit_gaussian_baseline(nnx.clone(m), x, c)
            m = fitted[id(m)]
        out.append(m)
    return out


def _train_members(models: list, x: np.ndarray, c: np.ndarray, config: TrainConfig, key, *, validation: float,
                   eval_every: int | None, patience: int, train_idx: np.ndarray | None = None):
    """Train ``E = len(models)`` members in one vmapped program (:func:`init_ensemble` and a vmapped
    :func:`make_train_step`, the pieces :func:`train_ensemble` uses) on ``1 - validation`` of the pairs.

    ``train_idx``: None (every member trains on all rows of ``x`` / ``c``) or ``(E, n)`` row indices,
    member ``e`` training on ``x[train_idx[e]]`` (cross-fitting: different pairs per member). The
    validation split takes the same positions of each member's rows, so with identical rows it is
    the shared split.

    Every ``eval_every`` steps the EMA weights of each member are scored on the validation pairs with
    fixed noise draws: ``val = (loss(z, a, c) + loss(z, a, None)) / 2`` (the conditional and the
    unconditional denoising errors: the MI integrand is their difference, so both must be good).
    Each member keeps its best EMA weights; training stops when no member has improved for
    ``patience`` evaluations (or at ``config.steps``). Returns (list of trained modules, info dict).
    """
    E = len(models)
    shared = train_idx is None
    if shared:
        train_idx = np.broadcast_to(np.arange(x.shape[0]), (E, x.shape[0]))
    train_idx = np.asarray(train_idx)
    if train_idx.ndim != 2 or train_idx.shape[0] != E:
        raise ValueError(f"train_idx: expected ({E}, n) row indices, got shape {train_idx.shape}")
    n_all = train_idx.shape[1]
    kperm, kval, krun = jax.random.split(key, 3)
    perm = np.asarray(jax.random.permutation(kperm, n_all))
    n_val = max(2, int(round(validation * n_all)))
    vi, ti = train_idx[:, perm[:n_val]], train_idx[:, perm[n_val:]]        # (E, n_val), (E, n)
    if shared:
        models = _fitted_baselines(models, x[ti[0]], c[ti[0]])
    else:
        models = [_fitted_baselines([m], x[ti[e]], c[ti[e]])[0] for e, m in enumerate(models)]
    n = ti.shape[1]
    bs = min(config.batch_size, n)
    if bs != config.batch_size:
        config = TrainConfig(**{**{f: getattr(config, f) for f in config.__dataclass_fields__}, "batch_size": bs})
    eval_every = max(1, config.steps // 30) if eval_every is None else eval_every
    tx = make_optimizer(config)
    loc = log_snr_center(x[ti[0]], config)
    step = jax.jit(jax.vmap(make_train_step(models[0], config, tx=tx, log_snr_loc=loc)))
    if shared:
        state = init_ensemble(models, config, r=c[ti[0]], tx=tx)
    else:     # each member's response statistics from its own training pairs
        state = jax.tree.map(lambda *a: jnp.concatenate(a), *[init_ensemble([m], config, r=c[ti[e]], tx=tx)
                                                               for e, m in enumerate(models)])
    graphdef = nnx.graphdef(models[0])
    val_loss = _make_val_loss(graphdef, per_member=not shared)
    draws = max(1, int(np.ceil(2000 / n_val)))
    if shared:
        vb = _validation_draws(kval, x[vi[0]], c[vi[0]], config, loc, draws)
    else:     # the same log-SNR and eps draws for every member, on its own validation pairs
        vbs = [_validation_draws(kval, x[vi[e]], c[vi[e]], config, loc, draws) for e in range(E)]
        vb = (jnp.stack([v[0] for v in vbs]), vbs[0][1], vbs[0][2], jnp.stack([v[3] for v in vbs]))
    keys = jax.random.split(krun, E)
    best, best_loss, best_step = state.ema_params, np.full(E, np.inf), np.zeros(E, int)
    curve, rows, acc, since, done = [], [], np.zeros(E), 0, 0

    def evaluate():
        nonlocal best, best_loss, since
        lc, lu = (np.asarray(v, np.float64) for v in val_loss(state.ema_params, state.buffers, *vb))
        v = 0.5 * (lc + lu)
        curve.append((done, v, lc, lu))
        improved = v < best_loss
        best = _keep_best(jnp.asarray(improved), state.ema_params, best)
        best_loss = np.where(improved, v, best_loss)
        best_step[improved] = done
        since = 0 if improved.any() else since + 1

    evaluate()    # step 0: the initial weights compete too (with a Gaussian baseline they are that denoiser)
    for s in range(config.steps):
        idx = np.stack([ti[i][batch_indices(keys[i], s, n, bs)] for i in range(E)])
        state, met = step(state, (jnp.asarray(x[idx]), jnp.asarray(c[idx])), keys)
        acc = acc + np.asarray(met["loss"], np.float64)
        done = s + 1
        if done % config.log_every == 0 or done == config.steps:
            rows.append((done, *(acc / (done - (rows[-1][0] if rows else 0)))))
            acc = np.zeros(E)
        if done % eval_every == 0 or done == config.steps:
            evaluate()
            if since >= patience:
                break
    nets = [nnx.merge(graphdef, jax.tree.map(lambda a: a[i], best), jax.tree.map(lambda a: a[i], state.buffers))
            for i in range(E)]
    info = {"steps": np.array([row[0] for row in curve]), "loss": np.array([row[1] for row in curve]),
            "loss_conditional": np.array([row[2] for row in curve]),
            "loss_unconditional": np.array([row[3] for row in curve]),
            "best_step": best_step, "best_loss": best_loss, "stopped_step": done, "n_validation": n_val,
            "eval_every": eval_every, "patience": patience, "validation_index": vi[0] if shared else vi, "draws": draws}
    return nets, np.asarray(rows, np.float64).reshape(-1, 1 + E), info


def _crossed_se(f: np.ndarray):
    """Mean and standard error of ``f: (K members, N pairs)``, evaluated on the SAME pairs and noise.

    Crossed random-effects model ``f_kj = mu + a_k + b_j + e_kj`` (a: network from training
    randomness, b: pair and noise draw, e: their interaction). The grand mean has variance
    ``s_a^2/K + s_b^2/N + s_e^2/(NK)``. ``mc^2 = Var_j(mean_k f_kj) / N`` estimates the last two (the
    Monte Carlo part, SHARED by the members: it does not shrink with K); the between-member variance
    of the member means estimates ``s_a^2 + s_e^2/N``; the interaction ``s_e^2`` comes from the
    two-way residuals. So ``se^2 = mc^2 + max(0, (S_between^2 - s_e^2/N) / K)``: each piece counted
    once. Returns (mean, se, mc, member_means, training_var)."""
    K, N = f.shape
    v = f.mean(0)
    mc = float(v.std(ddof=1) / np.sqrt(N))
    m = f.mean(1)
    if K == 1:
        return float(m[0]), mc, mc, m, 0.0
    resid = f - m[:, None] - v[None, :] + f.mean()
    s_e2 = float((resid ** 2).sum() / ((K - 1) * (N - 1)))
    train_var = max(0.0, (float(m.var(ddof=1)) - s_e2 / N) / K)
    return float(f.mean()), float(np.sqrt(mc ** 2 + train_var)), mc, m, train_var


def _nested_se(fs: list):
    """Mean and standard error of cross-fitted per-pair values: ``fs[k]`` holds member ``k``'s values
    on ITS OWN held-out fold (every pair evaluated once, by the one member that did not train on it).

    One-way random-effects model ``f_j = mu + a_k(j) + b_j`` (a: the member, from its training pairs
    and training randomness; b: pair and noise draw, nested in the folds). The pair-weighted mean
    has variance ``s_a^2 sum_k (n_k/N)^2 + s_b^2/N``. ``s_b^2`` is the pooled within-fold variance
    (``N - K`` degrees of freedom), so ``mc^2 = s_b^2 / N``; the between-fold variance of the fold
    means estimates ``s_a^2 + s_b^2 / n_k``, so ``s_a^2`` is it less that share (floored at 0).
    Returns (mean, se, mc, member_means, training_var), as :func:`_crossed_se`."""
    fs = [np.asarray(f, np.float64) for f in fs]
    K = len(fs)
    nk = np.array([f.shape[0] for f in fs], float)
    N = float(nk.sum())
    allv = np.concatenate(fs)
    m = np.array([f.mean() for f in fs])
    if K == 1:
        mc = float(allv.std(ddof=1) / np.sqrt(N))
        return float(m[0]), mc, mc, m, 0.0
    s_b2 = float(sum(((f - f.mean()) ** 2).sum() for f in fs) / (N - K))
    mc = float(np.sqrt(s_b2 / N))
    s_a2 = max(0.0, float(m.var(ddof=1)) - s_b2 * float(np.mean(1.0 / nk)))
    train_var = s_a2 * float(np.sum((nk / N) ** 2))
    return float(allv.mean()), float(np.sqrt(mc ** 2 + train_var)), mc, m, train_var


def _member_list(model, K: int, shape, n_cond: int, key, what: str, gaussian_baseline: bool = False) -> list:
    """K networks for one conditioning direction: defaults with different initial weights, copies of
    one given module (then the members differ only in their noise and batch keys), or K given ones."""
    if model is None:
        out = []
        for i in range(K):
            rngs = nnx.Rngs(int(jax.random.randint(key if i == 0 else jax.random.fold_in(key, i), (), 0, 2**31 - 1)))
            if len(shape) == 2 and min(shape) >= 8 and shape[0] % 4 == 0 and shape[1] % 4 == 0:
                out.append(UNetDenoiser(shape, n_neurons=n_cond, rngs=rngs))
            else:
                out.append(MLPDenoiser(shape, n_neurons=n_cond, gaussian_baseline=gaussian_baseline, rngs=rngs))
        return out
    models = list(model) if isinstance(model, (list, tuple)) else [model] * K
    if len(models) != K:
        raise ValueError(f"model: expected one network or a list of ensemble={K} networks, got {len(models)}")
    for m in models:
        if getattr(m, "n_neurons", None) != n_cond:
            raise ValueError(f"model: expected a conditional denoiser with n_neurons={n_cond} ({what}), "
                             f"got n_neurons={getattr(m, 'n_neurons', None)}")
        if tuple(getattr(m, "shape", ())) != tuple(shape):
            raise ValueError(f"model: expected shape {tuple(shape)} (the denoised variable after dropping constant "
                             f"columns, {what}), got {getattr(m, 'shape', None)}")
    return models


# ------------------------------------------------------------------ the estimator
def estimate(x, r, *, key=None, model=None, config: TrainConfig | None = None, holdout: float = 0.2,
             levels: Levels | None = None, form: str = "corrected", n_noise: int = 4, transform: str = "auto",
             checkpoint_dir=None, ensemble: int = ENSEMBLE, direction: str = "x|r",
             early_stopping: bool = True, validation: float = 0.1, eval_every: int | None = None,
             patience: int = 5, gaussian_baseline: bool = True, crossfit: bool = True) -> Estimate:
    """I(R;X) in nats from paired samples ``(x_j, r_j)``, for users who only have data.

    Trains conditional denoisers with condition dropout (so each is also the unconditional one)
    and applies :func:`mutual_information` to pairs the network never saw, so memorisation cannot
    inflate the estimate. By default (``crossfit=True``, ``ensemble=K`` members) the pairs are cut
    into ``K`` folds, member ``k`` is trained on the other folds and evaluated on fold ``k``: EVERY
    pair is evaluated once, by a network that did not see it. Without cross-fitting (``crossfit=False``,
    ``ensemble=1`` or ``checkpoint_dir``) all members train on a ``1 - holdout`` share and are
    evaluated on the same held-out ``holdout`` share.

    form (default ``"corrected"``): which combination of the two forms of :func:`mutual_information` is
    the value. Write the conditional network's error ``delta_c`` (``eps_hat_c - eps*_c``), the
    unconditional one's ``delta_u`` and the true difference ``Delta* = eps*_c - eps*_u``; per level, the
    gap form is ``T + E|delta_u|^2 - E|delta_c|^2`` and the orthogonal form ``T + E|delta_c - delta_u|^2 +
    2 E[Delta* . (delta_c - delta_u)]``. With an unconditional network much better than the conditional
    one (``delta_u ~ 0``: it solves the easier problem, from the same weights) the gap form is LOW by
    ``n = E|delta_c|^2 >= 0``, and the orthogonal excess ``D = orthogonal - gap = 2 n + 2 s`` with ``s =
    E[Delta* . delta_c]``, which is ``<= 0`` when the network under-fits (shrinks its conditional
    prediction towards the unconditional one). Hence ``n >= D / 2``: when ``D > 0`` the truth is at least
    ``gap + D / 2`` (the midpoint of the forms), and it is at least ``gap`` always. ``"corrected"``
    returns that tighter lower bound, ``gap + max(0, D') / 2`` with ``D'`` the excess beyond its own
    paired noise (``sqrt(max(0, D^2 - se_D^2))``, so a disagreement within noise adds nothing); the
    added amount is ``info["correction"]``. What it cannot see is the under-fitting ``-s`` (both forms
    low alike). ``"gap"`` (the default before 2026-12-05) and ``"orthogonal"`` return one form. On the
    25-task suite of ``experiments/benchmarks/mi_benchmark.py`` the truth was never below both forms,
    and above the midpoint or between it and the orthogonal form where the forms differed (BENCHMARKS.md).

    Invariance (``transform``). I(R;X) is unchanged by any invertible map of ``x`` or of ``r``, but a
    denoiser trained on a fixed log-SNR range is not: raw units matter. So both are transformed first.
    Without cross-fitting the parameters are fitted on the TRAINING pairs only (held-out pairs are
    mapped with them); with it, on all pairs: a per-column map uses each variable's marginal values
    only, never which ``x`` goes with which ``r``, so it carries nothing about the dependence into the
    held-out evaluation (the Gaussian baseline, which does use the pairing, is fitted per member on
    its own training folds). Constant columns are judged on the same pairs.

    * ``"auto"`` (default): ``"copula"`` for vector stimuli, ``"standardize"`` for images (a per-pixel
      warp would break the spatial structure the UNet relies on). With the Gaussian baseline (below)
      the copula turns every Gaussian-copula task (any monotone warp of each coordinate of jointly
      Gaussian data) into a nearly Gaussian one, which the baseline fits before any training, and
      takes the tails off heavy-tailed data.
    * ``"standardize"``: per column, ``(v - mean) / std``. The estimate is then invariant to
      per-column affine maps ``a v + b`` (``a != 0``; a negative ``a`` flips a column, which changes the
      network's inputs but not the estimand). For images (``x.ndim > 2``) one mean and std over all
      pixels is used, which keeps the spatial structure.
    * ``"copula"``: marginal Gaussianisation, per column (per pixel for images): the training values'
      mid-rank ECDF ``midrank / (n + 1)`` then normal quantiles; held-out values are mapped by linear
      interpolation of the training ECDF (held at its end levels beyond the training range). Any
      strictly increasing warp of a column leaves the training ranks, so the estimand, unchanged, and
      heavy tails or warped marginals become standard normal ones, which the default network and
      log-SNR range fit well. Ties (discrete data) share a mid-rank level.

    Input. x: ``(N, *S)`` stimuli (``(N,)`` means ``N`` scalars); r: ``(N, n_neurons)`` responses
    (``(N,)`` means one neuron). Integer and boolean data are converted to float (booleans to 0 / 1;
    the transform then puts them on the network's scale). Raises ``ValueError`` naming the argument
    for NaN or infinite values, for ``x`` and ``r`` of different lengths, and for fewer than
    :func:`min_pairs` pairs (``MIN_PAIRS = 10`` at the default holdout). A column of ``x`` (vectors
    only) or ``r`` that is constant on the training pairs is dropped with a note in ``info["notes"]``
    (constant everywhere, it carries no information); if every column of ``x`` or of ``r`` is constant
    the result is exactly 0 with a note, and no network is trained. Duplicate pairs are kept: they
    are legitimate draws of ``p(x, r)`` for discrete data, but if they are copies of one record they
    can fall on both sides of the split and inflate the estimate; their number is reported
    (``info["duplicate_pairs"]``, ``info["heldout_seen_in_training"]``): deduplicate first if they
    are copies.

    model: an NNX denoiser with ``shape`` equal to the (transformed, constant columns dropped)
    stimulus shape and ``n_neurons`` the kept responses (default: :class:`MLPDenoiser` for vectors,
    :class:`UNetDenoiser` for ``(H, W)`` images). config: :class:`TrainConfig` (default: at most 3000 steps
    with early stopping, batch 256). The trained model works on transformed data (``info["transform"]``).

    gaussian_baseline (default True): the default MLP (vector data, either direction) predicts a
    residual on top of the exact denoiser of a Gaussian fitted to the training pairs (mean,
    covariance and a leave-one-out ridge regression on the conditioning variable;
    :func:`~jaxdecomp.diffusion.fit_gaussian_baseline`). The untrained network is then the Gaussian
    (linear-MMSE) denoiser, whose MI is the Gaussian one, exact for jointly Gaussian data and, after
    the copula transform, for any Gaussian copula; training (with early stopping, which also scores
    the untrained weights) learns only what is not Gaussian. Without it the MLP must learn the linear
    map itself from the pairs, which in 25-50 dimensions it did not (``experiments/mi_design.py``:
    0.76 against 1.02 nats and 4.2 against 6.9; with it 0.99 and 6.82). On the 25-task suite of
    ``experiments/benchmarks/mi_benchmark.py`` 21 estimates are within 10% (19 before cross-fitting;
    BENCHMARKS.md). Ignored for images (UNet: measured worse there) and for a given ``model``, which carries its own
    ``gaussian_baseline`` flag (fitted here, on a copy, when set). When every member keeps its
    untrained weights the members coincide and ``stderr`` is Monte Carlo only; the error of the
    fitted moments themselves is not in it.

    levels: log-SNR quadrature; default ``schedules.network_levels(24)`` (Gauss-Legendre on
    ``[-10, 8]`` plus tails). The analytic default (48 nodes to 14) let network error at tiny noise
    dominate: on ``experiments/mi_design.py``'s sparse task (d = 25, truth 1.02 nats, 10,000 pairs)
    the gap form gave 0.049 with it and a fixed 3000 steps, 0.21 with ``network_levels(24)`` and
    3000 steps, 0.81 with ``network_levels(24)`` and early stopping (best step 1000-1300: the default
    MLP overfits 9,000 pairs after that); orthogonal 2.20 -> 2.04 -> 1.27
    (``experiments/out/mi_design.jsonl``).

    direction: ``"x|r"`` (default) denoises ``x`` given ``r``; ``"r|x"`` swaps the roles (I(R;X) is
    symmetric) and denoises the (flattened, transformed) response given the stimulus; ``"both"``
    trains both and averages their per-pair values on the same held-out pairs (the SE then uses the
    averaged values, so the correlation between the directions is accounted for); each direction's
    ``(value, stderr)`` per form is in ``info["directions"]``. ``model`` may then be a dict
    ``{"x|r": ..., "r|x": ...}``.

    crossfit (default True, with ``ensemble >= 2``): the members are trained on different folds, in
    the same vmapped program (each with its own batches, validation pairs and Gaussian baseline).
    Why: the held-out pairs' own sample mean of the pointwise MI scatters around the truth by
    ``sd / sqrt(N_heldout)``, which at 2,000 of 10,000 pairs was 4-6% of the MI on the benchmark's
    1-5-D tasks, a large part of their error; evaluating all ``N`` pairs divides that part by
    ``sqrt(1 / holdout)`` (2.2x at the default). Each member trains on ``1 - 1/K`` of the pairs (2/3
    at ``K = 3``, against 80% without). The per-pair values are nested in the folds
    (``f_j = mu + a_k(j) + b_j``) and the error is the one-way random-effects one
    (:func:`_nested_se`): the pooled within-fold variance over ``N`` (Monte Carlo) plus the
    between-fold spread less its pair share (members, which now also differ in their training pairs).
    ``info["folds"]``: the pair indices of each fold; ``holdout`` is then unused.

    ensemble: ``K`` members (different initial weights and noise / batch keys) trained in one vmapped
    program (:func:`init_ensemble` + a vmapped :func:`make_train_step`; with ``checkpoint_dir``,
    :func:`train_ensemble`). Without cross-fitting they share the training pairs and every member is
    evaluated on the SAME held-out pairs and noise draws, so the per-pair values ``f_kj`` follow a
    crossed design ``mu + a_k + b_j + e_kj``; the estimate is the grand mean and its variance
    ``s_a^2/K + s_b^2/N + s_e^2/(NK)`` is estimated term by term (:func:`_crossed_se`): the Monte
    Carlo part (over pairs and noise, shared by the members, so it does not shrink with ``K``) from
    the per-pair means, the training part from the between-member spread of the member means less
    its interaction share. ``sqrt(mc^2 + training^2)`` (``info["statistical_stderr"]``) covers Monte
    Carlo and training variability (initialisation, batch order, training noise) but NOT a bias shared by all members
    (capacity, training length, the data set itself): the gap / orthogonal disagreement measures
    part of that and is added to ``stderr`` (below). With ``K = 1`` the statistical part is Monte
    Carlo only (a note says so). ``model`` may be one
    module (members are copies of its weights, differing in their keys) or a list of ``K``.
    Default ``ENSEMBLE = 3`` (the fewest members whose spread has 2 degrees of freedom), so that the
    error covers training variability by default. Cost: about ``K`` times one member (measured on
    the sparse task: 376 s for K = 3 against 115 s for K = 1 on 2 CPU cores shared with other jobs);
    pass ``ensemble=1`` for the cheaper Monte-Carlo-only error. There the member estimates were
    0.81, 0.69, 0.78 (stderr 0.049, of which Monte Carlo 0.034): training variability is a real part
    of the error, but a bias shared by all members (0.76 against 1.02) remained beyond it.

    early_stopping (default True): a ``validation`` share (0.1) of the training pairs is held out
    from training; every ``eval_every`` steps (default ``config.steps // 30``) each member's EMA
    weights are scored by the mean of its conditional and unconditional denoising losses on FIXED
    noise draws of those pairs (comparable over time), each member keeps its best weights, and
    training stops when no member improved for ``patience`` (5) evaluations. ``config.steps`` is
    then the maximum; the curve is in ``info["validation"]`` (``steps``, ``loss`` (evaluations,
    K), ``loss_conditional`` / ``loss_unconditional``, ``best_step``, ``best_loss``,
    ``stopped_step``). ``early_stopping=False`` (or a ``checkpoint_dir``) trains for exactly
    ``config.steps`` and keeps the final EMA weights (with ``ensemble=1``, the old training).

    Returns :class:`~jaxdecomp.estimate.Estimate`: ``value`` (nats, never negative) and ``stderr`` as
    floats, and ``info``. ``stderr = sqrt(mc^2 + training^2 + form^2)``: Monte Carlo, training
    variability (``ensemble > 1``; see above) and ``form = sqrt(max(0, D^2 - se_D^2)) / 2``, half the
    gap / orthogonal difference ``D`` beyond its own paired noise ``se_D``: the size of the correction
    (above), whose own accuracy rests on the error model; with the "corrected" form the statistical
    part is the larger of the gap form's and the midpoint's when a correction is made. It does NOT
    cover an under-fit that lowers both forms alike (a network that misses part of the dependence,
    e.g. the benchmark's student-dof1 and additive-uniform tasks, 7-9% low with the forms close): no
    internal check sees that. ``info``:

    * ``form``; ``correction`` (``"corrected"``: what was added to the gap form, else 0);
      ``raw_value``: the selected form's estimate before clipping; ``clipped``: True when it was
      negative and ``value`` was set to 0 (``stderr`` is kept: a raw value within about 2 stderr
      of 0 is consistent with no information, one far below 0 means the network failed).
    * ``gap`` / ``orthogonal``: ``(value, stderr)`` of both forms on the same held-out pairs and
      noise draws; ``form_disagreement_se``: their difference over its paired standard error. With
      exact denoisers the two have the same expectation, so a large difference measures network
      error; beyond ``DISAGREEMENT_SE`` (3) ``diagnostic`` says so (else None).
    * ``notes`` (dropped columns, all-constant input, duplicates), ``transform``, ``model``, ``losses``,
      ``n_train`` (pairs per member, before the validation share) / ``n_heldout`` (pairs evaluated:
      all of them with cross-fitting), ``dropped_x`` / ``dropped_r`` (indices of dropped columns);
      ``model`` is member 0 (a dict per direction with ``"both"``), ``models`` all members.
    * ``crossfit`` (whether it was used), ``folds`` (with it: the pair indices member ``k`` was
      evaluated on), ``ensemble``, ``direction``, ``member_values`` (per form, the ``K`` member
      estimates; with cross-fitting each on its own fold, so they also scatter with the pairs),
      ``mc_stderr`` / ``training_stderr`` / ``form_stderr`` (the three parts of ``stderr``),
      ``statistical_stderr`` (the first two combined), ``directions``, ``validation``.
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"transform: expected one of {TRANSFORMS}, got {transform!r}")
    if form not in ("corrected", "gap", "orthogonal"):
        raise ValueError(f"form: expected 'corrected', 'gap' or 'orthogonal', got {form!r}")
    ensemble = _check_count("ensemble", ensemble, 1)
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")
    if isinstance(validation, bool) or not isinstance(validation, (int, float, np.integer, np.floating)) \
            or not 0 < validation < 1:
        raise ValueError(f"validation: expected a fraction in (0, 1), got {validation!r}")
    patience = _check_count("patience", patience, 1)
    if not isinstance(crossfit, (bool, np.bool_)):
        raise TypeError(f"crossfit: expected True or False, got {crossfit!r}")
    if eval_every is not None:
        eval_every = _check_count("eval_every", eval_every, 1)
    x = _as_float("x", x)
    r = _as_float("r", r)
    if x.ndim == 1:
        x = x[:, None]
    if r.ndim == 1:
        r = r[:, None]
    if x.ndim < 2 or x.shape[0] < 1 or 0 in x.shape[1:]:
        raise ValueError(f"x: expected paired stimuli of shape (N, *S), got {x.shape}")
    if r.ndim != 2 or r.shape[1] < 1:
        raise ValueError(f"r: expected responses of shape (N, n_neurons), got {r.shape}")
    if x.shape[0] != r.shape[0]:
        raise ValueError(f"x and r: must hold the same number of pairs, got {x.shape[0]} stimuli and {r.shape[0]} responses")
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float, np.integer, np.floating)) or not 0 < holdout < 1:
        raise ValueError(f"holdout: expected a fraction in (0, 1), got {holdout}")
    n = x.shape[0]
    need = min_pairs(holdout)
    if n < need:
        raise ValueError(f"x and r: {n} pairs are too few; estimate needs at least {need} pairs at "
                         f"holdout={holdout:g} (>= 2 held out, >= 2 to train on, >= {MIN_PAIRS} in all)")
    n_test = int(round(holdout * n))
    key = jax.random.PRNGKey(0) if key is None else key
    k_split, k_model, k_train, k_est = jax.random.split(key, 4)
    perm = np.asarray(jax.random.permutation(k_split, n))
    shape = x.shape[1:]
    notes: list[str] = []
    cf = bool(crossfit) and ensemble > 1 and checkpoint_dir is None and n // ensemble >= 2
    if crossfit and ensemble > 1 and not cf:
        notes.append("crossfit: off (" + ("a resumable run with checkpoint_dir trains every member on one split"
                                          if checkpoint_dir is not None else f"fewer than 2 pairs per fold for "
                                          f"ensemble={ensemble}") + "); evaluated on the holdout split")
    if cf:     # member k trains on the other folds and is evaluated on fold k: every pair is evaluated once
        tests = np.array_split(perm, ensemble)
        n_fit = n - max(len(t) for t in tests)
        fits = [np.concatenate([t for j, t in enumerate(tests) if j != k])[:n_fit] for k in range(ensemble)]
        test, fit = perm, perm         # marginal transforms and constant columns: all pairs (see docstring)
    else:
        test, fit = perm[:n_test], perm[n_test:]
        tests, fits = [test] * ensemble, None
    info = dict(n_train=len(fits[0]) if cf else len(fit), n_heldout=len(test), notes=notes, dropped_x=[],
                dropped_r=[], crossfit=cf, folds=tests if cf else None)

    # duplicates: kept (see docstring), counted
    pairs = np.concatenate([x.reshape(n, -1), r], axis=1)
    info["duplicate_pairs"] = int(n - len(np.unique(pairs, axis=0)))
    seen_in = 0
    for k, (te, fi) in enumerate(zip(tests, fits) if cf else [(test, fit)]):
        seen = {row.tobytes() for row in pairs[fi]}
        seen_in += int(sum(pairs[j].tobytes() in seen for j in te))
    info["heldout_seen_in_training"] = seen_in
    if info["duplicate_pairs"]:
        notes.append(f"{info['duplicate_pairs']} pairs repeat an earlier pair ({info['heldout_seen_in_training']} "
                     "held-out pairs also occur in the training split); kept as draws of p(x, r). If they are "
                     "copies of one record, deduplicate first: copies across the split can inflate the estimate")

    # constant columns
    xc = x.reshape(n, -1)
    vector = x.ndim == 2
    if vector:
        keep_x = _constant_columns(xc[fit], xc, "x", notes)
    else:
        keep_x = np.ones(xc.shape[1], bool)
        if np.all(xc[fit] == xc[fit][0]):
            keep_x[:] = False
    keep_r = _constant_columns(r[fit], r, "r", notes)
    info["dropped_x"] = [int(j) for j in np.flatnonzero(~keep_x)]
    info["dropped_r"] = [int(j) for j in np.flatnonzero(~keep_r)]
    if not keep_x.any():
        return _zero(notes, info, "x: every stimulus coordinate is constant on the training pairs: "
                                  "no information can be learned, the estimate is 0")
    if not keep_r.any():
        return _zero(notes, info, "r: every response column is constant on the training pairs: "
                                  "no information can be learned, the estimate is 0")
    if vector:
        xc = xc[:, keep_x]
        shape = (int(keep_x.sum()),)
    r = r[:, keep_r]

    # invariance: marginal transforms fitted on the training split only
    if transform == "auto":
        transform = "copula" if vector else "standardize"
    xt, px = _transform(xc, fit, transform, per_column=vector)
    rt, pr = _transform(r, fit, transform, per_column=True)
    xt = xt.reshape((n,) + shape)
    info["transform"] = {"kind": transform, "x": px, "r": pr, "keep_x": keep_x, "keep_r": keep_r}

    if levels is None:
        levels = network_levels(24)
    # conditioning directions: denoise x given r, r given x (MI is symmetric), or both
    xflat = xt.reshape(n, -1)
    dirs = ("x|r", "r|x") if direction == "both" else (direction,)
    spec = {"x|r": (xt, rt, shape, rt.shape[1], "x given r"),
            "r|x": (rt, xflat, (rt.shape[1],), xflat.shape[1], "r given x")}
    if isinstance(model, dict):
        if set(model) != set(dirs):
            raise ValueError(f"model: a dict must map each direction {dirs} to its network(s), got keys {sorted(model)}")
        given = model
    elif model is not None and direction == "both":
        raise ValueError("model: with direction='both' pass a dict {'x|r': ..., 'r|x': ...} (the two "
                         "directions denoise different variables) or None")
    else:
        given = {d: model for d in dirs}
    config = TrainConfig(steps=3000, batch_size=min(256, len(fit))) if config is None else config
    es = bool(early_stopping) and checkpoint_dir is None
    if early_stopping and checkpoint_dir is not None:
        notes.append("checkpoint_dir: early stopping is off for a resumable run; trained for config.steps")
    per = {f: [] for f in ("gap", "orthogonal")}      # per direction: (K, N_test) per-pair values, or K folds
    se_of = _nested_se if cf else _crossed_se
    trained, losses, validation_info, dir_est = {}, {}, {}, {}
    for d_i, dname in enumerate(dirs):
        target, cond, tshape, n_cond, what = spec[dname]
        # direction 0, member 0 use the keys of the single-network estimator (ensemble=1 with
        # early_stopping=False reproduces it exactly with the same levels)
        k_m, k_t = (k_model, k_train) if d_i == 0 else (jax.random.fold_in(k_model, d_i), jax.random.fold_in(k_train, d_i))
        members = _member_list(given[dname], ensemble, tshape, n_cond, k_m, what, gaussian_baseline)
        if es:   # fits the baselines on its own training split, without the validation pairs
            if cf:
                nets, loss_rows, vinfo = _train_members(members, target, cond, config, k_t, validation=validation,
                                                        eval_every=eval_every, patience=patience,
                                                        train_idx=np.stack(fits))
            else:
                nets, loss_rows, vinfo = _train_members(members, target[fit], cond[fit], config, k_t,
                                                        validation=validation, eval_every=eval_every,
                                                        patience=patience)
            validation_info[dname] = vinfo
        elif cf:   # no early stopping: each member for config.steps on its own folds (one run each)
            nets, loss_rows = [], []
            for k, (m, fi) in enumerate(zip(members, fits)):
                m = _fitted_baselines([m], target[fi], cond[fi])[0]
                res = train(m, target[fi], cond[fi], config, key=jax.random.fold_in(k_t, k))
                nets.append(res.model)
                loss_rows.append(res.losses if k == 0 else res.losses[:, 1:])
            loss_rows = np.concatenate(loss_rows, 1)
        else:
            members = _fitted_baselines(members, target[fit], cond[fit])
            if ensemble == 1:
                res = train(members[0], target[fit], cond[fit], config, checkpoint_dir=checkpoint_dir, key=k_t)
                nets, loss_rows = [res.model], res.losses
            else:
                res = train_ensemble(members, target[fit], cond[fit], config, checkpoint_dir=checkpoint_dir,
                                     keys=list(jax.random.split(k_t, ensemble)))
                nets, loss_rows = [m.model for m in res], np.concatenate(
                    [res[0].losses[:, :1]] + [m.losses[:, 1:] for m in res], 1)
        trained[dname], losses[dname] = nets, loss_rows
        # without cross-fitting every member is evaluated on the same held-out pairs and noise draws
        # (k_est), so the Monte Carlo part is shared; with it, member k on its own fold k
        # (both forms from one pass: the same values as two calls with k_est, half the network calls)
        f_dir = {f: [] for f in per}
        for net, te in zip(nets, tests):
            both = mutual_information(k_est, net, target[te], cond[te], levels=levels, form="both",
                                      n_noise=n_noise, return_pairs=True)
            for f in per:
                f_dir[f].append(np.asarray(both[f].info["per_pair"], np.float64))
        if not cf:
            f_dir = {f: np.stack(v) for f, v in f_dir.items()}
        for f in per:
            per[f].append(f_dir[f])
        dir_est[dname] = {f: se_of(f_dir[f])[:2] for f in per}
    # directions averaged per member and pair: (K, N) crossed, or K folds
    fk = {f: [np.mean([d[k] for d in per[f]], axis=0) for k in range(ensemble)] for f in per}
    if not cf:
        fk = {f: np.stack(v) for f, v in fk.items()}

    summary = {f: se_of(fk[f]) for f in fk}
    pairs_out = {f: (s[0], s[1]) for f, s in summary.items()}
    d_mean, d_se, *_ = se_of([g - o for g, o in zip(fk["gap"], fk["orthogonal"])] if cf
                             else fk["gap"] - fk["orthogonal"])
    z = float(d_mean / d_se) if d_se > 0 else (0.0 if d_mean == 0 else float(np.sign(d_mean) * np.inf))
    diagnostic = None
    if abs(z) > DISAGREEMENT_SE:
        (g, gs), (o, os_) = pairs_out["gap"], pairs_out["orthogonal"]
        diagnostic = (f"gap ({g:.4g} +/- {gs:.2g}) and orthogonal ({o:.4g} +/- {os_:.2g}) forms disagree by "
                      f"{z:+.1f} standard errors: with exact denoisers they agree in expectation, so a network "
                      "bias shared by the members (not in stderr) exceeds the error bars; train longer, on "
                      "more pairs, or try direction='r|x' / 'both'")
    # the network's share of the error that the forms reveal: with exact denoisers they agree in
    # expectation, and a network's estimation error moves them apart (orthogonal up by about E|delta|^2,
    # gap down by about as much), so half their difference beyond its own noise is a scale of that error
    sys_var = max(0.0, float(d_mean) ** 2 - float(d_se) ** 2) / 4
    correction = 0.0
    if form == "corrected":
        # the gap form's deficit E|delta_c|^2 is at least half the orthogonal excess (docstring):
        # added when the orthogonal form is above the gap form beyond their paired noise
        correction = float(np.sqrt(sys_var)) if d_mean < 0 else 0.0
        use = "gap"
        if correction > 0:      # the value moves towards the midpoint: take the larger statistical error
            mid = ([0.5 * (g + o) for g, o in zip(fk["gap"], fk["orthogonal"])] if cf
                   else 0.5 * (fk["gap"] + fk["orthogonal"]))
            summary["midpoint"] = se_of(mid)
            use = max(("gap", "midpoint"), key=lambda f: summary[f][1])
        raw, stderr = pairs_out["gap"][0] + correction, summary[use][1]
        _, _, mc, member_means, train_var = summary[use]
        summary.pop("midpoint", None)
    else:
        raw, stderr = pairs_out[form]
        _, _, mc, member_means, train_var = summary[form]
    stat_stderr = stderr
    stderr = float(np.sqrt(stderr ** 2 + sys_var))
    clipped = raw < 0
    if clipped:
        notes.append(f"the {form} form gave {raw:.4g} +/- {stderr:.2g} nats (negative); value clipped to 0")
    single = dirs[0]
    info.update(model=trained[single][0] if len(dirs) == 1 else {d: trained[d][0] for d in dirs},
                models=trained[single] if len(dirs) == 1 else trained,
                losses=losses[single] if len(dirs) == 1 else losses,
                raw_value=raw, clipped=bool(clipped), form=form, correction=correction,
                gap=pairs_out["gap"], orthogonal=pairs_out["orthogonal"], form_disagreement_se=z,
                diagnostic=diagnostic, ensemble=ensemble, direction=direction,
                member_values={f: summary[f][3] for f in summary}, mc_stderr=mc,
                training_stderr=float(np.sqrt(train_var)), form_stderr=float(np.sqrt(sys_var)),
                statistical_stderr=stat_stderr,
                directions=dir_est if direction == "both" else None,
                validation=(validation_info[single] if len(dirs) == 1 else validation_info) if es else None)
    if ensemble == 1:
        notes.append("ensemble=1: no estimate of training variability in stderr (Monte Carlo and the form "
                     "disagreement only)")
    return Estimate(max(raw, 0.0), stderr, info)
