"""The ``jaxdecomp`` command: ``demo``, ``train``, ``fit`` and ``decompose``.

``jaxdecomp demo --out DIR`` runs the whole method on bundled handwritten digits: it
simulates the paper's 49-neuron LNP population, trains one conditional UNet denoiser
(condition dropout gives the unconditional one too), computes I_local and Fisher pixel
maps for a panel of digits, checks completeness (mean I_local over test digits against
the population MI) and writes ``figure.png`` and ``results.json`` in DIR.

Completeness is judged against the gap form of the population MI (``MI_REFERENCE_FORM``); the
orthogonal form is reported too. With exact denoisers the two are equal; with trained networks
the orthogonal form is inflated by the networks' errors. Where the truth is known
(``experiments/completeness_truth.py``: digit-fitted Gaussian mixture, linear-Gaussian neurons)
the gap form erred by -16.6% / +4.0% and the orthogonal one by +27.6% / +7.2%, for a network
trained like the demo's / on 320,000 pairs.

Both ``demo`` and ``train`` keep resumable training checkpoints in ``OUT/checkpoints``. Run
again with the same settings and they continue where they stopped; with other settings (data,
steps below the checkpoint's, seed, architecture) they refuse, say what differs and change
nothing: pass ``--overwrite`` to delete the old checkpoints and train afresh, or ``--resume`` to
insist on continuing (an error if there is nothing to continue). A second run on the same
``OUT`` while one is training stops at once; an unwritable ``OUT`` fails before any work.

``jaxdecomp train`` writes one model directory, ``OUT/denoiser`` (:func:`jaxdecomp.diffusion.save_model`:
architecture, weights, digests and the neuron model it was trained with), which is all
``jaxdecomp decompose --model OUT`` needs. This module only parses arguments, logs and calls
the library; nothing in the library or the experiments imports it.

``jaxdecomp fit --data REC.npz --out ENC`` fits an encoder (LNP/GLM or CNN) to recorded stimuli and
responses (:func:`jaxdecomp.neurons.fit_encoder`, ``docs/recordings.md``), prints held-out bits/spike,
correlation and FEV, and writes the encoder folder ENC. A denoiser trained on the recordings
(``train --r-key``) is decomposed with it: ``decompose --model RUN --encoder ENC``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

MI_REFERENCE_FORM = "gap"
DEMO_SETTINGS = {
    # measured on the 2-core VM (2026-12-03, two CPU devices): default 601 / 590 s (seeds 0 / 1), quick 122 s
    True: dict(size=16, channels=(16, 32), steps=800, batch=64, copies=2, panel=4, n_levels=24, n_samples=8,
               n_steps=8, n_complete=16, n_mi=400, n_noise=1),
    False: dict(size=16, channels=(32, 64), steps=1500, batch=64, copies=4, panel=8, n_levels=28, n_samples=16,
                n_steps=16, n_complete=20, n_mi=400, n_noise=2),
}


# --------------------------------------------------------------------------- helpers
def _log(msg: str) -> None:
    print(msg, flush=True)


def _check_out(out: Path) -> None:
    """Raise ``ValueError`` naming ``--out`` unless ``out`` is (or can be made) a writable folder."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: '{out}' exists and is not a folder")
    probe = out / f".jaxdecomp-write-test-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"--out: cannot write to '{out}' ({err.strerror or err}); choose a writable folder") from None


def _resume_mode(resume: bool, overwrite: bool) -> dict:
    """``train``'s ``resume`` / ``overwrite`` for the ``--resume`` / ``--overwrite`` flags."""
    if resume and overwrite:
        raise ValueError("--resume, --overwrite: pass one of them (--resume continues the checkpoints that "
                         "--overwrite would delete)")
    if overwrite:
        return dict(resume="never", overwrite=True)
    return dict(resume="must" if resume else "auto", overwrite=False)


def _write(out: Path, fig, results: dict) -> None:
    from jaxdecomp.plotting import plt, to_jsonable

    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "figure.png", dpi=120)
    plt.close(fig)
    (out / "results.json").write_text(json.dumps(to_jsonable(results), indent=1))


def _maps_figure(images, maps: dict, p: int, verdict: str):
    """The Fisher / I_local / I_local-SE rows of the first ``p`` images, totals ± SE, colour bars."""
    from jaxdecomp.plotting import map_figure

    fisher_tot = np.asarray(maps["fisher"][:p]).reshape(p, -1).sum(1)
    se_maps = {"SE of I_local": maps["ilocal_pixel_se"][:p]} if "ilocal_pixel_se" in maps else None
    return map_figure(images, {"Fisher J_ii(x)": maps["fisher"][:p], "I_local": maps["ilocal"][:p]},
                      titles=[f"I={t:.2f}±{s:.2f} nats" for t, s in zip(maps["ilocal_total"][:p], maps["ilocal_se"][:p])],
                      units={"Fisher J_ii(x)": "per pixel (1/x^2)", "I_local": "nats/pixel",
                             "SE of I_local": "nats/pixel"},
                      totals={"Fisher J_ii(x)": fisher_tot, "I_local": maps["ilocal_total"][:p]},
                      stderrs={"I_local": maps["ilocal_se"][:p]}, se_maps=se_maps, shared_scale=True,
                      suptitle=f"I_local maps: {verdict}")


# --------------------------------------------------------------------------- trust verdict
MIN_TRAIN_STEPS = 500          # fewer updates than this: the network is not a denoiser yet
MAX_GAP_ORTHOGONAL = 0.15      # relative gap between the two MI forms beyond which networks' errors dominate
MIN_PIXEL_SNR = 2.0            # median per-pixel I_local / SE below this: the maps are mostly noise
MIN_STABILITY = 0.8            # median map correlation between independent runs (other seeds) below this: unstable
DEMO_SPLIT_SEED = 0            # the demo's train/test split of the digits, the same for every --seed
MAX_OVERFIT = 0.05             # held-out loss above the training loss by more than this fraction: memorised pairs

