"""N-point Cauchy-integral estimate of d_beta u* (generalized hEP paper, Eq. 7 and App. D.1):

    d_beta sigma(u*) ~ (1/(N|beta|)) sum_k (sigma(u*_{beta_k}) - sigma(u*_0)) e^{-2 i pi k/N},
    beta_k = |beta| e^{2 i pi k/N}.

Subtracting sigma(u*_0) changes nothing for N >= 2 (the weights sum to zero) and
makes N = 1 the classic one-sided EP estimate; N = 2 is the real centered
difference. The leading bias is |beta|^N / (N+1)! times the (N+1)-th derivative.

The N nudged phases start from the free state and run batched (vmap over k).
With ``conjugate_symmetry`` (default) the nodes beta_{N-k} = conj(beta_k) are not
relaxed: for real parameters and inputs u*_{conj beta} = conj(u*_beta), so only
the real nodes (k = 0, N/2) and k = 1..ceil(N/2)-1 are computed -- the result is
the same N-point sum.
"""
import dataclasses

import jax
import jax.numpy as jnp

from holoeb import holomorphic
from holoeb.estimators.base import Estimator, check_nonzero_beta, check_positive_int
from holoeb.estimators.nudged_phase import nudged_relaxations, weighted_activity_sum
from holoeb.solvers import Relaxation


def cauchy_activity_derivative(model, params, drive, y, u0, beta_abs, N, relaxation, conjugate_symmetry=True):
    """Estimate of d sigma(u*)/d beta at beta = 0 and the per-example nudged residual (B,), the
    max over the nudged phases; every nudged
    phase relaxes with ``relaxation`` (a holoeb.solvers.Relaxation) from the free state u0.

    ``beta_abs`` may be a traced scalar (one compilation serves a whole |beta| sweep);
    with N = 1 it may also be negative (the one-sided estimate with a negative nudge).
    """
    s0 = model.activities(u0)
    if not conjugate_symmetry:
        unit, unit_w = holomorphic.cauchy_nodes(1.0, N)
        rel = nudged_relaxations(model, params, drive, y, u0, beta_abs * jnp.asarray(unit), relaxation)
        e = weighted_activity_sum(model, rel.state, s0, jnp.asarray(unit_w) / beta_abs)
        return tuple(jnp.real(v) for v in e), jnp.max(rel.residual, axis=0)
    rb, rw, cb, cw = holomorphic.cauchy_half_nodes(1.0, N)
    rel = nudged_relaxations(model, params, drive, y, u0, beta_abs * jnp.asarray(rb), relaxation)
    e = weighted_activity_sum(model, rel.state, s0, jnp.asarray(rw) / beta_abs)
    res = jnp.max(rel.residual, axis=0)
    if len(cb):
        relc = nudged_relaxations(model, params, drive, y, u0, beta_abs * jnp.asarray(cb), relaxation)
        ec = weighted_activity_sum(model, relc.state, s0, jnp.asarray(cw) / beta_abs)
        e = tuple(a + 2.0 * jnp.real(b) for a, b in zip(e, ec))
        res = jnp.maximum(res, jnp.max(relc.residual, axis=0))
    return e, res


@dataclasses.dataclass(frozen=True)
class Cauchy(Estimator):
    beta: float = 0.5  # teaching amplitude |beta| (sign ignored)
    N: int = 2
    nudge: Relaxation = Relaxation(20)  # each nudged phase (shorthands T_nudge, nudge_tol)
    conjugate_symmetry: bool = True
    name = "cauchy"
    requires_holomorphic = True

    def __post_init__(self):
        super().__post_init__()
        check_nonzero_beta(self.beta)
        check_positive_int("N", self.N)
        check_positive_int("T_nudge", self.nudge.max_steps)

    def estimate(self, model, params, batch, rng, init_state=None):
        free, drive = self.free_phase(model, params, batch.x, init_state)
        u0 = free.state
        # u*_{conj beta} = conj(u*_beta) needs a real system (real parameters and inputs)
        real_system = not any(jnp.iscomplexobj(v) for v in jax.tree_util.tree_leaves((params, batch.x)))
        e, res = cauchy_activity_derivative(
            model, params, drive, batch.y, u0, abs(self.beta), self.N, self.nudge, self.conjugate_symmetry and real_system,
        )
        aux = {"nudge_residual": res}
        return self.finish(model, params, batch, u0, tuple(-v for v in e), free.residual, aux, free_steps=free.steps)
