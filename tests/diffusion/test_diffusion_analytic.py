"""Schedules and the exact Gaussian-mixture denoisers against brute-force numerical integration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdecomp.diffusion import gaussian_denoiser, gmm_denoiser
from jaxdecomp.diffusion import schedules as S


def test_vp_ve_round_trip_and_noise_convention():
    x, eps, a = jnp.array([0.3, -1.2]), jnp.array([0.5, 2.0]), 1.7
    z = S.add_noise(x, eps, a)
    alpha, sigma = S.vp_coefficients(a)
    np.testing.assert_allclose(float(alpha**2 + sigma**2), 1.0, rtol=1e-6)
    g = S.variance_from_log_snr(a)
    np.testing.assert_allclose(S.to_variance_exploding(z, a), x + jnp.sqrt(g) * eps, rtol=1e-5)
    np.testing.assert_allclose(S.to_variance_preserving(S.to_variance_exploding(z, a), a), z, rtol=1e-6)
    # batched log-SNR broadcasts over the stimulus axes
    zb = S.add_noise(jnp.ones((3, 2, 2)), jnp.zeros((3, 2, 2)), jnp.array([-1.0, 0.0, 1.0]))
    np.testing.assert_allclose(zb[:, 0, 0], jnp.sqrt(jax.nn.sigmoid(jnp.array([-1.0, 0.0, 1.0]))), rtol=1e-6)


def test_ddpm_linear_table():
    s = S.ddpm_linear()
    assert s.alpha_bar.shape == (1000,)
    np.testing.assert_allclose(s.alpha_bar[0], 1 - 1e-4)
    np.testing.assert_allclose(s.alpha_bar[-1], np.prod(1 - np.linspace(1e-4, 0.02, 1000)), rtol=1e-10)
    np.testing.assert_allclose(s.variance, (1 - s.alpha_bar) / s.alpha_bar, rtol=1e-9)
    assert np.all(np.diff(s.log_snr) < 0)
    lv = S.paper_levels()
    assert lv.shape == (24,)
    np.testing.assert_allclose(lv[0], s.log_snr[39])
    with pytest.raises(ValueError, match="beta_min"):
        S.ddpm_linear(beta_min=0.1, beta_max=0.01)


def test_quadrature_and_truncated_logistic():
    a, w = S.gauss_legendre(-3.0, 5.0, 8)
    np.testing.assert_allclose(np.sum(w * a**7), (5.0**8 - 3.0**8) / 8, rtol=1e-12)
    lo, hi, loc, scale = -6.0, 9.0, 1.0, 2.0
    grid = np.linspace(lo, hi, 20001)
    pdf = np.exp(np.asarray(S.truncated_logistic_log_pdf(grid, lo, hi, loc, scale)))
    np.testing.assert_allclose(np.trapezoid(pdf, grid), 1.0, rtol=1e-6)
    # 10^6 draws: the mean's SE is sd/1000 = 0.0030 (sd = 3.03), so atol 0.02 is 6.6 SE; the
    # importance-sampling estimate's relative SE is 0.0012, so rtol 0.01 is 8.6 SE (both computed
    # by quadrature; with the former 2*10^5 draws the margins were only 2.9 and 3.8 SE)
    n = 1_000_000
    smp = np.asarray(S.truncated_logistic_sample(jax.random.PRNGKey(0), (n,), lo, hi, loc, scale), np.float64)
    assert smp.min() >= lo and smp.max() <= hi
    m_ref = np.trapezoid(pdf * grid, grid)
    sd_ref = np.sqrt(np.trapezoid(pdf * (grid - m_ref) ** 2, grid))
    assert 0.02 > 6.5 * sd_ref / np.sqrt(n)
    np.testing.assert_allclose(smp.mean(), m_ref, atol=0.02)
    # importance sampling integrates exp(-a^2/2) over [lo, hi] without bias
    lp = np.asarray(S.truncated_logistic_log_pdf(jnp.asarray(smp, jnp.float32), lo, hi, loc, scale), np.float64)
    wts = np.exp(-0.5 * smp**2 - lp)
    assert 0.01 * np.sqrt(2 * np.pi) > 5 * wts.std() / np.sqrt(n)
    np.testing.assert_allclose(wts.mean(), np.sqrt(2 * np.pi), rtol=0.01)
    with pytest.raises(ValueError, match="log-SNR range"):
        S.truncated_logistic_sample(jax.random.PRNGKey(0), (3,), 2.0, 1.0)


def _brute(prior_pdf, xs, x_g, g, lik=None):
    """Posterior mean, variance and fourth central moment by quadrature."""
    p = prior_pdf * np.exp(-((x_g - xs) ** 2) / (2 * g)) * (1 if lik is None else lik)
    p = p / p.sum()
    m = (p * xs).sum()
    return m, (p * (xs - m) ** 2).sum(), (p * (xs - m) ** 4).sum()


@pytest.mark.heavy
@pytest.mark.parametrize("a", [-4.0, 0.5, 4.0, 10.0])
def test_gmm_denoiser_matches_numerical_posterior(a):
    w, mu, var, A, sig = [0.3, 0.7], [[-1.0], [1.5]], [0.2, 0.5], [[1.0], [-0.5]], [0.4, 0.7]
    D = gmm_denoiser(w, mu, var, A, sig)
    xs = np.linspace(-8, 8, 200_001)
    prior = sum(wk * np.exp(-(xs - m[0]) ** 2 / (2 * v)) / np.sqrt(v) for wk, m, v in zip(w, mu, var))
    g, x_g, r = np.exp(-a), 0.7, np.array([0.3, -1.2])
    z = S.to_variance_preserving(jnp.array([x_g]), a)
    lik = np.exp(-sum((r[i] - A[i][0] * xs) ** 2 / (2 * sig[i] ** 2) for i in range(2)))
    # Exact posterior draws: n = 4*10^5 of them. SE of the sample mean sqrt(v/n); SE of the sample
    # variance v sqrt((kurtosis - 1)/n), kurtosis from quadrature (2.0 .. 3.74 here, so the relative
    # SE is <= 0.0026 and rtol 0.02 is >= 7.6 SE; with the former 10^5 draws it was 3.8 .. 6.3 SE).
    n = 400_000
    for given in (None, r):
        m, v, m4 = _brute(prior, xs, x_g, g, None if given is None else lik)
        rr = None if given is None else jnp.asarray(given)
        np.testing.assert_allclose(float(D(z, a, rr)[0]), (x_g - m) / np.sqrt(g), rtol=2e-4, atol=2e-5)
        np.testing.assert_allclose(float(D.posterior_mean(z, a, rr)[0]), m, rtol=1e-4, atol=1e-5)
        draws = jax.vmap(lambda k: D.posterior_sample(k, z, a, rr))(jax.random.split(jax.random.PRNGKey(1), n))
        draws = np.asarray(draws, np.float64)
        np.testing.assert_allclose(draws.mean(), m, atol=5 * np.sqrt(v / n) + 1e-5)
        se_var = v * np.sqrt((m4 / v**2 - 1) / n)
        assert 0.02 * v >= 5 * se_var, (v, se_var)
        np.testing.assert_allclose(draws.var(), v, rtol=0.02)
    # exact log p(r | x_g) by quadrature
    dx = xs[1] - xs[0]
    p_xg = (prior * np.exp(-((x_g - xs) ** 2) / (2 * g))).sum()
    p_joint = (prior * np.exp(-((x_g - xs) ** 2) / (2 * g)) * lik).sum() / (2 * np.pi * sig[0] * sig[1])
    ref = np.log(p_joint / p_xg)
    got = float(D.log_prob_response_given_blurred(jnp.asarray(r), jnp.array([x_g]), a))
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    assert dx > 0


@pytest.mark.heavy
def test_gaussian_denoiser_closed_form_and_mi():
    # d = 3 Gaussian prior N(m, diag(s)), r = A x + sigma n: MI = 1/2 log det(I + A S A^T / sigma^2)
    rng = np.random.default_rng(0)
    m, s, A, sig = rng.normal(size=3), np.array([0.5, 1.0, 2.0]), rng.normal(size=(2, 3)), 0.7
    D = gaussian_denoiser(m, s, A, sig)
    a, x_g = 0.3, jnp.asarray(rng.normal(size=3))
    g = np.exp(-a)
    eps = D(S.to_variance_preserving(x_g, a), a)
    np.testing.assert_allclose(eps, np.sqrt(g) * (np.asarray(x_g) - m) / (s + g), rtol=1e-4, atol=1e-6)
    truth = 0.5 * np.linalg.slogdet(np.eye(2) + A @ np.diag(s) @ A.T / sig**2)[1]
    # 8*10^5 pairs: half the SE of 2*10^5, so 5 SE (P = 6e-7) is a tighter bound than the former 4 SE
    mi = D.mutual_information(jax.random.PRNGKey(0), 800_000)
    est, se = mi.value, mi.stderr
    assert abs(est - truth) < 5 * se + 1e-4, (est, se, truth)
    x = D.prior_sample(jax.random.PRNGKey(1), 100_000)
    np.testing.assert_allclose(np.asarray(x.var(0)), s, rtol=0.03)


def test_gmm_denoiser_bad_input():
    with pytest.raises(ValueError, match="variances"):
        gmm_denoiser([0.5, 0.5], [[0.0], [1.0]], [1.0, -1.0])
    with pytest.raises(ValueError, match="sigma"):
        gmm_denoiser([1.0], [[0.0]], [1.0], A=[[1.0]])
    with pytest.raises(ValueError, match="sigma"):
        gmm_denoiser([1.0], [[0.0]], [1.0], A=[[1.0]], sigma=-1.0)
    with pytest.raises(ValueError, match="means"):
        gmm_denoiser([0.5, 0.5], [[0.0]], [1.0])
    with pytest.raises(ValueError, match="weights: contains NaN"):
        gmm_denoiser([np.nan, 0.5], [[0.0], [1.0]], [1.0, 1.0])
    D = gmm_denoiser([1.0], [[0.0, 0.0]], [1.0], A=[[1.0, 0.0]], sigma=1.0)
    with pytest.raises(ValueError, match="x_noisy"):
        D(jnp.zeros(3), 0.0)
    with pytest.raises(ValueError, match="r: expected a response of shape"):
        D(jnp.zeros(2), 0.0, jnp.zeros(2))
