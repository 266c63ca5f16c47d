"""Response simulation: independent draws ``r ~ p(r | x)`` from a population for a set of stimuli."""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["simulate_responses"]


def simulate_responses(key, population, x, copies: int = 1):
    """``copies`` independent responses to every stimulus of ``x``.

    Args:
      key: a PRNG key; stimulus ``i`` of copy ``c`` gets ``split(key, copies * N)[c * N + i]``.
      population: an encoder with ``sample(key, x)`` for ONE stimulus (see :mod:`jaxdecomp.neurons`).
      x: stimuli ``(N, ...)`` (e.g. images ``(N, H, W)``), each of the shape ``population`` takes.
      copies: number of independent draws per stimulus, a positive int.

    Returns:
      ``(xs, r)`` numpy arrays: ``xs (copies * N, ...)`` is ``x`` repeated ``copies`` times (copy
      after copy, dtype of ``x``) and ``r (copies * N, n_neurons)`` float32 the matching responses.
    """
    if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 1:
        raise ValueError(f"copies: expected a positive int, got {copies!r}")
    if not callable(getattr(population, "sample", None)):
        raise TypeError(f"population: expected an encoder with a sample(key, x) method, got {type(population).__name__}")
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"x: expected a non-empty batch of stimuli (N, ...), got shape {x.shape}")
    xs = np.concatenate([x] * int(copies))
    keys = jax.random.split(key, xs.shape[0])
    r = jax.jit(jax.vmap(population.sample))(keys, xs)
    return xs, np.asarray(r, dtype=np.float32)
