"""Ground-truth problems: a prior, an encoder, exact denoisers and exact (or exactly estimated) information.

Every task is an object with the same interface, used by the tests, the experiments, the notebooks
and the benchmarks (``docs/ground_truth.md``):

* ``task.stimulus_shape``: the shape ``S`` of ONE stimulus; ``task.n_neurons``;
* ``task.encoder``: the population ``p(r | x)`` (a :mod:`jaxdecomp.neurons` encoder);
* ``task.denoiser``: the EXACT denoiser ``eps_hat = denoiser(x_noisy, log_snr, r)`` of the task's
  prior (with an exact ``posterior_sample``), usable wherever a trained network is;
* ``task.sample_prior(key, n) -> x (n, *S)`` and ``task.sample(key, n) -> (x, r)``: exact draws;
* ``task.mutual_information(key, ...) -> Estimate``: I(R;X) in nats with its standard error
  (0 where it is exact);
* ``task.ilocal(key, x, ...) -> MapResult``: the true I_local map of one stimulus ``x (*S)`` or a
  batch ``(B, *S)``: closed form (Gaussian), exact grid engine (grids), or the diffusion estimator
  with exact denoisers and exact posterior sampling (mixtures, discrete priors), with its standard
  error; ``task.ilocal_estimate(key, x, ...)`` is always the estimator with the exact denoisers;
* ``task.completeness(key, ...)``: the prior mean of I_local against I(R;X), with their errors.

Tasks (constructors):

* :func:`gaussian` / :func:`gaussian_linear` (:class:`GaussianTask`): Gaussian prior ``N(m, S)`` and
  ``r = A x + sigma n`` in any dimension. ``I(R;X) = 1/2 log det(I + A S A^T / sigma^2)`` and
  ``I_local(x) = I(R;X)`` at every ``x``; the pixel split is the diagonal of the (constant) I_local
  tensor ``G = 1/2 int J(g) dg`` (§7), computed once by quadrature of exact matrices.
* :func:`gaussian_mixture` (:class:`GaussianMixtureTask`): Gaussian-mixture prior, same encoder;
  exact denoisers and posterior sampling (:func:`jaxdecomp.diffusion.gmm_denoiser`), MI by Monte
  Carlo with exact log densities, I_local by the estimator with exact denoisers.
  :func:`digits_mixture` is the digit-fitted 10-component mixture with 49 linear-Gaussian
  receptive-field neurons of the image experiments.
* :func:`on_grid` (:class:`GridTask`): a 1-D or 2-D grid prior (:class:`jaxdecomp.exact.Grid`) with
  ANY encoder; every measure exactly (:mod:`jaxdecomp.exact`).
* :func:`empirical` (:class:`EmpiricalTask`): a discrete prior on stored stimuli with ANY encoder;
  denoisers and posterior sampling exact by sums over the stimuli
  (:func:`jaxdecomp.diffusion.grid_denoiser`); MI by stratified Monte Carlo over responses with the
  exact ``p(r) = sum_j w_j p(r | x_j)``. :func:`digits_lnp` is the paper's 49-neuron LNP Poisson
  population on the bundled digits: exact truth for the paper's setting with an empirical prior.

Keys come first; everything that draws or evaluates on device is pure JAX (``sample_prior``,
``sample``, the denoisers, :meth:`GaussianMixtureTask.log_prob_prior`).
"""

from __future__ import annotations

import abc
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdecomp import estimate as _estimate
from jaxdecomp import exact as _exact
from jaxdecomp._checks import as_array, check_positive
from jaxdecomp._interfaces import Estimate, MapResult
from jaxdecomp.diffusion import gmm_denoiser, grid_denoiser
from jaxdecomp.diffusion.schedules import Levels
from jaxdecomp.diffusion.schedules import levels as make_levels
from jaxdecomp.exact._grid import axes_of

Array = Any

__all__ = [
    "EmpiricalTask",
    "GaussianMixtureTask",
    "GaussianTask",
    "GridTask",
    "Task",
    "digits_lnp",
    "digits_mixture",
    "empirical",
    "gaussian",
    "gaussian_linear",
    "gaussian_mixture",
    "on_grid",
]


# ----------------------------------------------------------------------------- validation
def _check_key(key, name: str = "key"):
    """A PRNG key (raw uint32 ``(2,)`` or a typed key); returned unchanged."""
    if isinstance(key, jax.core.Tracer):
        return key
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"{name}: expected one PRNG key, got a key array of shape {key.shape}")
        return key
    arr = np.asarray(key) if isinstance(key, (jax.Array, np.ndarray)) else None
    if arr is None or arr.dtype != np.uint32 or arr.shape != (2,):
        got = f"{type(key).__name__}" if arr is None else f"dtype {arr.dtype}, shape {arr.shape}"
        raise TypeError(f"{name}: expected a PRNG key from jax.random.PRNGKey / jax.random.key, got {got}")
    return key


