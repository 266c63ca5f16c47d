"""Gradients of the exact engine (``exact.differentiable``) against central finite
differences of the public exact functions, and the efficient-coding experiment.

Finite differences: ``(f(theta + h v) - f(theta - h v)) / 2h`` of the public functions,
with the response cells pinned by ``rate_range`` so that both sides of the difference
(and the differentiable function) use identical cells, i.e. the same smooth function.
Its error is truncation ``h^2 |f'''| / 6`` plus rounding ``~eps |f| / h``. The
parameters vary on scales ~0.3-1 (widths, spacings), so ``f''' ~ f' / 0.1`` at worst and
truncation is ~2e-7 relative at ``h = 1e-4``; float64 rounding of a sum over ~1e5
table entries is ~1e-13 nats, i.e. ~1e-9 nats / unit after dividing by 2h, against
gradients of ~1e-2 (relative ~1e-7). Both are far below the 1e-4 tolerance, which
therefore tests the gradient, not the difference quotient (measured errors: 1e-8 to 1e-7;
at h = 1e-3 they grow 100x, as truncation should).
Everything runs in float64 (autouse fixture): the populations are built in x64 mode,
else their float32 parameters would perturb the difference by ~1e-8 / h.
"""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdecomp import exact
from jaxdecomp import neurons as N

ROOT = Path(__file__).resolve().parents[2]

H = 1e-4
RTOL = 1e-4
# Fewer noise levels, and the engine's accuracy guards off (they warn instead of refusing): these tests
# compare jax.grad with central differences of the SAME computed function on small grids, which is
# exact whatever the grid's resolution; accuracy against closed forms is tested in test_exact.py.
FAST = dict(n_levels=16, check=False)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _grid():
    # skewed bimodal prior
    return exact.mixture_grid([-1.2, 1.0], [0.2, 0.5], [0.35, 0.65], m=41, lo=-3.5, hi=3.5)


# a small Poisson population: asymmetric values so that no gradient entry vanishes
POISSON = dict(centers=np.array([-1.1, 0.3, 1.4]), widths=np.array([0.55, 0.8, 0.65]),
               amplitudes=np.array([1.2, 0.9, 1.4]))
POISSON_CELLS = dict(rate_range=(0.0, 2.0))  # covers every perturbed population: identical cells


def poisson(p):
    return N.poisson_population(N.gaussian_bumps(p["centers"], p["widths"], p["amplitudes"], 0.2))


GAUSS = dict(centers=np.array([-0.8, 0.9]), widths=np.array([0.7, 0.5]), amplitudes=np.array([1.0, 1.6]),
             sigma=np.array(0.45))
# cells at sigma/2: the mid-point rule is then exact to ~exp(-8 pi^2), so the public function at
# sigma +- h (cells of width (sigma +- h)/2) and the fixed cells agree to rounding
GAUSS_CELLS = dict(rate_range=(0.0, 2.0), points_per_sigma=2.0)


def gauss(p):
    return N.gaussian_population(N.gaussian_bumps(p["centers"], p["widths"], p["amplitudes"], 0.1), p["sigma"])


def leaves(grad_pop):
    """Gradient population -> dict of arrays (d/d centers, widths, amplitudes, [sigma])."""
    m = grad_pop.rates
    out = dict(centers=m.centers, widths=m.widths, amplitudes=m.amplitudes)
    if hasattr(grad_pop, "sigma"):
        out["sigma"] = grad_pop.sigma
    return {k: np.asarray(v) for k, v in out.items()}


def central_difference(public, make, params, name, v, h=H):
    plus = dict(params, **{name: params[name] + h * v})
    minus = dict(params, **{name: params[name] - h * v})
    return (np.asarray(public(make(plus))) - np.asarray(public(make(minus)))) / (2 * h)


def rel_err(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.abs(np.asarray(b)))


# ----------------------------------------------------------------------------- mutual information


@pytest.mark.heavy
def test_grad_mutual_information_poisson_every_parameter():
    grid = _grid()
    fn = exact.differentiable(exact.mutual_information, grid, poisson(POISSON), **POISSON_CELLS)
    value, g = jax.jit(jax.value_and_grad(fn))(poisson(POISSON))
    public = lambda pop: exact.mutual_information(grid, pop, **POISSON_CELLS)  # noqa: E731
    assert float(value) == pytest.approx(float(public(poisson(POISSON))), rel=1e-13, abs=0)
    grads = leaves(g)
    for name in ("centers", "widths", "amplitudes"):
        fd = [central_difference(public, poisson, POISSON, name, e) for e in np.eye(3)]
        assert rel_err(grads[name], fd) < RTOL, name


@pytest.mark.heavy
def test_grad_mutual_information_gaussian_noise():
    grid = _grid()
    fn = exact.differentiable("mutual_information", grid, gauss(GAUSS), **GAUSS_CELLS)
    grads = leaves(jax.grad(fn)(gauss(GAUSS)))
    public = lambda pop: exact.mutual_information(grid, pop, **GAUSS_CELLS)  # noqa: E731
    rng = np.random.default_rng(1)
    for name in ("centers", "widths", "amplitudes", "sigma"):
        v = rng.normal(size=np.shape(GAUSS[name]))
        fd = central_difference(public, gauss, GAUSS, name, v)
        assert rel_err(np.sum(grads[name] * v), fd) < RTOL, name


