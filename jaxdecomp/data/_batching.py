"""The package's one rule for mini-batches (private; used by :func:`jaxdecomp.data.batches`).

The batch of step ``s`` is a deterministic host-side function of ``(key, s)`` only, so a
resumed or multi-host run draws the same batches as an uninterrupted single-host one:
each epoch of ``n // batch_size`` steps walks a fresh permutation of the ``n`` examples
seeded by ``(key, epoch)`` (the remainder is dropped), and with ``n < batch_size`` the
indices are drawn with replacement, seeded by ``(key, s)``. Seeds are numpy
``default_rng`` seeds built from the key's uint32 words, so no device work is needed.

``jaxdecomp.diffusion.training`` (``_Batcher``, ``batch_indices``) implements the same
rule today; it is meant to import :class:`Batcher` from here.
"""

from __future__ import annotations

import jax
import numpy as np


def key_words(key) -> list[int]:
    """The uint32 words of a PRNG key (typed or raw), as Python ints (a numpy seed)."""
    return [int(w) for w in np.asarray(jax.random.key_data(key)).ravel().astype(np.uint32)]


def epoch_permutation(words, epoch: int, n: int) -> np.ndarray:
    """The permutation ``(n,)`` of epoch ``epoch`` for a key with words ``words``."""
    return np.random.default_rng(list(words) + [0, int(epoch)]).permutation(int(n))


class Batcher:
    """Batch indices ``(batch,)`` for step ``s``: a deterministic function of ``(key, s)``.

    Build from the key's words (:func:`key_words`), ``n`` examples and the batch size;
    call with a step. The current epoch's permutation is cached (one ``O(n)`` draw per epoch).
    """

    def __init__(self, words, n: int, batch: int):
        self.words, self.n, self.batch = list(words), int(n), int(batch)
        self._epoch, self._perm = None, None

    def permutation(self, epoch: int) -> np.ndarray:
        """The permutation ``(n,)`` walked by epoch ``epoch`` (cached)."""
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, epoch_permutation(self.words, epoch, self.n)
        return self._perm

    def __call__(self, step: int) -> np.ndarray:
        if self.n < self.batch:
            return np.random.default_rng(self.words + [1, int(step)]).integers(0, self.n, self.batch)
        epoch, pos = divmod(int(step), self.n // self.batch)
        return self.permutation(epoch)[pos * self.batch : (pos + 1) * self.batch]


def put_global(arr, sharding) -> jax.Array:
    """Place a host array (identical on every process) as a global array with ``sharding``."""
    return jax.make_array_from_callback(arr.shape, sharding, lambda idx: arr[idx])
