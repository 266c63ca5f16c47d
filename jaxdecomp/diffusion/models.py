"""Architecture specs of the denoiser networks: JSON-able dicts that rebuild a network.

A spec is a plain dict (it round-trips through JSON):

* ``{"kind": "unet", "shape": [H, W], "n_neurons": n, "channels": [32, 64], ...}`` and optionally
  ``n_res``, ``emb_dim``, ``n_fourier``, ``groups``, ``dtype`` (a dtype name), ``gaussian_baseline`` for
  :class:`~jaxdecomp.diffusion.networks.UNetDenoiser`;
* ``{"kind": "mlp", "shape": [...], "n_neurons": n, ...}`` and optionally ``hidden``, ``depth``,
  ``emb_dim``, ``n_fourier``, ``dtype``, ``gaussian_baseline`` (bool; its fitted moments are buffers,
  stored with the weights) for :class:`~jaxdecomp.diffusion.networks.MLPDenoiser`;
* ``{"kind": "pair", "unconditional": spec, "conditional": spec}`` for a
  :class:`~jaxdecomp.diffusion.networks.PairDenoiser`.

``n_neurons`` may be ``None`` (an unconditional network); keys left out take the network's
defaults. :func:`denoiser_spec` writes the short form, :func:`model_spec` reads the full spec
off a built network, :func:`build_denoiser` builds (freshly initialised) the network a spec
describes. Model files (:mod:`jaxdecomp.diffusion.checkpoint`) store the spec beside the weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdecomp.diffusion.networks import MLPDenoiser, PairDenoiser, UNetDenoiser

__all__ = ["build_denoiser", "denoiser_spec", "model_spec"]

KINDS = ("unet", "mlp", "pair")
_OPTIONAL = {
    "unet": ("n_neurons", "channels", "n_res", "emb_dim", "n_fourier", "groups", "dtype", "gaussian_baseline"),
    # "channels" is accepted (and ignored) so that denoiser_spec(..., kind="mlp") builds
    "mlp": ("n_neurons", "channels", "hidden", "depth", "emb_dim", "n_fourier", "dtype", "gaussian_baseline"),
}


def denoiser_spec(shape, n_neurons: int | None, channels=(32, 64), kind: str = "unet") -> dict:
    """A JSON-able description from which :func:`build_denoiser` rebuilds the network.

    shape: stimulus shape, e.g. ``(H, W)``. n_neurons: response size (``None``: unconditional).
    channels: UNet channels per level (ignored by ``kind="mlp"``). kind: ``"unet"`` or ``"mlp"``.
    Returns ``{"kind", "shape", "n_neurons", "channels"}`` with lists of ints.
    """
    if kind not in ("unet", "mlp"):
        raise ValueError(f"kind: expected 'unet' or 'mlp', got {kind!r}")
    try:
        shape = [int(s) for s in shape]
        channels = [int(c) for c in channels]
    except TypeError as err:
        raise TypeError(f"shape, channels: expected sequences of ints, got {shape!r}, {channels!r}") from err
    return dict(kind=kind, shape=shape, n_neurons=None if n_neurons is None else int(n_neurons), channels=channels)


def _dtype(value):
    try:
        return jnp.dtype(value)
    except TypeError as err:
        raise ValueError(f"spec['dtype']: expected a dtype name such as 'float32' or 'bfloat16', got {value!r}") from err


def build_denoiser(spec: Mapping, seed: int = 0) -> nnx.Module:
    """The NNX network described by ``spec`` (see :func:`denoiser_spec`), freshly initialised.

    seed: initialisation seed (``nnx.Rngs(seed)``; a pair's conditional network uses ``seed + 1``).
    Raises ``ValueError`` naming ``spec`` for an unknown kind, a missing ``shape`` or an unknown key.
    """
    if not isinstance(spec, Mapping):
        raise TypeError(f"spec: expected a dict (see denoiser_spec), got {type(spec).__name__}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"spec['kind']: expected one of {KINDS}, got {kind!r}")
    if kind == "pair":
        unknown = sorted(set(spec) - {"kind", "unconditional", "conditional"})
        if unknown or "unconditional" not in spec or "conditional" not in spec:
            raise ValueError(f"spec: a 'pair' spec has exactly the keys 'unconditional' and 'conditional' "
                             f"(each a network spec), got {sorted(spec)}")
        return PairDenoiser(build_denoiser(spec["unconditional"], seed), build_denoiser(spec["conditional"], seed + 1))
    if "shape" not in spec:
        raise ValueError(f"spec: missing key 'shape' (a {kind!r} spec needs it), got keys {sorted(spec)}")
    unknown = sorted(set(spec) - {"kind", "shape", *_OPTIONAL[kind]})
    if unknown:
        raise ValueError(f"spec: unknown keys {unknown} for kind {kind!r}; expected some of "
                         f"{['shape', *_OPTIONAL[kind]]}")
    kw = {k: spec[k] for k in _OPTIONAL[kind] if k in spec and k != "channels"}
    if "dtype" in kw:
        kw["dtype"] = _dtype(kw["dtype"])
    rngs = nnx.Rngs(int(seed))
    if kind == "unet":
        if "channels" in spec:
            kw["channels"] = tuple(spec["channels"])
        return UNetDenoiser(tuple(spec["shape"]), rngs=rngs, **kw)
    return MLPDenoiser(tuple(spec["shape"]), rngs=rngs, **kw)


def _lcm_groups(model) -> int:
    """The smallest ``groups`` giving every GroupNorm of ``model`` its number of groups.

    The UNet builds each norm with ``gcd(groups, channels)`` groups; the lcm ``L`` of those
    numbers divides ``groups`` and gives ``gcd(L, channels) == gcd(groups, channels)`` for
    every norm, so it rebuilds the same network.
    """
    out = 1
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.GroupNorm):
            out = int(np.lcm(out, int(node.num_groups)))
    return out


def model_spec(model) -> dict:
    """The full spec of a built :class:`UNetDenoiser`, :class:`MLPDenoiser` or :class:`PairDenoiser`.

    ``build_denoiser(model_spec(model))`` has the same architecture as ``model`` (its own
    fresh weights). Raises ``TypeError`` naming ``model`` for any other module.
    """
    if isinstance(model, PairDenoiser):
        return dict(kind="pair", unconditional=model_spec(model.unconditional),
                    conditional=model_spec(model.conditional))
    if not isinstance(model, (UNetDenoiser, MLPDenoiser)):
        raise TypeError(f"model: expected a UNetDenoiser, MLPDenoiser or PairDenoiser, got {type(model).__name__}")
    spec = dict(shape=[int(s) for s in model.shape], n_neurons=model.n_neurons,
                emb_dim=int(model.cond.t1.out_features), n_fourier=int(model.cond.n_fourier),
                dtype=jnp.dtype(model.dtype).name)
    if isinstance(model, UNetDenoiser):
        out = dict(kind="unet", **spec, channels=[int(blocks[0].c1.out_features) for blocks in model.down],
                   n_res=len(model.down[0]), groups=_lcm_groups(model))
    else:
        out = dict(kind="mlp", **spec, hidden=int(model.inp.out_features), depth=len(model.blocks))
    if model.gaussian_baseline:    # written only when set, so older spec files and readers are unchanged
        out["gaussian_baseline"] = True
    return out