FIELDS = {
    "verdict": "plain-text trust verdict: 'trustworthy' or 'NOT trustworthy: <what is wrong>; <fix>'",
    "diagnostics": "the checks behind the verdict (each with its value, threshold and whether it passed)",
    "ilocal": "I_local pixel maps (n, H, W), nats per pixel",
    "ilocal_total": "I_local(x) of each image, nats (the sum of its map)",
    "ilocal_totals": "I_local(x) of each test image, nats (the sum of its map)",
    "ilocal_se": "Monte Carlo standard error of each I_local(x), nats",
    "ilocal_pixel_se": "Monte Carlo standard error of each pixel of the I_local map, nats per pixel",
    "ilocal_pixel_snr": "per image, the median over pixels of I_local / its SE (dimensionless)",
    "fisher": "Fisher information diagonal J_ii(x) of the population (n, H, W), per pixel (1/unit of x^2)",
    "fisher_totals": "trace of the Fisher information of each test image (1/unit of x^2)",
    "mutual_information": "population MI I(R;X) on held-out pairs, nats: orthogonal and gap forms with SEs, "
                          "and their difference with its paired SE (same draws; zero for exact denoisers)",
    "completeness": "mean I_local over test images against the MI (nats; z = difference / combined SE)",
    "training": "training steps, pairs (or 'fresh' responses), seconds, final training loss (eps-MSE per "
                "coordinate, last batch); the trained network's denoising loss (eps-MSE per pixel, with SE) on "
                "held-out digits and on as many training digits, same draws (a larger held-out loss: memorised "
                "digits)",
    "seconds": "wall-clock seconds per phase",
    "devices": "the local JAX devices the run used (on a CPU the command line exposes the cores as devices; "
               "JAXDECOMP_CPU_DEVICES=1 turns that off)",
    "test_digits": "indices (into the bundled digits) of the test digits whose maps are in ilocal_maps; the same "
                   "for every --seed",
    "ilocal_maps": "I_local maps of all test digits (n, H, W), nats per pixel",
    "stability": "with --compare: pixel-wise correlation of each test digit's I_local map with the same digit's map "
                 "in the compared run (dimensionless), their median and whether it reaches the minimum",
}


def _verdict(*, steps=None, final_loss=None, heldout_loss=None, heldout_loss_se=None, training_loss_se=None,
             mean_ilocal=None,
             mean_ilocal_se=None, mi_gap=None, mi_gap_se=None, mi_orthogonal=None, mi_orthogonal_se=None,
             mi_difference_se=None, pixel_snr=None, totals=None, totals_se=None, stability=None) -> tuple[str, dict]:
    """(verdict text, diagnostics) from what a command could measure; missing checks are reported as such."""
    diag, problems, fixes = {}, [], []
    if stability is not None:
        med = float(stability["median_correlation"])
        ok = med >= MIN_STABILITY
        diag["stability_between_runs"] = dict(median_correlation=med, minimum=MIN_STABILITY, passed=ok,
                                              compared_with=stability["compared_with"])
        if not ok:
            problems.append(f"the maps change between independent runs (median correlation {med:.2f} with "
                            f"{stability['compared_with']})")
            fixes.append("train longer and raise n_samples (draws per level); average several networks "
                         "(`estimate.over_ensemble`)")
    if steps is not None:
        ok = int(steps) >= MIN_TRAIN_STEPS
        diag["training_steps"] = dict(value=int(steps), minimum=MIN_TRAIN_STEPS, passed=ok)
        if not ok:
            problems.append(f"the denoiser was trained for only {int(steps)} steps")
            fixes.append(f"train longer: at least {MIN_TRAIN_STEPS} steps (the demo's default is 1500; "
                         f"`jaxdecomp train --steps 4000`)")
    if heldout_loss is not None and final_loss is not None:
        over = float(heldout_loss) / float(final_loss) - 1
        # with SEs (both losses measured on draws): an excess within 2 combined SE is not evidence
        se = None if heldout_loss_se is None or training_loss_se is None else \
            float(np.hypot(heldout_loss_se, training_loss_se)) / float(final_loss)
        ok = over <= MAX_OVERFIT or (se is not None and over <= 2 * se)
        diag["heldout_vs_training_loss"] = dict(heldout=float(heldout_loss), heldout_se=heldout_loss_se,
                                                training=float(final_loss), training_se=training_loss_se,
                                                relative_excess=over, relative_excess_se=se,
                                                maximum=MAX_OVERFIT, passed=ok)
        if not ok:
            problems.append(f"held-out loss {heldout_loss:.4g} exceeds the training loss {final_loss:.4g} by "
                            f"{100 * over:.0f}% (memorised pairs)")
            fixes.append("train on fresh responses (a known encoder: `train(..., population=...)`, "
                         "`jaxdecomp train` without --fixed-responses) or on more stimuli")
    else:
        diag["heldout_vs_training_loss"] = dict(passed=None, note="not measured by this command")
    if None not in (mean_ilocal, mean_ilocal_se, mi_gap, mi_gap_se):
        z = (float(mean_ilocal) - float(mi_gap)) / max(float(np.hypot(mean_ilocal_se, mi_gap_se)), 1e-300)
        ok = abs(z) < 2
        diag["completeness_vs_gap_mi"] = dict(mean_ilocal=float(mean_ilocal), mean_ilocal_se=float(mean_ilocal_se),
                                              mi_gap=float(mi_gap), mi_gap_se=float(mi_gap_se), z=z, passed=ok)
        if not ok:
            problems.append(f"completeness fails: mean I_local {mean_ilocal:.3f} ± {mean_ilocal_se:.3f} vs "
                            f"I(R;X) {mi_gap:.3f} ± {mi_gap_se:.3f} nats (gap form, {z:+.1f} SE)")
            fixes.append("train longer (more steps, more pairs or fresh responses), then rerun")
    else:
        diag["completeness_vs_gap_mi"] = dict(passed=None, note="not measured by this command (needs held-out "
                                                                 "pairs and the MI: `jaxdecomp demo` does it)")
    if mi_gap is not None and mi_orthogonal is not None:
        rel = (float(mi_orthogonal) - float(mi_gap)) / max(abs(float(mi_gap)), 1e-12)
        ok = abs(rel) <= MAX_GAP_ORTHOGONAL
        diag["orthogonal_vs_gap_mi"] = dict(orthogonal=float(mi_orthogonal), orthogonal_se=mi_orthogonal_se,
                                            gap=float(mi_gap), gap_se=mi_gap_se, relative_difference=rel,
                                            maximum=MAX_GAP_ORTHOGONAL, passed=ok)
        if mi_difference_se is not None:   # paired SE of orthogonal - gap (same draws): its Monte Carlo error
            diag["orthogonal_vs_gap_mi"]["difference_se"] = float(mi_difference_se)
        if not ok:
            problems.append(f"the two MI forms disagree by {100 * rel:+.0f}% (orthogonal {mi_orthogonal:.3f}, gap "
                            f"{mi_gap:.3f} nats): the networks' errors are large")
            fixes.append("train longer (exact denoisers make the two forms equal)")
    if pixel_snr is not None:
        med = float(np.median(np.asarray(pixel_snr)))
        ok = med >= MIN_PIXEL_SNR
        diag["pixel_snr"] = dict(median=med, minimum=MIN_PIXEL_SNR, passed=ok)
        if not ok:
            problems.append(f"the pixel maps are noisy (median per-pixel SNR {med:.1f})")
            fixes.append("raise n_samples (draws per level) for the maps")
    if totals is not None and totals_se is not None:
        t, se = np.asarray(totals, float), np.asarray(totals_se, float)
        diag["total_relative_se"] = dict(median=float(np.median(se / np.maximum(np.abs(t), 1e-12))))
    if not problems:
        return "trustworthy", diag
    uniq = list(dict.fromkeys(fixes)) or ["check the diagnostics"]
    return "NOT trustworthy: " + "; ".join(uniq) + " (" + "; ".join(problems) + ")", diag


