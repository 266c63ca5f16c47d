"""Trained denoisers against ground truth: population MI and I_local(x) from Flax NNX networks.

Case A: Gaussian-mixture prior in d=8 (4 components) with 4 linear-Gaussian neurons;
truth from the exact oracle (exact MI by Monte Carlo of exact log densities, exact
I_local with exact posterior sampling). Case B: 1-D bimodal prior with 3 Poisson neurons;
truth from the exact grid engine. For each: one MLP denoiser (condition dropout gives
both denoisers) trained on 10,000 pairs on this CPU, then
  * I(R;X) on 2,000 held-out pairs (orthogonal form) against the truth,
  * I_local(x) at 20 held-out stimuli (reverse-diffusion posterior sampling; the paper's
    posterior-mean sampler is reported too) against the truth: median relative error.
Writes trained_vs_exact.png and trained_vs_exact.json. ``--quick`` trains for fewer steps.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from jaxdecomp import estimate as E
from jaxdecomp import exact, tasks
from jaxdecomp import neurons as N
from jaxdecomp.diffusion import MLPDenoiser, TrainConfig, train
from jaxdecomp.plotting import save

N_TRAIN, N_TEST, N_STIM = 10_000, 2_000, 20


def gmm_task():
    """The 8-D, 4-component Gaussian mixture with 4 linear-Gaussian neurons (noise SD 0.5)."""
    rng = np.random.default_rng(3)
    d, K = 8, 4
    return tasks.gaussian_mixture(np.full(K, 1 / K), rng.normal(size=(K, d)) * 1.2,
                                  rng.uniform(0.2, 0.5, size=(K, d)), rng.normal(size=(4, d)) * 0.6, 0.5,
                                  name="gmm_d8_4_linear_gaussian")


def gmm_stimuli(task, key):
    """``case_gmm``'s held-out stimuli for ``key``, without the truth computation."""
    kx, _ = jax.random.split(key)
    return np.asarray(task.sample_prior(kx, N_TRAIN + N_TEST)[N_TRAIN:N_TRAIN + N_STIM])


def case_gmm(key):
    task = gmm_task()
    kx, kr = jax.random.split(key)
    x = task.sample_prior(kx, N_TRAIN + N_TEST)
    r = jax.vmap(task.encoder.sample)(jax.random.split(kr, x.shape[0]), x)
    mi_est = task.mutual_information(jax.random.PRNGKey(11), 400_000)
    mi, mi_se = mi_est.value, mi_est.stderr
    xs = x[N_TRAIN:N_TRAIN + N_STIM]
    truth = task.ilocal(jax.random.PRNGKey(12), xs, response_sampler="posterior_sample", n_samples=1024)
    return dict(name="gmm_d8_4_linear_gaussian", x=np.asarray(x), r=np.asarray(r), population=task.encoder,
                denoiser=task.denoiser, mi=mi, mi_se=mi_se, stimuli=np.asarray(xs), ilocal=np.asarray(truth.total),
                ilocal_se=np.asarray(truth.stderr))


def case_poisson(key):
    means, var, mix = [-1.0, 1.0], 0.2, [0.5, 0.5]
    pop = N.poisson_population(N.gaussian_bumps(np.array([-1.5, 0.0, 1.5]), 0.7, 5.0, 0.3))
    task = tasks.on_grid(exact.mixture_grid(means, var, mix, m=801), pop, name="poisson_1d_3_neurons")
    mi = task.mutual_information().value
    il = task.ilocal_on_grid()
    kc, kn, kr = jax.random.split(key, 3)
    n = N_TRAIN + N_TEST
    comp = jax.random.bernoulli(kc, 0.5, (n,))
    x = (jnp.where(comp, means[1], means[0]) + np.sqrt(var) * jax.random.normal(kn, (n,)))[:, None]
    r = jax.vmap(pop.sample)(jax.random.split(kr, n), x)
    xs = np.asarray(x[N_TRAIN:N_TRAIN + N_STIM])
    truth = np.interp(xs[:, 0], task.points[:, 0], il)
    return dict(name="poisson_1d_3_neurons", x=np.asarray(x), r=np.asarray(r), population=pop, mi=mi, mi_se=0.0,
                stimuli=xs, ilocal=truth, ilocal_se=np.zeros_like(truth))