def _check_count(name: str, n, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {n!r}")
    return int(n)


def _check_encoder(encoder, need_log_prob: bool = True):
    needed = ("sample", "log_prob") if need_log_prob else ("sample",)
    missing = [m for m in needed if not callable(getattr(encoder, m, None))]
    if missing:
        raise TypeError(f"encoder: expected a jaxdecomp.neurons encoder with {' and '.join(needed)}; "
                        f"{type(encoder).__name__} lacks {', '.join(missing)}")
    return encoder


def _check_stimuli(x, shape: tuple, name: str = "x"):
    """Validated stimuli: ``(array, batched)`` for one stimulus of ``shape`` or a batch ``(B, *shape)``."""
    if isinstance(x, jax.core.Tracer):
        arr = x
    else:
        try:
            host = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name}: expected a numeric array, got {type(x).__name__}") from err
        if host.size == 0:
            raise ValueError(f"{name}: expected a non-empty array, got shape {host.shape}")
        if not np.all(np.isfinite(host)):
            raise ValueError(f"{name}: contains NaN or infinite values")
        arr = jnp.asarray(x, dtype=jnp.result_type(float))
    if tuple(arr.shape) == tuple(shape):
        return arr, False
    if arr.ndim == len(shape) + 1 and tuple(arr.shape[1:]) == tuple(shape):
        return arr, True
    raise ValueError(f"{name}: expected one stimulus of shape {tuple(shape)} or a batch (B, *{tuple(shape)}), "
                     f"got {tuple(arr.shape)}")


def _as_estimate(result) -> Estimate:
    """``Estimate`` from an Estimate-like object or a ``(value, stderr)`` pair."""
    if hasattr(result, "value") and hasattr(result, "stderr"):
        return Estimate(value=float(result.value), stderr=float(result.stderr))
    value, stderr = result
    return Estimate(value=float(value), stderr=float(stderr))


# ----------------------------------------------------------------------------- the interface
class Task(abc.ABC):
    """A ground-truth problem (abstract). See the module docstring for the interface."""

    name: str = "task"
    encoder: Any
    denoiser: Any

    @property
    @abc.abstractmethod
    def stimulus_shape(self) -> tuple:
        """Shape of ONE stimulus."""

    @property
    def n_neurons(self) -> int:
        """Number of neurons of the encoder."""
        x = jnp.zeros(self.stimulus_shape, jnp.result_type(float))
        return int(jax.eval_shape(self.encoder.sample, jax.random.PRNGKey(0), x).shape[0])

    @abc.abstractmethod
    def sample_prior(self, key, n: int):
        """``n`` exact draws from the prior, shape ``(n, *stimulus_shape)``."""

    def sample(self, key, n: int):
        """``n`` exact pairs ``(x, r) ~ p(x) p(r | x)``: ``x (n, *S)``, ``r (n, n_neurons)``."""
        key = _check_key(key)
        n = _check_count("n", n)
        kx, kr = jax.random.split(key)
        x = self.sample_prior(kx, n)
        r = jax.vmap(self.encoder.sample)(jax.random.split(kr, n), x)
        return x, r

    @abc.abstractmethod
    def mutual_information(self, key=None, **kw) -> Estimate:
        """I(R;X) in nats with its standard error (0 where exact)."""

    @abc.abstractmethod
    def ilocal(self, key, x, **kw) -> MapResult:
        """The true I_local map of one stimulus or a batch (see the module docstring)."""

    # defaults of the estimator with this task's exact denoisers (subclasses adjust them)
    def _estimator_defaults(self) -> dict:
        return dict(response_sampler="posterior_sample", n_samples=256)

    def ilocal_estimate(self, key, x, **kw) -> MapResult:
        """:func:`jaxdecomp.estimate.ilocal` with the task's exact denoisers (exact posterior sampling
        by default); keyword arguments go to the estimator."""
        key = _check_key(key)
        _check_stimuli(x, self.stimulus_shape)
        opts = {**self._estimator_defaults(), **kw}
        return _estimate.ilocal(key, self.denoiser, self.encoder, x, **opts)

    def completeness(self, key, n_stimuli: int = 256, *, mi_kw=None, **ilocal_kw) -> dict:
        """Completeness ``E_{p(x)}[I_local(x)] = I(R;X)`` checked on this task.

        I_local (:meth:`ilocal`, keyword arguments ``ilocal_kw``) at ``n_stimuli`` prior draws; its mean
        has standard error ``std / sqrt(n)`` (prior sampling and the estimator's noise together).
        Returns ``dict(mean_ilocal=Estimate, mutual_information=Estimate, difference=Estimate, z=float)``
        where ``z`` is the difference over its combined standard error (NaN when both are exact).
        """
        key = _check_key(key)
        n_stimuli = _check_count("n_stimuli", n_stimuli, 2)
        kx, ki, km = jax.random.split(key, 3)
        x = self.sample_prior(kx, n_stimuli)
        totals = np.asarray(self.ilocal(ki, x, **ilocal_kw).total, dtype=np.float64)
        mean = Estimate(value=float(totals.mean()), stderr=float(totals.std(ddof=1) / np.sqrt(n_stimuli)))
        return _completeness_summary(mean, self.mutual_information(km, **(mi_kw or {})))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, stimulus_shape={self.stimulus_shape})"


def _completeness_summary(mean: Estimate, mi: Estimate) -> dict:
    diff = mean.value - mi.value
    se = math.hypot(mean.stderr, mi.stderr)
    return dict(mean_ilocal=mean, mutual_information=mi, difference=Estimate(value=diff, stderr=se),
                z=diff / se if se > 0 else float("nan"))


