"""Test configuration shared by the whole suite.

* JAX runs on the CPU (the suite never needs an accelerator).
* Rank promotion raises: an operation that silently broadcasts arrays of different ranks is an
  error in the library (``jax_numpy_rank_promotion="raise"``), as in equinox's test suite.
* Tiers (README): ``-m "not slow and not heavy"`` is the fast everyday tier; the default
  (``addopts`` in pyproject.toml) deselects only ``slow``. ``heavy`` marks every test that took
  more than a few seconds on the 2-core development machine (decorated in place), and every test
  in the modules that train networks or run notebooks, the demo or the CLI end to end (those
  are also marked ``train``).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


# Test modules that train networks, or run the notebooks or the demo end to end: marked
# ``train`` and ``heavy`` so that the fast tier (``-m "not slow and not heavy"``) leaves them out. Chosen from
# the measured durations of the full suite (the README states both tiers' times).
TRAIN_MODULES = {
    "test_training.py",
    "test_train_step.py",
    "test_checkpoint_safety.py",
    "test_trained.py",
    "test_estimate_mi.py",
    "test_notebooks.py",
    "test_cli.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in TRAIN_MODULES:
            item.add_marker(pytest.mark.train)
            item.add_marker(pytest.mark.heavy)
