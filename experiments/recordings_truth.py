"""Recordings with a known truth: fit an encoder to simulated recordings, decompose with it, and
compare with the decomposition by the true encoder.

"Recordings": the paper's LNP population (49 Gaussian-RF Poisson neurons,
``jaxdecomp.neurons.lnp_population``, peak rate ``--gain`` spikes per trial, default 2: at the
paper's 40 the responses identify every digit of the prior and all encoders give the same maps)
on ``--n-record`` bundled digits (16x16) x ``--repeats`` repeats. Fits (``jaxdecomp.neurons.fit_encoder``, split by stimulus, early stopping): a GLM with the
true model's form (``gain * sigmoid``; the Laplacian smoothness weight chosen on the validation
log-likelihood from ``--smooth-grid``) and a misspecified ``softplus`` GLM at the same weight.
Held-out metrics (bits/spike, correlation, FEV) are reported for the fits and for the true model on
the same validation stimuli, with the filter correlations.

Decomposition: the same prior for every encoder, the empirical (uniform) prior over ``--n-prior``
digits NOT used for fitting, whose exact discrete-prior denoisers (``jaxdecomp.tasks.empirical``)
make the maps exact in expectation; common random numbers (one key) for every encoder. Compared on
``--panel`` digits of that prior: I_local maps (pixel correlation), totals, Fisher maps, and I(R;X).
Convergence with the amount of data: the sigmoid GLM refitted on the first 200, 500 and all recorded
digits (``data_size_sweep`` in the JSON: filter and map correlations, mean |total error|).
The second model class (``--no-retina`` skips it): a CNN retina (9 neurons, random core) "recorded" on
the same number of digits; the CNN architecture (``model="cnn"``) and a misspecified softplus GLM are
fitted; maps with the fitted and the true CNN under one empirical prior (recordings_truth_cnn.png).
Writes recordings_truth.png (colour bars on every map) and recordings_truth.json in ``--out``.

    python -m experiments.recordings_truth --out DIR            # about 10 minutes on a 2-core CPU
    python -m experiments.recordings_truth --out DIR --quick    # a smaller run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdecomp import data, neurons, tasks


def _filter_corr(a, b):
    return np.array([np.corrcoef(a[i], b[i])[0, 1] for i in range(a.shape[0])])


def _pixel_corr(a, b):
    return np.array([np.corrcoef(np.ravel(u), np.ravel(v))[0, 1] for u, v in zip(a, b)])


def _summary(m):
    keys = ("bits_per_spike_pooled", "correlation_mean", "fev_mean", "fev_pooled", "log_likelihood")
    return {k: m[k] for k in keys}


def run(n_record: int = 1500, repeats: int = 4, n_prior: int = 200, panel: int = 6, n_samples: int = 64,
        smooth_grid=(0.001, 0.003, 0.01, 0.03, 0.1), steps: int = 4000, learning_rate: float = 0.03, size: int = 16,
        seed: int = 0, n_mi: int = 16, gain: float = 2.0, sizes=(200, 500)) -> dict:
    t_start = time.perf_counter()
    x_all = np.asarray(data.digits(size), np.float32)
    if n_record + n_prior > x_all.shape[0]:
        raise ValueError(f"--n-record + --n-prior: at most {x_all.shape[0]} digits are bundled, got "
                         f"{n_record} + {n_prior}")
    pop = neurons.lnp_population((size, size), gain=gain)
    k_perm, k_rec, k_fit, k_maps, k_mi = jax.random.split(jax.random.PRNGKey(seed), 5)
    perm = np.asarray(jax.random.permutation(k_perm, x_all.shape[0]))
    x_rec, x_prior = x_all[perm[:n_record]], x_all[perm[n_record:n_record + n_prior]]
    # record: every stimulus `repeats` times, trial t of stimulus i from key fold_in(k_rec, t)
    rate = jax.jit(jax.vmap(pop.rate))
    f = np.asarray(rate(x_rec))
    r = np.stack([np.asarray(jax.random.poisson(jax.random.fold_in(k_rec, t), f)) for t in range(repeats)], axis=1)
    r = r.astype(np.float32)  # (n_record, repeats, 49)
    print(f"recorded {n_record} digits x {repeats} repeats from 49 LNP neurons: mean {r.mean():.2f} spikes/trial/neuron",
          flush=True)

    fits, t0 = {}, time.perf_counter()
    for s in smooth_grid:
        res = neurons.fit_encoder(k_fit, x_rec, r, nonlinearity="sigmoid", smooth=s, steps=steps,
                                  learning_rate=learning_rate)
        fits[s] = res
        print(f"  sigmoid GLM, smooth={s:g}: validation {res.metrics['bits_per_spike_pooled']:.4f} bits/spike "
              f"(best step {res.best_step})", flush=True)
    best_s = max(fits, key=lambda s: fits[s].metrics["log_likelihood"])
    fit_sig = fits[best_s]
    fit_sp = neurons.fit_encoder(k_fit, x_rec, r, nonlinearity="softplus", smooth=best_s, steps=steps,
                                 learning_rate=learning_rate)
    t_fit = time.perf_counter() - t0
    val = fit_sig.val_idx  # the same split for every fit (same key, same N)
    true_m = neurons.encoder_metrics(pop, x_rec[val], r[val])
    encoders = {"true": pop, "fit_sigmoid": fit_sig.encoder, "fit_softplus": fit_sp.encoder}
    metrics = {"true": _summary(true_m), "fit_sigmoid": _summary(fit_sig.metrics),
               "fit_softplus": _summary(fit_sp.metrics)}
    W = np.asarray(pop.rates.W)
    filt = {name: _filter_corr(np.asarray(e.rates.W), W) for name, e in encoders.items() if name != "true"}
    for name in ("true", "fit_sigmoid", "fit_softplus"):
        m = metrics[name]
        extra = "" if name == "true" else f", filter correlation median {np.median(filt[name]):.3f} (min {filt[name].min():.3f})"
        print(f"{name:13s} validation: {m['bits_per_spike_pooled']:.4f} bits/spike, correlation {m['correlation_mean']:.3f}, "
              f"FEV {m['fev_mean']:.3f}{extra}", flush=True)

    # decomposition with the same prior and common random numbers
    xp = x_prior[:panel]
    maps, totals, fisher, mi = {}, {}, {}, {}
    t0 = time.perf_counter()
    for name, enc in encoders.items():
        task = tasks.empirical(x_prior, enc, name=f"prior_{name}")
        res = task.ilocal(k_maps, xp, n_samples=n_samples)
        maps[name], totals[name] = np.asarray(res.map), np.asarray(res.total)
        fisher[name] = np.asarray(jax.vmap(enc.fisher_diag)(jnp.asarray(xp)))
        m = task.mutual_information(k_mi, n_per_stimulus=n_mi)
        mi[name] = (float(m.value), float(m.stderr))
        print(f"{name:13s} I_local totals {np.round(totals[name], 3).tolist()}  I(R;X) = {m.value:.3f} ± {m.stderr:.3f}",
              flush=True)
    t_maps = time.perf_counter() - t0
    compare = {}
    for name in ("fit_sigmoid", "fit_softplus"):
        compare[name] = dict(
            ilocal_map_correlation=_pixel_corr(maps[name], maps["true"]),
            ilocal_total_relative_difference=totals[name] / totals["true"] - 1,
            fisher_map_correlation=_pixel_corr(fisher[name], fisher["true"]),
            fisher_total_relative_difference=fisher[name].sum((1, 2)) / fisher["true"].sum((1, 2)) - 1,
            mi_relative_difference=mi[name][0] / mi["true"][0] - 1,
        )
        c = compare[name]
        print(f"{name}: I_local map correlation with the truth median {np.median(c['ilocal_map_correlation']):.3f}, "
              f"totals {np.round(100 * c['ilocal_total_relative_difference'], 1).tolist()} %, "
              f"I(R;X) {100 * c['mi_relative_difference']:+.1f} %", flush=True)
    # convergence with the amount of data: refit the sigmoid GLM (chosen smoothness) on the first n
    # recorded digits; the same prior, panel and key as above (common random numbers)
    sweep = []
    for n in sorted(set(int(v) for v in sizes if 0 < int(v) < n_record)) + [n_record]:
        if n == n_record:
            f_n = fit_sig
        else:
            f_n = neurons.fit_encoder(k_fit, x_rec[:n], r[:n], nonlinearity="sigmoid", smooth=best_s, steps=steps,
                                      learning_rate=learning_rate)
        res_n = tasks.empirical(x_prior, f_n.encoder).ilocal(k_maps, xp, n_samples=n_samples)
        m_n, t_n = np.asarray(res_n.map), np.asarray(res_n.total)
        sweep.append(dict(n_record=n, filter_correlation_median=float(np.median(_filter_corr(np.asarray(f_n.encoder.rates.W), W))),
                          ilocal_map_correlation_median=float(np.median(_pixel_corr(m_n, maps["true"]))),
                          ilocal_total_abs_relative_difference_mean=float(np.mean(np.abs(t_n / totals["true"] - 1))),
                          validation_bits_per_spike=float(f_n.metrics["bits_per_spike_pooled"])))
        print(f"  n_record={n:5d}: filter correlation median {sweep[-1]['filter_correlation_median']:.3f}, I_local map "
              f"correlation median {sweep[-1]['ilocal_map_correlation_median']:.3f}, totals off by "
              f"{100 * sweep[-1]['ilocal_total_abs_relative_difference_mean']:.1f}% on average", flush=True)
    return dict(
        data_size_sweep=sweep,
        settings=dict(n_record=n_record, repeats=repeats, n_prior=n_prior, panel=panel, n_samples=n_samples,
                      smooth_grid=list(smooth_grid), chosen_smooth=best_s, steps=steps, learning_rate=learning_rate,
                      size=size, seed=seed, n_mi=n_mi, gain=gain, sizes=list(sizes),
                      population=f"lnp_population((16, 16), gain={gain:g}): 49 Poisson neurons",
                      prior=f"empirical over {n_prior} held-out digits (exact denoisers)"),
        validation_metrics=metrics,
        smooth_selection={str(s): fits[s].metrics["log_likelihood"] for s in smooth_grid},
        filter_correlation={k: v for k, v in filt.items()},
        mutual_information=mi, totals=totals, compare=compare,
        seconds=dict(fit=t_fit, maps=t_maps, total=time.perf_counter() - t_start),
        _arrays=dict(images=xp, maps=maps, fisher=fisher),
    )


def run_retina(n_record: int = 1500, repeats: int = 4, n_prior: int = 200, panel: int = 6, n_samples: int = 64,
               steps: int = 600, learning_rate: float = 0.02, size: int = 16, seed: int = 0, grid: int = 3,
               channels=(4, 4), kernel=(5, 3), mean_rate: float = 3.0) -> dict:
    """The second model class: "record" from a CNN retina (random core, Gaussian readout masks, Poisson)
    and fit the CNN architecture (``model="cnn"``) and, misspecified, a sigmoid GLM; decompose with the
    fitted and the true CNN under one empirical prior (exact denoisers, common random numbers)."""
    t_start = time.perf_counter()
    x_all = np.asarray(data.digits(size), np.float32)
    pop = neurons.cnn_retina_population((size, size), grid=grid, channels=channels, kernel=kernel,
                                        mean_rate=mean_rate, key=jax.random.PRNGKey(seed + 100))
    k_perm, k_rec, k_fit, k_maps = jax.random.split(jax.random.PRNGKey(seed + 1), 4)
    perm = np.asarray(jax.random.permutation(k_perm, x_all.shape[0]))
    x_rec, x_prior = x_all[perm[:n_record]], x_all[perm[n_record:n_record + n_prior]]
    f = np.asarray(jax.jit(jax.vmap(pop.rate))(x_rec))
    r = np.stack([np.asarray(jax.random.poisson(jax.random.fold_in(k_rec, t), f)) for t in range(repeats)], axis=1)
    r = r.astype(np.float32)
    n = f.shape[1]
    print(f"CNN retina: recorded {n_record} digits x {repeats} repeats from {n} neurons: mean {r.mean():.2f} "
          f"spikes/trial/neuron", flush=True)
    t0 = time.perf_counter()
    fit_cnn = neurons.fit_encoder(k_fit, x_rec, r, model="cnn", channels=channels, kernel=kernel, steps=steps,
                                  learning_rate=learning_rate, eval_every=50, patience=3)
    fit_glm = neurons.fit_encoder(k_fit, x_rec, r, nonlinearity="softplus", smooth=0.01, steps=4 * steps,
                                  learning_rate=0.03)
    t_fit = time.perf_counter() - t0
    val = fit_cnn.val_idx
    metrics = {"true": _summary(neurons.encoder_metrics(pop, x_rec[val], r[val])),
               "fit_cnn": _summary(fit_cnn.metrics), "fit_glm": _summary(fit_glm.metrics)}
    centre_error = np.linalg.norm(np.asarray(fit_cnn.encoder.rates.centers) - np.asarray(pop.rates.centers), axis=1)
    for name, m in metrics.items():
        print(f"  {name:8s} validation: {m['bits_per_spike_pooled']:.4f} bits/spike, correlation "
              f"{m['correlation_mean']:.3f}, FEV {m['fev_mean']:.3f}", flush=True)
    xp = x_prior[:panel]
    maps, totals, stderr = {}, {}, {}
    t0 = time.perf_counter()
    for name, enc in (("true", pop), ("fit_cnn", fit_cnn.encoder), ("fit_glm", fit_glm.encoder)):
        res = tasks.empirical(x_prior, enc, name=f"retina_prior_{name}").ilocal(k_maps, xp, n_samples=n_samples)
        maps[name], totals[name], stderr[name] = np.asarray(res.map), np.asarray(res.total), np.asarray(res.stderr)
    t_maps = time.perf_counter() - t0
    compare = {name: dict(ilocal_map_correlation=_pixel_corr(maps[name], maps["true"]),
                          ilocal_total_relative_difference=totals[name] / totals["true"] - 1)
               for name in ("fit_cnn", "fit_glm")}
    for name, c in compare.items():
        print(f"  {name}: I_local map correlation with the truth median {np.median(c['ilocal_map_correlation']):.3f}, "
              f"totals {np.round(100 * c['ilocal_total_relative_difference'], 1).tolist()} %", flush=True)
    return dict(
        settings=dict(n_record=n_record, repeats=repeats, n_prior=n_prior, panel=panel, n_samples=n_samples, steps=steps,
                      size=size, seed=seed, grid=grid, channels=list(channels), kernel=list(kernel), mean_rate=mean_rate,
                      population=f"cnn_retina_population(({size}, {size}), grid={grid}): {n} Poisson neurons"),
        validation_metrics=metrics, mask_centre_error=centre_error, totals=totals, totals_stderr=stderr,
        compare=compare,
        seconds=dict(fit=t_fit, maps=t_maps, total=time.perf_counter() - t_start),
        _arrays=dict(images=xp, maps=maps),
    )


def figure_retina(res):
    from jaxdecomp.plotting import plt

    a = res["_arrays"]
    xp, maps = a["images"], a["maps"]
    n = xp.shape[0]
    rows = [("digit", None), ("I_local, true CNN", "true"), ("I_local, fitted CNN", "fit_cnn"),
            ("I_local, fitted GLM", "fit_glm")]
    fig, axes = plt.subplots(len(rows), n, figsize=(2.1 * n, 1.9 * len(rows)), squeeze=False)
    for i, (label, name) in enumerate(rows):
        for j in range(n):
            ax = axes[i, j]
            if name is None:
                im = ax.imshow(xp[j], cmap="gray", vmin=-1, vmax=1)
            else:
                lim = float(max(m[j].max() for m in maps.values()))
                im = ax.imshow(maps[name][j], cmap="magma", vmin=0.0, vmax=lim if lim > 0 else None)
                ax.set_title(f"{res['totals'][name][j]:.2f} ± {res['totals_stderr'][name][j]:.2f} nats", fontsize=7)
                if name != "true":
                    ax.set_xlabel(f"corr {res['compare'][name]['ilocal_map_correlation'][j]:.3f}", fontsize=7)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=6)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, fontsize=7)
    fig.suptitle("I_local (nats/pixel) with the true CNN retina and with encoders fitted to its recordings\n"
                 "(same prior, exact denoisers, common random numbers)", fontsize=9)
    fig.tight_layout()
    return fig


def figure(res):
    from jaxdecomp.plotting import plt

    a = res["_arrays"]
    xp, maps = a["images"], a["maps"]
    n = xp.shape[0]
    rows = [("digit", xp, "gray"), ("I_local, true encoder", maps["true"], "magma"),
            ("I_local, fitted (sigmoid)", maps["fit_sigmoid"], "magma"),
            ("I_local, fitted (softplus)", maps["fit_softplus"], "magma"),
            ("fitted (sigmoid) - true", maps["fit_sigmoid"] - maps["true"], "RdBu_r"),
            ("Fisher J_ii, true encoder", a["fisher"]["true"], "viridis"),
            ("Fisher J_ii, fitted (sigmoid)", a["fisher"]["fit_sigmoid"], "viridis")]
    fig, axes = plt.subplots(len(rows), n, figsize=(2.1 * n, 1.9 * len(rows)), squeeze=False)
    corr = res["compare"]["fit_sigmoid"]["ilocal_map_correlation"]
    fcorr = res["compare"]["fit_sigmoid"]["fisher_map_correlation"]
    for i, (label, arr, cmap) in enumerate(rows):
        for j in range(n):
            ax = axes[i, j]
            if cmap == "gray":
                im = ax.imshow(arr[j], cmap=cmap, vmin=-1, vmax=1)
                ax.set_title(f"true {res['totals']['true'][j]:.2f} / fit {res['totals']['fit_sigmoid'][j]:.2f}",
                             fontsize=7)
            elif cmap == "RdBu_r":
                lim = float(np.max(np.abs(arr[j]))) or 1.0
                im = ax.imshow(arr[j], cmap=cmap, vmin=-lim, vmax=lim)
                ax.set_xlabel(f"corr {corr[j]:.3f}", fontsize=7)
            elif cmap == "viridis":
                lim = float(max(a["fisher"]["true"][j].max(), a["fisher"]["fit_sigmoid"][j].max()))
                im = ax.imshow(arr[j], cmap=cmap, vmin=0.0, vmax=lim if lim > 0 else None)
                if label.startswith("Fisher J_ii, fitted"):
                    ax.set_xlabel(f"corr {fcorr[j]:.2f}", fontsize=7)
            else:
                lim = float(max(maps["true"][j].max(), maps["fit_sigmoid"][j].max(), maps["fit_softplus"][j].max()))
                im = ax.imshow(arr[j], cmap=cmap, vmin=0.0, vmax=lim if lim > 0 else None)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=6)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, fontsize=7)
    fig.suptitle("I_local (nats/pixel) and Fisher information with the true and the fitted LNP encoders\n"
                 "(same prior, exact denoisers, common random numbers)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out")
    p.add_argument("--quick", action="store_true", help="fewer recordings, a smaller prior and panel")
    p.add_argument("--n-record", type=int, default=None)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gain", type=float, default=2.0,
                   help="peak spikes per trial of the LNP neurons (default 2; the paper's 40 identifies every digit of "
                        "the prior, I(R;X) = log(n_prior), and then every encoder that does so gives the same maps)")
    p.add_argument("--no-retina", action="store_true", help="skip the CNN-retina part")
    a = p.parse_args(argv)
    kw = dict(n_record=800, n_prior=120, panel=4, n_samples=32, smooth_grid=(0.01, 0.03), steps=2000, n_mi=8,
              sizes=(200,)) \
        if a.quick else {}
    if a.n_record is not None:
        kw["n_record"] = a.n_record
    res = run(repeats=a.repeats, seed=a.seed, gain=a.gain, **kw)
    if not a.no_retina:
        kw_r = dict(n_record=600, n_prior=80, panel=3, n_samples=32, steps=200) if a.quick else {}
        if a.n_record is not None:
            kw_r["n_record"] = a.n_record
        res["cnn_retina"] = run_retina(repeats=a.repeats, seed=a.seed, **kw_r)
    from jaxdecomp.plotting import plt, to_jsonable

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    fig = figure(res)
    fig.savefig(out / "recordings_truth.png", dpi=130)
    plt.close(fig)
    if "cnn_retina" in res:
        fig = figure_retina(res["cnn_retina"])
        fig.savefig(out / "recordings_truth_cnn.png", dpi=130)
        plt.close(fig)
        res["cnn_retina"] = {k: v for k, v in res["cnn_retina"].items() if not k.startswith("_")}
    res = {k: v for k, v in res.items() if not k.startswith("_")}
    (out / "recordings_truth.json").write_text(json.dumps(to_jsonable(res), indent=1))
    print(f"wrote {out / 'recordings_truth.png'} and {out / 'recordings_truth.json'} ({res['seconds']['total']:.0f} s)")


if __name__ == "__main__":
    main()
