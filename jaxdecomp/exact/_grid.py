"""Stimulus grids: a prior ``p(x)`` represented by masses on points of a 1-D or 2-D grid."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdecomp._checks import as_array, check_float, check_int, is_concrete


@jax.tree_util.register_pytree_node_class
class Grid:
    """A prior on grid points.

    points:  (m,) for scalar stimuli or (m, 2) for 2-D stimuli. The engine's
             accuracy arguments assume equally spaced points (a tensor-product grid
             in 2-D), which every constructor below makes.
    weights: (m,) prior masses, non-negative and summing to 1.

    Values are checked on construction (NaN, negative or unnormalised weights,
    wrong shapes raise a ValueError naming the argument).
    """

    def __init__(self, points, weights):
        if is_concrete(points) and is_concrete(weights):
            p = as_array("points", points, ndim=(1, 2))
            if p.ndim == 2 and p.shape[1] not in (1, 2):
                raise ValueError(f"points: expected shape (m,) or (m, 2), got {p.shape}")
            if p.shape[0] < 3:
                raise ValueError(f"points: need at least 3 grid points, got {p.shape[0]}")
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (p.shape[0],):
                raise ValueError(f"weights: expected shape ({p.shape[0]},) to match points, got {w.shape}")
            if not np.all(np.isfinite(w)):
                raise ValueError("weights: contains NaN or infinite values")
            if np.any(w < 0):
                raise ValueError(f"weights: prior masses must be non-negative, got minimum {w.min():.6g}")
            if abs(w.sum() - 1.0) > 1e-6:
                raise ValueError(f"weights: prior masses must sum to 1, got {w.sum():.9g}")
            if p.ndim == 2 and p.shape[1] == 1:
                p = p[:, 0]
            _check_lattice(p)
            # kept as float64 numpy arrays: jax arrays outside the x64 mode would be float32
            self.points, self.weights = p, w
        else:
            self.points, self.weights = points, weights

    def tree_flatten(self):
        return (self.points, self.weights), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.points, obj.weights = children
        return obj

    @property
    def size(self) -> int:
        return int(self.points.shape[0])

    @property
    def ndim(self) -> int:
        """Stimulus dimension: 1 or 2."""
        return 1 if self.points.ndim == 1 else int(self.points.shape[1])

    def mean(self):
        return jnp.tensordot(self.weights, self.points, axes=1)

    def __repr__(self) -> str:
        return f"Grid(m={self.size}, ndim={self.ndim})"


def _check_lattice(p: np.ndarray) -> None:
    """Raise a ValueError naming ``points`` unless they are equally spaced (1-D), or the full
    tensor product of two equally spaced axes (2-D): the engine's blur sums, its ``g_min`` and its
    resolution check all assume one spacing per axis."""
    q = p[:, None] if p.ndim == 1 else p
    axes = axes_of(q)
    if len({tuple(row) for row in q.tolist()}) != q.shape[0]:
        raise ValueError("points: contains repeated grid points")
    for i, a in enumerate(axes):
        name = "points" if q.shape[1] == 1 else f"points[:, {i}]"
        if a.size < 2:
            raise ValueError(f"{name}: need at least 2 distinct coordinates per axis, got {a.size}")
        d = np.diff(a)
        h = (a[-1] - a[0]) / (a.size - 1)
        if np.max(np.abs(d - h)) > 1e-6 * h:
            raise ValueError(
                f"{name}: the exact engine needs equally spaced grid points (its noise integral, g_min and "
                f"resolution check use one spacing per axis); spacings range from {d.min():.6g} to "
                f"{d.max():.6g}. Use np.linspace, or put the prior on an equally spaced grid and give unequal "
                f"masses through weights (zero where there is no support)")
    if q.shape[1] == 2 and q.shape[0] != axes[0].size * axes[1].size:
        raise ValueError(
            f"points: a 2-D grid must be the full tensor product of its axes ({axes[0].size} x {axes[1].size} = "
            f"{axes[0].size * axes[1].size} points), got {q.shape[0]} points; use exact.grid_2d(xs, ys, density) "
            f"(zero density where there is no support)")


def _normalise(density) -> np.ndarray:
    d = np.asarray(density, dtype=np.float64)
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError("density: must be finite and non-negative at every grid point")
    if d.sum() <= 0:
        raise ValueError("density: is zero on the whole grid")
    return d / d.sum()


def grid_from_density(points, density) -> Grid:
    """Grid with weights proportional to ``density`` (an array (m,) or a function of points)."""
    pts = as_array("points", points, ndim=(1, 2))
    dens = density(pts) if callable(density) else density
    return Grid(pts, _normalise(dens))


def _gauss_logpdf(x, mean, var):
    return -0.5 * (x - mean) ** 2 / var - 0.5 * np.log(2 * np.pi * var)


def gaussian_grid(mean: float = 0.0, var: float = 1.0, *, lo=None, hi=None, m: int = 401) -> Grid:
    """1-D Gaussian prior N(mean, var) on ``m`` equally spaced points (default mean ± 7 SD)."""
    mean = check_float("mean", mean)
    var = check_float("var", var, positive=True)
    m = check_int("m", m, minimum=3)
    sd = np.sqrt(var)
    lo = mean - 7 * sd if lo is None else lo
    hi = mean + 7 * sd if hi is None else hi
    x = np.linspace(lo, hi, int(m))
    return Grid(x, _normalise(np.exp(_gauss_logpdf(x, mean, var))))


def mixture_grid(means, variances, mix=None, *, lo=None, hi=None, m: int = 401) -> Grid:
    """1-D Gaussian-mixture prior on ``m`` equally spaced points (default range ± 7 SD around the modes)."""
    m = check_int("m", m, minimum=3)
    means = as_array("means", np.atleast_1d(means), ndim=1)
    try:
        variances = np.broadcast_to(as_array("variances", variances), means.shape)
    except ValueError as err:
        if "variances:" in str(err):
            raise
        raise ValueError(f"variances: expected a scalar or one variance per mean ({means.size}), "
                         f"got shape {np.shape(variances)}") from err
    if np.any(variances <= 0):
        raise ValueError("variances: mixture component variances must be positive")
    mix = np.full(means.shape, 1.0 / means.size) if mix is None else np.asarray(mix, dtype=np.float64)
    if mix.shape != means.shape or np.any(mix < 0) or abs(mix.sum() - 1) > 1e-9:
        raise ValueError("mix: expected non-negative mixture weights summing to 1, one per mean")
    sd = np.sqrt(variances.max())
    lo = means.min() - 7 * sd if lo is None else lo
    hi = means.max() + 7 * sd if hi is None else hi
    x = np.linspace(lo, hi, int(m))
    dens = sum(p * np.exp(_gauss_logpdf(x, mu, v)) for p, mu, v in zip(mix, means, variances))
    return Grid(x, _normalise(dens))


def grid_2d(xs, ys, density) -> Grid:
    """2-D tensor grid over ``xs`` × ``ys`` (points (len(xs)*len(ys), 2), x-major) with
    weights proportional to ``density(points)`` (a function of (m, 2) points, or an array (m,))."""
    xs = as_array("xs", xs, ndim=1)
    ys = as_array("ys", ys, ndim=1)
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    pts = np.stack([X.ravel(), Y.ravel()], axis=1)
    return grid_from_density(pts, density)


def gaussian_grid_2d(mean=(0.0, 0.0), cov=((1.0, 0.0), (0.0, 1.0)), *, m: int = 51, width: float = 5.0) -> Grid:
    """2-D Gaussian prior on an ``m`` × ``m`` grid covering mean ± width SD per axis."""
    mean = np.asarray(mean, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    if mean.shape != (2,) or cov.shape != (2, 2):
        raise ValueError(f"mean/cov: expected shapes (2,) and (2, 2), got {mean.shape} and {cov.shape}")
    if np.any(np.linalg.eigvalsh(cov) <= 0):
        raise ValueError("cov: must be symmetric positive definite")
    sd = np.sqrt(np.diag(cov))
    axes = [np.linspace(mean[i] - width * sd[i], mean[i] + width * sd[i], int(m)) for i in range(2)]
    prec = np.linalg.inv(cov)

    def dens(p):
        d = p - mean
        return np.exp(-0.5 * np.einsum("ni,ij,nj->n", d, prec, d))

    return grid_2d(axes[0], axes[1], dens)


def axes_of(points: np.ndarray) -> list[np.ndarray]:
    """Sorted unique coordinates along each axis of grid points (m,) or (m, d)."""
    p = np.asarray(points)
    p = p[:, None] if p.ndim == 1 else p
    return [np.unique(p[:, i]) for i in range(p.shape[1])]
