"""The paper's image findings as measurable statements, on small settings.

* Fisher maps concentrate inside the receptive fields: ``tests/test_image_neurons.py``
  (``test_lnp_fisher_concentrates_inside_receptive_fields``).
* I_local follows the digit's edges more than Fisher does (Fig. 4): here.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))


def test_ilocal_follows_digit_edges_more_than_fisher():
    """Statistic: per test digit, the Pearson correlation over pixels between a map and the digit's
    edge strength (gradient magnitude). With the experiment's UNet (2,500 steps) on 16x16 digits
    and the 49-neuron LNP population, I_local's correlation must exceed Fisher's on average by 0.05
    and on at least 5 of 6 digits. (The experiment's default, 2,500 steps, measured 0.68 vs 0.44,
    with I_local higher on 12 of 12 digits.) The Fisher side is exact; the I_local side can fail if
    the maps are dominated by network or Monte Carlo noise, as the earlier demo maps were (0.1 vs 0.45)."""
    import fig4_digits

    out = fig4_digits.run(n_fig4=2, n_fig6=6, n_levels=16, n_samples=16, n_steps=8)
    s = out["statistics"]
    il, fi = np.asarray(s["edge_corr_ilocal"]), np.asarray(s["edge_corr_fisher"])
    assert np.all(np.isfinite(il)) and np.all(np.isfinite(fi))
    assert il.mean() > fi.mean() + 0.05, (il, fi)
    assert np.sum(il > fi) >= 5, (il, fi)
    assert np.mean(s["fisher_share_in_rf"]) > 0.99
