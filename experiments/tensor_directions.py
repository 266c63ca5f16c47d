"""The I_local tensor G(x): the most informative stimulus directions, against the Fisher matrix's.

``G(x) = 1/2 int_0^inf E_{y ~ N(x, g I)} J(y) dg`` (``docs/tensor.md``, ``docs/ilocal.md`` §8):
``trace G = I_local(x)``, ``diag G`` = the I_local pixel map, and ``v^T G v`` (unit ``v``) the
information, over all scales, about perturbations of ``x`` along ``v``. The Fisher matrix ``J(x)``
is the same quantity at the smallest scale only.

(a) Digits (``tasks.digits_lnp``: the paper's 49-neuron LNP Poisson population, empirical prior
over the bundled digits, exact denoisers and exact posterior sampling). For a few digits:
``estimate.ilocal_tensor`` gives the pixel map and the top-k eigen-pairs of G (randomised subspace
iteration, no d x d matrix), shown as images beside the top-k eigenvectors of the population's
Fisher matrix ``J(x)`` (``population.fisher``). Eigenvalues are reported twice: in-sample (the
Ritz values, from the draws that chose the directions: biased up) and held-out (``v^T G v`` for
the same fixed directions from independent draws: unbiased for that ``v``, a lower bound on the
eigenvalue in expectation). The information along Fisher's top directions and along random unit
directions (held-out as well) is the comparison; the overlap ``|v_G . v_J|`` and the angle
between the top directions say how far apart the two notions of "most informative" are.

(b) The Fig. 1 setting in 2-D: prior N(0, 3^2 I), Gaussian-noise neurons (sigma 0.3, amplitude 1)
with bump tuning centred at (-3, 0) (the old bump) and (6, 0) (the added one), as Fig. 1's
tuning B. The bumps are wider than Fig. 1's 0.5 (1.5 by default, 3 with ``--quick``) so that a
37 x 37 (25 x 25) grid resolves the posterior: width 0.5 needs >= 134 points per axis, hours of
CPU. ``exact.ilocal_tensor`` on the grid; G's principal axes drawn as ellipses (semi-axes
proportional to sqrt(eigenvalue)) over the stimulus plane, colour = trace G = I_local, beside
the Fisher ellipses (colour = trace J); the angle between their top axes.

Writes tensor_directions.png (digits), tensor_directions_2d.png (2-D) and tensor_directions.json.
Default: 16x16 digits (all 1797 in the prior), 3 digits, 256 draws x 24 levels, k = 4, 2-D grid
37 x 37; ``--quick``: 8x8 digits (400 in the prior), 2 digits, 256 x 12, k = 3, grid 25 x 25.
Measured on a 2-core CPU shared with other jobs (load 8-13): default 212-259 s wall (94-101 s of
CPU), ``--quick`` 80 s wall (34 s of CPU, about half compilation). Numbers: ``docs/tensor.md`` §5.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments._cli import Timer
from jaxdecomp import data, estimate, exact, tasks
from jaxdecomp import neurons as N
from jaxdecomp.diffusion import schedules

SETTINGS = {
    "default": dict(size=16, n_stimuli=None, classes=(0, 3, 7), n_samples=256, n_levels=24, k=4, n_random=4,
                    grid_m=37, bump_width=1.5, grid_levels=16),
    "quick": dict(size=8, n_stimuli=400, classes=(3, 7), n_samples=256, n_levels=12, k=3, n_random=3,
                  grid_m=25, bump_width=3.0, grid_levels=12),
}
# Fig. 1's neurons (experiments/fig1_locality.py), in 2-D
PRIOR_SD, NOISE, AMPLITUDE, OLD, NEW = 3.0, 0.3, 1.0, (-3.0, 0.0), (6.0, 0.0)
GRID_WIDTH_SD = 3.0          # the grid covers +- 3 prior SD per axis


# ----------------------------------------------------------------------------- (a) digits
def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _digit_choice(task, size, classes):
    """Indices into ``task.stimuli`` of the first stored digit of each class, and the classes."""
    full, labels = data.digits(size, return_labels=True)
    stored = np.asarray(task.stimuli).reshape(task.n_stimuli, -1)
    full = np.asarray(full, np.float32).reshape(full.shape[0], -1)
    # the class of each stored digit, by matching it to the bundled set (digits_lnp keeps a subset)
    lookup = {row.tobytes(): int(lab) for row, lab in zip(full, labels)}
    stored_labels = np.array([lookup[row.astype(np.float32).tobytes()] for row in stored])
    picks = [int(np.flatnonzero(stored_labels == c)[0]) for c in classes]
    return picks, [int(stored_labels[i]) for i in picks]


@jax.jit
def _fisher(population, x):
    return population.fisher(x)


def digit_directions(key, task, x, cfg):
    """G's top-k directions (two independent runs) against the Fisher matrix's, for one digit."""
    size, k = cfg["size"], cfg["k"]
    d = size * size
    levels = schedules.levels("gauss_legendre", -10.0, 14.0, cfg["n_levels"])
    # memory: the exact denoiser holds (chunk, stored stimuli, d) offsets; keep them to ~2^25 numbers
    # (and chunks of at most 256 draws: larger ones compile markedly slower, for no speed-up here)
    chunk = int(max(16, min(256, 2**25 // (task.n_stimuli * d))))
    opts = dict(k=k, n_samples=cfg["n_samples"], levels=levels, response_sampler="posterior_sample",
                fisher_correction=False, chunk=chunk)   # a discrete prior: no small-noise Fisher tail

    J = np.asarray(_fisher(task.encoder, x), np.float64).reshape(d, d)
    J = 0.5 * (J + J.T)
    mu, U = np.linalg.eigh(J)
    mu, VJ = mu[::-1][:k], U[:, ::-1][:, :k].T                        # (k,), (k, d)
    VJ = VJ * np.sign(VJ[np.arange(k), np.argmax(np.abs(VJ), axis=1)])[:, None]
    k1, k2, kr = jax.random.split(key, 3)
    R = _unit(np.asarray(jax.random.normal(kr, (cfg["n_random"], d)), np.float64))
    shape = (size, size)

    def dirs(*blocks):
        return jnp.asarray(np.concatenate(blocks).reshape((-1,) + shape), jnp.float32)

    # run 1 chooses G's directions; Fisher's and random directions (fixed in advance) ride along
    # run 2 (independent draws) re-measures G's run-1 directions held out, with Fisher's again
    # (both runs take 2k + n_random directions: one compilation)
    r1 = estimate.ilocal_tensor(k1, task.denoiser, task.encoder, x, directions=dirs(VJ, R, VJ[:k]), **opts)
    VG = np.asarray(r1.eigenvectors, np.float64).reshape(k, d)
    r2 = estimate.ilocal_tensor(k2, task.denoiser, task.encoder, x, directions=dirs(VG, VJ, R), **opts)
    VG2 = np.asarray(r2.eigenvectors, np.float64).reshape(k, d)
    v1, s1 = np.asarray(r1.directional.value, np.float64), np.asarray(r1.directional.stderr, np.float64)
    v2, s2 = np.asarray(r2.directional.value, np.float64), np.asarray(r2.directional.stderr, np.float64)

    def pooled(a, sa, b, sb):          # mean of two independent estimates
        return (a + b) / 2, np.sqrt(sa**2 + sb**2) / 2

    info_J, info_J_se = pooled(v1[:k], s1[:k], v2[k:2 * k], s2[k:2 * k])
    info_R, info_R_se = pooled(v1[k:k + cfg["n_random"]], s1[k:k + cfg["n_random"]], v2[2 * k:], s2[2 * k:])
    C = np.abs(VG @ VJ.T)                                             # |cos| between G and J directions
    lam_in, lam_in_se = np.asarray(r1.eigenvalues.value, np.float64), np.asarray(r1.eigenvalues.stderr, np.float64)
    lam_out, lam_out_se = v2[:k], s2[:k]
    trace, trace_se = float(r1.trace.value), float(r1.trace.stderr)
    trace2, trace2_se = float(r2.trace.value), float(r2.trace.stderr)
    return dict(
        ilocal=trace, ilocal_se=trace_se, ilocal_run2=trace2, ilocal_run2_se=trace2_se,
        pixel_map=np.asarray(r1.diagonal.map, np.float64), pixel_map_total=float(r1.diagonal.total),
        fisher_map=np.diag(J).reshape(shape), fisher_trace=float(np.trace(J)),
        G_eigenvalues_in_sample=lam_in, G_eigenvalues_in_sample_se=lam_in_se,
        G_eigenvalues_held_out=lam_out, G_eigenvalues_held_out_se=lam_out_se,
        G_angle_stderr_deg=np.degrees(np.asarray(r1.info["angle_stderr"], np.float64)),
        G_eigenvectors=VG.reshape((k,) + shape), J_eigenvectors=VJ.reshape((k,) + shape),
        J_eigenvalues=mu,
        info_along_J=info_J, info_along_J_se=info_J_se,
        info_along_random=info_R, info_along_random_se=info_R_se,
        overlap_G_J=C,
        top_overlap=float(C[0, 0]), top_angle_deg=float(np.degrees(np.arccos(min(C[0, 0], 1.0)))),
        top_G_share_in_J_subspace=float(np.sum(C[0] ** 2)),
        subspace_overlap=float(np.sum(C**2) / k), subspace_overlap_chance=k / d,
        top_G_reproducibility=float(abs(VG[0] @ VG2[0])),
        G_subspace_reproducibility=float(np.sum((VG @ VG2.T) ** 2) / k),
        top_k_share_of_ilocal=float(np.sum(lam_out) / trace),
        top_k_share_of_ilocal_se=float(np.sqrt(np.sum(lam_out_se**2)) / trace),
    )


def run_digits(cfg, seed=0):
    task = tasks.digits_lnp(cfg["size"], cfg["n_stimuli"])
    picks, labels = _digit_choice(task, cfg["size"], cfg["classes"])
    key = jax.random.PRNGKey(seed)
    out = []
    for j, (i, lab) in enumerate(zip(picks, labels)):
        r = digit_directions(jax.random.fold_in(key, j), task, task.stimuli[i], cfg)
        out.append(dict(index=i, label=lab, image=np.asarray(task.stimuli[i]), **r))
    return out, task


# ----------------------------------------------------------------------------- (b) the 2-D Fig. 1 setting
def run_grid(cfg):
    grid = exact.gaussian_grid_2d(cov=np.eye(2) * PRIOR_SD**2, m=cfg["grid_m"], width=GRID_WIDTH_SD)
    pop = N.gaussian_population(N.gaussian_bumps(np.array([OLD, NEW]), cfg["bump_width"], AMPLITUDE, 0.0), NOISE)
    nl = cfg["grid_levels"]
    pts = np.asarray(grid.points, np.float64)
    w = np.asarray(grid.weights, np.float64)
    G = exact.ilocal_tensor(grid, pop, n_levels=nl)                  # accuracy checks on (they raise)
    per_dim = np.asarray(exact.ilocal(grid, pop, n_levels=nl, per_dim=True), np.float64).reshape(-1, 2)
    mi = float(exact.mutual_information(grid, pop))
    J = np.asarray(jax.jit(jax.vmap(pop.fisher))(jnp.asarray(pts, jnp.float32)), np.float64).reshape(-1, 2, 2)
    J = 0.5 * (J + np.swapaxes(J, 1, 2))
    trG, trJ = np.trace(G, axis1=1, axis2=2), np.trace(J, axis1=1, axis2=2)
    lg, ug = np.linalg.eigh(G)
    lj, uj = np.linalg.eigh(J)
    cos = np.abs(np.sum(ug[:, :, 1] * uj[:, :, 1], axis=1))           # top axes (eigh: ascending)
    angle = np.degrees(np.arccos(np.clip(cos, 0.0, 1.0)))
    active = trJ > 0.05 * trJ.max()                                  # where Fisher is not ~0
    silent = trJ < 0.01 * trJ.max()
    mean_il = float(np.dot(w, trG))
    imax = int(np.argmax(trG))
    return dict(
        points=pts, weights=w, G=G, J=J, trace_G=trG, trace_J=trJ, eig_G=lg, vec_G=ug, eig_J=lj, vec_J=uj,
        angle_deg=angle, active=active,
        settings=dict(prior_sd=PRIOR_SD, noise_sd=NOISE, amplitude=AMPLITUDE, centres=[OLD, NEW],
                      bump_width=cfg["bump_width"], grid_m=cfg["grid_m"], grid_width_sd=GRID_WIDTH_SD,
                      n_levels=nl),
        summary=dict(
            trace_vs_exact_ilocal_max_abs=float(np.max(np.abs(trG - per_dim.sum(1)))),
            diag_vs_exact_ilocal_per_dim_max_abs=float(np.max(np.abs(np.diagonal(G, axis1=1, axis2=2) - per_dim))),
            min_eigenvalue=float(lg.min()), max_asymmetry=float(np.max(np.abs(G - np.swapaxes(G, 1, 2)))),
            mutual_information=mi, prior_mean_ilocal=mean_il, completeness_rel_error=(mean_il - mi) / mi,
            ilocal_max=float(trG[imax]), ilocal_argmax=pts[imax], ilocal_min=float(trG.min()),
            fisher_max=float(trJ.max()),
            median_top_axis_angle_deg_where_fisher_active=float(np.median(angle[active])),
            prior_weighted_top_axis_angle_deg_where_fisher_active=float(np.dot(w[active], angle[active])
                                                                         / w[active].sum()),
            G_anisotropy_median=float(np.median(lg[:, 0] / lg[:, 1])),
            J_anisotropy_median_where_active=float(np.median(lj[active, 0] / lj[active, 1])),
            prior_mass_where_fisher_below_1pct=float(w[silent].sum()),
            ilocal_share_where_fisher_below_1pct=float(np.dot(w[silent], trG[silent]) / mean_il),
        ),
    )


# ----------------------------------------------------------------------------- figures
def _img(ax, im, *, signed=False, cmap=None, title=None, cbar_label=None, fig=None):
    im = np.asarray(im)
    if signed:
        lim = float(np.max(np.abs(im))) or 1.0
        h = ax.imshow(im, cmap=cmap or "RdBu_r", vmin=-lim, vmax=lim)
    else:
        h = ax.imshow(im, cmap=cmap or "magma")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)
    if cbar_label is not None:
        cb = fig.colorbar(h, ax=ax, fraction=0.046, pad=0.03)
        cb.ax.tick_params(labelsize=6)
        cb.set_label(cbar_label, fontsize=6)
    return h


def figure_digits(digits, cfg):
    from jaxdecomp.plotting import plt

    k = cfg["k"]
    n = len(digits)
    cols = 3 + 2 * k
    fig = plt.figure(figsize=(1.75 * cols, 2.0 * n + 2.6))
    gs = fig.add_gridspec(n + 1, cols, height_ratios=[1.0] * n + [1.25])
    for r, dg in enumerate(digits):
        ax = fig.add_subplot(gs[r, 0])
        _img(ax, dg["image"], cmap="gray", title=f"digit {dg['label']}")
        ax.images[0].set_clim(-1, 1)
        _img(fig.add_subplot(gs[r, 1]), dg["pixel_map"], fig=fig, cbar_label="nats/pixel",
             title=f"diag G = I_local map\nI = {dg['ilocal']:.2f} ± {dg['ilocal_se']:.2f} nats")
        for i in range(k):
            _img(fig.add_subplot(gs[r, 2 + i]), dg["G_eigenvectors"][i], signed=True,
                 title=(f"G eigvec {i + 1}\nλ = {dg['G_eigenvalues_in_sample'][i]:.2f} ± "
                        f"{dg['G_eigenvalues_in_sample_se'][i]:.2f}\n(held out {dg['G_eigenvalues_held_out'][i]:.2f}"
                        f" ± {dg['G_eigenvalues_held_out_se'][i]:.2f}) nats"))
        _img(fig.add_subplot(gs[r, 2 + k]), dg["fisher_map"], fig=fig, cbar_label="nats/unit²", cmap="viridis",
             title=f"diag J (Fisher map)\ntr J = {dg['fisher_trace']:.0f} nats/unit²")
        for i in range(k):
            _img(fig.add_subplot(gs[r, 3 + k + i]), dg["J_eigenvectors"][i], signed=True, cmap="PuOr_r",
                 title=(f"J eigvec {i + 1}, μ = {dg['J_eigenvalues'][i]:.0f}/unit²\n"
                        f"vᵀGv = {dg['info_along_J'][i]:.2f} ± {dg['info_along_J_se'][i]:.2f} nats\n"
                        f"|v·v_G{i + 1}| = {dg['overlap_G_J'][i, i]:.2f}"))
    # bottom row: information along G's (held-out), Fisher's and random directions, with SE
    ax = fig.add_subplot(gs[n, : cols // 2 + 1])
    xs = np.arange(k)
    width = 0.8 / (2 * n)
    for r, dg in enumerate(digits):
        off = (2 * r - n + 0.5) * width
        ax.bar(xs + off, dg["G_eigenvalues_held_out"], width, yerr=2 * dg["G_eigenvalues_held_out_se"],
               color=f"C{r}", label=f"digit {dg['label']}: G eigvecs (held out)", capsize=2)
        ax.bar(xs + off + width, dg["info_along_J"], width, yerr=2 * dg["info_along_J_se"], color=f"C{r}",
               alpha=0.45, hatch="//", label=f"digit {dg['label']}: Fisher eigvecs", capsize=2)
        rnd = float(np.mean(dg["info_along_random"]))
        ax.axhline(rnd, color=f"C{r}", ls=":", lw=1)
    ax.set_xticks(xs)
    ax.set_xticklabels([f"direction {i + 1}" for i in xs])
    ax.set_ylabel("vᵀ G(x) v (nats)")
    ax.set_title("information along the i-th eigvec of G vs of J (bars ± 2 SE); dotted: random unit directions",
                 fontsize=8)
    ax.legend(fontsize=6, ncol=2)
    ax = fig.add_subplot(gs[n, cols // 2 + 2:])
    for r, dg in enumerate(digits):
        ax.plot(np.arange(1, k + 1), np.diag(dg["overlap_G_J"]), "o-", color=f"C{r}",
                label=f"digit {dg['label']}: |v_G,i · v_J,i|")
        ax.plot(np.arange(1, k + 1), np.sqrt(np.sum(dg["overlap_G_J"] ** 2, axis=1)), "s--", color=f"C{r}",
                alpha=0.6, label=f"digit {dg['label']}: v_G,i in span(J top {k})")
    ax.axhline(np.sqrt(1.0 / cfg["size"] ** 2), color="0.5", ls=":", lw=1, label="random pair (1/√d)")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(np.arange(1, k + 1))
    ax.set_xlabel("eigen-direction i")
    ax.set_ylabel("|cosine|")
    ax.set_title("overlap of G's and Fisher's top directions", fontsize=8)
    ax.legend(fontsize=6)
    fig.suptitle("I_local tensor G(x) vs Fisher J(x) on digits (LNP Poisson population, exact denoisers); "
                 "eigenvalues ± SE (in-sample Ritz value; held out: independent draws)", fontsize=9)
    return fig


def _ellipses(ax, pts, vals, vecs, sel, scale, color):
    from matplotlib.collections import EllipseCollection

    a = np.sqrt(np.maximum(vals[sel], 0.0)) * scale               # semi-axes, (n, 2): minor, major
    ang = np.degrees(np.arctan2(vecs[sel, 1, 1], vecs[sel, 0, 1]))
    ec = EllipseCollection(2 * a[:, 1], 2 * a[:, 0], ang, units="xy", offsets=pts[sel],
                           offset_transform=ax.transData, facecolors="none", edgecolors=color, linewidths=0.8)
    ax.add_collection(ec)


def figure_grid(g):
    from jaxdecomp.plotting import plt

    pts = g["points"]
    ax_x, ax_y = np.unique(pts[:, 0]), np.unique(pts[:, 1])
    mx, my = ax_x.size, ax_y.size

    def img(v):                                    # x-major points -> image (rows: y)
        return np.asarray(v).reshape(mx, my).T

    ext = (ax_x[0], ax_x[-1], ax_y[0], ax_y[-1])
    step = max(1, mx // 12)
    ii, jj = np.meshgrid(np.arange(0, mx, step), np.arange(0, my, step), indexing="ij")
    sel = (ii * my + jj).ravel()
    spacing = step * (ax_x[1] - ax_x[0])
    s = g["summary"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.0))
    panels = [
        (axes[0], g["trace_G"], g["eig_G"], g["vec_G"], "magma", "I_local = tr G (nats)",
         f"G(x) axes (exact engine); colour = tr G = I_local\nmax {s['ilocal_max']:.3f}, min {s['ilocal_min']:.3f} "
         f"nats; prior mean {s['prior_mean_ilocal']:.4f} = I(R;X) {s['mutual_information']:.4f}"),
        (axes[1], g["trace_J"], g["eig_J"], g["vec_J"], "viridis", "tr J (nats / unit²)",
         f"Fisher J(x) axes; colour = tr J\n(J < 1% of its max on {100 * s['prior_mass_where_fisher_below_1pct']:.0f}% "
         f"of the prior, which holds {100 * s['ilocal_share_where_fisher_below_1pct']:.0f}% of I_local)"),
    ]
    for ax, col, vals, vecs, cmap, clabel, title in panels:
        h = ax.imshow(img(col), origin="lower", extent=ext, cmap=cmap, aspect="equal")
        cb = fig.colorbar(h, ax=ax, fraction=0.046, pad=0.03)
        cb.set_label(clabel, fontsize=8)
        scale = 0.48 * spacing / np.sqrt(max(float(vals[sel, 1].max()), 1e-300))
        _ellipses(ax, pts, vals, vecs, sel, scale, "white" if cmap == "magma" else "black")
        ax.set_title(title, fontsize=8)
    ang = np.where(g["active"], g["angle_deg"], np.nan)
    h = axes[2].imshow(img(ang), origin="lower", extent=ext, cmap="viridis", vmin=0, vmax=90,
                       aspect="equal")
    cb = fig.colorbar(h, ax=axes[2], fraction=0.046, pad=0.03)
    cb.set_label("angle between top axes of G and J (degrees)", fontsize=8)
    axes[2].set_title(f"angle between G's and J's top axes where tr J > 5% of its max\n(median "
                      f"{s['median_top_axis_angle_deg_where_fisher_active']:.1f}°; blank: Fisher ~ 0)", fontsize=8)
    t = np.linspace(0, 2 * np.pi, 200)
    for ax in axes:
        for c in (OLD, NEW):
            ax.plot(*c, "c+", ms=10, mew=2)
        for k in (1, 2):
            ax.plot(k * PRIOR_SD * np.cos(t), k * PRIOR_SD * np.sin(t), color="0.6", lw=0.7, ls="--")
        ax.set_xlim(ext[0], ext[1])
        ax.set_ylim(ext[2], ext[3])
        ax.set_xlabel("stimulus x₁")
        ax.set_ylabel("stimulus x₂")
    st = g["settings"]
    fig.suptitle(f"Fig. 1 in 2-D: prior N(0, {PRIOR_SD:g}² I) (dashed: 1, 2 SD), two Gaussian-noise neurons "
                 f"(σ {NOISE:g}) with bumps of width {st['bump_width']:g} at + ; ellipse semi-axes ∝ "
                 f"√eigenvalue (scale per panel); |tr G - exact.ilocal| ≤ {s['trace_vs_exact_ilocal_max_abs']:.1e}",
                 fontsize=9)
    return fig


# ----------------------------------------------------------------------------- driver
def run(quick: bool = False, seed: int = 0) -> dict:
    cfg = dict(SETTINGS["quick" if quick else "default"])
    with Timer() as t_a:
        digits, task = run_digits(cfg, seed)
    with Timer() as t_b:
        grid = run_grid(cfg)
    sel = lambda key: np.array([dg[key] for dg in digits])  # noqa: E731
    summary = dict(
        ilocal=sel("ilocal"), ilocal_se=sel("ilocal_se"),
        G_top_eigenvalue_held_out=sel("G_eigenvalues_held_out")[:, 0],
        G_top_eigenvalue_held_out_se=sel("G_eigenvalues_held_out_se")[:, 0],
        info_along_J_top=sel("info_along_J")[:, 0], info_along_J_top_se=sel("info_along_J_se")[:, 0],
        info_along_random_mean=sel("info_along_random").mean(1),
        ratio_G_top_over_J_top=sel("G_eigenvalues_held_out")[:, 0] / sel("info_along_J")[:, 0],
        top_angle_deg=sel("top_angle_deg"), top_overlap=sel("top_overlap"),
        subspace_overlap=sel("subspace_overlap"), subspace_overlap_chance=cfg["k"] / cfg["size"] ** 2,
        top_k_share_of_ilocal=sel("top_k_share_of_ilocal"),
        top_G_reproducibility=sel("top_G_reproducibility"),
        G_subspace_reproducibility=sel("G_subspace_reproducibility"),
    )
    return dict(settings=dict(cfg, seed=seed, quick=quick, n_neurons=task.n_neurons, n_prior_digits=task.n_stimuli),
                digits=digits, digits_summary=summary, grid2d=grid,
                seconds=dict(digits=t_a.seconds, grid2d=t_b.seconds))


def _jsonable(out):
    """The JSON: headline numbers and small arrays (no 2-D grid tensors, no eigenvector images)."""
    g = out["grid2d"]
    drop = {"image", "G_eigenvectors", "J_eigenvectors", "pixel_map", "fisher_map"}
    return dict(
        settings=out["settings"], seconds=out["seconds"], digits_summary=out["digits_summary"],
        digits=[{k: v for k, v in dg.items() if k not in drop} for dg in out["digits"]],
        grid2d=dict(settings=g["settings"], summary=g["summary"]),
        units=dict(ilocal="nats", G_eigenvalues="nats (information along a unit stimulus direction)",
                   pixel_map="nats/pixel", fisher="nats per squared stimulus unit"),
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out", help="folder for the PNGs and JSON (default: experiments/out)")
    p.add_argument("--quick", action="store_true", help="small setting: 8x8 digits (400 in the prior), 2 digits, 25x25 grid (~35 s of CPU)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from pathlib import Path

    from jaxdecomp.plotting import plt, save

    t0 = time.perf_counter()
    out = run(args.quick, args.seed)
    cfg = out["settings"]
    fig2 = figure_grid(out["grid2d"])
    Path(args.out).mkdir(parents=True, exist_ok=True)
    fig2.tight_layout()
    fig2.savefig(Path(args.out) / "tensor_directions_2d.png", dpi=110)
    plt.close(fig2)
    fig = figure_digits(out["digits"], cfg)
    out["seconds"]["total"] = time.perf_counter() - t0
    png, js = save(fig, _jsonable(out), args.out, "tensor_directions")
    s, g = out["digits_summary"], out["grid2d"]["summary"]
    for i, dg in enumerate(out["digits"]):
        print(f"digit {dg['label']}: I_local {dg['ilocal']:.2f} ± {dg['ilocal_se']:.2f} nats; G top eigenvalue "
              f"{dg['G_eigenvalues_in_sample'][0]:.3f} ± {dg['G_eigenvalues_in_sample_se'][0]:.3f} in-sample, "
              f"{dg['G_eigenvalues_held_out'][0]:.3f} ± {dg['G_eigenvalues_held_out_se'][0]:.3f} held out; along "
              f"Fisher's top {dg['info_along_J'][0]:.3f} ± {dg['info_along_J_se'][0]:.3f}; random "
              f"{np.mean(dg['info_along_random']):.3f}; angle(G1, J1) {dg['top_angle_deg']:.0f}° "
              f"(G1 angle SE {dg['G_angle_stderr_deg'][0]:.0f}°); subspace overlap {dg['subspace_overlap']:.3f} "
              f"(chance {dg['subspace_overlap_chance']:.3f})")
    print(f"2-D: |tr G - exact.ilocal| <= {g['trace_vs_exact_ilocal_max_abs']:.1e}; prior mean tr G "
          f"{g['prior_mean_ilocal']:.4f} vs I(R;X) {g['mutual_information']:.4f}; median top-axis angle "
          f"{g['median_top_axis_angle_deg_where_fisher_active']:.1f}° where Fisher is active; Fisher < 1% of max on "
          f"{100 * g['prior_mass_where_fisher_below_1pct']:.0f}% of the prior holding "
          f"{100 * g['ilocal_share_where_fisher_below_1pct']:.0f}% of I_local")
    print(f"wrote {png}, {js} and tensor_directions_2d.png ({out['seconds']['total']:.0f} s)")
    return out


if __name__ == "__main__":
    main()
