"""The one estimator interface.

Every estimator is a frozen dataclass of its hyper-parameters (validated at
construction, hashable so it can be a static argument of `jax.jit`) and is
called the same way:

    result = estimator(model, params, batch, rng)

returning an `EstimatorResult`. Coordinates of the error vector: every
estimator's ``error`` is an estimate of RBP's neuronal error vector

    delta = -J^{-T} dL_i/du*      (generalized hEP paper, Eq. 4),

per example i, in *pre-activation* coordinates u. For the nudge-based estimators
the readout nudge is a gradient with respect to the activity sigma(u_L), so the
quantity that equals delta (for symmetric weights) is -d sigma(u*)/d beta, by the
push-through identity (I - D W)^{-1} D = D (I - W D)^{-1} with D = diag sigma'(u*).
They therefore estimate e = d sigma(u*)/d beta and report error = -e.

The parameter gradient is always assembled the same way (Eq. 4/6):

    grad_theta = Re[ (dPhi/dtheta)(u*)^T error ] / B

with a vjp of Phi (not hand-written formulas); the readout (w_ro, b_ro) gets the
direct gradient of the loss at the free state.
"""
import abc
import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from holoeb import dynamics
from holoeb.diagnostics import layer_cosines, weight_angles
from holoeb.errors import ConfigError, ModelEstimatorMismatch
from holoeb.linear_solve import SolveConfig, implicit_solve
from holoeb.models.base import FixedPointModel, require_energy_model
from holoeb.solvers import Relaxation


def check_init_state(model, x, init_state):
    """Raise ConfigError unless ``init_state`` has the layers and shapes of model.init_state(x)."""
    ref = model.init_state(x)
    got = tuple(init_state)
    if len(got) != len(ref) or any(jnp.shape(a) != jnp.shape(b) for a, b in zip(got, ref)):
        raise ConfigError(
            f"init_state has layer shapes {[jnp.shape(a) for a in got]}; {type(model).__name__} on this batch "
            f"needs {[jnp.shape(b) for b in ref]}"
        )


class EstimatorResult(NamedTuple):
    grads: Any  # pytree shaped like params: the estimate of d(mean loss)/d(params)
    free_state: Any  # tuple of (B, ...) arrays: u*_0 (or its running-average estimate)
    loss: Any  # mean cross-entropy at the free state
    accuracy: Any  # readout accuracy at the free state
    error: Any  # tuple of per-layer (B, ...) estimates of delta (pre-activation coordinates)
    residual: Any  # (B,) free-phase residual ||F(u*)||
    aux: Any  # dict of estimator-specific diagnostics ("free_steps": iterations the free phase took)
    # the state the relaxations leave the network in (the last nudged/clamped phase's
    # equilibrium for the energy rules; None: the free state). A trainer that starts the
    # next batch where the network was left (training.warm_start="last") starts from it.
    last_state: Any = None


def check_positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_nonzero_beta(beta):
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta == 0:
        raise ConfigError(f"beta must be a finite non-zero real number, got {beta!r}")


