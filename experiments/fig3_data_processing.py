"""Paper Fig. 3 (pointwise data processing): r ~ N(x, sigma^2) and r' = |r|.

I_local obeys I_{R'}(x) <= I_R(x) at every x; I_SSI and I_sp do not. The prior is an
asymmetric bimodal mixture (modes -0.5 and 1.5): with a symmetric one, |r| loses only
the sign and I_sp / I_SSI happen to obey the inequality as well (measured).
"""

import matplotlib.pyplot as plt
import numpy as np

from experiments._cli import Timer, parse

from jaxdecomp import exact
from jaxdecomp import neurons as N
from jaxdecomp.plotting import MEASURES, measure_panels, save

MODES, MODE_VAR, SIGMA = [-0.5, 1.5], 0.1, 0.3


def main():
    args = parse(__doc__.splitlines()[0])
    grid = exact.mixture_grid(MODES, MODE_VAR, m=401)
    x = np.asarray(grid.points)
    pop = N.gaussian_population(N.linear(1.0), SIGMA)
    with Timer() as t:
        full = exact.all_measures(grid, pop)
        proc = exact.all_measures(grid, N.abs_response(pop))
    measures = [m for m in MEASURES if m != "fisher"]
    violation = {m: float(np.max(proc[m] - full[m])) for m in measures}
    fig, axes = plt.subplots(2, len(measures), figsize=(3.0 * len(measures), 5.4))
    measure_panels(x, {"R": full, "R' = |R|": proc}, measures, axes=axes[0], styles={"R' = |R|": {"ls": "--"}})
    for ax, m in zip(axes[1], measures):
        d = proc[m] - full[m]
        ax.plot(x, d, color="k")
        ax.fill_between(x, 0, d, where=d > 0, color="red", alpha=0.4, label="violation")
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_title(f"I_R'(x) - I_R(x), max {violation[m]:+.3g}", fontsize=9)
        ax.set_xlabel("stimulus x")
    data = dict(
        settings=dict(modes=MODES, mode_var=MODE_VAR, noise_sd=SIGMA), x=x, R=full, R_abs=proc,
        max_of_IRprime_minus_IR=violation, seconds=t.seconds,
    )
    png, js = save(fig, data, args.out, "fig3_data_processing")
    print(f"wrote {png} and {js} ({t.seconds:.1f} s)")
    for m, v in violation.items():
        print(f"{m:22s} max(I_R' - I_R) = {v:+.4f}  {'VIOLATES' if v > 1e-9 else 'ok'}")


if __name__ == "__main__":
    main()