# ----------------------------------------------------------------------------- I_local(x)


@pytest.mark.heavy
@pytest.mark.parametrize("kind", ["poisson", "gaussian"])
def test_grad_ilocal_at_a_few_stimuli(kind):
    """Reverse mode: d I_local(x_j) / d theta at three grid points, each parameter array
    along a random direction, against central differences of ``exact.ilocal``."""
    grid = _grid()
    make, params, cells = (poisson, POISSON, POISSON_CELLS) if kind == "poisson" else (gauss, GAUSS, GAUSS_CELLS)
    idx = np.array([8, 20, 29])  # x = -2.1, 0.0, 1.575: the minor mode's flank, the gap, the major mode
    fn = exact.differentiable(exact.ilocal, grid, make(params), **cells, **FAST)
    public = lambda pop: exact.ilocal(grid, pop, **cells, **FAST)[idx]  # noqa: E731
    values, pullback = jax.vjp(lambda p: fn(p)[idx], make(params))
    np.testing.assert_allclose(values, public(make(params)), rtol=1e-13)
    rows = [leaves(pullback(jnp.eye(3)[j])[0]) for j in range(3)]  # gradient of each I_local(x_j)
    rng = np.random.default_rng(2)
    for name in params:
        v = rng.normal(size=np.shape(params[name]))
        fd = central_difference(public, make, params, name, v)
        ad = np.array([np.sum(r[name] * v) for r in rows])
        assert rel_err(ad, fd) < RTOL, (name, ad, fd)


@pytest.mark.heavy
def test_grad_ilocal_2d():
    grid = exact.gaussian_grid_2d(m=11, width=3.0)
    params = dict(centers=np.array([[-0.6, 0.2], [0.5, -0.4]]), widths=np.array([0.9, 0.7]),
                  amplitudes=np.array([1.3, 1.0]))
    cells = dict(rate_range=(0.0, 2.0), **FAST)
    fn = exact.differentiable("ilocal", grid, poisson(params), **cells)
    j = 50  # a grid point off the symmetry axes: (-0.6, 0.6)
    g = leaves(jax.grad(lambda p: fn(p)[j])(poisson(params)))
    public = lambda pop: exact.ilocal(grid, pop, **cells)[j]  # noqa: E731
    rng = np.random.default_rng(3)
    for name in params:
        v = rng.normal(size=params[name].shape)
        assert rel_err(np.sum(g[name] * v), central_difference(public, poisson, params, name, v)) < RTOL, name


@pytest.mark.heavy
def test_grad_conditional_ilocal():
    """I_{R|R1}(x) with a fixed conditioning neuron R1: gradient w.r.t. R's parameters."""
    grid = _grid()
    given = N.poisson_population(N.sigmoids([0.2], 2.0, 1.5, 0.1))
    params = dict(centers=np.array([-0.7, 0.9]), widths=np.array([0.6, 0.75]), amplitudes=np.array([1.1, 0.8]))
    cells = dict(rate_range=(0.0, 2.0), **FAST)
    fn = exact.differentiable(exact.ilocal, grid, poisson(params), given=given, **cells)
    j = 14  # x = -1.05, near the minor mode
    g = leaves(jax.grad(lambda p: fn(p)[j])(poisson(params)))
    public = lambda pop: exact.ilocal(grid, pop, given=given, **cells)[j]  # noqa: E731
    rng = np.random.default_rng(5)
    for name in params:
        v = rng.normal(size=2)
        assert rel_err(np.sum(g[name] * v), central_difference(public, poisson, params, name, v)) < RTOL, name


@pytest.mark.heavy
def test_every_measure_is_differentiable():
    """Forward mode through all measures at once (one jvp) against the differences of
    ``exact.all_measures``; per measure, the largest error over the grid relative to the
    largest derivative (some entries cross zero)."""
    grid = _grid()
    fn = exact.differentiable("all", grid, poisson(POISSON), **POISSON_CELLS, **FAST)
    rng = np.random.default_rng(4)
    v = {k: rng.normal(size=3) for k in POISSON}
    # the baseline is a leaf too: its tangent is 0 here, as in the differences
    # (a tangent, not a population: built from the pytree, since the constructor refuses negative widths)
    base = poisson(POISSON)
    direction = base.replace(rates=base.rates.replace(
        centers=jnp.asarray(v["centers"]), widths=jnp.asarray(v["widths"]), amplitudes=jnp.asarray(v["amplitudes"]),
        baseline=jnp.zeros_like(base.rates.baseline)))
    _, tangent = jax.jvp(fn, (poisson(POISSON),), (direction,))
    plus = poisson({k: POISSON[k] + H * v[k] for k in POISSON})
    minus = poisson({k: POISSON[k] - H * v[k] for k in POISSON})
    a, b = (exact.all_measures(grid, p, **POISSON_CELLS, **FAST) for p in (plus, minus))
    assert set(tangent) == set(a)
    for name in a:
        fd = (a[name] - b[name]) / (2 * H)
        assert np.max(np.abs(np.asarray(tangent[name]) - fd)) < RTOL * np.max(np.abs(fd)), name


