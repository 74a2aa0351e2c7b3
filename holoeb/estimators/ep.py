"""Classic one-sided generalized EP (generalized hEP paper, Eq. 6; Scellier et al. 2018):

    d_beta sigma(u*) ~ (sigma(u*_beta) - sigma(u*_0)) / beta,

a finite difference whose bias is first order in beta. error = -that (see base).
"""
import dataclasses

from holoeb.estimators.base import Estimator, check_nonzero_beta, check_positive_int
from holoeb.estimators.cauchy import cauchy_activity_derivative
from holoeb.solvers import Relaxation


@dataclasses.dataclass(frozen=True)
class EP(Estimator):
    beta: float = 0.5  # signed: beta < 0 gives the negative-nudge variant
    nudge: Relaxation = Relaxation(20)  # the nudged phase (shorthands T_nudge, nudge_tol)
    name = "ep"

    def __post_init__(self):
        super().__post_init__()
        check_nonzero_beta(self.beta)
        check_positive_int("T_nudge", self.nudge.max_steps)

    def estimate(self, model, params, batch, rng, init_state=None):
        free, drive = self.free_phase(model, params, batch.x, init_state)
        u0 = free.state
        # the one-point Cauchy rule with a signed radius is exactly this finite difference
        e, res = cauchy_activity_derivative(model, params, drive, batch.y, u0, self.beta, 1, self.nudge)
        aux = {"nudge_residual": res}
        return self.finish(model, params, batch, u0, tuple(-v for v in e), free.residual, aux, free_steps=free.steps)
