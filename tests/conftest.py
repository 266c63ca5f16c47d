import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "warn")


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