# ----------------------------------------------------------------------------- support, modes, errors


@pytest.mark.heavy
def test_missing_mass_flags_parameters_outside_the_cells():
    grid = _grid()
    fn = exact.differentiable("mutual_information", grid, poisson(POISSON))  # cells for rates <= 1.6
    louder = dict(POISSON, amplitudes=POISSON["amplitudes"] * 4)
    assert fn.missing_mass(poisson(POISSON)) < 3 * 1e-9  # n neurons x tail
    assert fn.missing_mass(poisson(louder)) > 1e-3
    # with room left by rate_range the same parameters are exact again
    roomy = exact.differentiable("mutual_information", grid, poisson(POISSON), rate_range=(0.0, 6.0))
    assert roomy.missing_mass(poisson(louder)) < 3 * 1e-9
    assert float(roomy(poisson(louder))) == pytest.approx(float(exact.mutual_information(grid, poisson(louder))),
                                                         abs=1e-8)


def test_needs_float64_mode():
    grid = _grid()
    fn = exact.differentiable("mutual_information", grid, poisson(POISSON))
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match="enable_x64"):
            jax.grad(fn)(poisson(POISSON))


def test_bad_input_names_the_argument():
    grid = _grid()
    pop = poisson(POISSON)
    with pytest.raises(TypeError, match="population"):
        exact.differentiable("ilocal", grid, {"centers": POISSON["centers"]})
    with pytest.raises(TypeError, match="grid"):
        exact.differentiable("ilocal", np.zeros(5), pop)
    with pytest.raises(ValueError, match="measure"):
        exact.differentiable("information", grid, pop)
    with pytest.raises(ValueError, match="measure"):
        exact.differentiable(np.sum, grid, pop)
    with pytest.raises(ValueError, match="given"):
        exact.differentiable("mutual_information", grid, pop, given=pop)
    with pytest.raises(ValueError, match="per_dim"):
        exact.differentiable("kong2", grid, pop, per_dim=True)
    with pytest.raises(TypeError, match="unexpected keyword"):
        exact.differentiable("ilocal", grid, pop, n_level=3)
    with pytest.raises(ValueError, match="rate_range"):
        exact.differentiable("ilocal", grid, pop, rate_range=(2.0, 1.0))
    silent = N.poisson_population(N.gaussian_bumps([0.0], 0.05, 1.0, 0.0))  # rate underflows to 0 far away
    with pytest.raises(ValueError, match="population: Poisson rates must be positive"):
        exact.differentiable("mutual_information", grid, silent)
    fn = exact.differentiable("mutual_information", grid, pop)
    with pytest.raises(TypeError, match="population"):
        fn(POISSON)
    with pytest.raises(ValueError, match="population: its pytree structure"):
        fn(gauss(GAUSS))
    with pytest.raises(ValueError, match="population: parameter"):
        fn(poisson({k: np.append(v, v[0]) for k, v in POISSON.items()}))


# ----------------------------------------------------------------------------- efficient coding


@pytest.mark.heavy
def test_efficient_coding_raises_mutual_information_monotonically():
    """Small settings of experiments/efficient_coding.py. The gain must exceed 0.01 nats:
    the exact MI is accurate to ~n * tail = 3e-9 nats (Poisson tails), so the gain is not
    numerical, and 0.01 nats is 2.5% of the initial MI, a real change of the code. The final
    MI is re-computed by the public function on freshly built cells as an independent check."""
    from experiments.efficient_coding import _pop_of, optimise

    r = optimise(n_neurons=3, steps=25, grid_m=41)
    mi = r["mi"]
    assert mi.shape == (26,)
    assert np.all(np.diff(mi) >= -1e-9), np.min(np.diff(mi))
    assert r["gain"] > 0.01
    assert r["missing_mass"] < 1e-8
    fresh = {k: float(exact.mutual_information(r["grid"], _pop_of(r, k))) for k in ("init", "final")}
    assert fresh["init"] == pytest.approx(mi[0], abs=1e-8)
    assert fresh["final"] == pytest.approx(mi[-1], abs=1e-8)


@pytest.mark.slow
def test_efficient_coding_script(tmp_path):
    subprocess.run([sys.executable, "-m", "experiments.efficient_coding", "--out", str(tmp_path)],
                   check=True, capture_output=True, timeout=600, cwd=ROOT)
    assert (tmp_path / "efficient_coding.png").stat().st_size > 10_000
    d = json.loads((tmp_path / "efficient_coding.json").read_text())
    assert d["monotone"] and d["gain"] > 0.01
    for k in ("init", "final"):  # I_local averages to the MI (completeness; the script's 24 noise
        assert abs(d["ilocal_completeness_rel_error"][k]) < 1e-3  # levels: ~1e-3, see test_exact.py)
