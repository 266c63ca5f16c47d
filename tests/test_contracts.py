"""The contracts of ``jaxdecomp._interfaces``: a user-written encoder plugs into every engine.

A NEW encoder is defined here, binary (Bernoulli) neurons with sigmoid tuning, subclassing
the public ``Encoder`` with its own ``fisher_diag`` (``f'^2 / (f (1 - f))``); its response cells
are registered with ``exact.register_cells`` through the generic ``exact.finite_support``.
It then runs through ``exact.ilocal`` (completeness, positivity), ``exact.differentiable``
(gradients against central finite differences of the public function) and ``estimate.ilocal``
with the exact grid denoiser (agreement with the exact engine within Monte Carlo error).
Also: the single result shapes (``Estimate`` / ``MapResult``) and the JAX boundary of the
exact engine (traced arguments are refused with a pointer to ``exact.differentiable``).
"""

import ast
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from jax.scipy.special import xlogy

from jaxdecomp import estimate as E
from jaxdecomp import exact
from jaxdecomp import neurons as N
from jaxdecomp._interfaces import Denoiser, Encoder, Estimate, MapResult
from jaxdecomp.diffusion import gaussian_denoiser, grid_denoiser
from jaxdecomp.diffusion import schedules as S

ROOT = Path(__file__).resolve().parents[1]


@struct.dataclass
class BernoulliNeurons(Encoder):
    """Binary neurons for a scalar stimulus: ``P(r_n = 1 | x) = f_n(x)`` with
    ``f_n(x) = floor + (1 - 2 floor) sigmoid(slope_n (x - center_n))``. x: () or (1,)."""

    centers: jax.Array  # (n,)
    slopes: jax.Array  # (n,)
    floor: float = struct.field(pytree_node=False, default=0.05)

    def _u(self, x):
        return self.slopes * (jnp.reshape(x, ()) - self.centers)

    def rate(self, x):
        return self.floor + (1.0 - 2.0 * self.floor) * jax.nn.sigmoid(self._u(x))

    def sample(self, key, x):
        return jax.random.bernoulli(key, self.rate(x)).astype(jnp.result_type(float))

    def log_prob(self, r, x):
        f = self.rate(x)
        return jnp.sum(xlogy(r, f) + xlogy(1.0 - r, 1.0 - f))

    def fisher_diag(self, x):
        s = jax.nn.sigmoid(self._u(x))
        f = self.floor + (1.0 - 2.0 * self.floor) * s
        df = (1.0 - 2.0 * self.floor) * s * (1.0 - s) * self.slopes  # f'(x)
        return jnp.reshape(jnp.sum(df**2 / (f * (1.0 - f))), jnp.shape(x))


exact.register_cells(BernoulliNeurons, exact.finite_support([0.0, 1.0]))


def bernoulli(centers=(-1.0, 0.2, 1.1), slopes=(3.0, -2.0, 4.0)):
    return BernoulliNeurons(jnp.asarray(centers, dtype=jnp.result_type(float)),
                            jnp.asarray(slopes, dtype=jnp.result_type(float)))


def _grid():
    return exact.gaussian_grid(0.0, 1.0, m=121, lo=-4.0, hi=4.0)


# ----------------------------------------------------------------------------- the encoder itself


