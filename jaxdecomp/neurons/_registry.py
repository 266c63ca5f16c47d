"""The registry of image encoders: :func:`image_population` over :data:`IMAGE_MODELS` (private)."""

from __future__ import annotations

from jaxdecomp.neurons._gabor import gabor_population
from jaxdecomp.neurons._lnp import linear_gaussian_population, lnp_population
from jaxdecomp.neurons._retina import cnn_retina_population

IMAGE_MODELS = ("lnp", "gabor", "energy", "cnn_retina", "linear_gaussian")


def image_population(name: str, shape=(32, 32), **kw):
    """Build an image population by name (one of :data:`IMAGE_MODELS`) for images (H, W).

    ``"lnp"``: :func:`lnp_population`; ``"gabor"``: :func:`gabor_population` (simple cells
    unless ``kind`` is given); ``"energy"``: :func:`gabor_population` with
    ``kind="complex"``; ``"cnn_retina"``: :func:`cnn_retina_population`;
    ``"linear_gaussian"``: :func:`linear_gaussian_population`. Keywords pass through.
    """
    if name == "lnp":
        return lnp_population(shape, **kw)
    if name == "gabor":
        return gabor_population(shape, **kw)
    if name == "energy":
        if kw.get("kind", "complex") != "complex":
            raise ValueError(f"kind: the 'energy' model is kind='complex', got {kw['kind']!r}")
        kw = {**kw, "kind": "complex"}
        return gabor_population(shape, **kw)
    if name == "cnn_retina":
        return cnn_retina_population(shape, **kw)
    if name == "linear_gaussian":
        return linear_gaussian_population(shape, **kw)
    raise ValueError(f"name: unknown image model {name!r}; choose one of {', '.join(IMAGE_MODELS)}")