# --------------------------------------------------------------------------- demo
def _load_comparison(path, *, size: int, seed: int) -> dict:
    """The results.json of another demo run (``--compare``: its folder or the file itself), checked to be
    comparable with this run (same image size, another seed) before any work."""
    path = Path(path)
    f = path / "results.json" if path.is_dir() else path
    if not f.is_file():
        raise ValueError(f"--compare: no results.json at {path} (pass the --out folder of a finished demo run)")
    try:
        other = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--compare: {f} is not a readable results.json ({err})") from err
    missing = [k for k in ("ilocal_maps", "test_digits", "settings") if k not in other]
    if missing:
        raise ValueError(f"--compare: {f} lacks {', '.join(missing)} (written by an older version of the demo: "
                         f"rerun that demo first)")
    s = other["settings"]
    if int(s.get("size", -1)) != size:
        raise ValueError(f"--compare: that run mapped {s.get('size')}x{s.get('size')} digits, this one {size}x{size}")
    if int(s.get("seed", -1)) == seed:
        raise ValueError(f"--compare: that run used the same --seed ({seed}); stability needs an independent "
                         f"run: rerun with another --seed")
    other["_path"] = str(f)
    return other


def _stability(other: dict, test_idx, maps) -> dict:
    """Correlation of this run's I_local map of each test digit with the other run's map of the same digit."""
    s = other["settings"]
    theirs = {int(i): j for j, i in enumerate(np.asarray(other["test_digits"], dtype=int))}
    pairs = [(k, theirs[int(i)]) for k, i in enumerate(np.asarray(test_idx)) if int(i) in theirs]
    if len(pairs) < 2:
        raise ValueError("--compare: that run mapped fewer than 2 of this run's test digits")
    from jaxdecomp.estimate import map_correlations

    other_maps = np.asarray(other["ilocal_maps"], dtype=np.float64)
    a = np.asarray(maps, dtype=np.float64)[[k for k, _ in pairs]]
    b = other_maps[[j for _, j in pairs]]
    corr = map_correlations(a, b, names=("I_local maps of this run", "--compare maps"))
    return dict(compared_with=other["_path"], other_seed=int(s["seed"]), other_quick=bool(s.get("quick")),
                n_digits=len(pairs), correlations=corr, median_correlation=float(np.median(corr)),
                minimum=MIN_STABILITY, passed=bool(np.median(corr) >= MIN_STABILITY))


