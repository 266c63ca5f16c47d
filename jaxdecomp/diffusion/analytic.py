"""Exact denoisers: Gaussian-mixture prior with a linear-Gaussian population; grid prior with any population.

Prior ``p(x) = sum_k w_k N(x; mu_k, Sigma_k)`` on ``x in R^d`` (any stimulus shape,
flattened), population ``r = A x + s * noise`` with ``A: (n, d)`` and noise SDs ``s``.
Under this model ``p(x | x_g)``, ``p(x | x_g, r)`` and ``p(r | x_g)`` are Gaussian
mixtures, so both denoisers, exact posterior sampling and exact log densities are
closed form. These are the oracles every estimator and trained network is checked
against (``docs/ground_truth.md`` §3).

:func:`grid_denoiser` is the exact analogue for a discrete prior (masses on points, e.g. the
grid of :mod:`jaxdecomp.exact`) with ANY population that has a ``log_prob`` (Poisson, Gaussian,
...): the posteriors are categorical over the points, so both denoisers and exact posterior
sampling are sums over the points. It is differentiable in the population's parameters.

Numerics (no cancellation at small noise): with ``H_k = Sigma_k^{-1} + A^T S^{-1} A``
(``S = diag(s^2)``) and ``v_k = Sigma_k^{-1}(x_g - mu_k) + A^T S^{-1}(A x_g - r)``,
the component-wise noise prediction is ``eps_k = sqrt(g) (I + g H_k)^{-1} v_k``;
the unconditional one is the same with ``A = 0``. ``H_k`` and ``Sigma_k`` are
eigendecomposed once (float64, on the host), so one evaluation costs ``O(K d^2)``
(plus ``O(K n^3)`` for the component responsibilities given ``r``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.scipy.special import logsumexp

from jaxdecomp._checks import as_array, check_positive, is_concrete
from jaxdecomp._interfaces import Estimate
from jaxdecomp.diffusion.schedules import to_variance_exploding, variance_from_log_snr
from jaxdecomp.neurons import gaussian_population, linear

Array = Any

__all__ = ["GaussianMixtureDenoiser", "GridDenoiser", "gaussian_denoiser", "gmm_denoiser", "grid_denoiser"]


def _flatten_one(x, shape, name):
    """One stimulus of ``shape`` as a flat vector; a clear error naming ``name`` otherwise."""
    x = jnp.asarray(x)
    if x.shape != tuple(shape):
        raise ValueError(f"{name}: expected one stimulus of shape {tuple(shape)}, got {x.shape} "
                         "(batch with jax.vmap)")
    return jnp.reshape(x, (-1,))


@struct.dataclass
class GaussianMixtureDenoiser:
    """Exact noise-prediction denoiser ``eps_hat = D(x_noisy, log_snr, r)`` for a Gaussian-mixture prior.

    Build it with :func:`gmm_denoiser` or :func:`gaussian_denoiser`. Inputs follow the
    package convention (:mod:`jaxdecomp.diffusion.schedules`): ``x_noisy`` is the
    variance-preserving ``alpha x + sigma eps`` of ONE stimulus (shape ``self.shape``),
    ``log_snr`` a scalar, ``r`` a response ``(n,)`` or ``None``. Batch with ``jax.vmap``.
    """

    log_weights: Array      # (K,)
    means: Array            # (K, d)
    lam: Array              # (K, d) eigenvalues of Sigma_k
    U: Array                # (K, d, d) eigenvectors of Sigma_k (columns)
    A: Array                # (n, d) (n = 0 without a population)
    noise_sd: Array         # (n,)
    h: Array                # (K, d) eigenvalues of H_k
    Q: Array                # (K, d, d) eigenvectors of H_k
    AU: Array               # (K, n, d) = A U_k
    shape: tuple = struct.field(pytree_node=False, default=())

    # ----------------------------------------------------------------- basics
    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def n_neurons(self) -> int:
        return int(self.A.shape[0])

    @property
    def population(self):
        """The linear-Gaussian population ``r = A x + s * noise`` as a :mod:`jaxdecomp.neurons` population."""
        if self.n_neurons == 0:
            raise ValueError("this denoiser was built without a population (A=None)")
        return gaussian_population(linear(self.A), self.noise_sd)

    def _flat(self, x, name):
        return _flatten_one(x, self.shape, name)

    def _check_r(self, r):
        r = jnp.asarray(r)
        if self.n_neurons == 0:
            raise ValueError("r: this denoiser has no population (A=None), so it takes r=None only")
        if r.shape != (self.n_neurons,):
            raise ValueError(f"r: expected a response of shape ({self.n_neurons},), got {r.shape}")
        return r

    # ------------------------------------------------------- component terms
    def _prior_terms(self, x_g, g):
        """Per component: log N(x_g; mu_k, Sigma_k + g I) (no 2 pi), U_k^T (x_g - mu_k)."""
        y = jnp.einsum("kdj,kd->kj", self.U, x_g[None, :] - self.means)
        log_n = -0.5 * jnp.sum(y**2 / (self.lam + g) + jnp.log(self.lam + g), axis=1)
        return log_n, y

    def _response_terms(self, x_g, r, g, y):
        """Per component: log N(r; A m_k(x_g), A V_k A^T + S) (no 2 pi)."""
        shrink = self.lam / (self.lam + g)                         # (K, d)
        pred = self.A @ self.means.T                                # (n, K)
        pred = pred.T + jnp.einsum("knd,kd->kn", self.AU, shrink * y)
        cov = jnp.einsum("knd,kd,kmd->knm", self.AU, g * shrink, self.AU) + jnp.diag(self.noise_sd**2)[None]
        chol = jnp.linalg.cholesky(cov)
        resid = r[None, :] - pred
        white = jax.scipy.linalg.solve_triangular(chol, resid[..., None], lower=True)[..., 0]
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
        return -0.5 * (jnp.sum(white**2, axis=1) + logdet)

    def _posterior(self, x_noisy, log_snr, r):
        """Responsibilities (K,), component eps (K, d), x_g (d,), g."""
        g = variance_from_log_snr(jnp.asarray(log_snr, dtype=jnp.result_type(float)))
        x_g = to_variance_exploding(self._flat(x_noisy, "x_noisy"), log_snr)
        log_n, y = self._prior_terms(x_g, g)
        if r is None:
            eps_k = jnp.sqrt(g) * jnp.einsum("kdj,kj->kd", self.U, y / (self.lam + g))
            logits = self.log_weights + log_n
        else:
            r = self._check_r(r)
            s2 = self.noise_sd**2
            v = (jnp.einsum("kdj,kj->kd", self.U, y / self.lam)
                 + (self.A.T @ ((self.A @ x_g - r) / s2))[None, :])
            qv = jnp.einsum("kdj,kd->kj", self.Q, v)
            eps_k = jnp.sqrt(g) * jnp.einsum("kdj,kj->kd", self.Q, qv / (1.0 + g * self.h))
            logits = self.log_weights + log_n + self._response_terms(x_g, r, g, y)
        return jax.nn.softmax(logits), eps_k, x_g, g

    # --------------------------------------------------------------- public
    def __call__(self, x_noisy, log_snr, r=None):
        """Exact ``E[eps | x_noisy, r]`` (``r=None``: ``E[eps | x_noisy]``); shape of ``x_noisy``."""
        resp, eps_k, _, _ = self._posterior(x_noisy, log_snr, r)
        return jnp.reshape(resp @ eps_k, self.shape)

    def posterior_mean(self, x_noisy, log_snr, r=None):
        """Exact ``E[x | x_noisy(, r)]`` (Tweedie: ``x_g - sqrt(g) eps_hat``)."""
        resp, eps_k, x_g, g = self._posterior(x_noisy, log_snr, r)
        return jnp.reshape(x_g - jnp.sqrt(g) * (resp @ eps_k), self.shape)

    def posterior_sample(self, key, x_noisy, log_snr, r=None):
        """One exact draw from ``p(x | x_noisy)`` (or ``p(x | x_noisy, r)``); shape ``self.shape``."""
        resp, eps_k, x_g, g = self._posterior(x_noisy, log_snr, r)
        k_comp, k_noise = jax.random.split(key)
        k = jax.random.categorical(k_comp, jnp.log(resp))
        mean = x_g - jnp.sqrt(g) * eps_k[k]
        z = jax.random.normal(k_noise, (self.dim,), dtype=mean.dtype)
        if r is None:
            sd, vecs = jnp.sqrt(self.lam[k] * g / (self.lam[k] + g)), self.U[k]
        else:
            sd, vecs = jnp.sqrt(g / (1.0 + g * self.h[k])), self.Q[k]
        return jnp.reshape(mean + vecs @ (sd * z), self.shape)

    def prior_sample(self, key, n: int):
        """``n`` exact draws from the prior, shape ``(n, *self.shape)``."""
        k_comp, k_noise = jax.random.split(key)
        k = jax.random.categorical(k_comp, self.log_weights, shape=(n,))
        z = jax.random.normal(k_noise, (n, self.dim), dtype=self.means.dtype)
        x = self.means[k] + jnp.einsum("ndj,nj->nd", self.U[k], jnp.sqrt(self.lam[k]) * z)
        return jnp.reshape(x, (n,) + tuple(self.shape))

    def log_prob_response_given_blurred(self, r, x_g, log_snr):
        """Exact ``log p(r | x_g)`` for the blurred stimulus ``x_g = x + sqrt(g) eps`` (VE form).

        Differentiable in ``x_g``: its gradient is the score whose second moment is the
        Fisher information ``J(x_g)`` of ``docs/ilocal.md`` §3 (an oracle independent of
        the denoiser-difference formula).
        """
        g = variance_from_log_snr(jnp.asarray(log_snr, dtype=jnp.result_type(float)))
        x_g = self._flat(x_g, "x_g")
        r = self._check_r(r)
        log_n, y = self._prior_terms(x_g, g)
        joint = self.log_weights + log_n
        both = joint + self._response_terms(x_g, r, g, y)
        return logsumexp(both) - logsumexp(joint) - 0.5 * self.n_neurons * jnp.log(2 * jnp.pi)

    def log_prob_response(self, r):
        """Exact marginal ``log p(r) = log sum_k w_k N(r; A mu_k, A Sigma_k A^T + S)``."""
        r = self._check_r(r)
        pred = self.means @ self.A.T                                            # (K, n)
        cov = jnp.einsum("knd,kd,kmd->knm", self.AU, self.lam, self.AU) + jnp.diag(self.noise_sd**2)[None]
        chol = jnp.linalg.cholesky(cov)
        white = jax.scipy.linalg.solve_triangular(chol, (r[None, :] - pred)[..., None], lower=True)[..., 0]
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
        comp = self.log_weights - 0.5 * (jnp.sum(white**2, axis=1) + logdet)
        return logsumexp(comp) - 0.5 * self.n_neurons * jnp.log(2 * jnp.pi)

    def mutual_information(self, key, n_samples: int = 100_000, n_batches: int = 20) -> Estimate:
        """I(R;X) by Monte Carlo with exact log densities: ``E[log p(r|x) - log p(r)]``.

        Returns :class:`~jaxdecomp.estimate.Estimate` (``value``, ``stderr``: floats, nats), the
        error from ``n_batches`` independent batches of ``n_samples // n_batches`` pairs each.
        """
        pop = self.population
        per = max(int(n_samples) // int(n_batches), 1)

        @jax.jit
        def batch(k):
            kx, kr = jax.random.split(k)
            x = self.prior_sample(kx, per)
            r = jax.vmap(pop.sample)(jax.random.split(kr, per), x)
            lr = jax.vmap(pop.log_prob)(r, x) - jax.vmap(self.log_prob_response)(r)
            return jnp.mean(lr)

        vals = np.array([float(batch(k)) for k in jax.random.split(key, int(n_batches))])
        return Estimate(float(vals.mean()), float(vals.std(ddof=1) / np.sqrt(len(vals))))


def _covariances(variances, K: int, d: int) -> np.ndarray:
    v = as_array("variances", variances)
    if v.ndim == 0:
        v = np.full((K,), float(v))
    if v.shape == (K,):
        covs = v[:, None, None] * np.eye(d)[None]
    elif v.shape == (K, d):
        covs = v[:, :, None] * np.eye(d)[None]
    elif v.shape == (K, d, d):
        covs = v
    else:
        raise ValueError(f"variances: expected a scalar, ({K},), ({K}, {d}) or ({K}, {d}, {d}), got {v.shape}")
    if not np.allclose(covs, np.swapaxes(covs, 1, 2), atol=1e-10):
        raise ValueError("variances: covariance matrices must be symmetric")
    eig = np.linalg.eigvalsh(covs)
    if np.any(eig <= 0):
        raise ValueError(f"variances: covariances must be positive definite, got an eigenvalue {eig.min():.3g}")
    return covs


def gmm_denoiser(weights, means, variances, A=None, sigma=None, *, shape=None,
                 dtype=None) -> GaussianMixtureDenoiser:
    """Exact denoisers for a Gaussian-mixture prior and (optionally) a linear-Gaussian population.

    weights: (K,) non-negative, normalised here. means: (K, d) or (K, *shape).
    variances: scalar, (K,) isotropic, (K, d) diagonal or (K, d, d) full covariances.
    A: (n, d) population weights (``r = A x + sigma * noise``), or None for a prior-only
    denoiser. sigma: noise SD, scalar or (n,) (> 0). shape: the stimulus shape (default
    ``means.shape[1:]``). dtype: array dtype (default: JAX's float, float32 unless x64).
    """
    w = as_array("weights", weights, ndim=1)
    check_positive("weights", w, allow_zero=True)
    if w.sum() <= 0:
        raise ValueError("weights: must have a positive sum")
    w = w / w.sum()
    mu = as_array("means", means)
    if mu.ndim < 2 or mu.shape[0] != w.shape[0]:
        raise ValueError(f"means: expected shape ({w.shape[0]}, ...) matching weights, got {mu.shape}")
    shape = tuple(mu.shape[1:]) if shape is None else tuple(int(s) for s in shape)
    K = w.shape[0]
    mu = mu.reshape(K, -1)
    d = mu.shape[1]
    if int(np.prod(shape)) != d:
        raise ValueError(f"shape: {shape} does not hold the {d} numbers of each mean")
    covs = _covariances(variances, K, d)
    lam, U = np.linalg.eigh(covs)
    if A is None:
        if sigma is not None:
            raise ValueError("sigma: given without A (the population weights)")
        A_arr, sd = np.zeros((0, d)), np.zeros((0,))
    else:
        A_arr = as_array("A", A)
        A_arr = A_arr.reshape(-1, d) if A_arr.ndim != 2 else A_arr
        if A_arr.shape[1] != d:
            raise ValueError(f"A: expected shape (n, {d}), got {np.shape(A)}")
        if sigma is None:
            raise ValueError("sigma: the noise SD of the population is required with A")
        sd = as_array("sigma", sigma, ndim=(0, 1))
        check_positive("sigma", sd)
        if sd.ndim == 1 and sd.shape[0] not in (1, A_arr.shape[0]):
            raise ValueError(f"sigma: expected a scalar or one noise SD per neuron ({A_arr.shape[0]},) "
                             f"(A has {A_arr.shape[0]} rows), got shape {sd.shape}")
        sd = np.broadcast_to(sd, (A_arr.shape[0],)).astype(np.float64)
    prec = np.einsum("kij,kj,klj->kil", U, 1.0 / lam, U)
    H = prec + (A_arr.T / sd**2) @ A_arr if A_arr.shape[0] else prec
    h, Q = np.linalg.eigh(0.5 * (H + np.swapaxes(H, 1, 2)))
    AU = np.einsum("nd,kdj->knj", A_arr, U)
    dt = dtype or jnp.result_type(float)
    log_w = np.where(w > 0, np.log(np.maximum(w, 1e-300)), -np.inf)
    arr = lambda a: jnp.asarray(a, dtype=dt)  # noqa: E731
    return GaussianMixtureDenoiser(arr(log_w), arr(mu), arr(lam), arr(U), arr(A_arr), arr(sd),
                                   arr(h), arr(Q), arr(AU), shape=shape)


def gaussian_denoiser(mean, variance, A=None, sigma=None, **kw) -> GaussianMixtureDenoiser:
    """Exact denoisers for a Gaussian prior ``N(mean, variance)`` (a one-component mixture).

    mean: (d,) or a stimulus-shaped array; variance: scalar, (d,) diagonal or (d, d).
    """
    m = np.asarray(mean, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    return gmm_denoiser(np.ones(1), m[None], v[None] if v.ndim else v, A, sigma, **kw)


# ------------------------------------------------------------------ grid prior, any encoder
@struct.dataclass
class GridDenoiser:
    """Exact noise-prediction denoiser for a discrete prior ``p(x) = sum_j w_j delta(x - x_j)``.

    Build it with :func:`grid_denoiser`. With ``x_g = x + sqrt(g) eps`` the posteriors are
    categorical over the points: ``p(x_j | x_g) ∝ w_j N(x_g; x_j, g I)`` and
    ``p(x_j | x_g, r) ∝ w_j N(x_g; x_j, g I) p(r | x_j)``, so ``eps_hat = sum_j pi_j (x_g - x_j) / sqrt(g)``
    exactly (cost ``O(m d)`` per call, plus ``m`` evaluations of ``population.log_prob`` given
    ``r``). Inputs follow the package convention (VP ``x_noisy`` of ONE stimulus of shape
    ``self.shape``, scalar ``log_snr``, ``r`` of shape ``(n,)`` or ``None``); batch with ``jax.vmap``.

    A pytree: ``points``, ``log_weights`` and the population's parameters are leaves, so
    ``jax.grad`` reaches the population's parameters through the conditional denoiser (the
    estimators' gradients are unbiased in those; see :mod:`jaxdecomp.estimate` for the prior).

    As a stand-in for a continuous prior discretised on a grid of spacing ``h``, it is accurate
    for noise variances ``g`` above about ``h^2`` (below that the posterior collapses on the
    nearest point and the I_local integrand vanishes); the exact engine uses the same cut-off
    (``g_min = 0.75 h^2``) and covers ``[0, g_min]`` with the Fisher information. So compare with
    :func:`jaxdecomp.exact.ilocal` using levels that stop at ``log_snr = -log(0.75 h^2)`` and the
    estimator's exact Fisher tail.
    """

    points: Array           # (m, d)
    log_weights: Array      # (m,) log prior masses (normalised; -inf for zero mass)
    encoder: Any = None     # the encoder p(r | x), or None for a prior-only denoiser
    shape: tuple = struct.field(pytree_node=False, default=())

    @property
    def dim(self) -> int:
        return int(self.points.shape[1])

    @property
    def population(self):
        """The encoder ``p(r | x)`` this denoiser conditions on."""
        if self.encoder is None:
            raise ValueError("this denoiser was built without a population (population=None)")
        return self.encoder

    def _flat(self, x, name):
        return _flatten_one(x, self.shape, name)

    def log_likelihoods(self, r):
        """``log p(r | x_j)`` at every point, shape ``(m,)``."""
        if self.encoder is None:
            raise ValueError("r: this denoiser has no population (population=None), so it takes r=None only")
        pts = jnp.reshape(self.points, (-1,) + tuple(self.shape))
        return jax.vmap(lambda xj: self.encoder.log_prob(r, xj))(pts)

    def _logits(self, x_g, g, r):
        """Unnormalised log posterior over the points (m,) and the offsets ``x_g - x_j`` (m, d)."""
        diff = x_g[None, :] - self.points
        logits = self.log_weights - 0.5 * jnp.sum(diff**2, axis=1) / g
        if r is not None:
            logits = logits + self.log_likelihoods(jnp.asarray(r))
        return logits, diff

    def _posterior(self, x_noisy, log_snr, r):
        g = variance_from_log_snr(jnp.asarray(log_snr, dtype=self.points.dtype))
        x_g = to_variance_exploding(self._flat(x_noisy, "x_noisy"), log_snr).astype(self.points.dtype)
        logits, diff = self._logits(x_g, g, r)
        return logits, diff, x_g, g

    def __call__(self, x_noisy, log_snr, r=None):
        """Exact ``E[eps | x_noisy, r]`` (``r=None``: ``E[eps | x_noisy]``); shape of ``x_noisy``."""
        logits, diff, _, g = self._posterior(x_noisy, log_snr, r)
        return jnp.reshape(jax.nn.softmax(logits) @ diff / jnp.sqrt(g), self.shape)

    def posterior_mean(self, x_noisy, log_snr, r=None):
        """Exact ``E[x | x_noisy(, r)]``."""
        logits, diff, x_g, _ = self._posterior(x_noisy, log_snr, r)
        return jnp.reshape(x_g - jax.nn.softmax(logits) @ diff, self.shape)

    def posterior_sample(self, key, x_noisy, log_snr, r=None):
        """One exact draw from ``p(x | x_noisy)`` (or ``p(x | x_noisy, r)``): a grid point, shape ``self.shape``."""
        logits, _, _, _ = self._posterior(x_noisy, log_snr, r)
        j = jax.random.categorical(key, logits)
        return jnp.reshape(self.points[j], self.shape)

    def prior_sample(self, key, n: int):
        """``n`` exact draws from the prior, shape ``(n, *self.shape)``."""
        j = jax.random.categorical(key, self.log_weights, shape=(int(n),))
        return jnp.reshape(self.points[j], (int(n),) + tuple(self.shape))

    def log_prob_response_given_blurred(self, r, x_g, log_snr):
        """Exact ``log p(r | x_g) = log sum_j p(x_j | x_g) p(r | x_j)`` (VE ``x_g``); its gradient in
        ``x_g`` is the score whose second moment is ``J(x_g)``."""
        g = variance_from_log_snr(jnp.asarray(log_snr, dtype=self.points.dtype))
        prior, _ = self._logits(self._flat(x_g, "x_g").astype(self.points.dtype), g, None)
        return logsumexp(prior + self.log_likelihoods(jnp.asarray(r))) - logsumexp(prior)


def grid_denoiser(points, weights=None, population=None, *, shape=None, dtype=None) -> GridDenoiser:
    """Exact denoisers for a discrete prior on ``points`` with masses ``weights`` and any population.

    points: (m,) for scalar stimuli or (m, d) (or a :class:`jaxdecomp.exact.Grid`-like object with
    ``.points`` and ``.weights``; then the second positional argument may be the population).
    weights: (m,) non-negative masses, normalised here. population: an encoder with ``log_prob(r, x)``
    and ``sample(key, x)`` for one stimulus of shape ``shape`` (e.g. from :mod:`jaxdecomp.neurons`),
    or None for a prior-only denoiser. shape: the stimulus shape (default ``(d,)``; ``(1,)`` for
    scalar points). dtype: array dtype (default: JAX's float).

    Differentiable in the population's parameters (build it inside the function you differentiate).
    """
    if hasattr(points, "points") and hasattr(points, "weights"):
        if population is None and weights is not None and hasattr(weights, "log_prob"):
            population, weights = weights, None
        if weights is not None:
            raise ValueError("weights: given together with a grid (which has its own weights)")
        points, weights = points.points, points.weights
    if weights is None:
        raise ValueError("weights: the prior masses (m,) are required")
    if population is not None and not (callable(getattr(population, "log_prob", None))
                                       and callable(getattr(population, "sample", None))):
        raise TypeError(f"population: expected an encoder with log_prob(r, x) and sample(key, x), "
                        f"got {type(population).__name__}")
    dt = dtype or jnp.result_type(float)
    if is_concrete(points):
        pts = as_array("points", points, ndim=(1, 2))
    else:
        pts = jnp.asarray(points)
        if pts.ndim not in (1, 2):
            raise ValueError(f"points: expected an array with ndim in (1, 2), got shape {pts.shape}")
    pts = pts.reshape(pts.shape[0], -1)
    m, d = pts.shape
    if is_concrete(weights):
        w = as_array("weights", weights, ndim=1)
        if w.shape != (m,):
            raise ValueError(f"weights: expected shape ({m},) to match points, got {w.shape}")
        check_positive("weights", w, allow_zero=True)
        if w.sum() <= 0:
            raise ValueError("weights: must have a positive sum")
        log_w = np.where(w > 0, np.log(np.maximum(w / w.sum(), 1e-300)), -np.inf)
    else:
        w = jnp.asarray(weights)
        if w.shape != (m,):
            raise ValueError(f"weights: expected shape ({m},) to match points, got {w.shape}")
        log_w = jnp.log(w) - jnp.log(jnp.sum(w))
    shape = (d,) if shape is None else tuple(int(s) for s in shape)
    if int(np.prod(shape)) != d:
        raise ValueError(f"shape: {shape} does not hold the {d} numbers of each point")
    return GridDenoiser(jnp.asarray(pts, dtype=dt), jnp.asarray(log_w, dtype=dt), population, shape=shape)
