"""The exact d_beta u* at the free fixed point (generalized hEP paper, Eq. 5):

    d_beta u* = -J^{-1} dF/dbeta = (I - Phi')^{-1} nudge(u*_0),

solved matrix-free with jvp's (GMRES), then mapped to activity coordinates,
e = sigma'(u*) d_beta u* = d sigma(u*)/d beta. This is not forward-mode through a
truncated nudged phase (itself biased when that phase has not converged).
"""
import dataclasses

import jax

from holoeb.estimators.base import Estimator
from holoeb.linear_solve import implicit_solve


def true_activity_derivative(model, params, drive, y, u0, cfg):
    phi_u = lambda u: model.phi(params["net"], u, drive)
    g = model.nudge(params, u0, y)
    v, rel = implicit_solve(phi_u, u0, g, cfg)
    _, e = jax.jvp(model.activities, (u0,), (v,))
    return e, v, rel


@dataclasses.dataclass(frozen=True)
class TrueDerivative(Estimator):
    name = "true"

    def estimate(self, model, params, batch, rng, init_state=None):
        free, drive = self.free_phase(model, params, batch.x, init_state)
        e, _, rel = true_activity_derivative(model, params, drive, batch.y, free.state, self.solve_config)
        aux = self.solve_diagnostics(rel)
        return self.finish(model, params, batch, free.state, tuple(-v for v in e), free.residual, aux, free_steps=free.steps)
