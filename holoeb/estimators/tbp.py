"""Truncated backpropagation (TBP): backprop through the last K iterations of the
free dynamics started at the (gradient-stopped) free state (comparative study,
Sec. 4 baseline).

Its error vector is the sum over the K unrolled steps of the adjoints of the
layer values each step produces, i.e. the truncated Neumann series
sum_{t<K} (Phi'^T)^t dL/du for a synchronous sweep, obtained as the gradient of the
loss with respect to a zero constant added to every layer where the sweep updates it;
it tends to RBP's delta as K grows, for synchronous and asynchronous sweeps alike.
"""
import dataclasses

import jax
import jax.numpy as jnp

from holoeb.estimators.base import Estimator, check_positive_int
from holoeb.solvers import scheduled


@dataclasses.dataclass(frozen=True)
class TBP(Estimator):
    K: int = 20  # truncation depth: backprop through the last K iterations
    name = "tbp"

    def __post_init__(self):
        super().__post_init__()
        check_positive_int("K", self.K)

    def truncated(self, k):
        """TBP through the last k iterations."""
        check_positive_int("k", k)
        return dataclasses.replace(self, K=k)

    def estimate(self, model, params, batch, rng, init_state=None):
        x, y = batch
        free, _ = self.free_phase(model, params, x, init_state)
        u_free = jax.lax.stop_gradient(free.state)

        schedule = self.free.resolve(model.schedule)  # unroll the free phase's own iteration

        def total_loss(p, c):
            drive = model.drive(p["net"], x)
            # c_l is added to layer l where it is updated, inside the sweep: in an async sweep
            # the second half then sees the first half's perturbed values, so u = sweep(u) + c
            # has the fixed point of u = Phi(u) + c for every schedule and dL/dc tends to RBP's
            # delta (added after the whole sweep, a first-half layer's c would be overwritten
            # before any layer reads it, and its error would be identically zero)
            update = lambda u, g: tuple(v + c[l] for l, v in zip(g, model.phi_layers(p["net"], u, drive, g)))
            step = scheduled(update, schedule)
            u = jax.lax.fori_loop(0, self.K, lambda i, v: step(v), u_free)
            return jnp.sum(model.cost(p, u, y))

        zeros = tuple(jnp.zeros_like(v) for v in u_free)
        g_params, error = jax.grad(total_loss, argnums=(0, 1))(params, zeros)
        B = x.shape[0]
        result = self.finish(model, params, batch, u_free, error, free.residual, free_steps=free.steps)
        grads = jax.tree_util.tree_map(lambda g: g / B, g_params)
        return result._replace(grads=grads)
