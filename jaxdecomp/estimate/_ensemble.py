"""Stimulus-wise measures from an ensemble of trained denoisers, with the network in the error bar.

A trained network's I_local differs from the truth by Monte Carlo noise (in the estimator's
``stderr``) AND by the network's own error, which no single network's ``stderr`` can show. Networks
trained from different initial weights and noise / batch keys (:func:`jaxdecomp.diffusion.train_ensemble`,
one vmapped program) scatter around the population of networks that training produces; their spread
measures the random part of the network error. :func:`over_ensemble` runs one estimator per member,
each with its own key (independent Monte Carlo draws), and combines them.

Model, per stimulus ``i`` and member ``k``: ``v_ki = theta_i + b_ki + e_ki`` with network error ``b``
(variance ``s2_i`` across trainings) and Monte Carlo error ``e`` (variance ``sigma2_ki``, the member's
reported ``stderr**2``), independent. The ensemble mean ``vbar_i`` has variance
``(s2_i + mean_k sigma2_ki) / K``. The sample variance of the members ``S2_i`` estimates
``s2_i + mean_k sigma2_ki``, so ``s2_i = max(0, S2_i - mean_k sigma2_ki)``. With ``K = 3`` that has two
degrees of freedom per stimulus; ``pool="relative"`` (the default for a batch of at least
:data:`POOL_MIN` stimuli) assumes the network's relative error ``sqrt(s2_i) / theta_i`` is the same
for every stimulus of the batch and estimates it from all of them (``2 (B - 1)`` or more degrees of
freedom). A network error SHARED by every member (the same too-short training, the same finite set
of stimuli) does not show in the spread: the ensemble's error bar covers training randomness, not
a common bias; compare with a truth problem (``experiments/bias_sources.py``) for that.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import numpy as np

from jaxdecomp._checks import check_key
from jaxdecomp._interfaces import MapResult

POOL_MIN = 4       # stimuli in a batch from which the network's relative error is pooled by default
POOLS = ("auto", "relative", "none")


class EnsembleMapResult(NamedTuple):
    """A stimulus-wise measure from ``K`` networks (leading batch axis for a batch of stimuli).

    ``map``, ``total``: the members' mean. ``stderr``: standard error of ``total`` covering Monte Carlo
    AND the members' spread (module docstring). ``map_stderr``: per-pixel standard error of ``map``
    from the members' spread alone (each member's map is an independent estimate, so this covers both
    sources, with ``K - 1`` degrees of freedom). ``member_totals``: ``(K,)`` or ``(K, B)``.
    ``mc_stderr``: the Monte Carlo part of ``stderr``; ``network_stderr``: the network part (the
    estimated SD of one network's error divided by ``sqrt(K)``).
    """

    map: Any
    total: Any
    stderr: Any
    map_stderr: Any
    member_totals: Any
    mc_stderr: Any
    network_stderr: Any


def _combine(totals: np.ndarray, ses: np.ndarray, pool: str):
    """``totals``, ``ses``: ``(K, B)``. Returns (mean, stderr, mc_stderr, network_stderr), each ``(B,)``."""
    K, B = totals.shape
    mean = totals.mean(0)
    mc2 = (ses ** 2).sum(0) / K ** 2                   # variance of the mean from Monte Carlo alone
    if K == 1:
        return mean, np.sqrt(mc2), np.sqrt(mc2), np.zeros(B)
    excess = totals.var(0, ddof=1) - (ses ** 2).mean(0)  # unbiased for one network's error variance
    if pool == "relative":
        scale = np.where(np.abs(mean) > 0, mean ** 2, np.nan)
        rel2 = max(0.0, float(np.nanmean(excess / scale))) if np.any(np.isfinite(scale)) else 0.0
        net2 = rel2 * mean ** 2
    else:
        net2 = np.maximum(excess, 0.0)
    net_se = np.sqrt(net2 / K)
    return mean, np.sqrt(mc2 + net2 / K), np.sqrt(mc2), net_se


def over_ensemble(estimator: Callable[..., MapResult], key, denoisers: Sequence, *args, pool: str = "auto",
                  **kwargs) -> EnsembleMapResult:
    """Run ``estimator(key_k, denoisers[k], *args, **kwargs)`` for every member and combine the results.

    estimator: a stimulus-wise estimator returning :class:`MapResult` (``ilocal``, ``kong2``,
      ``specific_surprise``, or your own with that signature). key: PRNG key; member ``k`` gets
      ``jax.random.fold_in(key, k)``, so the members' Monte Carlo draws are independent.
    denoisers: ``K >= 1`` trained denoisers of one task (e.g. the models of
      :func:`jaxdecomp.diffusion.train_ensemble`); members of one architecture share one compiled program.
    pool: ``"relative"`` (one relative network error for the whole batch), ``"none"`` (per stimulus),
      ``"auto"`` (default: ``"relative"`` for a batch of at least :data:`POOL_MIN` stimuli, else ``"none"``).

    Returns :class:`EnsembleMapResult`. With ``K = 1`` the error bar is the member's own (Monte Carlo
    only) and ``network_stderr`` is 0: one network cannot show its own error. Not differentiable as a
    whole (the combination runs on the host); take ``jax.grad`` of one member's estimator instead.
    """
    if not callable(estimator):
        raise TypeError(f"estimator: expected a callable such as estimate.ilocal, got {type(estimator).__name__}")
    if pool not in POOLS:
        raise ValueError(f"pool: expected one of {POOLS}, got {pool!r}")
    if isinstance(denoisers, (str, bytes)) or not isinstance(denoisers, Sequence):
        raise TypeError(f"denoisers: expected a list or tuple of denoisers, got {type(denoisers).__name__}")
    members = list(denoisers)
    if not members:
        raise ValueError("denoisers: expected at least one denoiser, got an empty sequence")
    key = check_key(key)
    results = []
    for k, den in enumerate(members):
        res = estimator(jax.random.fold_in(key, k), den, *args, **kwargs)
        if not isinstance(res, MapResult):
            raise TypeError(f"estimator: expected it to return MapResult, got {type(res).__name__} for member {k}")
        results.append(jax.tree.map(lambda a: np.asarray(a, np.float64), res))
    totals = np.stack([np.atleast_1d(r.total) for r in results])
    ses = np.stack([np.atleast_1d(r.stderr) for r in results])
    if not (np.all(np.isfinite(totals)) and np.all(np.isfinite(ses))):
        bad = sorted({int(k) for k in np.nonzero(~np.isfinite(totals) | ~np.isfinite(ses))[0]})
        raise FloatingPointError(f"denoisers: member(s) {bad} gave a non-finite estimate; check those networks")
    batched = np.ndim(results[0].total) == 1
    B = totals.shape[1]
    mode = pool if pool != "auto" else ("relative" if B >= POOL_MIN else "none")
    mean, se, mc, net = _combine(totals, ses, mode)
    maps = np.stack([r.map for r in results])
    K = len(members)
    map_se = maps.std(0, ddof=1) / np.sqrt(K) if K > 1 else np.full(maps.shape[1:], np.nan)
    if not batched:
        mean, se, mc, net, totals = mean[0], se[0], mc[0], net[0], totals[:, 0]
    return EnsembleMapResult(maps.mean(0), mean, se, map_se, totals, mc, net)