# ----------------------------------------------------------------------------- Gaussian mixtures
class GaussianMixtureTask(Task):
    """Gaussian-mixture prior with a linear-Gaussian encoder ``r = A x + sigma n`` (any dimension).

    Build it with :func:`gaussian_mixture` or :func:`digits_mixture`. ``denoiser`` is the exact
    :class:`jaxdecomp.diffusion.GaussianMixtureDenoiser` (its ``population`` is ``encoder``).
    """

    def __init__(self, denoiser, name: str = "gaussian_mixture", *, A=None, noise_sd=None):
        if not hasattr(denoiser, "log_prob_response"):
            raise TypeError(f"denoiser: expected a GaussianMixtureDenoiser (from gmm_denoiser), "
                            f"got {type(denoiser).__name__}")
        if denoiser.n_neurons == 0:
            raise ValueError("denoiser: built without a population (A=None); a task needs an encoder")
        self.denoiser = denoiser
        self.encoder = denoiser.population
        self.name = str(name)
        # float64 copies of the encoder (the denoiser holds its dtype, float32 by default)
        n, d = denoiser.A.shape
        self._A = np.asarray(denoiser.A if A is None else A, np.float64).reshape(n, d)
        self._noise_sd = np.broadcast_to(np.asarray(denoiser.noise_sd if noise_sd is None else noise_sd,
                                                    np.float64), (n,)).copy()

    @property
    def stimulus_shape(self) -> tuple:
        return tuple(self.denoiser.shape)

    @property
    def n_neurons(self) -> int:
        return int(self.denoiser.n_neurons)

    @property
    def A(self) -> np.ndarray:
        """The encoder's weights ``(n, d)`` (stimuli flattened), float64."""
        return self._A.copy()

    @property
    def noise_sd(self) -> np.ndarray:
        """The encoder's noise SDs ``(n,)``, float64."""
        return self._noise_sd.copy()

    def sample_prior(self, key, n: int):
        return self.denoiser.prior_sample(_check_key(key), _check_count("n", n))

    def log_prob_prior(self, x):
        """Exact ``log p(x)`` of ONE stimulus (shape ``stimulus_shape``); pure JAX, differentiable."""
        D = self.denoiser
        x = jnp.reshape(x, (-1,))
        y = jnp.einsum("kdj,kd->kj", D.U, x[None, :] - D.means)
        log_n = -0.5 * jnp.sum(y**2 / D.lam + jnp.log(D.lam), axis=1)
        return jax.nn.logsumexp(D.log_weights + log_n) - 0.5 * x.size * jnp.log(2 * jnp.pi)

    def mutual_information(self, key=None, n_samples: int = 100_000, n_batches: int = 20) -> Estimate:
        """I(R;X) by Monte Carlo with exact log densities, ``E[log p(r|x) - log p(r)]``, with the
        standard error over ``n_batches`` independent batches."""
        key = _check_key(jax.random.PRNGKey(0) if key is None else key)
        n_samples = _check_count("n_samples", n_samples, 2)
        n_batches = _check_count("n_batches", n_batches, 2)
        return _as_estimate(self.denoiser.mutual_information(key, n_samples, n_batches))

    def ilocal(self, key, x, **kw) -> MapResult:
        """I_local by the estimator with the exact denoisers and exact posterior sampling
        (``n_samples=256`` per level unless given; keyword arguments go to
        :func:`jaxdecomp.estimate.ilocal`). Unbiased up to the log-SNR quadrature."""
        return self.ilocal_estimate(key, x, **kw)


class GaussianTask(GaussianMixtureTask):
    """Gaussian prior ``N(mean, cov)`` with ``r = A x + sigma n``: everything in closed form.

    ``I(R;X) = 1/2 [log det(A S A^T + C) - log det C]`` (``C = diag(sigma^2)``), and
    ``I_local(x) = I(R;X)`` at every ``x``. The pixel split is the diagonal of the I_local tensor
    ``G = 1/2 int_0^inf M_g A^T C_g^{-1} A M_g dg`` (``M_g = S (S + g I)^{-1}``,
    ``C_g = A (S - M_g S) A^T + C``; ``docs/ilocal.md`` §8), the same at every ``x``: computed once in
    float64 by composite Gauss-Legendre quadrature in ``log g`` (6 nodes per unit) over the range
    where the integrand lives, plus the exact first-order tails. Its trace matches the closed-form MI
    to about 1e-10 relative.
    """

    def __init__(self, denoiser, name: str = "gaussian", *, cov=None, A=None, noise_sd=None):
        super().__init__(denoiser, name, A=A, noise_sd=noise_sd)
        if int(denoiser.means.shape[0]) != 1:
            raise ValueError(f"denoiser: a Gaussian task needs a one-component prior, got {denoiser.means.shape[0]}")
        if cov is None:
            lam, U = np.asarray(denoiser.lam[0], np.float64), np.asarray(denoiser.U[0], np.float64)
            cov = (U * lam) @ U.T
        self._cov = np.asarray(cov, np.float64)
        self._G = None

    @property
    def covariance(self) -> np.ndarray:
        """Prior covariance ``(d, d)``, float64."""
        return self._cov.copy()

    def exact_mutual_information(self) -> float:
        """Closed-form I(R;X) in nats."""
        A, s2 = self.A, self.noise_sd**2
        M = (A @ self.covariance @ A.T) / np.sqrt(s2)[:, None] / np.sqrt(s2)[None, :]
        return 0.5 * float(np.linalg.slogdet(np.eye(A.shape[0]) + M)[1])

    def mutual_information(self, key=None, **kw) -> Estimate:
        """Closed-form I(R;X) (standard error 0); ``key`` and options are accepted and ignored."""
        if key is not None:
            _check_key(key)
        return Estimate(value=self.exact_mutual_information(), stderr=0.0)

    def ilocal_tensor(self) -> np.ndarray:
        """The I_local tensor ``G (d, d)`` (constant in ``x``; stimuli flattened), float64."""
        if self._G is None:
            lam, U = np.linalg.eigh(self._cov)
            self._G = _gaussian_ilocal_tensor(lam, U, self.A, self.noise_sd**2)
        return self._G

    def ilocal(self, key, x, **kw) -> MapResult:
        """Exact I_local: ``map`` = diag of :meth:`ilocal_tensor` (shape of ``x``), ``total`` = its
        trace (= I(R;X)), ``stderr`` = 0, the same for every stimulus. ``key`` may be None."""
        if kw:
            raise TypeError(f"GaussianTask.ilocal: unexpected keyword arguments {sorted(kw)} (the result is "
                            "closed form; use ilocal_estimate for the estimator)")
        if key is not None:
            _check_key(key)
        x, batched = _check_stimuli(x, self.stimulus_shape)
        diag = np.diag(self.ilocal_tensor())
        m = jnp.asarray(diag.reshape(self.stimulus_shape), x.dtype)
        total = jnp.asarray(diag.sum(), x.dtype)
        if batched:
            b = x.shape[0]
            return MapResult(jnp.broadcast_to(m, (b,) + m.shape), jnp.full((b,), total), jnp.zeros((b,), x.dtype))
        return MapResult(m, total, jnp.zeros((), x.dtype))


