"""Stimulus sets and loaders, all offline (nothing is downloaded).

Images are batches ``(N, H, W) float32`` in [-1, 1] throughout the package.

Generators:
  :func:`digits` (scikit-learn's 8×8 handwritten digits, resized),
  :func:`natural_patches` (grayscale patches of scikit-learn's two sample photos),
  :func:`dead_leaves` (occluding discs with power-law radii; scale-invariant).
Loaders:
  :func:`load_mnist_idx` (IDX files, raw or gzip), :func:`load_npz`.
Preparation:
  :func:`scale_to_unit` (linear map to [-1, 1]), :func:`check_images` (validate
  a batch of images), :func:`batches` (one permuted epoch of device-sharded batches).
"""

from jaxdecomp._checks import check_images
from jaxdecomp.data._io import load_mnist_idx, load_npz
from jaxdecomp.data._prep import batches, scale_to_unit
from jaxdecomp.data._stimuli import dead_leaves, digits, natural_patches

__all__ = [
    "batches",
    "check_images",
    "dead_leaves",
    "digits",
    "load_mnist_idx",
    "load_npz",
    "natural_patches",
    "scale_to_unit",
]
