"""Stand-ins shared by the CLI wiring tests."""

from types import SimpleNamespace

import numpy as np


def fake_train(net, x, r, config, **kw):
    """Stands in for ``diffusion.train`` (whose compile takes a minute on CPU): no updates, only the
    response scaling fitted. With ``r=None`` (fresh responses from a known encoder,
    ``train(..., population=...)``) it draws one response per stimulus from ``kw["population"]``."""
    import jax

    from jaxdecomp import diffusion

    if r is None:
        r = jax.vmap(kw["population"].sample)(jax.random.split(jax.random.PRNGKey(0), len(x)), jax.numpy.asarray(x))
    diffusion.fit_response_scaling(net, np.asarray(r))
    return SimpleNamespace(model=net, step=config.steps, losses=np.zeros((1, 2)))