def _gaussian_ilocal_tensor(lam, U, A, noise_var, nodes_per_unit: int = 6) -> np.ndarray:
    """``G = 1/2 int_0^inf J(g) dg`` for the prior ``N(., U diag(lam) U^T)`` and ``r = A x + noise``.

    In the prior's eigenbasis (``B = A U``): ``J(g) = diag(m) B^T C_g^{-1} B diag(m)`` with
    ``m = lam / (lam + g)`` and ``C_g = B diag(g m) B^T + diag(noise_var)``. Integrated over
    ``t = log g`` (``dg = g dt``) on ``[log g_lo, log g_hi]`` with composite Gauss-Legendre; below
    ``g_lo`` ``J ~ J(0)`` (tail ``g_lo J(0) / 2``), above ``g_hi`` ``J ~ diag(lam) B^T C_inf^{-1} B diag(lam) / g^2``
    (tail ``... / (2 g_hi)``); both relative errors are ``O(1e-8)``.
    """
    B = A @ U                                                     # (n, d)
    prec_noise = 1.0 / noise_var
    J0 = (B.T * prec_noise) @ B
    j0_max = float(np.linalg.eigvalsh(J0).max()) if J0.size else 0.0
    scales = [lam.min(), lam.max()] + ([1.0 / j0_max] if j0_max > 0 else [])
    g_lo, g_hi = 1e-8 * min(scales), 1e8 * max(scales)
    t_lo, t_hi = np.log(g_lo), np.log(g_hi)
    panels = int(np.ceil(t_hi - t_lo))
    tn, wn = np.polynomial.legendre.leggauss(int(nodes_per_unit))
    edges = np.linspace(t_lo, t_hi, panels + 1)
    half = 0.5 * np.diff(edges)
    t = (edges[:-1, None] + half[:, None] * (tn[None, :] + 1.0)).ravel()
    w = (half[:, None] * wn[None, :]).ravel()
    K = np.zeros((lam.size, lam.size))
    for ti, wi in zip(t, w):
        g = np.exp(ti)
        m = lam / (lam + g)
        C = (B * (g * m)) @ B.T + np.diag(noise_var)
        Bm = B * m
        K += (wi * g) * (Bm.T @ np.linalg.solve(C, Bm))
    C_inf = (B * lam) @ B.T + np.diag(noise_var)
    Bl = B * lam
    K += g_lo * J0 + (Bl.T @ np.linalg.solve(C_inf, Bl)) / g_hi
    G = 0.5 * (U @ K @ U.T)
    return 0.5 * (G + G.T)


def _encoder_arrays(A, sigma, d):
    A_arr = as_array("A", A)
    if A_arr.ndim == 1 and d == 1:
        A_arr = A_arr[:, None]
    if A_arr.ndim != 2:
        A_arr = A_arr.reshape(A_arr.shape[0], -1)
    if A_arr.shape[1] != d:
        raise ValueError(f"A: expected shape (n_neurons, {d}) for stimuli of {d} numbers, got {np.shape(A)}")
    sd = as_array("sigma", sigma, ndim=(0, 1))
    check_positive("sigma", sd)
    if sd.ndim == 1 and sd.shape != (A_arr.shape[0],):
        raise ValueError(f"sigma: expected a scalar or ({A_arr.shape[0]},) noise SDs, got {sd.shape}")
    return A_arr, sd


