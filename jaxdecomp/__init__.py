"""jaxdecomp: which stimuli, and which stimulus features, neural information is about.

Implements I_local, the axiomatic stimulus-wise decomposition of mutual information
of Laquitaine, Azeglio, Paris, Ferrari & Chalk (NeurIPS 2025), with an exact grid
engine for low-dimensional stimuli. Units are nats.

Subpackages: :mod:`jaxdecomp.neurons` (encoders p(r|x)), :mod:`jaxdecomp.exact`
(exact measures on 1-D/2-D grids), :mod:`jaxdecomp.diffusion` (schedules, exact and
learned denoisers, training), :mod:`jaxdecomp.estimate` (I_local maps and MI from
denoisers), :mod:`jaxdecomp.data` (offline stimulus sets and loaders),
:mod:`jaxdecomp.tasks` (ground-truth problems) and :mod:`jaxdecomp.plotting` (figures).
The result types :class:`Encoder`, :class:`Estimate` and :class:`MapResult` are
re-exported here from :mod:`jaxdecomp._interfaces`.

Everything is imported lazily, on first attribute access: ``import jaxdecomp`` is
cheap, ``jaxdecomp.data`` (or ``import jaxdecomp.data``) loads that subpackage only,
and ``import jaxdecomp.exact`` does not load the training stack (optax, orbax, tqdm).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Subpackages and modules reachable as attributes, loaded on first access.
_SUBMODULES = ("data", "diffusion", "estimate", "exact", "neurons", "plotting", "tasks")
#: Names re-exported from :mod:`jaxdecomp._interfaces`, loaded on first access.
_INTERFACE_NAMES = ("Encoder", "Estimate", "MapResult")

if TYPE_CHECKING:  # pragma: no cover - for static tools only
    from jaxdecomp import data, diffusion, estimate, exact, neurons, plotting, tasks  # noqa: F401
    from jaxdecomp._interfaces import Encoder, Estimate, MapResult  # noqa: F401


def _exists(name: str) -> bool:
    return importlib.util.find_spec(f"{__name__}.{name}") is not None


def __getattr__(name: str):
    if name in _SUBMODULES:
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    if name in _INTERFACE_NAMES:
        try:
            interfaces = importlib.import_module(f"{__name__}._interfaces")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}._interfaces":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(interfaces, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


__all__ = [n for n in _SUBMODULES if _exists(n)]
if _exists("_interfaces"):
    __all__ += list(_INTERFACE_NAMES)
__all__ += ["__version__"]
