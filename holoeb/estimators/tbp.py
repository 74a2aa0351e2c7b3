"""Truncated backpropagation (TBP): backprop through the last K iterations of the
free dynamics started at the (gradient-stopped) free state (comparative study,
Sec. 4 baseline).

Its error vector is the sum over the K unrolled steps of the adjoints
dL/du_t, i.e. the truncated Neumann series sum_{t<K} (Phi'^T)^t dL/du, obtained as
the gradient of the loss with respect to a zero constant added to every step;
it tends to RBP's delta as K grows.
"""
import dataclasses

import jax
import jax.numpy as jnp

from holoeb import dynamics
from holoeb.estimators.base import Estimator, check_positive_int


@dataclasses.dataclass(frozen=True)
class TBP(Estimator):
    K: int = 20
    name = "tbp"

    def __post_init__(self):
        super().__post_init__()
        check_positive_int("K", self.K)

    def estimate(self, model, params, batch, rng):
        x, y = batch
        free, _ = self.free_phase(model, params, x)
        u_free = jax.lax.stop_gradient(free.state)

        def total_loss(p, c):
            drive = model.drive(p["net"], x)
            step = lambda u: tuple(a + b for a, b in zip(model.phi(p["net"], u, drive), c))
            u = jax.lax.fori_loop(0, self.K, lambda i, v: step(v), u_free)
            return jnp.sum(dynamics.per_example_loss(model, p, u, y))

        zeros = tuple(jnp.zeros_like(v) for v in u_free)
        g_params, error = jax.grad(total_loss, argnums=(0, 1))(params, zeros)
        B = x.shape[0]
        result = self.finish(model, params, batch, u_free, error, free.residual)
        grads = jax.tree_util.tree_map(lambda g: g / B, g_params)
        return result._replace(grads=grads)
