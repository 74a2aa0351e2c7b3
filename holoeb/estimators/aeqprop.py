"""Agnostic equilibrium propagation behind the common estimator interface
("Agnostic Physics-Driven Deep Learning", Scellier, Mishra, Bengio, Ollivier, arXiv:2205.15021,
Sections 2 and 4; Theorem 1 / Theorem 3).

Runs on every `holoeb.models.base.EnergyModel` ('hopfield', 'dchn', and the regression system
holoeb.models.fourier_regression.FourierRegression); other models are refused with
ModelEstimatorMismatch. One call runs phases 1 and 2 of
`holoeb.estimators.aeqprop_procedure.aeqprop_step` from theta_{t-1} = params
({"net": ..., "readout": {}}) and reports

    grads = (theta_{t-1} - theta_t) / (eps_k (beta_2 - beta_1))     (Theorem 1: ~ dL/dtheta)

with the structure of params, so that SGD with per-component step eps_k * beta reproduces the
Aeqprop parameters exactly (``aux["theta_next"]`` holds theta_t itself). beta_2 - beta_1 = beta
for every variant. Theorem 1: grads = dL/dtheta + O(eps beta + beta^2) (O(eps beta + beta^2)
relative to eps beta dL/dtheta; the beta^2 term is O(beta) for the optimistic and
pessimistic variants' Lyapunov functions, Theorem 3).

Phase lengths: ``free`` (phase 1, and the beta = 0 prediction relaxation) and ``nudge``
(phase 2) are `holoeb.solvers.Relaxation` objects (shorthands T_free / free_tol and
T_nudge / nudge_tol of make_estimator).

Other fields of the result:
  free_state  s_0(theta_{t-1}): equilibrium without nudge at fixed parameters (the prediction);
  loss        mean C(s_0, y);   accuracy  argmax-accuracy of `model.predict` (NaN for real targets);
  error       -(s_{beta_2} - s_{beta_1}) / (beta_2 - beta_1), per layer: the finite-difference
              estimate of -ds_beta/dbeta, the analogue of the other estimators' error vector
              (report convention of holoeb.estimators.base, state coordinates). Here
              s_{beta_2} is taken at the *moved* parameters theta_t, an O(eps) difference from EP;
  residual    (B,) state change at the last iteration of phase 1;
  aux         theta_next, u (knobs), controller_error max|theta_phase1 - theta_{t-1}|,
              phase2_residual (max) and nudge_residual (per example, which training logs as
              the nudged residual), beta1, beta2 (L_{b1;b2} is not evaluated: see
              holoeb.estimators.aeqprop_lyapunov).
"""
import dataclasses
import math

import jax
import jax.numpy as jnp

from holoeb.errors import ConfigError
from holoeb.estimators.aeqprop_coupling import check_eps
from holoeb.estimators.aeqprop_procedure import CONTROLLERS, RELAXATIONS, aeqprop_gradient, aeqprop_step
from holoeb.estimators.aeqprop_relaxation import relax_state
from holoeb.estimators.aeqprop_variants import check_beta, check_variant, nudges
from holoeb.estimators.base import Estimator, EstimatorResult, check_init_state
from holoeb.solvers import Relaxation


