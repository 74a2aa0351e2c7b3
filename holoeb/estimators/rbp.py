"""Recurrent backpropagation (Almeida 1987, Pineda 1987; generalized hEP paper, Eq. 4):

    delta = -J^{-T} dL/du* = (I - Phi'^T)^{-1} dL/du*,   grad = (dPhi/dtheta)^T delta,

the exact gradient of the loss at the free fixed point (adjoint solve with vjp's).
"""
import dataclasses

import jax.numpy as jnp

from holoeb.estimators.base import Estimator, rbp_delta


@dataclasses.dataclass(frozen=True)
class RBP(Estimator):
    name = "rbp"

    def estimate(self, model, params, batch, rng, init_state=None):
        free, _ = self.free_phase(model, params, batch.x, init_state)
        delta, rel = rbp_delta(model, params, batch, free.state, self.solve_config)
        est = dataclasses.replace(self, compare_rbp=False)  # delta is the reference itself
        out = est.finish(model, params, batch, free.state, delta, free.residual, est.solve_diagnostics(rel),
                         free_steps=free.steps)
        if self.compare_rbp:
            out.aux["cosine_rbp"] = jnp.ones((len(delta),))
        return out
