"""Paper appendix (additivity): two sigmoid neurons, Gaussian prior.

I_{R1,R2}(x) = I_{R1}(x) + I_{R2|R1}(x) holds for I_local at every x and fails for
Kong-2 (whose conditional version draws (r1, r2) from p(r1, r2 | x)).
"""

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments._cli import Timer, parse

from jaxdecomp import exact
from jaxdecomp import neurons as N
from jaxdecomp.plotting import save


def main():
    args = parse(__doc__.splitlines()[0])
    grid = exact.gaussian_grid(0.0, 1.0, m=401, lo=-6, hi=6)
    x = np.asarray(grid.points)
    r1 = N.poisson_population(N.sigmoids([-0.5], 3.0, 6.0, 0.5))
    r2 = N.poisson_population(N.sigmoids([0.7], -2.0, 5.0, 0.5))
    both = N.joint_population(r1, r2)
    res = {}
    with Timer() as t:
        for name, fn in (("ilocal", exact.ilocal), ("kong2", exact.kong2)):
            joint, first, cond = fn(grid, both), fn(grid, r1), fn(grid, r2, given=r1)
            res[name] = dict(joint=joint, first=first, second_given_first=cond,
                             max_rel_error=float(np.max(np.abs(joint - first - cond) / joint)))
        mi = dict(joint=float(exact.mutual_information(grid, both)), first=float(exact.mutual_information(grid, r1)))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(x, np.asarray(jax.vmap(both.rate)(x)))
    axes[0].set_title("tuning curves (Poisson)")
    for ax, name in zip(axes[1:], ("ilocal", "kong2")):
        r = res[name]
        ax.plot(x, r["joint"], lw=2.5, color="0.7", label="I_{R1,R2}(x)")
        ax.plot(x, r["first"] + r["second_given_first"], "k--", label="I_{R1}(x) + I_{R2|R1}(x)")
        ax.plot(x, r["first"], lw=0.8, label="I_{R1}(x)")
        ax.plot(x, r["second_given_first"], lw=0.8, label="I_{R2|R1}(x)")
        ax.set_title(f"{'I_local' if name == 'ilocal' else 'Kong-2'}: max rel. error {r['max_rel_error']:.1e}")
        ax.set_xlabel("stimulus x")
        ax.legend(fontsize=7)
    data = dict(x=x, mutual_information=mi, seconds=t.seconds, **res)
    png, js = save(fig, data, args.out, "fig5_additivity")
    print(f"wrote {png} and {js} ({t.seconds:.1f} s)")
    for name in ("ilocal", "kong2"):
        print(f"{name}: max |I_R1R2 - I_R1 - I_R2|R1| / I_R1R2 = {res[name]['max_rel_error']:.3e}")


if __name__ == "__main__":
    main()
