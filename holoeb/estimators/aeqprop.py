"""Agnostic equilibrium propagation behind the common estimator interface
(Agnostic-EqProp paper, Sections 2 and 4; Theorem 1 / Theorem 3).

One call runs phases 1 and 2 of `holoeb.agnostic.procedure.aeqprop_step` from
theta_{t-1} = params and reports

    grads = (theta_{t-1} - theta_t) / (eps_k (beta_2 - beta_1))     (Theorem 1: ~ dL/dtheta)

so that SGD with per-component step eps_k * beta reproduces the Aeqprop parameters exactly
(``aux["theta_next"]`` holds theta_t itself). beta_2 - beta_1 = beta for every variant.

`model` is an Aeqprop system (holoeb.agnostic.DenseHopfield, FourierRegression, or any
object with init_state/energy/cost/target/check_batch/check_nudge and, for the exact
relaxation, state_sweep/argmin_params); `params` is its parameter pytree theta.

Other fields of the result:
  free_state  s_0(theta_{t-1}): equilibrium without nudge at fixed parameters (the prediction);
  loss        mean C(s_0, y);   accuracy  argmax-accuracy of `model.predict` (NaN if none);
  error       -(s_{beta_2} - s_{beta_1}) / (beta_2 - beta_1), per layer: the finite-difference
              estimate of -ds_beta/dbeta, the analogue of the other estimators' error vector
              (report convention of holoeb.estimators.base, state coordinates). Here
              s_{beta_2} is taken at the *moved* parameters theta_t, an O(eps) difference from EP;
  residual    (B,) state change at the last iteration of phase 1;
  aux         theta_next, u (knobs), lyapunov_step (L_{b1;b2} is not evaluated: see
              holoeb.agnostic.lyapunov), controller_error max|theta_phase1 - theta_{t-1}|,
              phase2_residual, beta1, beta2.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp

from holoeb.agnostic.coupling import check_eps
from holoeb.agnostic.procedure import CONTROLLERS, RELAXATIONS, aeqprop_gradient, aeqprop_step
from holoeb.agnostic.relaxation import relax_state
from holoeb.agnostic.variants import check_beta, check_variant, nudges
from holoeb.estimators.base import Estimator, EstimatorResult, check_positive_int


@dataclasses.dataclass(frozen=True)
class Aeqprop(Estimator):
    """T_free: iterations of phase 1 (and of the beta = 0 prediction relaxation);
    T_nudged: iterations of phase 2 (defaults to T_free). eps: coupling strength (scalar);
    eps_per_param: optional tuple of (top-level parameter name, eps) pairs overriding it
    (per-component coupling, Appendix A). controller_gain: gain of the iterative controller
    in the exact relaxation (1 = dead-beat)."""

    variant: str = "optimistic"
    beta: float = 0.5
    eps: float = 0.1
    eps_per_param: tuple = None
    relaxation: str = "exact"
    controller: str = "one_step"
    T_nudged: int = None
    controller_gain: float = 1.0
    T_free: int = 50
    name = "aeqprop"

    def __post_init__(self):
        super().__post_init__()
        check_variant(self.variant)
        check_beta(self.beta)
        check_eps(self.eps)
        if self.eps_per_param is not None:
            pairs = tuple((str(k), float(v)) for k, v in (dict(self.eps_per_param).items()
                                                           if isinstance(self.eps_per_param, dict) else self.eps_per_param))
            for k, v in pairs:
                if not (math.isfinite(v) and v > 0):
                    raise ValueError(f"eps_per_param[{k!r}] must be finite and > 0, got {v!r}")
            object.__setattr__(self, "eps_per_param", pairs)
        if self.relaxation not in RELAXATIONS:
            raise ValueError(f"unknown relaxation {self.relaxation!r}; choose one of {list(RELAXATIONS)}")
        if self.controller not in CONTROLLERS:
            raise ValueError(f"unknown controller {self.controller!r}; choose one of {list(CONTROLLERS)}")
        if self.T_nudged is not None:
            check_positive_int("T_nudged", self.T_nudged)
        if not (math.isfinite(self.controller_gain) and 0 < self.controller_gain <= 2):
            raise ValueError(f"controller_gain must lie in (0, 2], got {self.controller_gain!r}")
        if self.compare_rbp:
            raise ValueError("compare_rbp is not available for aeqprop (its model is an energy system, not a fixed-point map)")

    @property
    def nudges(self):
        return nudges(self.variant, self.beta)

    def eps_for(self, params):
        """Scalar eps, or a pytree like params with per-parameter overrides."""
        if self.eps_per_param is None:
            return self.eps
        if not isinstance(params, dict):
            raise ValueError("eps_per_param needs a dict of parameters")
        over = dict(self.eps_per_param)
        unknown = sorted(set(over) - set(params))
        if unknown:
            raise ValueError(f"eps_per_param names unknown parameters {unknown}; parameters are {sorted(params)}")
        return {k: jax.tree_util.tree_map(lambda p, e=over.get(k, self.eps): jnp.asarray(e, p.dtype), v)
                for k, v in params.items()}

    def __call__(self, model, params, batch, rng=None):
        x, y = batch
        model.check_batch(x, y)
        if not isinstance(x, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(x))):
            raise ValueError("batch inputs contain NaN or inf")
        return self.estimate(model, params, (x, y), rng)

    def estimate(self, model, params, batch, rng):
        x, y = batch
        b1, b2 = self.nudges
        eps = self.eps_for(params)
        steps2 = self.T_nudged or self.T_free
        out = aeqprop_step(model, params, x, y, eps=eps, beta1=b1, beta2=b2, relaxation=self.relaxation,
                           controller=self.controller, steps1=self.T_free, steps2=steps2,
                           controller_gain=self.controller_gain)
        grads = aeqprop_gradient(params, out.theta, eps, b2 - b1)
        if b1 == 0 and self.relaxation == "exact" and self.controller == "one_step":
            s_free = out.state1
        else:
            s_free = relax_state(model, params, x, y, 0.0, model.init_state(params, x), self.T_free)[0]
        loss = jnp.mean(model.cost(s_free, y))
        if hasattr(model, "predict"):
            acc = jnp.mean(jnp.argmax(model.predict(s_free), -1) == y)
        else:
            acc = jnp.asarray(jnp.nan, loss.dtype)
        error = tuple(-(a - b) / (b2 - b1) for a, b in zip(out.state2, out.state1))
        ctrl = jnp.max(jnp.stack([jnp.max(jnp.abs(a - b)) for a, b in
                                  zip(jax.tree_util.tree_leaves(out.theta1), jax.tree_util.tree_leaves(params))]))
        aux = {"theta_next": out.theta, "u": out.u, "controller_error": ctrl,
               "phase2_residual": jnp.max(out.residual2), "beta1": b1, "beta2": b2}
        return EstimatorResult(grads, s_free, loss, acc, error, out.residual1, aux)
