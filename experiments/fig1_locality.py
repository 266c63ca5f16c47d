"""Paper Fig. 1 (locality): a tuning curve gains a second bump far away.

Gaussian prior N(0, 3^2); one Gaussian-noise neuron (sigma 0.3). Tuning A: one bump
at -3; tuning B: the same plus a bump at +6. Every measure for A and B, and how the
change |B - A| decays with distance from the new bump. Only Fisher and I_local are
local; under a Gaussian prior I_local's change decays slowly (its large-noise part
sees the whole prior), so the ratios are reported as measured.
"""

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments._cli import Timer, parse

from jaxdecomp import exact
from jaxdecomp import neurons as N
from jaxdecomp.plotting import LABELS, MEASURES, measure_panels, save

PRIOR_SD, NOISE, WIDTH, OLD, NEW = 3.0, 0.3, 0.5, -3.0, 6.0


def main():
    args = parse(__doc__.splitlines()[0])
    grid = exact.gaussian_grid(0.0, PRIOR_SD**2, m=641, lo=-16, hi=16)
    x = np.asarray(grid.points)
    A = N.gaussian_population(N.gaussian_bumps([OLD], WIDTH, 1.0, 0.0), NOISE)
    B = N.gaussian_population(N.gaussian_bumps([OLD, NEW], WIDTH, 1.0, 0.0), NOISE)
    with Timer() as t:
        a, b = exact.all_measures(grid, A), exact.all_measures(grid, B)
    change = {k: np.abs(b[k] - a[k]) for k in MEASURES}
    dist = np.abs(x - NEW)
    left = x < NEW
    ratios = {}
    for d in (9.0, 12.0, 15.0, 18.0):
        far = left & (dist >= d)
        il = float(np.mean(change["ilocal"][far]))
        ratios[f">={d:g}"] = {
            "mean_change_ilocal": il,
            **{f"ratio_{k}": float(np.mean(change[k][far]) / il)
               for k in ("specific_information", "ssi", "specific_surprise", "cissi", "kong2")},
        }

    fig = plt.figure(figsize=(16, 7.5))
    ax0 = fig.add_subplot(3, 4, 1)
    ax0.plot(x, np.asarray(jax.vmap(A.rate)(x))[:, 0], label="tuning A")
    ax0.plot(x, np.asarray(jax.vmap(B.rate)(x))[:, 0], "--", label="tuning B")
    ax0.plot(x, np.asarray(grid.weights) / (x[1] - x[0]), color="0.5", label="prior p(x)")
    ax0.set_title("tuning curves and prior")
    ax0.legend(fontsize=8)
    rest = [fig.add_subplot(3, 4, i) for i in range(2, 9)]
    measure_panels(x, {"A": a, "B": b}, MEASURES, axes=np.array(rest), styles={"B": {"ls": "--"}})
    ax = fig.add_subplot(3, 1, 3)
    for k in MEASURES:
        if k == "fisher":
            continue
        ax.semilogy(dist[left], np.maximum(change[k][left], 1e-12), label=LABELS[k])
    ax.set_xlabel("distance from the added bump |x - 6|")
    ax.set_ylabel("|change| (nats)")
    ax.set_ylim(1e-5, 1)
    ax.invert_xaxis()
    ax.legend(fontsize=8, ncol=3)
    ax.set_title("decay of the change with distance (Fisher's change is exactly 0 away from the bump)")
    data = dict(
        settings=dict(prior_sd=PRIOR_SD, noise_sd=NOISE, bump_width=WIDTH, old_bump=OLD, new_bump=NEW, grid_m=grid.size),
        x=x, A={k: a[k] for k in a}, B={k: b[k] for k in b}, far_change_ratios=ratios, seconds=t.seconds,
    )
    png, js = save(fig, data, args.out, "fig1_locality")
    print(f"wrote {png} and {js} ({t.seconds:.1f} s of computation)")
    for d, r in ratios.items():
        print(f"distance {d}: " + ", ".join(f"{k}={v:.3g}" for k, v in r.items()))


if __name__ == "__main__":
    main()
