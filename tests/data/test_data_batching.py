"""The one batching rule: ``jaxdecomp.data.batches`` walks the same per-epoch permutations
as training (``jaxdecomp.diffusion.batch_indices``), and the rule is a function of (key, step)."""

import jax
import numpy as np
import pytest

from jaxdecomp import data
from jaxdecomp.data._batching import Batcher, key_words


@pytest.mark.parametrize("make_key", [jax.random.PRNGKey, jax.random.key])
def test_data_batches_are_the_training_batches(make_key):
    from jaxdecomp.diffusion import batch_indices

    key, n, b = make_key(3), 23, 5
    x = np.arange(n, dtype=np.float32)[:, None]
    for epoch in (0, 2):
        got = [np.asarray(xb)[:, 0].astype(int) for xb in data.batches(key, x, batch_size=b, epoch=epoch)]
        want = [batch_indices(key, epoch * (n // b) + i, n, b) for i in range(n // b)]
        assert len(got) == len(want) == n // b
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    small = Batcher(key_words(key), 3, 8)  # n < batch: with replacement, seeded by (key, step)
    for s in range(4):
        np.testing.assert_array_equal(small(s), batch_indices(key, s, 3, 8))


def test_batcher_is_a_function_of_key_and_step():
    words = key_words(jax.random.PRNGKey(0))
    a, b = Batcher(words, 10, 3), Batcher(words, 10, 3)
    steps = [0, 1, 2, 3, 7, 4, 0]
    got = [a(s) for s in steps]
    for s, g in zip(reversed(steps), reversed(got)):  # order of calls does not matter
        np.testing.assert_array_equal(b(s), g)
    epoch0 = np.concatenate([a(s) for s in range(3)])
    assert len(np.unique(epoch0)) == 9  # one epoch: distinct examples, remainder dropped
    assert not np.array_equal(a(0), a(3))  # a new epoch, a new permutation
    with pytest.raises(ValueError, match="epoch"):
        data.batches(jax.random.PRNGKey(0), np.zeros((10, 2)), batch_size=2, epoch=-1)
