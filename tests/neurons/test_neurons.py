"""Neuron models: closed-form Fisher information against independent autodiff
computations, normalisation, sampling, combinators and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdecomp import neurons as N


def _poisson_fisher_by_enumeration(pop, x, cmax=80):
    """E_r[(d/dx log p(r|x))^2] with autodiff of log_prob, summed over counts (1 neuron)."""
    r = jnp.arange(cmax, dtype=jnp.float32)[:, None]
    logp = jax.vmap(lambda ri: pop.log_prob(ri, x))(r)
    score = jax.vmap(jax.grad(lambda xx, ri: pop.log_prob(ri, xx)), in_axes=(None, 0))(x, r)
    return float(jnp.sum(jnp.exp(logp) * score**2))


@pytest.mark.heavy
@pytest.mark.parametrize("x", [-1.3, 0.0, 0.4, 2.0])
def test_poisson_fisher_matches_score_variance(x):
    pop = N.poisson_population(N.gaussian_bumps([0.5], 0.8, 10.0, 0.5))
    closed = float(pop.fisher(x))
    enum = _poisson_fisher_by_enumeration(pop, jnp.float32(x))
    # float32 sums over ~80 terms: relative 1e-4 covers the rounding
    assert closed == pytest.approx(enum, rel=1e-4)


@pytest.mark.heavy
def test_gaussian_fisher_matches_expected_negative_hessian():
    pop = N.gaussian_population(N.sigmoids([0.0, 1.0], [2.0, -1.5], [3.0, 2.0], 0.5), jnp.array([0.4, 0.9]))
    x = 0.3
    # Gauss-Hermite expectation over r of -d^2/dx^2 log p(r|x), an independent route
    z, wz = np.polynomial.hermite_e.hermegauss(40)
    wz = wz / wz.sum()
    f = np.asarray(pop.rate(x))
    sig = np.array([0.4, 0.9])
    Z1, Z2 = np.meshgrid(z, z, indexing="ij")
    R = jnp.asarray(f + sig * np.stack([Z1.ravel(), Z2.ravel()], axis=1), dtype=jnp.float32)
    W = (wz[:, None] * wz[None, :]).ravel()
    hess = jax.vmap(lambda r: jax.grad(jax.grad(lambda xx: pop.log_prob(r, xx)))(jnp.float32(x)))(R)
    total = -float(np.sum(W * np.asarray(hess)))
    assert float(pop.fisher(x)) == pytest.approx(total, rel=1e-4)


def test_fisher_matrix_2d_and_diag_and_trace():
    centers = jnp.array([[0.0, 0.0], [1.0, -0.5], [-0.7, 0.8]])
    pop = N.poisson_population(N.gaussian_bumps(centers, 0.6, 8.0, 0.2))
    x = jnp.array([0.2, 0.1])
    J = pop.fisher(x)
    assert J.shape == (2, 2)
    jac = jax.jacfwd(pop.rate)(x)
    f = pop.rate(x)
    expected = sum(jnp.outer(jac[n], jac[n]) / f[n] for n in range(3))
    np.testing.assert_allclose(J, expected, rtol=1e-5)
    np.testing.assert_allclose(pop.fisher_diag(x), jnp.diag(expected), rtol=1e-5)
    assert float(pop.fisher_trace(x)) == pytest.approx(float(jnp.trace(expected)), rel=1e-5)
    assert np.all(np.linalg.eigvalsh(np.asarray(J)) >= -1e-6)


def test_poisson_log_prob_normalised_and_sample_mean(key):
    pop = N.poisson_population(N.von_mises([0.0, 2.0], 2.0, 6.0, 1.0))
    x = 0.7
    c = jnp.arange(60.0)
    total = jnp.sum(jnp.exp(jax.vmap(lambda a: jax.vmap(lambda b: pop.log_prob(jnp.array([a, b]), x))(c))(c)))
    assert float(total) == pytest.approx(1.0, abs=1e-5)
    samples = jax.vmap(lambda k: pop.sample(k, x))(jax.random.split(key, 4000))
    f = np.asarray(pop.rate(x))
    se = np.sqrt(f / 4000)
    assert np.all(np.abs(np.asarray(samples.mean(0)) - f) < 5 * se)


def test_gaussian_sample_moments(key):
    pop = N.gaussian_population(N.linear([1.0, -2.0], [0.5, 0.0]), 0.3)
    s = jax.vmap(lambda k: pop.sample(k, 1.5))(jax.random.split(key, 4000))
    np.testing.assert_allclose(np.asarray(s.mean(0)), [2.0, -3.0], atol=5 * 0.3 / np.sqrt(4000))
    np.testing.assert_allclose(np.asarray(s.std(0)), [0.3, 0.3], rtol=0.05)


def test_joint_population_adds_log_prob_and_fisher(key):
    p1 = N.poisson_population(N.sigmoids([0.0], 2.0, 5.0, 0.5))
    p2 = N.gaussian_population(N.gaussian_bumps([1.0], 0.7, 2.0, 0.0), 0.5)
    j = N.joint_population(p1, p2)
    x = 0.4
    r = jnp.array([3.0, 1.2])
    assert float(j.log_prob(r, x)) == pytest.approx(float(p1.log_prob(r[:1], x) + p2.log_prob(r[1:], x)), rel=1e-6)
    assert float(j.fisher(x)) == pytest.approx(float(p1.fisher(x) + p2.fisher(x)), rel=1e-6)
    assert j.sample(key, x).shape == (2,)


def test_abs_response_density_integrates_to_one():
    pop = N.abs_response(N.gaussian_population(N.linear(1.0), 0.6))
    r = jnp.linspace(0.0, 8.0, 4001)
    dens = jnp.exp(jax.vmap(lambda ri: pop.log_prob(jnp.array([ri]), 0.3))(r))
    assert float(jnp.trapezoid(dens, r)) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(NotImplementedError, match="fisher"):
        pop.fisher(0.3)


def test_gradient_reaches_rate_parameters():
    pop = N.poisson_population(N.gaussian_bumps([0.0, 1.0], 0.5, 5.0, 0.3))
    g = jax.grad(lambda p: p.fisher_trace(0.2))(pop)
    centers_grad = g.rates.centers
    eps = 1e-3

    def at(c):
        return float(N.poisson_population(N.gaussian_bumps(jnp.array(c), 0.5, 5.0, 0.3)).fisher_trace(0.2))

    fd = (at([eps, 1.0]) - at([-eps, 1.0])) / (2 * eps)
    assert float(centers_grad[0]) == pytest.approx(fd, rel=1e-2)


def test_plain_function_rate_and_jit():
    pop = N.gaussian_population(lambda x: jnp.stack([jnp.sin(x), x**2]), 0.5)
    J = jax.jit(pop.fisher)(0.3)
    assert float(J) == pytest.approx((np.cos(0.3) ** 2 + (2 * 0.3) ** 2) / 0.25, rel=1e-5)


# ----------------------------------------------------------------------------- bad input


def test_negative_poisson_rate_is_rejected():
    pop = N.poisson_population(N.linear(1.0))
    with pytest.raises(ValueError, match="rate_fn.*non-negative"):
        pop.rate(-2.0)


def test_rate_function_wrong_shape_is_rejected():
    pop = N.poisson_population(lambda x: jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="rate_fn.*1-D"):
        pop.rate(0.0)


def test_bad_sigma_and_r_shape():
    with pytest.raises(ValueError, match="sigma"):
        N.gaussian_population(N.linear(1.0), -1.0)
    with pytest.raises(ValueError, match="sigma"):
        N.gaussian_population(N.linear(1.0), float("nan"))
    pop = N.gaussian_population(N.linear([1.0, 2.0]), 1.0)
    with pytest.raises(ValueError, match="r: expected shape"):
        pop.log_prob(jnp.ones(3), 0.0)
    with pytest.raises(TypeError, match="rate_fn"):
        N.poisson_population(3.0)


# ----------------------------------------------------------------------------- pytree structure


def test_population_is_an_encoder_and_gradient_has_its_structure():
    pop = N.gaussian_population(N.gaussian_bumps([0.0, 1.0], 0.5, 5.0, 0.3), 0.7)
    assert isinstance(pop, N.Encoder)
    g = jax.grad(lambda p: p.fisher_trace(0.2))(pop)
    # the gradient is a population whose rates ARE the rate model (no wrapper in between)
    assert type(g) is N.GaussianPopulation and type(g.rates) is N.GaussianBumps
    assert g.rates.centers.shape == (2,) and g.sigma.shape == ()
    # J = sum f'^2 / sigma^2, so dJ/dsigma = -2 J / sigma
    J = float(pop.fisher_trace(0.2))
    assert float(g.sigma) == pytest.approx(-2 * J / 0.7, rel=1e-5)
    # a plain function is static: only sigma is a leaf
    plain = N.gaussian_population(lambda x: jnp.stack([jnp.sin(x), x]), 0.5)
    assert len(jax.tree_util.tree_leaves(plain)) == 1
    assert jax.tree_util.tree_structure(plain) == jax.tree_util.tree_structure(plain.replace(sigma=jnp.array(2.0)))


def test_python_float_parameters_become_arrays_and_get_gradients():
    from flax import struct

    @struct.dataclass
    class Ramp:
        slope: float
        offset: float

        def __call__(self, x):
            return jnp.stack([self.offset + self.slope * x, self.offset - self.slope * x]) ** 2 + 1.0

    pop = N.poisson_population(Ramp(2.0, 0.5))
    assert isinstance(pop.rates.slope, jax.Array)  # converted at construction, not left static
    g = jax.grad(lambda p: p.fisher_trace(0.3))(pop)
    eps = 1e-3
    fd = (float(N.poisson_population(Ramp(2.0 + eps, 0.5)).fisher_trace(0.3))
          - float(N.poisson_population(Ramp(2.0 - eps, 0.5)).fisher_trace(0.3))) / (2 * eps)
    assert float(g.rates.slope) == pytest.approx(fd, rel=1e-2)
    assert float(g.rates.slope) != 0.0


def test_python_int_or_object_parameters_are_refused():
    from flax import struct

    @struct.dataclass
    class Step:
        threshold: int

        def __call__(self, x):
            return jnp.atleast_1d(jnp.where(x > self.threshold, 2.0, 1.0))

    with pytest.raises(TypeError, match=r"rate_fn: parameter \.threshold .*int"):
        N.poisson_population(Step(1))

    @struct.dataclass
    class Named:
        label: str

        def __call__(self, x):
            return jnp.ones(1)

    with pytest.raises(TypeError, match="rate_fn: parameter .label .*not an array"):
        N.gaussian_population(Named("a"), 1.0)
    with pytest.raises(TypeError, match="rate_fn: expected a rate model"):
        N.poisson_population(N.poisson_population(N.linear(1.0)))
