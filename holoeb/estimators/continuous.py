"""Continuous-time oscillating nudge, no free phase (generalized hEP paper, Eqs. 8-9, App. C.1, D.3).

The teaching signal beta(t) = |beta| e^{2 i pi t/T} visits N points per period
(steps_per_point iterations each) for several periods, starting from the initial
state. Running averages over all visited points give

    d_beta sigma(u*) ~ (1/(P N |beta|)) sum_j sigma(u(t_j)) e^{-2 i pi j/N}      (Eq. 8)
    dPhi/dtheta(u*_0) ~ (1/(P N)) sum_j dPhi/dtheta(u(t_j))                      (Eq. 9)
    u*_0 ~ (1/(P N)) sum_j u(t_j)       (mean-value property, Eq. 15)

so no state is ever relaxed at beta = 0. The transient of the first period
decays like 1/P, and the limit is the N-point Cauchy estimate.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from holoeb import dynamics
from holoeb.estimators.base import Estimator, check_nonzero_beta, check_positive_int
from holoeb.solvers import residual


@dataclasses.dataclass(frozen=True)
class Continuous(Estimator):
    beta: float = 0.5
    N: int = 4  # points per period
    steps_per_point: int = 60
    periods: int = 5
    name = "continuous"

    def __post_init__(self):
        super().__post_init__()
        check_nonzero_beta(self.beta)
        check_positive_int("N", self.N, minimum=2)
        check_positive_int("steps_per_point", self.steps_per_point)
        check_positive_int("periods", self.periods)

    def estimate(self, model, params, batch, rng):
        x, y = batch
        b = abs(self.beta)
        j = np.arange(self.periods * self.N)
        betas = jnp.asarray(b * np.exp(2j * np.pi * j / self.N))
        phases = np.exp(-2j * np.pi * j / self.N)
        u_start = model.init_state(x)
        cdt = jnp.result_type(u_start[0].dtype, jnp.complex64)
        drive = tuple(d.astype(cdt) for d in model.drive(params["net"], x))
        u_start = dynamics.cast_state(u_start, cdt)

        def point(u, beta):
            step = lambda v: dynamics.nudged_map(model, params, v, drive, y, beta)
            u = jax.lax.fori_loop(0, self.steps_per_point, lambda i, v: step(v), u)
            return u, u

        _, states = jax.lax.scan(point, u_start, betas.astype(cdt))
        w = jnp.asarray(phases / (len(j) * b)).astype(cdt)
        e = tuple(
            jnp.real(jnp.tensordot(w, model.activation(l, uk), axes=1)) for l, uk in enumerate(states)
        )
        u_free = tuple(jnp.real(jnp.mean(uk, axis=0)) for uk in states)
        free_drive = model.drive(params["net"], x)
        res = residual(lambda v: model.phi(params["net"], v, free_drive), u_free)
        return self.finish(model, params, batch, u_free, tuple(-v for v in e), res, {}, presynaptic_states=states)
