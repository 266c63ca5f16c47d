"""Paper Fig. 4 and Fig. 6 (pixel maps on digits): I_local against the Fisher diagonal for the
49-neuron LNP population.

Bundled handwritten digits (scikit-learn's 8x8, resized), the paper's LNP population
(Gaussian RFs, SD 0.1, on a 7x7 lattice over [-0.7, 0.7]^2; rate 40 sigmoid(0.4 w.(x + 0.1));
Poisson). One response-conditioned UNet is trained on simulated pairs; I_local maps use
reverse-diffusion posterior sampling and Gauss-Legendre levels up to log-SNR 8 with the exact
Fisher tail above (``jaxdecomp.diffusion.schedules.network_levels``). Fig. 4: a few test digits with their
Fisher and I_local maps; Fig. 6: a larger panel.

Statistics written to the JSON (per test digit, then summarised):
* ``fisher_share_in_rf``: share of the Fisher map within 2 RF SD (0.2) of an RF centre.
* ``edge_corr``: Pearson correlation over pixels between a map and the digit's edge strength
  (gradient magnitude), for I_local and for Fisher, over all pixels and over the RF region
  (pixels within 2 RF SD of a centre).

Default: 16x16 digits, a small UNet, a few CPU minutes. ``--full``: the paper's 32x32 digits,
a wider UNet trained longer, more digits (meant for a GPU).
"""

import argparse
import time
from pathlib import Path

import jax
import numpy as np

from experiments import _cli, _images
from jaxdecomp import data, neurons
from jaxdecomp.plotting import map_figure

SETTINGS = {
    "quick": dict(size=16, channels=(32, 64), steps=2500, copies=2, n_fig4=4, n_fig6=12, n_levels=24,
                  n_samples=16, n_steps=16),
    "full": dict(size=32, channels=(64, 128), steps=30000, copies=4, n_fig4=6, n_fig6=40, n_levels=32,
                 n_samples=50, n_steps=32),
}
RF_SD = 0.1


def run(full: bool = False, seed: int = 0, steps: int | None = None, checkpoint_dir=None, **overrides) -> dict:
    """Train, map and measure; ``overrides`` replace entries of ``SETTINGS`` (e.g. for a small test)."""
    cfg = _cli.settings(SETTINGS, "full" if full else "quick", overrides)
    if steps is not None:
        cfg["steps"] = int(steps)
    size = cfg["size"]
    key = jax.random.PRNGKey(seed)
    k_perm, k_train, k_maps = jax.random.split(key, 3)
    x = np.asarray(data.digits(size), np.float32)
    perm = np.asarray(jax.random.permutation(k_perm, x.shape[0]))
    n_test = cfg["n_fig6"]
    x_test, x_train = x[perm[:n_test]], x[perm[n_test:]]
    pop = neurons.lnp_population((size, size))
    model, info = _images.train_on(k_train, pop, x_train, channels=cfg["channels"], steps=cfg["steps"],
                                   copies=cfg["copies"], checkpoint_dir=checkpoint_dir)
    region = _images.rf_region((size, size), neurons.lattice_centers(), 2 * RF_SD)
    maps, t_maps, stats = _images.maps_and_statistics(k_maps, model, pop, x_test, cfg, region, "rf")
    summary = {k: float(np.mean(v)) for k, v in stats.items()}
    summary["ilocal_beats_fisher_on_edges"] = float(np.mean(stats["edge_corr_ilocal"] > stats["edge_corr_fisher"]))
    return dict(settings=dict(cfg, seed=seed, full=full, rf_sd=RF_SD), training=info, map_seconds=t_maps,
                images=x_test, ilocal=maps["ilocal"], fisher=maps["fisher"], ilocal_totals=maps["ilocal_total"],
                ilocal_se=maps["ilocal_se"], statistics=stats, summary=summary)


def figures(out: dict):
    from jaxdecomp.plotting import plt

    n4 = out["settings"]["n_fig4"]
    fig4 = map_figure(out["images"][:n4], {"Fisher J_ii(x)": out["fisher"][:n4], "I_local": out["ilocal"][:n4]},
                      titles=[f"I={t:.1f} nats" for t in out["ilocal_totals"][:n4]])
    n6 = len(out["images"])
    cols = min(n6, 10)
    rows = int(np.ceil(n6 / cols))
    fig6, axes = plt.subplots(2 * rows, cols, figsize=(1.3 * cols, 2.6 * rows), squeeze=False)
    for j in range(rows * cols):
        r, c = divmod(j, cols)
        for ax in (axes[2 * r, c], axes[2 * r + 1, c]):
            ax.set_xticks([])
            ax.set_yticks([])
        if j >= n6:
            axes[2 * r, c].axis("off")
            axes[2 * r + 1, c].axis("off")
            continue
        axes[2 * r, c].imshow(out["images"][j], cmap="gray", vmin=-1, vmax=1)
        axes[2 * r + 1, c].imshow(out["ilocal"][j], cmap="magma")
    fig6.suptitle("Fig. 6: digits (rows 1, 3, ...) and their I_local maps", fontsize=9)
    fig6.tight_layout()
    return fig4, fig6


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out", help="folder for the PNGs and JSON (default: experiments/out)")
    p.add_argument("--full", action="store_true", help="the paper's scale: 32x32 digits, longer training (GPU)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: 2,500 quick, 30,000 full)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from jaxdecomp.plotting import plt, save

    Path(args.out).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    out = run(args.full, args.seed, args.steps, checkpoint_dir=Path(args.out) / "fig4_checkpoints")
    out["seconds"] = time.perf_counter() - t0
    s = out["summary"]
    print(f"Fisher share within 2 RF SD: {s['fisher_share_in_rf']:.3f} (area {s['region_pixel_share']:.2f}); "
          f"edge correlation I_local {s['edge_corr_ilocal']:.3f} vs Fisher {s['edge_corr_fisher']:.3f} "
          f"(in RF region {s['edge_corr_ilocal_in_rf']:.3f} vs {s['edge_corr_fisher_in_rf']:.3f}); "
          f"{out['seconds']:.0f} s")
    fig4, fig6 = figures(out)
    fig6.savefig(Path(args.out) / "fig6_digits_panel.png", dpi=120)
    plt.close(fig6)
    save(fig4, out, args.out, "fig4_digits")
    return out


if __name__ == "__main__":
    main()
