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


def oscillating_states(model, params, x, y, beta_abs, N, steps_per_point, periods, u_start=None):
    """States u(t_j) at the end of each of the P*N points visited by the teaching signal
    beta_j = |beta| e^{2 i pi j/N} (steps_per_point iterations each, from ``u_start``, default the initial state).
    ``beta_abs`` may be traced. Returns a stacked complex state (P N, B, ...)."""
    unit = np.exp(2j * np.pi * np.arange(periods * N) / N)
    u_start = model.init_state(x) if u_start is None else u_start
    cdt = jnp.result_type(u_start[0].dtype, jnp.complex64)
    drive = jax.tree_util.tree_map(lambda d: d.astype(cdt), model.drive(params["net"], x))

    def point(u, beta):
        step = lambda v: dynamics.nudged_map(model, params, v, drive, y, beta)
        u = jax.lax.fori_loop(0, steps_per_point, lambda i, v: step(v), u)
        return u, u

    betas = jnp.asarray(beta_abs).astype(cdt) * jnp.asarray(unit, cdt)
    _, states = jax.lax.scan(point, dynamics.cast_state(u_start, cdt), betas)
    return states


def running_estimates(model, states, beta_abs, N):
    """Running averages after each completed period p = 1..P (Eqs. 8 and 15):

        e_p  = (1/(p N |beta|)) sum_{j < pN} sigma(u(t_j)) e^{-2 i pi j/N}     (d sigma(u*)/d beta)
        u*_p = (1/(p N)) sum_{j < pN} u(t_j)                                    (free state)

    Returns (e, u_free), tuples of (P, B, ...) real arrays."""
    n_points = states[0].shape[0]
    periods = n_points // N
    counts = jnp.asarray(N * np.arange(1, periods + 1), jnp.real(states[0]).dtype)
    w = jnp.asarray(np.exp(-2j * np.pi * np.arange(N) / N), states[0].dtype)
    es, frees = [], []
    for l, uk in enumerate(states):
        shape = (periods,) + (1,) * (uk.ndim - 1)
        s = model.activation(l, uk).reshape((periods, N) + uk.shape[1:])
        part = jnp.cumsum(jnp.tensordot(w, jnp.moveaxis(s, 1, 0), axes=1), axis=0)
        es.append(jnp.real(part) / (counts.reshape(shape) * beta_abs))
        means = jnp.cumsum(jnp.sum(uk.reshape((periods, N) + uk.shape[1:]), axis=1), axis=0)
        frees.append(jnp.real(means) / counts.reshape(shape))
    return tuple(es), tuple(frees)


@dataclasses.dataclass(frozen=True)
class Continuous(Estimator):
    beta: float = 0.5
    N: int = 4  # points per period
    steps_per_point: int = 60
    periods: int = 5
    name = "continuous"
    requires_holomorphic = True

    def __post_init__(self):
        super().__post_init__()
        check_nonzero_beta(self.beta)
        check_positive_int("N", self.N, minimum=2)
        check_positive_int("steps_per_point", self.steps_per_point)
        check_positive_int("periods", self.periods)

    def truncated(self, k):
        """k iterations at each point of the oscillating nudge (same number of periods)."""
        check_positive_int("k", k)
        return dataclasses.replace(self, steps_per_point=k)

    def estimate(self, model, params, batch, rng, init_state=None):
        x, y = batch
        b = abs(self.beta)
        states = oscillating_states(model, params, x, y, b, self.N, self.steps_per_point, self.periods, init_state)
        es, frees = running_estimates(model, states, b, self.N)
        e = tuple(v[-1] for v in es)
        u_free = tuple(v[-1] for v in frees)
        free_drive = model.drive(params["net"], x)
        res = residual(lambda v: model.phi(params["net"], v, free_drive), u_free)
        return self.finish(model, params, batch, u_free, tuple(-v for v in e), res, {}, presynaptic_states=states)