def run_demo(out, *, quick: bool = False, seed: int = 0, steps: int | None = None, resume: bool = False,
             overwrite: bool = False, fresh: bool = True, compare=None) -> dict:
    """The main job (see the module docstring). Returns the results dict it writes.

    ``resume`` / ``overwrite``: the ``--resume`` / ``--overwrite`` flags (see the module docstring).
    ``fresh`` (default; ``--fixed-responses`` turns it off): the LNP population is known, so every
    training step draws new responses for its batch (no fixed pairs to memorise); ``fresh=False``
    trains on ``copies`` fixed simulated responses per digit, the former behaviour.

    The train/test split of the digits does not depend on ``seed`` (``DEMO_SPLIT_SEED``): runs with
    other seeds (other network initialisation, training draws and Monte Carlo) map the same test
    digits. ``compare`` (``--compare``): the folder (or ``results.json``) of such a run; the pixel-wise
    correlation of each test digit's I_local map with that run's map of the same digit goes into
    ``results.json`` (``stability``) and into the verdict (median at least ``MIN_STABILITY``)."""
    import jax

    from jaxdecomp import data, estimate, neurons
    from jaxdecomp.diffusion import TrainConfig, build_denoiser, denoising_loss, denoiser_spec, log_snr_center, train
    from jaxdecomp.diffusion.schedules import network_levels

    cfg = dict(DEMO_SETTINGS[bool(quick)])
    if steps is not None:
        cfg["steps"] = int(steps)
    out = Path(out)
    mode = _resume_mode(resume, overwrite)
    _check_out(out)
    t_start = time.perf_counter()
    other = _load_comparison(compare, size=cfg["size"], seed=seed) if compare is not None else None
    key = jax.random.PRNGKey(seed)
    _, k_resp, k_train, k_mi, k_maps, k_comp = jax.random.split(key, 6)
    k_split = jax.random.split(jax.random.PRNGKey(DEMO_SPLIT_SEED), 6)[0]  # seed 0's split, for every seed
    size = cfg["size"]
    x = np.asarray(data.digits(size), dtype=np.float32)
    pop = neurons.lnp_population((size, size))
    perm = np.asarray(jax.random.permutation(k_split, x.shape[0]))
    n_test = max(cfg["n_mi"], cfg["n_complete"], cfg["panel"])
    x_test, x_train = x[perm[:n_test]], x[perm[n_test:]]
    _log(f"jaxdecomp demo: {x.shape[0]} bundled digits at {size}x{size}, 49 LNP Poisson neurons "
         f"({'quick' if quick else 'default'} settings)")
    if fresh:
        xs, rs, what = x_train, None, f"{x_train.shape[0]} digits with fresh responses every step"
    else:
        xs, rs = neurons.simulate_responses(k_resp, pop, x_train, cfg["copies"])
        what = f"{xs.shape[0]} fixed pairs ({cfg['copies']} responses per digit)"
    net = build_denoiser(denoiser_spec((size, size), 49, cfg["channels"]), seed)
    _log(f"training a UNet denoiser (channels {cfg['channels']}) for {cfg['steps']} steps on {what} "
         f"(compiling the training step first)")
    t0 = time.perf_counter()
    tcfg = TrainConfig(steps=cfg["steps"], batch_size=cfg["batch"], warmup_steps=100,
                       checkpoint_every=max(cfg["steps"] // 4, 1))
    res = train(net, xs, rs, tcfg,
                checkpoint_dir=out / "checkpoints", key=k_train, **mode, **(dict(population=pop) if fresh else {}))
    t_train = time.perf_counter() - t0
    model = res.model
    # held-out denoising loss: the trained (EMA) network on test digits against training digits, same
    # draws and log-SNR density; fresh responses from the known population for both
    n_loss = min(cfg["n_mi"], x_test.shape[0], x_train.shape[0])
    loc = log_snr_center(x_train, tcfg)  # the density the network was trained on
    k_loss = jax.random.fold_in(k_train, 7)
    loss_test = denoising_loss(k_loss, model, x_test[:n_loss], population=pop, log_snr_loc=loc)
    loss_train = denoising_loss(k_loss, model, x_train[:n_loss], population=pop, log_snr_loc=loc)
    _log(f"denoising loss (eps-MSE per pixel) of the trained network: {float(loss_test.value):.4f} ± "
         f"{float(loss_test.stderr):.4f} on {n_loss} held-out digits, {float(loss_train.value):.4f} ± "
         f"{float(loss_train.stderr):.4f} on {n_loss} training digits")
    # population MI on held-out pairs the network never saw
    x_mi = x_test[: cfg["n_mi"]]
    _, r_mi = neurons.simulate_responses(jax.random.fold_in(k_resp, 1), pop, x_mi)
    lv = network_levels(cfg["n_levels"])
    _log("population MI on held-out pairs (compiling the MI estimator first)")
    t0 = time.perf_counter()
    # the exact small-noise tail above the finest level (population=), as the I_local maps have it
    # both forms from the same network calls (form="both": half the cost of two calls)
    mi = estimate.mutual_information(k_mi, model, x_mi, r_mi, levels=lv, n_noise=cfg["n_noise"], form="both",
                                     population=pop)
    mi = jax.block_until_ready(mi)  # the phase's time is its compute, not its dispatch
    mi_o, mi_g, mi_d = mi["orthogonal"], mi["gap"], mi["difference"]
    t_mi = time.perf_counter() - t0
    _log(f"I(R;X) = {float(mi_o.value):.3f} ± {float(mi_o.stderr):.3f} nats (orthogonal), "
         f"{float(mi_g.value):.3f} ± {float(mi_g.stderr):.3f} (gap)")
    _log(f"I_local and Fisher maps for {cfg['n_complete']} test digits")
    t0 = time.perf_counter()
    maps = estimate.pixel_maps(k_maps, model, pop, x_test[: cfg["n_complete"]], n_levels=cfg["n_levels"],
                               n_samples=cfg["n_samples"], n_steps=cfg["n_steps"], log=_log)
    maps = jax.block_until_ready(maps)
    t_maps = time.perf_counter() - t0
    tot = maps["ilocal_total"]
    mean_il, se_il = float(tot.mean()), float(tot.std(ddof=1) / np.sqrt(len(tot)))
    z = {form: (mean_il - float(m.value)) / np.hypot(se_il, float(m.stderr))
         for form, m in (("orthogonal", mi_o), ("gap", mi_g))}
    within = {form: bool(abs(v) < 2) for form, v in z.items()}
    ref = MI_REFERENCE_FORM
    agrees = within[ref]
    _log(f"completeness: mean I_local over {len(tot)} test digits = {mean_il:.3f} ± {se_il:.3f} nats vs "
         f"I(R;X) = {float(mi_g.value):.3f} ± {float(mi_g.stderr):.3f} gap form ({z['gap']:+.1f} SE), "
         f"{float(mi_o.value):.3f} ± {float(mi_o.stderr):.3f} orthogonal ({z['orthogonal']:+.1f} SE): "
         f"{'agrees' if agrees else 'does NOT agree'} within 2 SE with the {ref} form")
    test_idx = perm[: cfg["n_complete"]]
    stability = None
    if other is not None:
        stability = _stability(other, test_idx, maps["ilocal"])
        _log(f"stability: median correlation {stability['median_correlation']:.3f} between this run's maps and "
             f"{stability['compared_with']} ({stability['n_digits']} digits, seeds {seed} and "
             f"{stability['other_seed']})")
    verdict, diagnostics = _verdict(steps=res.step, final_loss=float(loss_train.value),
                                    training_loss_se=float(loss_train.stderr), heldout_loss=float(loss_test.value),
                                    heldout_loss_se=float(loss_test.stderr), mean_ilocal=mean_il,
                                    mean_ilocal_se=se_il, mi_gap=float(mi_g.value), mi_gap_se=float(mi_g.stderr),
                                    mi_orthogonal=float(mi_o.value), mi_orthogonal_se=float(mi_o.stderr),
                                    mi_difference_se=float(mi_d.stderr),
                                    pixel_snr=maps.get("ilocal_pixel_snr"), totals=tot, totals_se=maps["ilocal_se"],
                                    stability=stability)
    _log(f"verdict: {verdict}")
    p = cfg["panel"]
    fig = _maps_figure(x_test[:p], maps, p, verdict)
    results = dict(
        verdict=verdict, diagnostics=diagnostics, fields=FIELDS,
        settings=dict(cfg, seed=seed, quick=bool(quick), fresh_responses=bool(fresh),
                      population="lnp 7x7 Gaussian RFs, Poisson",
                      response_sampler="posterior_sample (reverse diffusion)"),
        training=dict(steps=res.step, pairs="fresh" if fresh else int(xs.shape[0]), stimuli=int(x_train.shape[0]),
                      seconds=t_train, final_loss=float(res.losses[-1, 1]),
                      heldout_loss=float(loss_test.value), heldout_loss_se=float(loss_test.stderr),
                      training_digits_loss=float(loss_train.value), training_digits_loss_se=float(loss_train.stderr),
                      loss_digits=int(n_loss)),
        mutual_information=dict(orthogonal=float(mi_o.value), orthogonal_se=float(mi_o.stderr),
                                gap=float(mi_g.value), gap_se=float(mi_g.stderr),
                                orthogonal_minus_gap=float(mi_d.value), orthogonal_minus_gap_se=float(mi_d.stderr),
                                heldout_pairs=int(len(x_mi))),
        completeness=dict(mean_ilocal=mean_il, mean_ilocal_se=se_il, n_digits=int(len(tot)),
                          reference_form=ref, agrees_with_reference_within_2_se=agrees,
                          z_orthogonal=float(z["orthogonal"]), z_gap=float(z["gap"]), agrees_within_2_se=within),
        ilocal_totals=tot, ilocal_se=maps["ilocal_se"], fisher_totals=maps["fisher"].reshape(len(tot), -1).sum(1),
        ilocal_pixel_snr=maps.get("ilocal_pixel_snr"),
        test_digits=test_idx, ilocal_maps=maps["ilocal"],
        stability=stability if stability is not None else dict(
            note="not measured: rerun with another --seed and --compare THIS_OUT (same test digits)"),
        panel=dict(images=x_test[:p], ilocal=maps["ilocal"][:p], fisher=maps["fisher"][:p],
                   **({"ilocal_pixel_se": maps["ilocal_pixel_se"][:p]} if "ilocal_pixel_se" in maps else {})),
        seconds=dict(training=t_train, mutual_information=t_mi, maps=t_maps, total=time.perf_counter() - t_start),
        devices=dict(count=len(jax.local_devices()), kind=jax.local_devices()[0].platform),
    )
    _write(out, fig, results)
    _log(f"wrote {out / 'figure.png'} and {out / 'results.json'} ({results['seconds']['total']:.0f} s)")
    return results


# --------------------------------------------------------------------------- train / decompose
def _load_array(path, key: str, key_flag: str):
    """``data.load_npz`` with its errors naming the flags (``--data``, ``key_flag``) instead of its arguments."""
    from jaxdecomp import data

    try:
        return data.load_npz(path, key)
    except (TypeError, ValueError, FileNotFoundError) as err:
        msg = str(err)
        for arg, flag in (("path:", "--data:"), ("key:", f"{key_flag}:")):
            if msg.startswith(arg):
                msg = flag + msg[len(arg):]
        raise type(err)(msg) from err


def _load_stimuli(path, key: str, key_flag: str = "--x-key"):
    from jaxdecomp import data

    x = _load_array(path, key, key_flag)
    return data.check_images(x, name=f"{path}[{key!r}]")


def run_train(data_path, out, *, neurons_name: str | None = None, x_key: str = "x", r_key: str | None = None,
              steps: int = 4000, batch: int = 64, channels=(32, 64), seed: int = 0, copies: int = 4,
              resume: bool = False, overwrite: bool = False, encoder_dir=None, fresh: bool = True) -> Path:
    """Train a denoiser on the user's images; responses from ``r_key`` in the file or simulated.

    Simulated responses come from the built-in neuron model ``neurons_name`` (default ``"lnp"``) or,
    with ``encoder_dir`` (``--encoder``), from a fitted encoder (``jaxdecomp fit``): ``copies`` fresh
    draws per image; the model's metadata records the encoder's folder and weights digest, and
    ``decompose`` then uses (and checks) that encoder.

    Writes ``out/denoiser`` (a model directory of :func:`jaxdecomp.diffusion.save_model`, whose
    metadata records the neuron model) and ``out/checkpoints``. Returns ``out``.

    ``fresh`` (default; ``--fixed-responses`` turns it off): when the responses are simulated (a
    built-in model or ``--encoder``) the encoder is known, so every training step draws new
    responses for its batch (``train(..., population=...)``): no fixed set of ``copies`` pairs to
    memorise (``experiments/bias_sources.py``). ``fresh=False`` is the former behaviour.
    ``resume`` / ``overwrite``: the ``--resume`` / ``--overwrite`` flags (see the module docstring).
    """
    import jax

    from jaxdecomp import neurons
    from jaxdecomp.diffusion import TrainConfig, build_denoiser, denoiser_spec, save_model, train

    mode = _resume_mode(resume, overwrite)
    x = _load_stimuli(data_path, x_key)
    shape = tuple(x.shape[1:])
    out = Path(out)
    _check_out(out)
    if encoder_dir is not None and (r_key is not None or neurons_name is not None):
        raise ValueError("--encoder, --r-key, --neurons: pass at most one source of responses (--encoder simulates "
                         "them with a fitted encoder, --neurons with a built-in model, --r-key reads recorded ones)")
    enc_meta = None
    if r_key is not None:
        r = np.asarray(_load_array(data_path, r_key, "--r-key"), dtype=np.float32)
        if r.ndim == 3 and r.shape[0] == x.shape[0] and r.shape[1] >= 1:  # (N, repeats, n): one pair per trial
            x, r = np.repeat(x, r.shape[1], axis=0), r.reshape(-1, r.shape[2])
        if r.ndim != 2 or r.shape[0] != x.shape[0]:
            raise ValueError(f"{data_path}[{r_key!r}]: expected responses (N, n_neurons) or (N, repeats, n_neurons) "
                             f"with N = {x.shape[0]}, got {r.shape}")
        xs, rs, source = x, r, f"file key {r_key!r}"
    elif encoder_dir is not None:
        try:
            pop = neurons.load_encoder(encoder_dir, shape=shape)
        except (ValueError, TypeError, FileNotFoundError) as err:
            raise _flag_error(err, {"path": "--encoder", "shape": "--encoder"}) from err
        xs, rs = _simulated(jax, neurons, pop, x, seed, copies, fresh)
        enc_meta = dict(path=str(Path(encoder_dir).resolve()),
                        weights_sha256=neurons.encoder_info(encoder_dir)["weights_sha256"])
        source = (f"simulated from the fitted encoder {encoder_dir} "
                  f"({'fresh draws every step' if fresh else f'{copies} draws per image'})")
    else:
        neurons_name = neurons_name or "lnp"
        pop = neurons.image_population(neurons_name, shape)
        xs, rs = _simulated(jax, neurons, pop, x, seed, copies, fresh)
        source = (f"simulated from neuron model {neurons_name!r} "
                  f"({'fresh draws every step' if fresh else f'{copies} draws per image'})")
    n_resp = rs.shape[1] if rs is not None else int(jax.eval_shape(pop.sample, jax.random.PRNGKey(0),
                                                                   x[0]).shape[-1])
    net = build_denoiser(denoiser_spec(shape, n_resp, channels), seed)
    what = f"{xs.shape[0]} pairs" if rs is not None else f"{xs.shape[0]} images with fresh responses every step"
    _log(f"training on {what} ({source}); checkpoints in {out / 'checkpoints'}; compiling the training step first")
    extra = {} if rs is not None else dict(population=pop)
    res = train(net, xs, rs, TrainConfig(steps=steps, batch_size=batch), checkpoint_dir=out / "checkpoints",
                key=jax.random.PRNGKey(seed), **mode, **extra)
    final_loss = float(res.losses[-1, 1]) if len(res.losses) else None
    meta = dict(neurons=neurons_name if r_key is None and encoder_dir is None else None, responses=source,
                trained_steps=int(res.step), data=str(data_path), x_key=x_key, final_loss=final_loss,
                fresh_responses=rs is None)
    if int(res.step) < MIN_TRAIN_STEPS:
        _log(f"warning: only {int(res.step)} training steps; I_local from this denoiser is NOT trustworthy "
             f"(train longer: at least {MIN_TRAIN_STEPS} steps)")
    if enc_meta is not None:
        meta["encoder"] = enc_meta
    path = save_model(out / "denoiser", res.model, overwrite=True, metadata=meta)
    _log(f"saved the trained denoiser to {path}")
    return out


def _simulated(jax, neurons, pop, x, seed, copies, fresh):
    """``(x, r)`` to train on: ``(x, None)`` with fresh responses drawn every step, else ``copies`` fixed draws."""
    if fresh:
        return x, None
    return neurons.simulate_responses(jax.random.PRNGKey(seed + 1), pop, x, copies)


_FIT_FLAGS = {"x": "--x-key", "r": "--r-key", "val_fraction": "--val-fraction", "smooth": "--smooth", "l1": "--l1",
              "steps": "--steps", "learning_rate": "--lr", "nonlinearity": "--nonlinearity", "model": "--model",
              "noise": "--noise", "batch_size": "--batch", "path": "--out"}


def _flag_error(err: Exception, flags: dict) -> Exception:
    """The same error with a leading ``argument:`` of the library replaced by its flag."""
    msg = str(err)
    head, sep, rest = msg.partition(": ")
    if sep and head in flags:
        msg = f"{flags[head]}: {rest}"
    return type(err)(msg)


def run_fit(data_path, out, *, x_key: str = "x", r_key: str = "r", model: str = "lnp", noise: str = "poisson",
            nonlinearity: str | None = None, smooth: float = 0.0, l1: float = 0.0, val_fraction: float = 0.2,
            steps: int = 3000, learning_rate: float = 0.02, batch: int | None = None, seed: int = 0,
            overwrite: bool = False) -> dict:
    """Fit an encoder to recorded stimuli (``x_key``, ``(N, ...)``) and responses (``r_key``, ``(N, n)`` or
    ``(N, repeats, n)``) in ``data_path`` (:func:`jaxdecomp.neurons.fit_encoder`); save it to the folder
    ``out`` (:func:`jaxdecomp.neurons.save_encoder`, validation metrics in its metadata) and print the
    held-out metrics. An existing ``out`` is refused unless ``overwrite``. Returns the metrics."""
    import jax

    from jaxdecomp import neurons
    from jaxdecomp.plotting import to_jsonable

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"--out: '{out}' already exists; pass --overwrite to replace it (only a folder "
                              f"written by `jaxdecomp fit` is ever replaced)")
    x = _load_array(data_path, x_key, "--x-key")
    r = _load_array(data_path, r_key, "--r-key")
    try:
        x, r = neurons.check_recordings(x, r, noise=noise, x_name=f"--x-key {x_key!r}", r_name=f"--r-key {r_key!r}")
        res = neurons.fit_encoder(jax.random.PRNGKey(seed), x, r, model=model, noise=noise,
                                  nonlinearity=nonlinearity, smooth=smooth, l1=l1, val_fraction=val_fraction,
                                  steps=steps, learning_rate=learning_rate, batch_size=batch)
    except (ValueError, TypeError) as err:
        raise _flag_error(err, _FIT_FLAGS) from err
    m = res.metrics
    meta = dict(config=res.config, validation_metrics=to_jsonable(m), data=str(data_path), x_key=x_key, r_key=r_key,
                seed=int(seed))
    try:
        path = neurons.save_encoder(out, res.encoder, overwrite=overwrite, metadata=meta)
    except (ValueError, TypeError, FileExistsError) as err:
        raise _flag_error(err, _FIT_FLAGS) from err
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    score = (f"{fmt(m.get('bits_per_spike_pooled'))} bits/spike over the null model" if noise == "poisson" else
             f"{fmt(m.get('bits_per_trial_pooled'))} bits/trial over the null model")
    _log(f"fitted a {model} encoder ({res.config['n_neurons']} neurons) on {res.config['n_train']} stimuli x "
         f"{res.config['repeats']} repeats; best step {res.best_step} of {res.config['steps_run']}")
    _log(f"validation ({res.config['n_val']} held-out stimuli): {score}, correlation with the trial average "
         f"{fmt(m.get('correlation_mean'))}, FEV {fmt(m.get('fev_mean'))} (mean over neurons; "
         f"{'needs repeats' if m.get('fev') is None else 'pooled ' + fmt(m.get('fev_pooled'))})")
    _log(f"saved the fitted encoder to {path} (use it with `jaxdecomp decompose --encoder {out}`)")
    return m


def _model_path(model_dir) -> Path:
    """The model directory: ``model_dir`` itself or its ``denoiser/`` (what ``jaxdecomp train`` writes)."""
    model_dir = Path(model_dir)
    for cand in (model_dir / "denoiser", model_dir):
        if (cand / "model.json").is_file():
            return cand
    raise FileNotFoundError(f"--model: no saved denoiser in '{model_dir}' (expected '{model_dir / 'denoiser'}' "
                            f"with a model.json, written by `jaxdecomp train`)")


def run_decompose(data_path, model_dir, out, *, neurons_name: str | None = None, x_key: str = "x",
                  n_images: int = 8, seed: int = 0, n_levels: int = 32, n_samples: int = 16,
                  n_steps: int = 16, encoder_dir=None, all_images: bool = False, chunk: int = 256,
                  resume: bool = False, overwrite: bool = False) -> dict:
    """I_local and Fisher pixel maps of the first ``n_images`` images with a trained denoiser.

    ``all_images`` (``--all``): every image instead, with :func:`jaxdecomp.estimate.decompose_dataset`
    (sharded over all devices, ``chunk`` images at a time, resumable store ``OUT/store``; ``resume`` /
    ``overwrite`` are its ``--resume`` / ``--overwrite``); the figure shows the first ``n_images``.

    ``neurons_name``: the neuron model of the responses; ``None`` takes the one the denoiser was
    trained with (recorded by ``jaxdecomp train``; ``"lnp"`` for model folders that record none).
    A different model than the recorded one, or a denoiser trained on recorded responses, is refused.
    ``encoder_dir``: a fitted encoder (``jaxdecomp fit``) that simulates the responses instead; the one
    way to decompose with a denoiser trained on recorded responses (``--r-key``).
    """
    import jax

    from jaxdecomp import estimate, neurons
    from jaxdecomp.diffusion import load_model, model_info

    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 1:
        raise ValueError(f"--n-images: expected a positive int, got {n_images!r}")
    if (resume or overwrite) and not all_images:
        raise ValueError("--resume, --overwrite: they act on the store of --all (OUT/store); pass --all too")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"--chunk: expected a positive int, got {chunk!r}")
    path = _model_path(model_dir)
    info = model_info(path)
    meta = info.get("metadata") or {}
    trained_with = meta.get("neurons")
    recorded = trained_with is None and str(meta.get("responses", "")).startswith("file key")
    trained_enc = meta.get("encoder")
    if trained_enc is not None:     # trained on responses simulated by a fitted encoder (train --encoder)
        if neurons_name is not None:
            raise ValueError(f"--neurons: {path} was trained on responses of the fitted encoder "
                             f"{trained_enc['path']}; drop --neurons (decompose uses that encoder)")
        if encoder_dir is None:
            encoder_dir = trained_enc["path"]
            if not Path(encoder_dir).is_dir():
                raise FileNotFoundError(f"--encoder: {path} was trained with the fitted encoder {encoder_dir}, "
                                        f"which is no longer there; pass its folder with --encoder")
        try:
            digest = neurons.encoder_info(encoder_dir)["weights_sha256"]
        except (ValueError, TypeError, FileNotFoundError) as err:
            raise _flag_error(err, {"path": "--encoder"}) from err
        if digest != trained_enc["weights_sha256"]:
            raise ValueError(f"--encoder: {encoder_dir} is not the encoder {path} was trained with (weights "
                             f"digest {digest[:12]} against {trained_enc['weights_sha256'][:12]}); pass that one "
                             f"or train again with --encoder {encoder_dir}")
    elif encoder_dir is not None:
        if neurons_name is not None:
            raise ValueError("--encoder, --neurons: pass one of them (--encoder simulates responses with a fitted "
                             "encoder, --neurons with a built-in neuron model)")
        if trained_with is not None:
            raise ValueError(f"--encoder: {path} was trained on responses simulated from the neuron model "
                             f"{trained_with!r}, not on recorded ones; a fitted encoder would give responses the "
                             f"network never saw. Drop --encoder, or train on the recordings (--r-key).")
    elif recorded:
        raise ValueError(
            f"--model: {path} was trained on recorded responses ({meta['responses']}); decompose must draw "
            f"responses r ~ p(r | x') for stimuli that were never shown, which needs the encoder that produced "
            f"them, and jaxdecomp cannot infer it from the recordings. Fit an encoder to the recordings "
            f"(`jaxdecomp fit --data REC.npz --out ENC`) and pass it with --encoder ENC, or train with simulated "
            f"responses (--neurons NAME, no --r-key) to decompose with that neuron model."
        )
    if neurons_name is None and encoder_dir is None:
        neurons_name = trained_with or "lnp"
    elif trained_with is not None and neurons_name != trained_with:
        raise ValueError(
            f"--neurons: {neurons_name!r} differs from the neuron model the denoiser was trained with "
            f"({trained_with!r}); the maps would describe a population the network never saw. Drop --neurons "
            f"(it defaults to {trained_with!r}) or train a denoiser for {neurons_name!r}."
        )
    x = _load_stimuli(data_path, x_key)
    x = x if all_images else x[:n_images]
    model = load_model(path)
    if tuple(x.shape[1:]) != tuple(model.shape):
        raise ValueError(f"--data: images of shape {tuple(x.shape[1:])} but the denoiser was trained on "
                         f"{tuple(model.shape)}")
    if encoder_dir is not None:
        try:
            pop = neurons.load_encoder(encoder_dir, shape=tuple(x.shape[1:]))
        except (ValueError, TypeError, FileNotFoundError) as err:
            raise _flag_error(err, {"path": "--encoder", "shape": "--encoder"}) from err
        neurons_name = f"fitted encoder {encoder_dir}"
    else:
        pop = neurons.image_population(neurons_name, tuple(x.shape[1:]))
    n_pop = int(jax.eval_shape(pop.sample, jax.random.PRNGKey(0), x[0]).shape[-1])
    if n_pop != model.n_neurons:
        flag = "--encoder" if encoder_dir is not None else "--neurons"
        raise ValueError(f"{flag}: neuron model {neurons_name!r} has {n_pop} neurons but the denoiser was "
                         f"trained on responses of {model.n_neurons}")
    if all_images:      # every image: sharded, chunked, resumable (OUT/store); keys fold_in(key, image index)
        store = Path(out) / "store"
        _log(f"I_local maps of all {len(x)} images on {jax.device_count()} device(s), {chunk} per chunk, "
             f"store {store}")
        maps = estimate.decompose_dataset(jax.random.PRNGKey(seed), model, pop, x, store, chunk=chunk,
                                          n_levels=n_levels, n_samples=n_samples, n_steps=n_steps,
                                          **_resume_mode(resume, overwrite))
    else:
        maps = estimate.pixel_maps(jax.random.PRNGKey(seed), model, pop, x, n_levels=n_levels, n_samples=n_samples,
                                   n_steps=n_steps, log=_log)
    panel = min(n_images, len(x))
    steps_done = meta.get("trained_steps")
    verdict, diagnostics = _verdict(steps=steps_done, final_loss=meta.get("final_loss"),
                                    heldout_loss=meta.get("heldout_loss"), pixel_snr=maps.get("ilocal_pixel_snr"),
                                    totals=maps["ilocal_total"], totals_se=maps["ilocal_se"])
    _log(f"verdict: {verdict}")
    fig = _maps_figure(x[:panel], maps, panel, verdict)
    summary = (dict(n_images=len(x), ilocal_total=maps["ilocal_total"], ilocal_se=maps["ilocal_se"],
                    store=str(Path(out) / "store")) if all_images else maps)   # all maps are in maps.npz
    results = dict(verdict=verdict, diagnostics=diagnostics, fields=FIELDS, data=str(data_path),
                   model_dir=str(model_dir), neurons=neurons_name, **summary)
    _write(Path(out), fig, results)
    np.savez(Path(out) / "maps.npz", **maps)
    _log(f"wrote {Path(out) / 'figure.png'}, results.json and maps.npz")
    return results


