"""jaxdecomp: which stimuli, and which stimulus features, neural information is about.

Implements I_local, the axiomatic stimulus-wise decomposition of mutual information
of Laquitaine, Azeglio, Paris, Ferrari & Chalk (NeurIPS 2025), with an exact grid
engine for low-dimensional stimuli. Units are nats.

Subpackages: :mod:`jaxdecomp.neurons` (encoders p(r|x)), :mod:`jaxdecomp.exact`
(exact measures on 1-D/2-D grids), :mod:`jaxdecomp.diffusion` (schedules, exact and
learned denoisers, training), :mod:`jaxdecomp.estimate` (I_local maps and MI from denoisers).
"""

from jaxdecomp import diffusion, estimate, exact, neurons

__version__ = "0.1.0"

__all__ = ["diffusion", "estimate", "exact", "neurons", "__version__"]