@dataclasses.dataclass(frozen=True)
class Aeqprop(Estimator):
    """free: phase 1 (and the beta = 0 prediction relaxation); nudge: phase 2.
    eps: coupling strength (scalar); eps_per_param: optional tuple of (parameter name in
    params["net"], eps) pairs overriding it (per-component coupling, Appendix A).
    controller_gain: gain of the iterative controller in the exact relaxation (1 = dead-beat).
    input_shortcut: optional speed-up of phase 2 for the dense Hopfield ('hopfield' only, exact
    relaxation, scalar eps on w1): x w1 is updated through the B x B Gram matrix x x^T instead
    of materialising w1 every iteration (same result; see aeqprop_relaxation.dense_input_phase2)."""

    free: Relaxation = Relaxation(50)
    nudge: Relaxation = Relaxation(50)
    variant: str = "optimistic"
    beta: float = 0.5
    eps: float = 0.1
    eps_per_param: tuple = None
    relaxation: str = "exact"
    controller: str = "one_step"
    controller_gain: float = 1.0
    input_shortcut: bool = False
    name = "aeqprop"
    requires_energy = True  # Estimator.check_model refuses non-energy models (ModelEstimatorMismatch)

    def __post_init__(self):
        super().__post_init__()
        check_variant(self.variant)
        check_beta(self.beta)
        check_eps(self.eps)
        if self.eps_per_param is not None:
            items = self.eps_per_param.items() if isinstance(self.eps_per_param, dict) else self.eps_per_param
            pairs = tuple((str(k), float(v)) for k, v in items)
            for k, v in pairs:
                if not (math.isfinite(v) and v > 0):
                    raise ConfigError(f"eps_per_param[{k!r}] must be finite and > 0, got {v!r}")
            object.__setattr__(self, "eps_per_param", pairs)
        if self.relaxation not in RELAXATIONS:
            raise ConfigError(f"unknown relaxation {self.relaxation!r}; choose one of {list(RELAXATIONS)}")
        if self.controller not in CONTROLLERS:
            raise ConfigError(f"unknown controller {self.controller!r}; choose one of {list(CONTROLLERS)}")
        if not (math.isfinite(self.controller_gain) and 0 < self.controller_gain <= 2):
            raise ConfigError(f"controller_gain must lie in (0, 2], got {self.controller_gain!r}")
        if self.input_shortcut and self.relaxation != "exact":
            raise ConfigError("input_shortcut applies to relaxation='exact' only")
        if self.compare_rbp:
            raise ConfigError("compare_rbp is not available for aeqprop (it reports its own error, see the docstring)")

    @property
    def T_nudge(self):
        return self.nudge.max_steps

    @property
    def nudges(self):
        return nudges(self.variant, self.beta)

    def eps_for(self, params):
        """Scalar eps, or a pytree like params with per-parameter overrides (names in params["net"])."""
        if self.eps_per_param is None:
            return self.eps
        over = dict(self.eps_per_param)
        unknown = sorted(set(over) - set(params["net"]))
        if unknown:
            raise ConfigError(f"eps_per_param names unknown parameters {unknown}; parameters are {sorted(params['net'])}")
        net = {k: jax.tree_util.tree_map(lambda p, e=over.get(k, self.eps): jnp.asarray(e, p.dtype), v)
               for k, v in params["net"].items()}
        return {**jax.tree_util.tree_map(lambda p: jnp.asarray(self.eps, p.dtype), params), "net": net}

    def __call__(self, model, params, batch, rng=None, init_state=None):
        self.check_model(model)
        model.check_batch(batch)
        x = batch[0]
        if not isinstance(x, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(x))):
            raise ConfigError("batch inputs contain NaN or inf")
        if init_state is not None:
            check_init_state(model, x, init_state)
        return self.estimate(model, params, tuple(batch), rng, init_state)

    def estimate(self, model, params, batch, rng, init_state=None):
        x, y = batch
        b1, b2 = self.nudges
        eps = self.eps_for(params)
        out = aeqprop_step(model, params, x, y, eps=eps, beta1=b1, beta2=b2, relaxation=self.relaxation,
                           controller=self.controller, steps1=self.free, steps2=self.nudge,
                           controller_gain=self.controller_gain, input_shortcut=self.input_shortcut, s0=init_state)
        grads = aeqprop_gradient(params, out.theta, eps, b2 - b1)
        if b1 == 0 and self.relaxation == "exact" and self.controller == "one_step":
            s_free = out.state1
        else:
            s_free = relax_state(model, params, x, y, 0.0, model.init_state(x) if init_state is None else init_state,
                                 self.free)[0]
        loss = jnp.mean(model.cost(params, s_free, y))
        if jnp.issubdtype(y.dtype, jnp.integer):
            acc = jnp.mean(jnp.argmax(model.predict(params, s_free), -1) == y)
        else:
            acc = jnp.asarray(jnp.nan, loss.dtype)
        error = tuple(-(a - b) / (b2 - b1) for a, b in zip(out.state2, out.state1))
        ctrl = jnp.max(jnp.stack([jnp.max(jnp.abs(a - b)) for a, b in
                                  zip(jax.tree_util.tree_leaves(out.theta1), jax.tree_util.tree_leaves(params))]))
        aux = {"theta_next": out.theta, "u": out.u, "controller_error": ctrl,
               "phase2_residual": jnp.max(out.residual2), "beta1": b1, "beta2": b2,
               "nudge_residual": out.residual2}  # per example: logged by training like the nudged phases
        return EstimatorResult(grads, s_free, loss, acc, error, out.residual1, aux, out.state2)