def run_case(case, steps, key):
    d = case["x"].shape[1]
    net = MLPDenoiser((d,), n_neurons=case["r"].shape[1], hidden=128, depth=2, rngs=nnx.Rngs(0))
    cfg = TrainConfig(steps=steps, batch_size=256, learning_rate=1e-3, warmup_steps=200, progress=False)
    t0 = time.perf_counter()
    res = train(net, case["x"][:N_TRAIN], case["r"][:N_TRAIN], cfg, key=key)
    train_s = time.perf_counter() - t0
    k1, k2, k3 = jax.random.split(key, 3)
    mi = E.mutual_information(k1, res.model, case["x"][N_TRAIN:], case["r"][N_TRAIN:], n_noise=4)
    mi_gap = E.mutual_information(k1, res.model, case["x"][N_TRAIN:], case["r"][N_TRAIN:], n_noise=4, form="gap")
    t0 = time.perf_counter()
    il = jax.block_until_ready(E.ilocal(k2, res.model, case["population"], case["stimuli"], response_sampler="posterior_sample",
                  n_samples=64, n_steps=32))
    il_s = time.perf_counter() - t0
    il_pm = E.ilocal(k3, res.model, case["population"], case["stimuli"], response_sampler="posterior_mean",
                     n_samples=64)
    rel = np.asarray(il.total) / case["ilocal"] - 1
    rel_pm = np.asarray(il_pm.total) / case["ilocal"] - 1
    return dict(case=case["name"], train_steps=steps, train_pairs=N_TRAIN, train_seconds=train_s,
                final_loss=float(res.losses[-1, 1]), mi_true=case["mi"], mi_true_se=case["mi_se"],
                mi_network=float(mi.value), mi_network_se=float(mi.stderr),
                mi_relative_error=float(mi.value) / case["mi"] - 1,
                mi_network_gap=float(mi_gap.value), mi_network_gap_se=float(mi_gap.stderr),
                mi_gap_relative_error=float(mi_gap.value) / case["mi"] - 1,
                ilocal_true=case["ilocal"].tolist(), ilocal_network=np.asarray(il.total).tolist(),
                ilocal_network_se=np.asarray(il.stderr).tolist(),
                ilocal_median_abs_relative_error=float(np.median(np.abs(rel))),
                ilocal_mean_relative_bias=float(np.mean(rel)), ilocal_seconds=il_s,
                ilocal_posterior_mean=np.asarray(il_pm.total).tolist(),
                ilocal_posterior_mean_median_abs_relative_error=float(np.median(np.abs(rel_pm))),
                losses=res.losses.tolist())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out")
    p.add_argument("--steps", type=int, default=8000, help="training steps per network (default 8000)")
    p.add_argument("--quick", action="store_true", help="2000 training steps (a smoke run, not the accuracy claim)")
    args = p.parse_args(argv)
    steps = 2000 if args.quick else args.steps
    rows = []
    for i, make in enumerate((case_gmm, case_poisson)):
        case = make(jax.random.PRNGKey(100 + i))
        rows.append(run_case(case, steps, jax.random.PRNGKey(200 + i)))
        r = rows[-1]
        print(f"{r['case']}: trained {r['train_steps']} steps in {r['train_seconds']:.0f} s; "
              f"MI {r['mi_network']:.3f} ± {r['mi_network_se']:.3f} vs true {r['mi_true']:.3f} "
              f"({100 * r['mi_relative_error']:+.1f}%; gap form {100 * r['mi_gap_relative_error']:+.1f}%); I_local median |rel. error| "
              f"{100 * r['ilocal_median_abs_relative_error']:.1f}% (posterior sampling), "
              f"{100 * r['ilocal_posterior_mean_median_abs_relative_error']:.1f}% (posterior mean)")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, r in zip(axes, rows):
        t = np.asarray(r["ilocal_true"])
        ax.errorbar(t, r["ilocal_network"], yerr=r["ilocal_network_se"], fmt="o", label="network, posterior sampling")
        ax.plot(t, r["ilocal_posterior_mean"], "s", ms=4, label="network, posterior mean (paper)")
        lim = [0, 1.15 * max(t.max(), max(r["ilocal_network"]))]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_title(f"{r['case']}\nMI {r['mi_network']:.2f} (net) vs {r['mi_true']:.2f} (true)", fontsize=9)
        ax.set_xlabel("true I_local(x) (nats)")
        ax.set_ylabel("estimated I_local(x) (nats)")
        ax.legend(fontsize=7)
    save(fig, dict(settings=dict(train_pairs=N_TRAIN, heldout_pairs=N_TEST, stimuli=N_STIM, steps=steps),
                   cases=rows), args.out, "trained_vs_exact")
    return rows


if __name__ == "__main__":
    main()