def test_interfaces_imports_nothing_from_the_package():
    tree = ast.parse((ROOT / "jaxdecomp" / "_interfaces.py").read_text())
    mods = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    mods += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    mods += ["." for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
    assert not [m for m in mods if m.startswith("jaxdecomp") or m == "."], mods


def test_encoder_is_abstract_and_derives_fisher_trace_and_n_neurons():
    with pytest.raises(TypeError, match="abstract"):
        Encoder()
    pop = bernoulli()
    assert isinstance(pop, N.Encoder) and N.Encoder is Encoder
    assert pop.n_neurons(0.3) == 3
    assert float(pop.fisher_trace(0.3)) == pytest.approx(float(pop.fisher_diag(0.3)))
    # a scalar stimulus: the 1 x 1 Fisher matrix is its diagonal (no fisher_weights needed)
    assert float(pop.fisher(0.3)) == pytest.approx(float(pop.fisher_diag(0.3)))


def test_fisher_diag_is_the_score_variance_over_all_responses():
    """The user's closed form against sum_r p(r|x) (d/dx log p(r|x))^2 over the 8 responses."""
    pop = bernoulli()
    R = jnp.asarray(np.array(np.meshgrid(*[[0.0, 1.0]] * 3, indexing="ij")).reshape(3, -1).T)
    for x in (-1.3, 0.0, 0.9):
        lp = jax.vmap(lambda r: pop.log_prob(r, x))(R)
        score = jax.vmap(lambda r: jax.grad(lambda y: pop.log_prob(r, y))(x))(R)
        assert float(jnp.sum(jnp.exp(lp))) == pytest.approx(1.0, abs=1e-6)
        assert float(pop.fisher_diag(x)) == pytest.approx(float(jnp.sum(jnp.exp(lp) * score**2)), rel=1e-4)


def test_default_fisher_matrix_from_noise_weights_or_a_clear_error():
    @struct.dataclass
    class Vector(BernoulliNeurons):  # same neurons, a 2-D stimulus that only its first entry drives
        def _u(self, x):
            return self.slopes * (jnp.asarray(x)[0] - self.centers)

        def fisher_diag(self, x):
            return jnp.zeros(jnp.shape(x)).at[0].set(BernoulliNeurons.fisher_diag(self, jnp.asarray(x)[:1])[0])

    v = Vector(jnp.array([-1.0, 0.5]), jnp.array([2.0, -3.0]))
    with pytest.raises(NotImplementedError, match="fisher_weights"):
        v.fisher(jnp.array([0.1, 0.2]))

    @struct.dataclass
    class Weighted(Vector):
        def fisher_weights(self, f):  # Bernoulli: Fisher information about the mean is 1 / (f (1 - f))
            return 1.0 / (f * (1.0 - f))

    w = Weighted(v.centers, v.slopes)
    x = jnp.array([0.1, 0.2])
    J = w.fisher(x)
    assert J.shape == (2, 2)
    np.testing.assert_allclose(np.diag(J), w.fisher_diag(x), rtol=1e-5, atol=1e-7)
    assert float(J[1, 1]) == 0.0 and float(J[0, 1]) == 0.0


# ----------------------------------------------------------------------------- exact engine


def test_unregistered_encoder_and_bad_support_are_refused():
    class Unregistered(Encoder):
        def rate(self, x):
            return jnp.ones(1)

        def sample(self, key, x):
            return jnp.ones(1)

        def log_prob(self, r, x):
            return jnp.zeros(())

        def fisher_diag(self, x):
            return jnp.zeros(jnp.shape(x))

    with pytest.raises(TypeError, match="register_cells"):
        exact.mutual_information(_grid(), Unregistered())
    with pytest.raises(TypeError, match="grid"):
        exact.ilocal(np.zeros(3), bernoulli())

    @struct.dataclass
    class Ternary(BernoulliNeurons):  # a subclass inherits the registered cells along the MRO ...
        pass

    assert exact.mutual_information(_grid(), Ternary(bernoulli().centers, bernoulli().slopes)) > 0
    exact.register_cells(Ternary, exact.finite_support([0.0, 2.0]))  # ... unless it registers its own
    with pytest.raises(ValueError, match="support: the masses"):
        exact.mutual_information(_grid(), Ternary(bernoulli().centers, bernoulli().slopes))
    with pytest.raises(TypeError, match="encoder_cls"):
        exact.register_cells("BernoulliNeurons", exact.finite_support([0.0, 1.0]))


def test_exact_ilocal_of_a_user_encoder_is_complete_and_positive():
    """Completeness: sum_j w_j I_local(x_j) = I(R;X). The MI here is an exact finite sum over
    the 8 responses (error ~1e-15); the I_local side carries the noise-integral error, which
    for the default 48 levels on a grid of this spacing is ~1e-5 relative (measured 2e-6 here;
    test_exact.py documents the numerics), so rel 1e-4 tests completeness with margin ~50x."""
    grid, pop = _grid(), bernoulli()
    il = exact.ilocal(grid, pop)
    mi = exact.mutual_information(grid, pop)
    assert isinstance(il, np.ndarray) and il.dtype == np.float64 and il.shape == (grid.size,)
    assert isinstance(mi, float)
    assert 0.2 < mi < 3 * np.log(2)  # informative, and below the 3-bit response entropy
    assert float(np.asarray(grid.weights) @ il) == pytest.approx(mi, rel=1e-4)
    assert np.all(il > 0)
    # the Fisher head is the user's closed form (evaluated in float64 like the engine)
    with jax.enable_x64(True):
        closed = np.asarray(jax.vmap(pop.fisher_diag)(jnp.asarray(grid.points, dtype=jnp.float64)))
    np.testing.assert_allclose(exact.fisher(grid, pop), closed, rtol=1e-9)


def test_exact_engine_refuses_tracers_and_points_to_differentiable():
    grid, pop = _grid(), bernoulli()
    with pytest.raises(TypeError, match="exact.differentiable"):
        jax.grad(lambda p: exact.mutual_information(grid, p))(pop)
    with pytest.raises(TypeError, match="traced"):
        jax.jit(lambda p: exact.ilocal(grid, p))(pop)


@pytest.mark.heavy
def test_differentiable_user_encoder_matches_central_differences():
    """Gradients of I(R;X) and of I_local(x_j) w.r.t. centres and slopes against central
    differences of the public functions, along a direction with no zero entry in each
    parameter (directional derivative ``grad . v``). The cells (all 8 binary responses) do not
    depend on the parameters, so both sides compute the same smooth function; in float64 with
    h = 1e-4 the truncation error is ~h^2 f'''/f' ~ 1e-8 relative and rounding ~1e-16 / h ~ 1e-12,
    far below the 1e-4 tolerance (as in test_exact_grad.py)."""
    h, opts = 1e-4, dict(n_levels=16)
    with jax.enable_x64(True):
        grid, pop = _grid(), bernoulli()
        j = 40  # a grid point near x = -1.33
        fn_mi = exact.differentiable(exact.mutual_information, grid, pop)
        fn_il = exact.differentiable(exact.ilocal, grid, pop, **opts)
        g_mi = jax.grad(fn_mi)(pop)
        g_il = jax.grad(lambda p: fn_il(p)[j])(pop)
        assert type(g_mi) is BernoulliNeurons and g_mi.centers.shape == (3,)
        assert float(fn_mi(pop)) == pytest.approx(float(exact.mutual_information(grid, pop)), rel=1e-12)
        v = np.array([0.7, -1.1, 0.4])
        for name in ("centers", "slopes"):
            base = np.asarray(getattr(pop, name))

            def at(d):
                p = pop.replace(**{name: jnp.asarray(base + d * v)})
                return exact.mutual_information(grid, p), exact.ilocal(grid, p, **opts)[j]

            (mp, ip), (mm, im) = at(h), at(-h)
            assert float(np.asarray(getattr(g_mi, name)) @ v) == pytest.approx((mp - mm) / (2 * h), rel=1e-4)
            assert float(np.asarray(getattr(g_il, name)) @ v) == pytest.approx((ip - im) / (2 * h), rel=1e-4)


# ----------------------------------------------------------------------------- denoiser estimators


@pytest.mark.heavy
def test_estimate_ilocal_with_grid_denoiser_agrees_with_exact_engine():
    """The exact discrete-prior denoiser for the user's encoder: the Monte Carlo I_local at
    4 grid points within 4 standard errors of the exact engine. Levels stop at the engine's
    small-noise cut-off g_min = 0.75 h^2, below which the estimator's exact Fisher tail takes
    over (as the engine's small-noise piece does). Failure probability: 4 points x P(|z| > 4)
    = 4 x 6.3e-5 = 2.5e-4 if the estimator is unbiased; its quadrature bias is small against the
    standard error (~1% of I_local here): with 10x the draws (SE 0.3%) and three level settings
    (24 or 48 nodes, lowest log-SNR -8 or -12) the differences changed sign and stayed within
    2.5 SE, so |bias| < ~0.3 SE, which raises the failure probability to at most ~6e-4."""
    grid, pop = _grid(), bernoulli()
    ref = exact.ilocal(grid, pop)
    pts = np.asarray(grid.points)
    idx = np.array([np.argmin(np.abs(pts - v)) for v in (-1.5, -0.4, 0.6, 1.5)])
    hstep = float(pts[1] - pts[0])
    lv = S.levels("gauss_legendre", -8.0, float(-np.log(0.75 * hstep**2)), 24)
    G = grid_denoiser(grid.points, grid.weights, pop)
    assert isinstance(G, Denoiser)
    res = E.ilocal(jax.random.PRNGKey(7), G, pop, jnp.asarray(pts[idx])[:, None], levels=lv,
                   n_samples=2048, chunk=8192)
    assert isinstance(res, MapResult)
    tot, se = np.asarray(res.total), np.asarray(res.stderr)
    assert np.all(se < 0.05 * ref[idx]), (se, ref[idx])  # the test has power
    z = (tot - ref[idx]) / se
    assert np.all(np.abs(z) < 4.0), (tot, ref[idx], se, z)


# ----------------------------------------------------------------------------- one result shape


@pytest.mark.heavy
def test_every_estimator_returns_estimate_or_map_result():
    D = gaussian_denoiser(np.zeros(2), np.ones(2), np.array([[1.0, 0.5]]), 0.5)
    mi = D.mutual_information(jax.random.PRNGKey(0), 20_000, 4)
    assert isinstance(mi, Estimate) and mi.info is None and mi.stderr > 0
    truth = 0.5 * np.log1p(1.25 / 0.25)
    assert abs(mi.value - truth) < 5 * mi.stderr + 1e-3
    x = D.prior_sample(jax.random.PRNGKey(1), 64)
    r = jax.vmap(D.population.sample)(jax.random.split(jax.random.PRNGKey(2), 64), x)
    lv = S.levels("gauss_legendre", -6.0, 8.0, 8)
    plain = E.mutual_information(jax.random.PRNGKey(3), D, x, r, levels=lv)
    pairs = E.mutual_information(jax.random.PRNGKey(3), D, x, r, levels=lv, return_pairs=True)
    assert isinstance(plain, Estimate) and plain.info is None
    assert isinstance(pairs, Estimate) and pairs.info["per_pair"].shape == (64,)
    assert float(pairs.value) == pytest.approx(float(plain.value), rel=1e-6)
    assert float(jnp.mean(pairs.info["per_pair"])) == pytest.approx(float(pairs.value), rel=1e-5)
    assert E.Estimate is Estimate and E.MapResult is MapResult
