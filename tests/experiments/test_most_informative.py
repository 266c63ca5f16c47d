import pytest
import numpy as np


@pytest.mark.heavy
def test_ascent_raises_ilocal_and_prior_keeps_stimuli_likely():
    from experiments import most_informative_stimuli as M

    out = M.run(lams=(0.0, 0.05), n_images=2, steps=90, lr=0.06, n_samples=16, n_levels=12,
                eval_samples=128, seed=0)
    reg, unreg = out["runs"]["lam=0.05"], out["runs"]["lam=0"]
    # start and end re-estimated with independent keys: mean gain over stimuli vs its combined SE
    gain = np.mean(reg["ilocal_end"] - reg["ilocal_start"])
    se = np.sqrt(np.sum(reg["ilocal_start_se"] ** 2 + reg["ilocal_end_se"] ** 2)) / len(reg["ilocal_end"])
    assert gain > 3 * se, (gain, se)
    # the prior term keeps the regularised stimuli more likely than the unregularised ones
    assert np.all(reg["log_prior_end"] > unreg["log_prior_end"]), (reg["log_prior_end"], unreg["log_prior_end"])
