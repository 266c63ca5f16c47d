"""Response samplers for I_local: the bias of the paper's posterior-mean approximation.

Gaussian-mixture prior in d=4 (3 components) with three linear-Gaussian neurons, where
exact denoisers and exact posterior sampling are available. For 20 stimuli drawn from
the prior, I_local(x) is estimated with each response sampler and compared with the
exact-posterior estimate; completeness (mean over 300 prior stimuli against the exact
I(R;X)) is reported for each. Writes sampler_bias.png and sampler_bias.json.
"""

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments._cli import Timer, parse
from jaxdecomp import estimate as E
from jaxdecomp import tasks
from jaxdecomp.diffusion import schedules as S
from jaxdecomp.plotting import save


def task():
    """The ground-truth problem: 3-component mixture in d=4, three linear-Gaussian neurons (noise SD 0.5)."""
    rng = np.random.default_rng(0)
    return tasks.gaussian_mixture([0.2, 0.3, 0.5], rng.normal(size=(3, 4)) * 1.5, [0.3, 0.5, 0.8],
                                  rng.normal(size=(3, 4)), 0.5, name="sampler_bias_d4")


def main():
    args = parse(__doc__.splitlines()[0])
    problem = task()
    D, pop = problem.denoiser, problem.encoder
    plain = lambda z, a, r: D(z, a, r)  # noqa: E731  (hides the exact sampler: reverse diffusion is used)
    mi_est = problem.mutual_information(jax.random.PRNGKey(0), 400_000)
    mi, mi_se = mi_est.value, mi_est.stderr
    xs = problem.sample_prior(jax.random.PRNGKey(1), 20)
    x_pop = problem.sample_prior(jax.random.PRNGKey(2), 300)
    variants = {
        "exact posterior sample": dict(den=D, response_sampler="posterior_sample"),
        "posterior mean (paper's sampler)": dict(den=D, response_sampler="posterior_mean"),
        "paper protocol (posterior mean, 24 DDPM levels, 50 samples)": dict(
            den=D, response_sampler="posterior_mean", levels=S.levels("paper"), n_samples=50),
        "reverse diffusion K=16": dict(den=plain, response_sampler="posterior_sample", n_steps=16),
        "reverse diffusion K=64": dict(den=plain, response_sampler="posterior_sample", n_steps=64),
        "clean stimulus (Kong-2)": dict(den=D, response_sampler="clean"),
    }
    rows, per_stim = {}, {}
    with Timer() as t:
        for i, (name, kw) in enumerate(variants.items()):
            kw = dict(kw)
            den = kw.pop("den")
            n = kw.pop("n_samples", 512)
            heavy = "reverse" in name
            res = E.ilocal(jax.random.PRNGKey(10 + i), den, pop, xs, n_samples=128 if heavy else n,
                           stimulus_shape=(4,), **kw)
            comp = E.ilocal(jax.random.PRNGKey(20 + i), den, pop, x_pop, n_samples=8 if heavy else 16,
                            stimulus_shape=(4,), **{k: v for k, v in kw.items()})
            per_stim[name] = dict(total=np.asarray(res.total), stderr=np.asarray(res.stderr))
            rows[name] = dict(completeness_mean=float(np.mean(comp.total)),
                              completeness_se=float(np.std(comp.total, ddof=1) / np.sqrt(len(comp.total))))
    ref = per_stim["exact posterior sample"]["total"]
    for name, v in per_stim.items():
        rel = v["total"] / ref - 1
        rows[name].update(mean_relative_bias=float(rel.mean()), median_relative_bias=float(np.median(rel)),
                          correlation_with_exact=float(np.corrcoef(v["total"], ref)[0, 1]),
                          completeness_relative_error=rows[name]["completeness_mean"] / mi - 1)
    print(f"exact I(R;X) = {mi:.4f} ± {mi_se:.4f} nats   ({t.seconds:.1f} s)")
    print(f"{'sampler':62s} {'bias vs exact':>14s} {'corr':>6s} {'E_x[I(x)]':>10s} {'vs MI':>8s}")
    for name, r in rows.items():
        print(f"{name:62s} {100 * r['mean_relative_bias']:+13.1f}% {r['correlation_with_exact']:6.3f} "
              f"{r['completeness_mean']:10.3f} {100 * r['completeness_relative_error']:+7.1f}%")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, v in per_stim.items():
        if name != "exact posterior sample":
            ax.errorbar(ref, v["total"], yerr=v["stderr"], fmt="o", ms=4, label=name)
    lim = [0, 1.1 * max(float(np.max(v["total"])) for v in per_stim.values())]
    ax.plot(lim, lim, "k--", lw=0.8)
    ax.set_xlabel("I_local(x), exact posterior sampling (nats)")
    ax.set_ylabel("I_local(x), other sampler (nats)")
    ax.legend(fontsize=7)
    data = dict(settings=dict(d=4, components=3, neurons=3, noise_sd=0.5, stimuli=20, completeness_stimuli=300),
                mutual_information=dict(value=mi, stderr=mi_se), summary=rows,
                per_stimulus={k: {kk: vv.tolist() for kk, vv in v.items()} for k, v in per_stim.items()},
                seconds=t.seconds)
    save(fig, data, args.out, "sampler_bias")


if __name__ == "__main__":
    main()
