"""The seven energy-based learning rules (comparative study, Sec. 2, Eqs. 3-9).

Every rule contrasts the energy's parameter gradient at two equilibria reached
with signed perturbations beta_a < beta_b of the output layer:

    g = [dE/dtheta(s_{beta_b}) - dE/dtheta(s_{beta_a})] / (beta_b - beta_a),
    Delta theta = -eta g,

where beta = 0 is the free state s_* (Eq. 1). They differ along two axes:

  perturbation kind  'ep'  : minimise E + beta C(o, y), C = c ||o - y||^2  (Eq. 4)
                     'cpl' : clamp o to (1 - beta) o_* + beta y            (Eq. 7)
  signs (a, b)       'p'   : (0, +beta)   positively perturbed  (Eqs. 5, 8)
                     'n'   : (0, -beta)   negatively perturbed  (same, beta < 0)
                     'c'   : (-beta, +beta) centered, both phases from s_* (Eqs. 6, 9)

so {p, n, c} x {ep, cpl} gives six rules; contrastive learning (CL, Eq. 3) clamps
o to y itself: one-sided, beta = 1 (it equals P-CpL with beta = 1). Each
perturbed phase runs K iterations of the model's schedule (async Eqs. 100-101
or sync Eq. 99) started at the free state, which runs T_free iterations.

Free-state re-relaxation (``rerelax_free=True``, the study's released code): the beta = 0
state of a one-sided rule (P / N rules and CL) is not s_* itself but K further iterations at
beta = 0 started from s_*, as every other phase is K iterations started from s_*, with the
perturbation's output update at beta = 0: the output free for EP, clamped at the free output
o_* for CpL and CL (whose phases relax the hidden layers only; the released code's minimiser
leaves the output layer out of every CL / CpL phase). Both contrasted states then ran the same
K iterations of the same map up to the nudge, so an unconverged free phase's remaining drift
d = s(K iterations at beta = 0) - s_* cancels; without re-relaxation a one-sided rule's estimate
carries dE/dtheta's change along d divided by beta. Default False: beta = 0 is the free state
(Eqs. 3, 5, 8 as printed).

16-bit relaxation: with relax_dtype='bfloat16' (or 'float16') the parameters and
input are cast for the relaxations only; the energy gradients (and therefore the
update) are computed in the parameters' dtype from the promoted states.

The network is left at the equilibrium of the larger beta (the second phase when the
phases run in increasing beta, as in the study's released code: +beta for P / C rules and
CL, the free state for N rules); that is the result's ``last_state``, where a trainer with
training.warm_start="last" starts the next batch's free phase.

Result convention (see `holoeb.estimators.base`): grads estimate d(mean C)/dtheta;
error = -(s_b - s_a) / (beta_b - beta_a), per layer, an estimate of -ds/dbeta.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp

from holoeb import dynamics, energy, readout
from holoeb.diagnostics import layer_cosines
from holoeb.errors import ConfigError
from holoeb.estimators.base import Estimator, EstimatorResult, check_positive_int, rbp_delta
from holoeb.solvers import Relaxation

SIGNS = {"p": (0, 1), "n": (0, -1), "c": (-1, 1)}
PERTURBATIONS = ("ep", "cpl")
RELAX_DTYPES = (None, "float16", "bfloat16", "float32", "float64")
EP_OUTPUTS = ("minimiser", "step")


def output_update(kind, y_onehot, o_free, beta, cost_scale=1.0, ep_output="minimiser"):
    """The output-layer update of a phase perturbed by ``kind`` with signed ``beta``
    (``cost_scale`` c of the nudge's cost C = c ||o - y||^2): 'ep' the minimiser of
    E + beta C (Eq. 4; the free output at beta = 0), or with ``ep_output='step'`` one fixed-point
    step towards it (the released code); 'cpl' the output clamped to (1 - beta) o_* + beta y
    (Eq. 7; o_* at beta = 0); 'cl' the same clamp at beta = 1, i.e. y (Eq. 2), and o_* at beta = 0."""
    if kind == "ep":
        if ep_output == "step":
            return energy.nudged_output_step(y_onehot, beta, cost_scale)
        return energy.nudged_output(y_onehot, beta, cost_scale)
    if kind in ("cpl", "cl"):
        return energy.clamped_output((1.0 - beta) * o_free + beta * y_onehot.astype(o_free.dtype))
    raise ConfigError(f"unknown perturbation kind {kind!r}; choose 'ep', 'cpl' or 'cl'")


@dataclasses.dataclass(frozen=True)
class EnergyRule(Estimator):
    """Shared machinery. free: the free phase (T = 60 iterations, Table 5; shorthand T_free);
    nudge: each perturbed phase (K = 15 iterations in the paper; shorthand T_nudge);
    relax_dtype: dtype of the relaxations (None: the parameters');
    rerelax_free: the beta = 0 state of a one-sided rule is ``nudge`` more iterations at beta = 0
    from the free state (released code) instead of the free state itself;
    ep_output: the EP-nudged output's update, 'minimiser' (the exact conditional minimiser of
    E + beta C, Eq. 4) or 'step' (one fixed-point step o <- a - 2 beta c (o - y) per iteration,
    the released code's; same equilibrium, different K-iteration phases)."""

    free: Relaxation = Relaxation(60)
    nudge: Relaxation = Relaxation(15)
    relax_dtype: str = None
    rerelax_free: bool = False
    ep_output: str = "minimiser"

    name = "energy-rule"
    requires_energy = True
    perturbation = None  # 'ep' | 'cpl' | 'cl'
    sign = None  # 'p' | 'n' | 'c'

    def __post_init__(self):
        super().__post_init__()
        check_positive_int("T_nudge", self.nudge.max_steps)
        if self.relax_dtype not in RELAX_DTYPES:
            raise ConfigError(f"relax_dtype must be one of {RELAX_DTYPES}, got {self.relax_dtype!r}")
        if not isinstance(self.rerelax_free, bool):
            raise ConfigError(f"rerelax_free must be true or false, got {self.rerelax_free!r}")
        if self.ep_output not in EP_OUTPUTS:
            raise ConfigError(f"ep_output must be one of {EP_OUTPUTS}, got {self.ep_output!r}")

    @property
    def magnitude(self):
        return 1.0

    def phase_betas(self):
        """(beta_a, beta_b), beta_a < beta_b up to the sign convention of the rule."""
        a, b = SIGNS[self.sign]
        return a * self.magnitude, b * self.magnitude

    def relax_inputs(self, params, x):
        dt = jnp.dtype(self.relax_dtype) if self.relax_dtype else energy.param_dtype(params["net"])
        net = jax.tree_util.tree_map(lambda p: p.astype(dt), params["net"])
        return net, x.astype(dt)

    def estimate(self, model, params, batch, rng, init_state=None):
        x, y = batch
        net_r, x_r = self.relax_inputs(params, x)
        drive = model.drive(net_r, x_r)

        def phase(relaxation, s_start, output_update=energy.free_output):
            update = lambda s, g: energy.layer_update(model, net_r, s, drive, g, output_update)
            return relaxation.run_layers(update, s_start, model.schedule)

        s_init = model.init_state(x_r) if init_state is None else tuple(v.astype(x_r.dtype) for v in init_state)
        free = phase(self.free, s_init)
        s0 = free.state
        y1 = readout.one_hot(y, model.num_classes, x_r.dtype)
        states, residuals = {0.0: s0}, []
        for beta in self.phase_betas():
            if beta == 0.0 and not self.rerelax_free:
                continue
            out = output_update(self.perturbation, y1, s0[-1], beta, model.cost_scale, self.ep_output)
            sol = phase(self.nudge, s0, out)
            states[beta] = sol.state
            residuals.append(sol.residual)
        (beta_a, beta_b) = self.phase_betas()
        s_a, s_b = states[beta_a], states[beta_b]
        g_net = energy.contrast_grad(model, params["net"], x, s_a, beta_a, s_b, beta_b)
        dt = energy.param_dtype(params["net"])
        error = tuple(-(b.astype(dt) - a.astype(dt)) / (beta_b - beta_a) for a, b in zip(s_a, s_b))
        s0f = tuple(v.astype(dt) for v in s0)
        aux = {"nudge_residual": jnp.max(jnp.stack(residuals), axis=0), "weight_angle": {},  # (B,), worst phase
               "free_steps": free.steps}
        if self.compare_rbp:
            delta, _ = rbp_delta(model, params, dynamics.Batch(x, y), s0f, self.solve_config)
            aux["cosine_rbp"] = layer_cosines(error, delta)
        grads = {"net": g_net, "readout": jax.tree_util.tree_map(jnp.zeros_like, params["readout"])}
        return EstimatorResult(
            grads,
            s0f,
            dynamics.loss_at(model, params, s0f, y),
            dynamics.accuracy(model, params, s0f, y),
            error,
            free.residual.astype(dt),
            aux,
            tuple(v.astype(dt) for v in states[max(beta_a, beta_b)]),  # the network is left at the larger beta
        )


@dataclasses.dataclass(frozen=True)
class PerturbedRule(EnergyRule):
    """EP / CpL rules: beta > 0 is the perturbation strength, the sign comes from the rule."""

    beta: float = 0.25  # Table 5, comparative study

    def __post_init__(self):
        super().__post_init__()
        b = self.beta
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b <= 0:
            raise ConfigError(
                f"{self.name}: beta must be a finite positive number (the rule sets the sign), got {b!r}"
            )

    @property
    def magnitude(self):
        return float(self.beta)


@dataclasses.dataclass(frozen=True)
class ContrastiveLearning(EnergyRule):
    """CL (Movellan 1991, Eq. 3): output clamped to y, one-sided with beta = 1."""

    name = "cl"
    perturbation = "cl"
    sign = "p"


def _make_rule(kind, sign):
    name = f"{sign}-{kind}"
    doc = f"{sign.upper()}-{kind.upper() if kind == 'ep' else 'CpL'}: perturbation {kind!r}, signs {SIGNS[sign]} x beta."
    cls = type(name.replace("-", "_").upper(), (PerturbedRule,), {"name": name, "perturbation": kind, "sign": sign,
                                                                   "__doc__": doc, "__module__": __name__})
    return dataclasses.dataclass(frozen=True)(cls)


RULES = {"cl": ContrastiveLearning}
RULES.update({f"{s}-{k}": _make_rule(k, s) for k in PERTURBATIONS for s in SIGNS})
