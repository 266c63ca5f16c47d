"""Paper Fig. 2 (effect of the prior): r ~ N(x, sigma^2), uniform sensitivity.

Gaussian prior N(0, 1): I_local is flat at 1/2 log(1 + s/sigma^2); I_CiSSI and
I_surp grow quadratically in x. Bimodal prior (modes at ±1): I_local peaks at 0,
between the modes; I_SSI has a minimum there.
"""

import matplotlib.pyplot as plt
import numpy as np

from experiments._cli import Timer, parse

from jaxdecomp import exact
from jaxdecomp import neurons as N
from jaxdecomp.plotting import MEASURES, measure_panels, save

S, SIGMA, MODE_VAR = 1.0, 0.5, 0.1


def main():
    args = parse(__doc__.splitlines()[0])
    pop = N.gaussian_population(N.linear(1.0), SIGMA)
    priors = {
        "gaussian": exact.gaussian_grid(0.0, S, m=401),
        "bimodal": exact.mixture_grid([-1.0, 1.0], MODE_VAR, m=401, lo=-4.5, hi=4.5),
    }
    fig, axes = plt.subplots(2, len(MEASURES) + 1, figsize=(3.0 * (len(MEASURES) + 1), 5.6))
    data = dict(settings=dict(prior_var=S, noise_sd=SIGMA, bimodal_modes=[-1, 1], bimodal_mode_var=MODE_VAR))
    with Timer() as t:
        for row, (name, grid) in enumerate(priors.items()):
            x = np.asarray(grid.points)
            out = exact.all_measures(grid, pop)
            axes[row, 0].plot(x, np.asarray(grid.weights) / (x[1] - x[0]), color="0.4")
            axes[row, 0].set_title(f"{name} prior")
            measure_panels(x, {name: out}, MEASURES, axes=axes[row, 1:])
            keep = np.abs(x) <= 3
            entry = dict(x=x, **out)
            if name == "gaussian":
                truth = 0.5 * np.log(1 + S / SIGMA**2)
                entry["ilocal_closed_form"] = truth
                entry["ilocal_max_rel_error_within_3sd"] = float(np.max(np.abs(out["ilocal"][keep] - truth)) / truth)
            else:
                i0 = int(np.argmin(np.abs(x)))
                entry["ilocal_argmax"] = float(x[np.argmax(out["ilocal"])])
                entry["ssi_local_min_at_0"] = bool(out["ssi"][i0] < out["ssi"][i0 - 20] and out["ssi"][i0] < out["ssi"][i0 + 20])
            data[name] = entry
    data["seconds"] = t.seconds
    png, js = save(fig, data, args.out, "fig2_prior")
    g = data["gaussian"]
    print(f"wrote {png} and {js} ({t.seconds:.1f} s)")
    print(f"Gaussian prior: I_local max relative error to 1/2 log(1+s/sigma^2) = {g['ilocal_max_rel_error_within_3sd']:.2e}")
    print(f"bimodal prior: I_local peaks at x = {data['bimodal']['ilocal_argmax']:.3f}; "
          f"I_SSI has a local minimum at 0: {data['bimodal']['ssi_local_min_at_0']}")


if __name__ == "__main__":
    main()