# --------------------------------------------------------------------------- entry point
def _resume_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true",
                   help="continue the checkpoints in OUT/checkpoints (an error if there are none or they were "
                        "written with other settings); without a flag they are continued when the settings match")
    g.add_argument("--overwrite", action="store_true",
                   help="delete the checkpoints in OUT/checkpoints and train afresh (by default checkpoints written "
                        "with other settings are refused and left untouched)")


def _parser() -> argparse.ArgumentParser:
    from jaxdecomp.neurons import IMAGE_MODELS

    p = argparse.ArgumentParser(
        prog="jaxdecomp",
        description="Which stimuli, and which pixels, a neural population's information is about "
                    "(I_local, Laquitaine et al., NeurIPS 2025). Units: nats.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser("demo", help="the whole method on bundled digits: train, pixel maps, completeness check",
                       description="Simulate 49 LNP neurons on bundled 16x16 digits, train a UNet denoiser, and "
                                   "write figure.png (digits, Fisher maps, I_local maps) and results.json.")
    d.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    d.add_argument("--quick", action="store_true", help="a smaller run (about 2.5 minutes on a 2-core CPU)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--steps", type=int, default=None, help="training steps (default: 1500; 800 with --quick)")
    d.add_argument("--fixed-responses", action="store_true",
                   help="train on 4 (2 with --quick) fixed simulated responses per digit, the former behaviour; by "
                        "default every step draws fresh responses from the known LNP population")
    d.add_argument("--compare", default=None, metavar="OTHER_OUT",
                   help="the --out folder of a demo run with another --seed: report how well each test digit's "
                        "map agrees with that run's (median correlation, in results.json and the verdict)")
    _resume_flags(d)
    t = sub.add_parser("train", help="train a denoiser on your own images (.npz)",
                       description="Train a response-conditioned UNet denoiser on images stored in an .npz file "
                                   "(array under --x-key, shape (N, H, W), values in [-1, 1]). Responses come from "
                                   "the file (--r-key) or are simulated from a neuron model (--neurons).")
    t.add_argument("--data", required=True, help="path to an .npz file with your images")
    t.add_argument("--out", required=True, help="folder for the trained denoiser and its checkpoints")
    t.add_argument("--x-key", default="x", help="name of the image array in the .npz (default: x)")
    t.add_argument("--r-key", default=None, help="name of a response array (N, n_neurons) in the .npz, if any")
    t.add_argument("--neurons", default=None, choices=IMAGE_MODELS,
                   help="neuron model used to simulate responses (default: lnp)")
    t.add_argument("--encoder", default=None,
                   help="a fitted encoder folder (`jaxdecomp fit`) to simulate the training responses with "
                        "(instead of --neurons or --r-key); decompose then uses it")
    t.add_argument("--fixed-responses", action="store_true",
                   help="with simulated responses (--neurons / --encoder): draw 4 responses per image once and "
                        "train on those fixed pairs (the former behaviour); by default every step draws fresh "
                        "responses from the known encoder, which removes the memorisation bias")
    t.add_argument("--steps", type=int, default=4000)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--seed", type=int, default=0)
    _resume_flags(t)
    c = sub.add_parser("decompose", help="I_local and Fisher pixel maps of your images with a trained denoiser",
                       description="Compute I_local and Fisher pixel maps for the first N images of an .npz file, "
                                   "using a denoiser trained by `jaxdecomp train`; writes figure.png, results.json "
                                   "and maps.npz.")
    c.add_argument("--data", required=True, help="path to an .npz file with images (N, H, W) in [-1, 1]")
    c.add_argument("--model", required=True, help="folder written by `jaxdecomp train`")
    c.add_argument("--out", required=True, help="output folder")
    c.add_argument("--x-key", default="x")
    c.add_argument("--neurons", default=None, choices=IMAGE_MODELS,
                   help="the neuron model of the responses (default: the one the denoiser was trained with)")
    c.add_argument("--n-images", type=int, default=8)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--encoder", default=None,
                   help="a fitted encoder folder (`jaxdecomp fit`) to simulate responses with; needed for a "
                        "denoiser trained on recorded responses (--r-key)")
    c.add_argument("--all", action="store_true", dest="all_images",
                   help="every image of --data (not the first --n-images): sharded over all devices, --chunk images "
                        "at a time, written to the resumable store OUT/store; a rerun continues it")
    c.add_argument("--chunk", type=int, default=256, help="images per chunk with --all (default: 256)")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true",
                   help="with --all: continue OUT/store (an error if there is none or it was written with other "
                        "settings); without a flag it is continued when the settings match")
    g.add_argument("--overwrite", action="store_true",
                   help="with --all: delete the maps in OUT/store and start afresh (by default a store written with "
                        "other settings is refused and left untouched)")
    f = sub.add_parser("fit", help="fit an encoder (LNP/GLM or CNN) to recorded stimulus-response data (.npz)",
                       description="Fit an encoding model p(r | x) by maximum likelihood to stimuli (--x-key, (N, ...)) "
                                   "and responses (--r-key, (N, n) or (N, repeats, n)) in an .npz file; split train/"
                                   "validation by stimulus, stop early on the validation log-likelihood, print "
                                   "bits/spike, correlation and FEV, and save the encoder folder to --out (for "
                                   "`jaxdecomp decompose --encoder OUT`).")
    f.add_argument("--data", required=True, help="path to an .npz file with stimuli and responses")
    f.add_argument("--out", required=True, help="folder for the fitted encoder (encoder.json + weights.npz)")
    f.add_argument("--x-key", default="x", help="name of the stimulus array (default: x)")
    f.add_argument("--r-key", default="r", help="name of the response array (default: r)")
    f.add_argument("--model", default="lnp", choices=("lnp", "cnn"), help="lnp: GLM (linear filter, nonlinearity); "
                   "cnn: the CNN retina architecture (images, Poisson)")
    f.add_argument("--noise", default="poisson", choices=("poisson", "gaussian"))
    f.add_argument("--nonlinearity", default=None, choices=("exp", "softplus", "sigmoid", "linear"),
                   help="lnp output nonlinearity (default: softplus for Poisson, linear for Gaussian)")
    f.add_argument("--smooth", type=float, default=0.0, help="Laplacian smoothness penalty on the filters")
    f.add_argument("--l1", type=float, default=0.0, help="L1 sparsity penalty on the filters")
    f.add_argument("--val-fraction", type=float, default=0.2, help="fraction of stimuli held out (default: 0.2)")
    f.add_argument("--steps", type=int, default=3000, help="maximum optimisation steps (default: 3000)")
    f.add_argument("--lr", type=float, default=0.02, help="Adam learning rate (default: 0.02)")
    f.add_argument("--batch", type=int, default=None, help="stimuli per step (default: all, full batch)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--overwrite", action="store_true", help="replace an encoder folder already at --out")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from jaxdecomp import _parallel

    # the CPU cores as JAX devices (training splits its batch over them, maps and MI run one piece per
    # device): before JAX starts its backend; JAXDECOMP_CPU_DEVICES=1 turns it off
    try:
        _parallel.force_cpu_devices(divides={"demo": DEMO_SETTINGS[bool(getattr(args, "quick", False))]["batch"], "train": getattr(args, "batch", None),
                                             "decompose": getattr(args, "chunk", None)}.get(args.command))
    except ValueError as err:
        print(f"jaxdecomp {args.command}: error: {err}", file=sys.stderr)
        return 2
    from jaxdecomp.diffusion.checkpoint import CheckpointLocked, CheckpointMismatch

    try:
        if args.command == "demo":
            run_demo(args.out, quick=args.quick, seed=args.seed, steps=args.steps, resume=args.resume,
                     overwrite=args.overwrite, fresh=not args.fixed_responses, compare=args.compare)
        elif args.command == "train":
            run_train(args.data, args.out, neurons_name=args.neurons, x_key=args.x_key, r_key=args.r_key,
                      steps=args.steps, batch=args.batch, seed=args.seed, resume=args.resume,
                      overwrite=args.overwrite, encoder_dir=args.encoder, fresh=not args.fixed_responses)
        elif args.command == "fit":
            run_fit(args.data, args.out, x_key=args.x_key, r_key=args.r_key, model=args.model, noise=args.noise,
                    nonlinearity=args.nonlinearity, smooth=args.smooth, l1=args.l1, val_fraction=args.val_fraction,
                    steps=args.steps, learning_rate=args.lr, batch=args.batch, seed=args.seed,
                    overwrite=args.overwrite)
        else:
            run_decompose(args.data, args.model, args.out, neurons_name=args.neurons, x_key=args.x_key,
                          n_images=args.n_images, seed=args.seed, encoder_dir=args.encoder,
                          all_images=args.all_images, chunk=args.chunk, resume=args.resume, overwrite=args.overwrite)
    except CheckpointMismatch as err:
        print(f"jaxdecomp {args.command}: error: --out: '{err.directory}' holds checkpoints (step {err.step}) of a "
              f"training run with other settings ({'; '.join(err.differences)}); nothing was changed. Pass "
              f"--overwrite to delete them and train afresh, rerun with the settings they were written with to "
              f"continue them (--resume insists on continuing), or choose another --out", file=sys.stderr)
        return 2
    except CheckpointLocked as err:
        print(f"jaxdecomp {args.command}: error: --out: {str(err).split(': ', 1)[-1]}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        msg = str(err)
        if msg.startswith("checkpoint_dir: "):          # the library names its argument; ours is --out
            msg = "--out: " + msg[len("checkpoint_dir: "):].replace("resume='must'", "--resume")
        elif msg.startswith("store: "):                 # decompose --all's OUT/store
            msg = "--out: " + msg[len("store: "):].replace("resume='must'", "--resume").replace(
                "overwrite=True", "--overwrite")
        print(f"jaxdecomp {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return 0