def gaussian_mixture(weights, means, covariances, A, sigma, *, shape=None, name: str = "gaussian_mixture",
                     dtype=None) -> GaussianMixtureTask:
    """Gaussian-mixture prior ``sum_k w_k N(mu_k, Sigma_k)`` with ``r = A x + sigma n``.

    weights: (K,); means: (K, d) or (K, *shape); covariances: scalar, (K,) isotropic, (K, d) diagonal
    or (K, d, d); A: (n, d) (stimuli flattened); sigma: scalar or (n,) noise SDs (> 0); shape: the
    stimulus shape (default ``means.shape[1:]``). Validation as in :func:`jaxdecomp.diffusion.gmm_denoiser`.
    """
    mu = as_array("means", means)
    if mu.ndim < 2:
        raise ValueError(f"means: expected (K, d) or (K, *shape), got shape {mu.shape}")
    A_arr, sd = _encoder_arrays(A, sigma, int(np.prod(mu.shape[1:])))
    D = gmm_denoiser(weights, mu, covariances, A_arr, sd, shape=shape, dtype=dtype)
    return GaussianMixtureTask(D, name, A=A_arr, noise_sd=sd)


def gaussian(mean, cov, A, sigma, *, shape=None, name: str = "gaussian", dtype=None) -> GaussianTask:
    """Gaussian prior ``N(mean, cov)`` with ``r = A x + sigma n`` (closed forms: :class:`GaussianTask`).

    mean: (d,) or stimulus-shaped; cov: scalar (isotropic), (d,) diagonal or (d, d); A: (n, d);
    sigma: scalar or (n,) (> 0).
    """
    m = as_array("mean", mean)
    m = m.reshape(1) if m.ndim == 0 else m
    d = int(m.size)
    c = as_array("cov", cov)
    if c.ndim == 0:
        c = np.full((d,), float(c))
    if c.shape not in ((d,), (d, d)):
        raise ValueError(f"cov: expected a scalar, ({d},) or ({d}, {d}), got {c.shape}")
    A_arr, sd = _encoder_arrays(A, sigma, d)
    shape = tuple(m.shape) if shape is None else shape
    D = gmm_denoiser(np.ones(1), m.reshape(1, d), c[None], A_arr, sd, shape=shape, dtype=dtype)
    return GaussianTask(D, name, cov=np.diag(c) if c.ndim == 1 else c, A=A_arr, noise_sd=sd)


