"""Classic one-sided generalized EP (generalized hEP paper, Eq. 6; Scellier et al. 2018):

    d_beta sigma(u*) ~ (sigma(u*_beta) - sigma(u*_0)) / beta,

a finite difference whose bias is first order in beta. error = -that (see base).
"""
import dataclasses

import jax.numpy as jnp

from holoeb import dynamics
from holoeb.estimators.base import Estimator, check_nonzero_beta, check_positive_int
from holoeb.estimators.nudged_phase import nudged_relaxations, weighted_activity_sum


@dataclasses.dataclass(frozen=True)
class EP(Estimator):
    beta: float = 0.5  # signed: beta < 0 gives the negative-nudge variant
    T_nudge: int = 20
    nudge_tol: float = None
    name = "ep"

    def __post_init__(self):
        super().__post_init__()
        check_nonzero_beta(self.beta)
        check_positive_int("T_nudge", self.T_nudge)

    def estimate(self, model, params, batch, rng):
        free, drive = self.free_phase(model, params, batch.x)
        u0 = free.state
        nudged = nudged_relaxations(model, params, drive, batch.y, u0, jnp.array([self.beta]), self.T_nudge, self.nudge_tol)
        s0 = dynamics.activities(model, u0)
        e = weighted_activity_sum(model, nudged.state, s0, jnp.array([1.0 / self.beta]))
        aux = {"nudge_residual": jnp.max(nudged.residual)}
        return self.finish(model, params, batch, u0, tuple(-v for v in e), free.residual, aux)
