"""Paper Fig. 7 (natural images): I_local and Fisher pixel maps of a CNN retina model.

Grey patches cut from the two photographs bundled with scikit-learn (``jaxdecomp.data.
natural_patches``), a CNN retina (convolutional core, factorised spatial-mask x feature
readout, softplus, Poisson) tiled as a 7x7 mosaic of 49 cells with initialised, calibrated
weights (``jaxdecomp.neurons.cnn_retina_population``). One response-conditioned UNet is
trained on simulated pairs; I_local maps use reverse-diffusion posterior sampling and levels
up to log-SNR 8 with the exact Fisher tail above (``jaxdecomp.diffusion.schedules.network_levels``).

Statistics in the JSON, per test patch and summarised: the Pearson correlation over pixels
between each map and the patch's edge strength (gradient magnitude), over all pixels and over
the mosaic region (within 2 mask SD of a cell centre); and each map's share in that region.
The paper's finding is that I_local peaks at high-contrast edges and object borders.

Default: 16x16 patches (photos down-scaled 4x), small kernels, a few CPU minutes. ``--full``:
the paper's 64x64 patches (photos down-scaled 2x), the retina's default kernels, a wider UNet
trained longer (meant for a GPU).
"""

import argparse
import time
from pathlib import Path

import jax
import numpy as np

from experiments import _images
from jaxdecomp import data, neurons
from jaxdecomp.plotting import map_figure

SETTINGS = {
    "quick": dict(size=16, scale=4, kernel=(5, 3), channels=(32, 64), steps=2500, n_train=4000, copies=2,
                  n_test=6, n_levels=24, n_samples=16, n_steps=16),
    "full": dict(size=64, scale=2, kernel=(9, 5), channels=(64, 128), steps=30000, n_train=20000, copies=2,
                 n_test=8, n_levels=32, n_samples=50, n_steps=32),
}
MASK_SD = 0.12


def run(full: bool = False, seed: int = 0, steps: int | None = None, checkpoint_dir=None) -> dict:
    cfg = dict(SETTINGS["full" if full else "quick"])
    if steps is not None:
        cfg["steps"] = int(steps)
    size = cfg["size"]
    k_train, k_maps = jax.random.split(jax.random.PRNGKey(seed))
    x_train = data.natural_patches(cfg["n_train"], size, seed=seed, scale=cfg["scale"])
    x_test = data.natural_patches(cfg["n_test"], size, seed=seed + 1000, scale=cfg["scale"])
    pop = neurons.cnn_retina_population((size, size), kernel=cfg["kernel"], mask_sigma=MASK_SD)
    model, info = _images.train_on(k_train, pop, x_train, channels=cfg["channels"], steps=cfg["steps"],
                                   copies=cfg["copies"], checkpoint_dir=checkpoint_dir)
    region = _images.rf_region((size, size), neurons.lattice_centers(), 2 * MASK_SD)
    maps, t_maps, stats = _images.maps_and_statistics(k_maps, model, pop, x_test, cfg, region, "region")
    summary = {k: float(np.mean(v)) for k, v in stats.items()}
    return dict(settings=dict(cfg, seed=seed, full=full, mask_sd=MASK_SD), training=info, map_seconds=t_maps,
                images=x_test, ilocal=maps["ilocal"], fisher=maps["fisher"], ilocal_totals=maps["ilocal_total"],
                ilocal_se=maps["ilocal_se"], statistics=stats, summary=summary)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out", help="folder for the PNG and JSON (default: experiments/out)")
    p.add_argument("--full", action="store_true", help="the paper's scale: 64x64 patches, longer training (GPU)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: 2,500 quick, 30,000 full)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from jaxdecomp.plotting import save

    Path(args.out).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    out = run(args.full, args.seed, args.steps, checkpoint_dir=Path(args.out) / "fig7_checkpoints")
    out["seconds"] = time.perf_counter() - t0
    s = out["summary"]
    print(f"edge correlation I_local {s['edge_corr_ilocal']:.3f} vs Fisher {s['edge_corr_fisher']:.3f} "
          f"(in the mosaic region {s['edge_corr_ilocal_in_region']:.3f} vs {s['edge_corr_fisher_in_region']:.3f}); "
          f"{out['seconds']:.0f} s")
    fig = map_figure(out["images"], {"Fisher J_ii(x)": out["fisher"], "I_local": out["ilocal"]},
                     titles=[f"I={t:.1f} nats" for t in out["ilocal_totals"]])
    save(fig, out, args.out, "fig7_natural_images")
    return out


if __name__ == "__main__":
    main()