def gaussian_linear(dim: int = 3, n_neurons: int = 2, *, prior_var: float = 1.0, sigma: float = 0.5,
                    weight_scale: float = 0.7, seed: int = 0) -> GaussianTask:
    """A standard Gaussian task: prior ``N(0, prior_var I_dim)``, ``A`` with i.i.d. ``N(0, weight_scale^2)``
    entries (``np.random.default_rng(seed)``), noise SD ``sigma``."""
    dim = _check_count("dim", dim)
    n_neurons = _check_count("n_neurons", n_neurons)
    for nm, v in (("prior_var", prior_var), ("sigma", sigma), ("weight_scale", weight_scale)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{nm}: expected a positive number, got {v!r}")
    A = np.random.default_rng(seed).normal(size=(n_neurons, dim)) * weight_scale
    return gaussian(np.zeros(dim), np.full(dim, float(prior_var)), A, sigma, name=f"gaussian_linear_d{dim}")


@functools.lru_cache(maxsize=8)
def _fitted_digit_mixture(size: int, n_components: int, reg_covar: float, seed: int):
    from sklearn.mixture import GaussianMixture

    from jaxdecomp import data

    x = np.asarray(data.digits(size), dtype=np.float64).reshape(-1, size * size)
    gm = GaussianMixture(n_components, covariance_type="full", reg_covar=reg_covar, random_state=seed).fit(x)
    return gm.weights_.copy(), gm.means_.copy(), gm.covariances_.copy()


def digit_rf_weights(size: int, rf_sigma: float = 0.2, gain: float = 3.0) -> np.ndarray:
    """Gaussian receptive fields on the 7x7 lattice, ``(49, size*size)``, each row summing to ``gain``
    (the linear-Gaussian neurons of :func:`digits_mixture`)."""
    from jaxdecomp.neurons import gaussian_rf_weights, lattice_centers

    w = gaussian_rf_weights((size, size), lattice_centers(), rf_sigma, scale=False)
    return w / w.sum(1, keepdims=True) * gain


def digits_mixture(size: int = 8, n_components: int = 10, noise_sd: float = 0.5, *, rf_sigma: float = 0.2,
                   gain: float = 3.0, reg_covar: float = 1e-2, seed: int = 0) -> GaussianMixtureTask:
    """The digit-fitted image problem: a ``n_components`` full-covariance Gaussian mixture fitted
    (scikit-learn, ``random_state=seed``) to the bundled digits at ``size x size``, with 49
    linear-Gaussian neurons (:func:`digit_rf_weights`, noise SD ``noise_sd``). Exact denoisers and
    posterior sampling; the setting of ``experiments/image_truth.py`` and its followers. The fit is
    cached per ``(size, n_components, reg_covar, seed)``."""
    size = _check_count("size", size, 8)
    n_components = _check_count("n_components", n_components)
    if not (np.isfinite(noise_sd) and noise_sd > 0):
        raise ValueError(f"noise_sd: expected a positive number, got {noise_sd!r}")
    w, means, covs = _fitted_digit_mixture(size, n_components, float(reg_covar), int(seed))
    A = digit_rf_weights(size, rf_sigma, gain)
    D = gmm_denoiser(w, means.reshape(n_components, size, size), covs, A, noise_sd)
    return GaussianMixtureTask(D, f"digits_mixture_{size}", A=A, noise_sd=noise_sd)


# ----------------------------------------------------------------------------- grids
class GridTask(Task):
    """A 1-D or 2-D grid prior (:class:`jaxdecomp.exact.Grid`) with ANY encoder: every measure exact.

    Build it with :func:`on_grid`. Stimuli have shape ``(1,)`` (1-D) or ``(2,)`` (2-D). The exact
    measures live on the grid points (:meth:`measures`, :meth:`ilocal_on_grid`); :meth:`ilocal` at
    other stimuli interpolates them (linear in 1-D, bilinear on the 2-D tensor grid). ``denoiser``
    is :func:`jaxdecomp.diffusion.grid_denoiser` on the same grid: exact for the discrete grid prior,
    which matches the engine for noise variances above ``g_min = 0.75 h^2`` (h: grid spacing), so
    :meth:`ilocal_estimate` stops its levels at ``log_snr = -log g_min`` and adds the exact Fisher tail.
    """

    def __init__(self, grid, encoder, name: str = "grid", **options):
        if not isinstance(grid, _exact.Grid):
            raise TypeError(f"grid: expected a jaxdecomp.exact.Grid, got {type(grid).__name__}")
        self.grid = grid
        self.encoder = _check_encoder(encoder)
        self.options = dict(options)
        self.name = str(name)
        self.denoiser = grid_denoiser(grid, encoder)
        self._cache: dict = {}

    @property
    def stimulus_shape(self) -> tuple:
        return (int(self.grid.ndim),)

    @property
    def points(self) -> np.ndarray:
        """Grid points as ``(m, d)``."""
        return np.asarray(self.grid.points, np.float64).reshape(self.grid.size, -1)

    def sample_prior(self, key, n: int):
        """``n`` draws of grid points from the grid's masses, shape ``(n, d)``."""
        return self.denoiser.prior_sample(_check_key(key), _check_count("n", n))

    def measures(self) -> dict:
        """Every measure of :func:`jaxdecomp.exact.all_measures` (numpy arrays; cached)."""
        if "all" not in self._cache:
            self._cache["all"] = {k: np.asarray(v) for k, v in _exact.all_measures(self.grid, self.encoder,
                                                                                   **self.options).items()}
        return self._cache["all"]

    def ilocal_on_grid(self, per_dim: bool = False) -> np.ndarray:
        """Exact I_local at the grid points: ``(m,)``, or ``(m, d)`` per stimulus dimension."""
        if "ilocal" not in self._cache:
            v = np.asarray(_exact.ilocal(self.grid, self.encoder, per_dim=True, **self.options), np.float64)
            self._cache["ilocal"] = v.reshape(self.grid.size, -1)
        v = self._cache["ilocal"]
        return v if per_dim else v.sum(1)

    def mutual_information(self, key=None, **cells) -> Estimate:
        """Exact I(R;X) on the grid (standard error 0); ``key`` is accepted and ignored."""
        if key is not None:
            _check_key(key)
        opts = {k: v for k, v in {**self.options, **cells}.items() if k not in _exact.Integral._fields}
        cache_key = ("mi",) + tuple(sorted(opts.items()))
        if cache_key not in self._cache:
            self._cache[cache_key] = float(_exact.mutual_information(self.grid, self.encoder, **opts))
        return Estimate(value=self._cache[cache_key], stderr=0.0)

    def _check_inside(self, x) -> None:
        axes = axes_of(self.points)
        lo = np.array([a[0] for a in axes])
        hi = np.array([a[-1] for a in axes])
        tol = 1e-9 * (hi - lo)
        if np.any(x < lo - tol) or np.any(x > hi + tol):
            raise ValueError(f"x: stimuli must lie inside the grid's range {lo.tolist()} .. {hi.tolist()}")

    def _interpolate(self, values, x) -> np.ndarray:
        """``values (m, c)`` on the grid, interpolated at stimuli ``x (B, d)`` -> ``(B, c)``."""
        self._check_inside(x)
        axes = axes_of(self.points)
        if len(axes) == 1:
            order = np.argsort(self.points[:, 0])
            xs = self.points[order, 0]
            return np.stack([np.interp(x[:, 0], xs, values[order, c]) for c in range(values.shape[1])], 1)
        ax, ay = axes
        if ax.size * ay.size != self.grid.size:
            raise ValueError("x: interpolation needs a tensor-product 2-D grid (from exact.grid_2d)")
        idx = np.lexsort((self.points[:, 1], self.points[:, 0]))        # x-major order
        V = values[idx].reshape(ax.size, ay.size, -1)
        i = np.clip(np.searchsorted(ax, x[:, 0]) - 1, 0, ax.size - 2)
        j = np.clip(np.searchsorted(ay, x[:, 1]) - 1, 0, ay.size - 2)
        tx = ((x[:, 0] - ax[i]) / (ax[i + 1] - ax[i]))[:, None]
        ty = ((x[:, 1] - ay[j]) / (ay[j + 1] - ay[j]))[:, None]
        return ((1 - tx) * (1 - ty) * V[i, j] + tx * (1 - ty) * V[i + 1, j]
                + (1 - tx) * ty * V[i, j + 1] + tx * ty * V[i + 1, j + 1])

    def ilocal(self, key, x, **kw) -> MapResult:
        """Exact I_local at ``x (d,)`` or ``(B, d)`` (interpolated between grid points), per dimension in
        ``map``; ``stderr`` = 0. ``key`` may be None."""
        if kw:
            raise TypeError(f"GridTask.ilocal: unexpected keyword arguments {sorted(kw)} (grid options are "
                            "given to on_grid)")
        if key is not None:
            _check_key(key)
        xa, batched = _check_stimuli(x, self.stimulus_shape)
        xb = np.asarray(xa, np.float64).reshape(-1, self.grid.ndim)
        self._check_inside(xb)
        m = self._interpolate(self.ilocal_on_grid(per_dim=True), xb)
        dt = xa.dtype
        maps, totals = jnp.asarray(m, dt), jnp.asarray(m.sum(1), dt)
        if batched:
            return MapResult(maps, totals, jnp.zeros(totals.shape, dt))
        return MapResult(maps[0], totals[0], jnp.zeros((), dt))

    def estimator_levels(self, n: int = 48, lo: float = -10.0) -> Levels:
        """Log-SNR levels for the estimator with the grid denoiser: Gauss-Legendre on
        ``[lo, -log(0.75 h^2)]`` plus tails (the Fisher tail covers smaller noise)."""
        spacing = min(float(np.median(np.diff(a))) for a in axes_of(self.points))
        return make_levels("gauss_legendre", lo, float(-np.log(0.75 * spacing**2)), _check_count("n", n))

    def _estimator_defaults(self) -> dict:
        return dict(response_sampler="posterior_sample", n_samples=256, levels=self.estimator_levels())

    def completeness(self, key=None, **kw) -> dict:
        """Exact completeness on the grid: ``sum_j w_j I_local(x_j)`` against the exact I(R;X)
        (both exact: standard errors 0, ``z`` NaN). ``key`` is accepted and ignored."""
        if kw:
            raise TypeError(f"GridTask.completeness: unexpected keyword arguments {sorted(kw)} (exact on the grid)")
        if key is not None:
            _check_key(key)
        mean = float(np.dot(np.asarray(self.grid.weights, np.float64), self.ilocal_on_grid()))
        return _completeness_summary(Estimate(value=mean, stderr=0.0), self.mutual_information())


def on_grid(grid, encoder, *, name: str = "grid", **options) -> GridTask:
    """A grid prior with any encoder. ``options``: settings of the exact engine (``n_levels``,
    ``g_min``, ``max_cells``, ``tail``, ``points_per_sigma``, ...; see :func:`jaxdecomp.exact.ilocal`)."""
    return GridTask(grid, encoder, name, **options)


# ----------------------------------------------------------------------------- discrete priors
class EmpiricalTask(Task):
    """A discrete (empirical) prior ``p(x) = sum_j w_j delta(x - x_j)`` over stored stimuli, ANY encoder.

    Build it with :func:`empirical` or :func:`digits_lnp`. ``denoiser`` is
    :func:`jaxdecomp.diffusion.grid_denoiser` on the stored stimuli: both denoisers and posterior
    sampling are exact finite sums. For a discrete prior the Fisher information of the blurred
    response model vanishes as ``g -> 0`` (the posterior collapses on a stored stimulus), so the
    estimator runs WITHOUT the Fisher tail (``fisher_correction=False``): the default levels
    ``[-10, 14]`` cover the whole integrand.
    """

    def __init__(self, stimuli, encoder, weights=None, name: str = "empirical"):
        x = as_array("stimuli", stimuli)
        if x.ndim < 2 or x.shape[0] < 2:
            raise ValueError(f"stimuli: expected at least 2 stored stimuli (m, *shape), got shape {x.shape}")
        m = x.shape[0]
        if weights is None:
            w = np.full(m, 1.0 / m)
        else:
            w = as_array("weights", weights, ndim=1)
            if w.shape != (m,):
                raise ValueError(f"weights: expected shape ({m},) to match stimuli, got {w.shape}")
            check_positive("weights", w, allow_zero=True)
            if w.sum() <= 0:
                raise ValueError("weights: must have a positive sum")
            w = w / w.sum()
        self.encoder = _check_encoder(encoder)
        self._shape = tuple(int(s) for s in x.shape[1:])
        self.stimuli = jnp.asarray(x, jnp.result_type(float))
        self.weights = w
        self.name = str(name)
        self.denoiser = grid_denoiser(x.reshape(m, -1), w, encoder, shape=self._shape)

    @property
    def stimulus_shape(self) -> tuple:
        return self._shape

    @property
    def n_stimuli(self) -> int:
        return int(self.stimuli.shape[0])

    def sample_prior(self, key, n: int):
        """``n`` draws of stored stimuli (with their masses), shape ``(n, *stimulus_shape)``."""
        return self.denoiser.prior_sample(_check_key(key), _check_count("n", n))

    def _chunk(self) -> int:
        """Estimator evaluations in flight: bounds the ``(chunk, m, d)`` offsets to about 2^25 numbers."""
        m, d = self.denoiser.points.shape
        return int(max(16, min(4096, 2**25 // max(m * d, 1))))

    def _estimator_defaults(self) -> dict:
        return dict(response_sampler="posterior_sample", n_samples=256, fisher_correction=False,
                    chunk=self._chunk())

    def ilocal(self, key, x, **kw) -> MapResult:
        """I_local by the estimator with the exact denoisers and exact posterior sampling (no Fisher tail,
        ``n_samples=256`` per level unless given; keyword arguments go to :func:`jaxdecomp.estimate.ilocal`)."""
        return self.ilocal_estimate(key, x, **kw)

    def log_prob_responses(self, r):
        """``log p(r | x_j)`` for responses ``r (N, n)`` against every stored stimulus: ``(N, m)``."""
        return jax.vmap(self.denoiser.log_likelihoods)(r)

    def mutual_information(self, key=None, n_per_stimulus: int = 16, chunk: int = 256) -> Estimate:
        """I(R;X) by stratified Monte Carlo over responses with the exact ``p(r) = sum_j w_j p(r | x_j)``.

        ``n_per_stimulus`` responses per stored stimulus ``x_j``: ``I = sum_j w_j E_{r|x_j}[log p(r|x_j) -
        log p(r)]``, standard error ``sqrt(sum_j w_j^2 var_j / n_per_stimulus)``. ``chunk``: responses
        scored against all stored stimuli at once (memory ``chunk * m * n``).
        """
        key = _check_key(jax.random.PRNGKey(0) if key is None else key)
        R = _check_count("n_per_stimulus", n_per_stimulus, 2)
        chunk = _check_count("chunk", chunk)
        m = self.n_stimuli
        log_w = jnp.asarray(np.log(np.maximum(self.weights, 1e-300)), self.stimuli.dtype)
        idx = jnp.repeat(jnp.arange(m), R)
        keys = jax.random.split(key, m * R)
        vals = _empirical_mi_terms(self.denoiser, self.encoder, self.stimuli, log_w, idx, keys, chunk)
        vals = np.asarray(vals, np.float64).reshape(m, R)
        pos = self.weights > 0
        value = float(np.sum(self.weights[pos] * vals[pos].mean(1)))
        se = float(np.sqrt(np.sum(self.weights[pos] ** 2 * vals[pos].var(1, ddof=1)) / R))
        return Estimate(value=value, stderr=se)

    def completeness(self, key, n_stimuli: int | None = None, *, mi_kw=None, **ilocal_kw) -> dict:
        """Completeness on this task. ``n_stimuli=None``: I_local at EVERY stored stimulus, weighted by
        the prior masses (no prior-sampling error: standard error ``sqrt(sum_j w_j^2 se_j^2)``);
        an int: at that many prior draws, as :meth:`Task.completeness`."""
        if n_stimuli is not None:
            return super().completeness(key, n_stimuli, mi_kw=mi_kw, **ilocal_kw)
        key = _check_key(key)
        ki, km = jax.random.split(key)
        res = self.ilocal(ki, self.stimuli, **ilocal_kw)
        t, se = np.asarray(res.total, np.float64), np.asarray(res.stderr, np.float64)
        mean = Estimate(value=float(np.dot(self.weights, t)), stderr=float(np.sqrt(np.sum(self.weights**2 * se**2))))
        return _completeness_summary(mean, self.mutual_information(km, **(mi_kw or {})))


@functools.partial(jax.jit, static_argnames=("chunk",))
def _empirical_mi_terms(denoiser, encoder, stimuli, log_w, idx, keys, chunk):
    """Per draw ``(j, r ~ p(r | x_j))``: ``log p(r | x_j) - log sum_k w_k p(r | x_k)``."""

    def one(args):
        j, k = args
        r = encoder.sample(k, stimuli[j])
        ll = denoiser.log_likelihoods(r)
        return ll[j] - jax.nn.logsumexp(log_w + ll)

    return jax.lax.map(one, (idx, keys), batch_size=chunk)


def empirical(stimuli, encoder, weights=None, *, name: str = "empirical") -> EmpiricalTask:
    """A discrete prior over stored ``stimuli (m, *shape)`` (masses ``weights (m,)``, uniform by default)
    with any encoder (``sample`` and ``log_prob`` for one stimulus of ``shape``)."""
    return EmpiricalTask(stimuli, encoder, weights, name)


def digits_lnp(size: int = 16, n_stimuli: int | None = None, *, seed: int = 0, **lnp_kw) -> EmpiricalTask:
    """The paper's LNP Poisson population (49 Gaussian-RF neurons, :func:`jaxdecomp.neurons.lnp_population`
    with ``lnp_kw``) on the bundled digits at ``size x size`` with the empirical (uniform) prior over the
    images: exact denoisers, hence exact-in-expectation I_local maps and MI for the paper's encoder.
    ``n_stimuli``: keep a random subset of that many digits (``np.random.default_rng(seed)``; default all 1797).
    """
    from jaxdecomp import data
    from jaxdecomp.neurons import lnp_population

    size = _check_count("size", size, 8)
    x = np.asarray(data.digits(size), np.float32)
    if n_stimuli is not None:
        n_stimuli = _check_count("n_stimuli", n_stimuli, 2)
        if n_stimuli > x.shape[0]:
            raise ValueError(f"n_stimuli: at most {x.shape[0]} digits are bundled, got {n_stimuli}")
        x = x[np.sort(np.random.default_rng(seed).choice(x.shape[0], n_stimuli, replace=False))]
    pop = lnp_population((size, size), **lnp_kw)
    return EmpiricalTask(x, pop, None, f"digits_lnp_{size}")