@dataclasses.dataclass(frozen=True)
class Estimator(abc.ABC):
    """Hyper-parameters shared by all estimators.

    free: the free phase's `Relaxation` (max steps, tolerance, schedule);
      ``make_estimator(..., T_free=, free_tol=)`` are shorthands for it.
    compare_rbp: also compute RBP's delta at the free state and report the
      per-layer cosine between it and this estimator's error in aux["cosine_rbp"].
    solve_tol / solve_restart / solve_maxiter: GMRES settings of the implicit solves.

    Capabilities (class attributes) checked against the model before any compute:
    ``requires_holomorphic`` (complex nudges: the model's Phi must be holomorphic) and
    ``requires_energy`` (the rule contrasts energies: the model must be an EnergyModel).
    """

    free: Relaxation = Relaxation(150)
    compare_rbp: bool = False
    solve_tol: float = 1e-6
    solve_restart: int = 10
    solve_maxiter: int = 20

    name = "estimator"
    requires_holomorphic = False
    requires_energy = False

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if f.type is Relaxation:
                object.__setattr__(self, f.name, Relaxation.coerce(getattr(self, f.name), f"{self.name}.{f.name}"))

    @property
    def T_free(self):
        return self.free.max_steps

    @property
    def free_tol(self):
        return self.free.tol

    @property
    def free_dtype(self):
        """dtype of the free phase (None: the parameters'; see holoeb.precision)."""
        return self.free.dtype

    @property
    def free_refine_steps(self):
        return self.free.refine_steps

    @property
    def solve_config(self):
        return SolveConfig(self.solve_tol, self.solve_restart, self.solve_maxiter)

    def solve_diagnostics(self, rel):
        """aux entries of an implicit solve from its per-example relative residuals ``rel``:
        the max, and the fraction of examples whose solve did not reach ``solve_tol`` (GMRES
        runs on the whole batch, so one badly conditioned example can lag behind the rest)."""
        return {"solve_residual": jnp.max(rel), "solve_unconverged": jnp.mean(~(rel <= self.solve_tol))}

    def check_model(self, model):
        """Raise ModelEstimatorMismatch (naming both, and what would work) if this estimator cannot run on ``model``."""
        mname = type(model).__name__
        if not isinstance(model, FixedPointModel):
            raise ModelEstimatorMismatch(
                f"estimator {self.name!r}: {mname} is not a holoeb model (subclass holoeb.models.base.FixedPointModel, "
                "or wrap a flax module with holoeb.models.flax_adapter.from_flax)"
            )
        if self.requires_energy:
            require_energy_model(model, f"estimator {self.name!r}")
        if self.requires_holomorphic and not model.holomorphic:
            raise ModelEstimatorMismatch(
                f"estimator {self.name!r} relaxes with complex nudges, but {mname}'s dynamics is not holomorphic "
                "(hard-sigmoid clipping has no complex extension, so u*_beta at complex beta is undefined); "
                "use 'ep' (real nudge), the energy-based rules (c-ep: centered, O(beta^2) bias), 'true', 'rbp' or 'tbp'"
            )

    def __call__(self, model, params, batch, rng, init_state=None):
        """The estimate on ``batch``; the free phase (or, for 'continuous', the oscillation)
        starts from ``init_state`` (a state like model.init_state(x); default: that zero state),
        e.g. the state a previous batch left the network in (warm start)."""
        self.check_model(model)
        model.check_batch(batch)
        batch = dynamics.Batch(*batch)
        if init_state is not None:
            check_init_state(model, batch.x, init_state)
        return self.estimate(model, params, batch, rng, init_state)

    @abc.abstractmethod
    def estimate(self, model, params, batch, rng, init_state=None):
        """The rule itself, on a validated batch (``__call__`` checks model, batch and start state first)."""

    def truncated(self, k):
        """This estimator cut after k steps of its nudged dynamics: exactly k iterations of its
        ``nudge`` relaxation (no tolerance stop). The time axis of the GDU check
        (holoeb.time_resolved); estimators without nudged dynamics raise ConfigError."""
        check_positive_int("k", k)
        if not any(f.name == "nudge" and f.type is Relaxation for f in dataclasses.fields(self)):
            raise ConfigError(f"estimator {self.name!r} has no nudged dynamics to cut after k steps "
                              "(time-resolved checks take EP-family rules, continuous and tbp)")
        return dataclasses.replace(self, nudge=self.nudge.exactly(k))

    # ---- shared pieces -------------------------------------------------------
    def free_phase(self, model, params, x, u0=None):
        """Relax the free dynamics (beta = 0) from ``u0`` (zeros by default) with ``self.free``.
        Returns (Solution, drive)."""
        return self.free.run_model(model, params["net"], x, u0)

    def finish(self, model, params, batch, u_free, error, residual, aux=None, presynaptic_states=None, free_steps=None):
        """Assemble grads from an error vector and collect the common diagnostics (with
        ``free_steps``, the free phase's iteration count, as aux["free_steps"])."""
        aux = dict(aux or {})
        if free_steps is not None:
            aux["free_steps"] = free_steps
        grads = assemble_grads(model, params, batch, u_free, error, presynaptic_states)
        loss = dynamics.loss_at(model, params, u_free, batch.y)
        acc = dynamics.accuracy(model, params, u_free, batch.y)
        if self.compare_rbp:
            delta, _ = rbp_delta(model, params, batch, u_free, self.solve_config)
            aux["cosine_rbp"] = layer_cosines(error, delta)
        aux["weight_angle"] = weight_angles(model, params)
        return EstimatorResult(grads, u_free, loss, acc, tuple(error), residual, aux)


def assemble_grads(model, params, batch, u_free, error, presynaptic_states=None):
    """grad = Re[(dPhi/dtheta)^T error] / B via a vjp of Phi at the free state, plus the
    readout's direct loss gradient.

    If ``presynaptic_states`` (a stacked (K, ...) state) is given, dPhi/dtheta is
    replaced by its average over those states (Eq. 9, continuous-time estimate).
    """
    x, y = batch
    B = x.shape[0]
    net = params["net"]
    cot = tuple(jnp.real(e) / B for e in error)
    if presynaptic_states is None:
        _, pull = jax.vjp(lambda n: model.phi_full(n, u_free, x), net)
        (g_net,) = pull(tuple(c.astype(u.dtype) for c, u in zip(cot, u_free)))
    else:
        # holomorphic vjp in complexified parameters: (mean_k dPhi/dtheta(u_k))^T e
        cdt = jax.tree_util.tree_leaves(presynaptic_states)[0].dtype
        net_c = jax.tree_util.tree_map(lambda p: p.astype(cdt), net)
        x_c = x.astype(cdt)

        def avg_phi(n):
            outs = jax.vmap(lambda u: model.phi_full(n, u, x_c))(presynaptic_states)
            return tuple(jnp.mean(o, axis=0) for o in outs)

        _, pull = jax.vjp(avg_phi, net_c)
        (g_net,) = pull(tuple(c.astype(cdt) for c in cot))
        g_net = jax.tree_util.tree_map(lambda g, p: jnp.real(g).astype(p.dtype), g_net, net)
    u_fixed = jax.lax.stop_gradient(u_free)
    g_ro = jax.grad(lambda ro: dynamics.loss_at(model, {**params, "readout": ro}, u_fixed, y))(params["readout"])
    return {"net": g_net, "readout": g_ro}


def rbp_delta(model, params, batch, u_free, cfg=SolveConfig()):
    """RBP's delta = (I - Phi'^T)^{-1} dL_i/du at the free state, per example
    (pre-activation coordinates; Phi' of the synchronous map `phi_sync`, like `assemble_grads`). Returns (delta, per-example relative residual)."""
    x, y = batch
    drive = model.drive(params["net"], x)
    phi_u = lambda u: model.phi_sync(params["net"], u, drive)  # the map assemble_grads differentiates
    dl_du = jax.grad(lambda u: jnp.sum(model.cost(params, u, y)))(u_free)
    return implicit_solve(phi_u, u_free, dl_du, cfg, transpose=True)
