"""Finite-nudge bias study (generalized hEP paper, Sec. 3.1-3.2, Fig. 2a,b, App. D.1).

For one model, parameters and batch, every nudge-based estimate of the neuronal
error vector is compared, over a log grid of teaching amplitudes |beta|, with

  * the exact derivative ``true``  e_true = d sigma(u*)/d beta = sigma'(u*) (I - Phi')^{-1} nudge  (Eq. 5),
  * RBP's delta = (I - Phi'^T)^{-1} dL/du*                                                      (Eq. 4),

both in the library's error coordinates (see `holoeb.estimators.base`: every
``error`` estimates delta; nudge-based ones report error = -e). Reported per
estimator and |beta|, averaged over the batch:

  cos_true / relerr_true     cosine and relative error ||err - err_true|| / ||err_true|| (per layer, overall)
  cos_rbp                    cosine of err with delta (what Fig. 2a,b plots)
  grad_cos_rbp / _true       cosine of the parameter gradient (Eq. 6) with RBP's / true's gradient

Theory (App. D.1): the N-point Cauchy rule of a holomorphic f has leading error
f^{(N+1)}(0) |beta|^N / (N+1)!; so relerr ~ |beta|^N (N = 1 is one-sided EP, ~|beta|),
and the real centered difference (f(b) - f(-b)) / 2b has error f'''(0) b^2 / 6 = N = 2.

Cost. The free phase, the true solve and the RBP solve are done once per batch
(`reference`); every estimator is a function of (reference, beta) jitted once
with beta traced, so a whole |beta| grid costs one compilation per estimator.
"""
import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from holoeb import dynamics
from holoeb.diagnostics import active_layer_cosines, flatten_examples, layer_cosines, overall_cosine, tree_cosine
from holoeb.estimators.base import assemble_grads, rbp_delta
from holoeb.estimators.cauchy import cauchy_activity_derivative
from holoeb.estimators.continuous import oscillating_states, running_estimates
from holoeb.estimators.true_derivative import true_activity_derivative
from holoeb.linear_solve import SolveConfig
from holoeb.models.base import EnergyModel
from holoeb.solvers import Relaxation

NATIVE_KINDS = ("ep", "ep-neg", "centered", "cauchy", "continuous")


# --------------------------------------------------------------------------- specs
@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """One curve of the study. kind in NATIVE_KINDS or a registered estimator name
    (e.g. the energy rules), N = Cauchy points (cauchy) or points per period
    (continuous), periods = periods of the continuous estimate."""

    kind: str
    N: int = 0
    periods: int = 0

    @property
    def label(self):
        if self.kind == "cauchy":
            return f"cauchy-N{self.N}"
        if self.kind == "continuous":
            return f"continuous-N{self.N}-P{self.periods}"
        return self.kind

    @property
    def order(self):
        """Theoretical order of the finite-nudge bias in |beta| (None if not a Cauchy rule)."""
        return {"ep": 1, "ep-neg": 1, "centered": 2, "cauchy": self.N, "continuous": self.N}.get(self.kind)

    @property
    def beta_independent(self):
        """True for a registered estimator without a ``beta`` field (CL, which clamps
        instead of nudging): its estimate is computed once and repeated along the |beta| grid."""
        from holoeb.estimators import estimator_fields

        return self.kind not in NATIVE_KINDS and "beta" not in estimator_fields(self.kind)


def parse_spec(text):
    """'ep', 'ep-neg', 'centered', 'cauchy:N', 'continuous:N:P' or a registered estimator name."""
    from holoeb.estimators import ESTIMATORS

    parts = text.split(":")
    kind = parts[0]
    try:
        nums = [int(p) for p in parts[1:]]
    except ValueError:
        raise ValueError(f"bad estimator spec {text!r}: expected integers after ':'") from None
    if kind == "cauchy":
        if len(nums) != 1 or nums[0] < 1:
            raise ValueError(f"bad estimator spec {text!r}: use cauchy:N with N >= 1")
        return SweepSpec("cauchy", nums[0])
    if kind == "continuous":
        if len(nums) != 2 or nums[0] < 2 or nums[1] < 1:
            raise ValueError(f"bad estimator spec {text!r}: use continuous:N:P with N >= 2 points, P >= 1 periods")
        return SweepSpec("continuous", nums[0], nums[1])
    if kind in ("ep", "ep-neg", "centered") and not nums:
        return SweepSpec(kind)
    if kind in ("true", "rbp", "tbp"):
        raise ValueError(f"{kind!r} has no nudge: it is the reference, not a sweep curve")
    if kind in ESTIMATORS and not nums:
        return SweepSpec(kind)
    raise ValueError(
        f"unknown estimator spec {text!r}; use ep, ep-neg, centered, cauchy:N, continuous:N:P "
        f"or one of the registered estimators {sorted(k for k in ESTIMATORS if k not in ('true', 'rbp', 'tbp'))}"
    )


def energy_rule_names():
    from holoeb.estimators import ESTIMATORS

    return [n for n in ("cl", "p-ep", "n-ep", "c-ep", "p-cpl", "n-cpl", "c-cpl") if n in ESTIMATORS]


def default_specs(model, max_N=8, continuous_N=4, continuous_periods=5):
    """ep, centered 2-point, Cauchy N = 1..max_N, continuous (N points, P periods), and the
    seven energy rules when the model has an energy and they are registered."""
    specs = [SweepSpec("ep"), SweepSpec("centered")] + [SweepSpec("cauchy", n) for n in range(1, max_N + 1)]
    if continuous_periods:
        specs.append(SweepSpec("continuous", continuous_N, continuous_periods))
    if isinstance(model, EnergyModel):
        specs += [SweepSpec(n) for n in energy_rule_names()]
    return specs


def check_betas(betas):
    betas = np.asarray(betas, dtype=float)
    if betas.ndim != 1 or betas.size == 0 or not np.all(np.isfinite(betas)) or np.any(betas <= 0):
        raise ValueError(f"the |beta| grid must be a non-empty list of finite positive numbers, got {betas.tolist()}")
    return np.sort(betas)


def log_grid(beta_min, beta_max, per_decade=3):
    """beta_min * 10^(k / per_decade) for k = 0, 1, ... while <= beta_max (so 5e-4 with
    3 per decade hits the paper's |beta| = 0.05 and 0.5)."""
    if not (beta_min > 0 and beta_max >= beta_min and per_decade >= 1):
        raise ValueError(f"need 0 < beta_min <= beta_max and per_decade >= 1, got ({beta_min}, {beta_max}, {per_decade})")
    n = int(np.floor(np.log10(beta_max / beta_min) * per_decade + 1e-9)) + 1
    return beta_min * 10.0 ** (np.arange(n) / per_decade)


# --------------------------------------------------------------------------- reference
class Reference(NamedTuple):
    u0: Any  # free fixed point
    drive: Any
    err_true: Any  # -d sigma(u*)/d beta (exact, Eq. 5), pre-activation error coordinates
    delta: Any  # RBP's delta (Eq. 4)
    grads_true: Any
    grads_rbp: Any
    free_residual: Any  # (B,)
    true_residual: Any  # (B,) GMRES relative residuals
    rbp_residual: Any


def reference(model, params, x, y, T_free, free_tol=None, cfg=SolveConfig()):
    """Free phase, exact d_beta sigma(u*) and RBP delta at the free state: computed once."""
    batch = dynamics.Batch(x, y)
    free, drive = Relaxation(int(T_free), free_tol).run_model(model, params["net"], x)
    u0 = free.state
    e, _, rel_t = true_activity_derivative(model, params, drive, y, u0, cfg)
    err_true = tuple(-v for v in e)
    delta, rel_r = rbp_delta(model, params, batch, u0, cfg)
    g_true = assemble_grads(model, params, batch, u0, err_true)
    g_rbp = assemble_grads(model, params, batch, u0, delta)
    return Reference(u0, drive, err_true, tuple(delta), g_true, g_rbp, free.residual, rel_t, rel_r)


# --------------------------------------------------------------------------- metrics
def per_example_relerr(a, b, eps=1e-30):
    """||a - b|| / ||b|| per example for (B, ...) arrays."""
    a = jnp.real(a).reshape(a.shape[0], -1)
    b = jnp.real(b).reshape(b.shape[0], -1)
    return jnp.linalg.norm(a - b, axis=1) / jnp.maximum(jnp.linalg.norm(b, axis=1), eps)


def error_metrics(model, error, ref):
    """Batch-mean cosine / relative error of an error vector against true and RBP (the cosine to
    RBP's delta also on the units active at the free state: ``cos_rbp_active``)."""
    return {
        "cos_true": layer_cosines(error, ref.err_true),
        "cos_true_overall": jnp.mean(overall_cosine(error, ref.err_true)),
        "relerr_true": jnp.stack([jnp.mean(per_example_relerr(e, t)) for e, t in zip(error, ref.err_true)]),
        "relerr_true_overall": jnp.mean(per_example_relerr(flatten_examples(error), flatten_examples(ref.err_true))),
        "cos_rbp": layer_cosines(error, ref.delta),
        "cos_rbp_overall": jnp.mean(overall_cosine(error, ref.delta)),
        "cos_rbp_active": active_layer_cosines(model, ref.u0, error, ref.delta),
    }


def grad_metrics(grads, ref):
    """Cosine of the network-parameter gradient with RBP's (per parameter array and
    overall) and with the gradient built from the true derivative. The readout's
    gradient is the same direct loss gradient for every estimator, so it is left out."""
    g, gr, gt = grads["net"], ref.grads_rbp["net"], ref.grads_true["net"]
    return {
        "grad_cos_rbp": {k: tree_cosine(g[k], gr[k]) for k in sorted(g)},
        "grad_cos_rbp_overall": tree_cosine(g, gr),
        "grad_cos_true_overall": tree_cosine(g, gt),
    }


def all_metrics(model, params, x, y, ref, error, u_free=None, presynaptic_states=None):
    batch = dynamics.Batch(x, y)
    u = ref.u0 if u_free is None else u_free
    grads = assemble_grads(model, params, batch, u, error, presynaptic_states)
    return {**error_metrics(model, error, ref), **grad_metrics(grads, ref)}


# --------------------------------------------------------------------------- estimates with traced beta
def ep_error(model, params, ref, y, beta, T_nudge):
    """One-sided EP (Eq. 6): -(sigma(u*_beta) - sigma(u*_0)) / beta, signed beta."""
    return cauchy_error(model, params, ref, y, beta, 1, T_nudge)


def centered_error(model, params, ref, y, beta, T_nudge):
    """Real centered 2-point difference -(sigma(u*_b) - sigma(u*_-b)) / 2b (bias O(b^2)),
    i.e. the N = 2 Cauchy rule."""
    return cauchy_error(model, params, ref, y, beta, 2, T_nudge)


def cauchy_error(model, params, ref, y, beta, N, T_nudge):
    """N-point Cauchy estimate (Eq. 7, App. D.1) with a traced radius |beta|, so one
    compilation serves every |beta|: -`cauchy_activity_derivative`."""
    e, _ = cauchy_activity_derivative(model, params, ref.drive, y, ref.u0, beta, N, Relaxation(int(T_nudge)))
    return tuple(-v for v in e)


def continuous_estimates(model, params, x, y, beta, N, steps_per_point, periods):
    """Continuous-time oscillating nudge (Eqs. 8-9, App. C.1) with a traced |beta|,
    read out after every period p = 1..P from one run (see
    `holoeb.estimators.continuous.running_estimates`).

    Returns (errors: tuple of (P, B, ...) = -e_p, free-state estimates (P, B, ...),
    visited states (P N, B, ...))."""
    states = oscillating_states(model, params, x, y, beta, N, steps_per_point, periods)
    es, frees = running_estimates(model, states, beta, N)
    return tuple(-v for v in es), frees, states


# --------------------------------------------------------------------------- jitted evaluators
def make_evaluator(model, spec, T_nudge=20, steps_per_point=60, T_free=150):
    """f(params, x, y, ref, beta) -> metrics dict (or a list of dicts, one per period, for
    continuous). Jitted once; beta is a traced scalar (except for generic estimators)."""
    kind = spec.kind
    if kind in ("ep", "ep-neg", "centered", "cauchy"):

        def f(params, x, y, ref, beta):
            if kind == "ep":
                err = ep_error(model, params, ref, y, beta, T_nudge)
            elif kind == "ep-neg":
                err = ep_error(model, params, ref, y, -beta, T_nudge)
            elif kind == "centered":
                err = centered_error(model, params, ref, y, beta, T_nudge)
            else:
                err = cauchy_error(model, params, ref, y, beta, spec.N, T_nudge)
            return all_metrics(model, params, x, y, ref, err)

        return jax.jit(f)
    if kind == "continuous":

        def g(params, x, y, ref, beta):
            errs, frees, states = continuous_estimates(model, params, x, y, beta, spec.N, steps_per_point, spec.periods)
            out = []
            for p in range(spec.periods):
                err = tuple(e[p] for e in errs)
                u = tuple(v[p] for v in frees)
                pre = tuple(s[: (p + 1) * spec.N] for s in states)
                out.append(all_metrics(model, params, x, y, ref, err, u_free=u, presynaptic_states=pre))
            return out

        return jax.jit(g)
    return generic_evaluator(model, spec.kind, T_free)


def generic_evaluator(model, name, T_free):
    """Any registered estimator (e.g. the energy rules): built per |beta| (its beta is
    a static hyper-parameter) and compared with the shared reference."""
    from holoeb.estimators import estimator_fields, make_estimator

    has_beta = "beta" in estimator_fields(name)
    hp = {"T_free": T_free} if "T_free" in estimator_fields(name) else {}
    cache = {}

    def f(params, x, y, ref, beta):
        key = float(beta) if has_beta else None
        if key not in cache:
            est = make_estimator(name, **hp, **({"beta": key} if has_beta else {}))

            def run(params, x, y, ref):
                res = est(model, params, dynamics.Batch(x, y), jax.random.PRNGKey(0))
                return {**error_metrics(model, res.error, ref), **grad_metrics(res.grads, ref)}

            cache[key] = jax.jit(run)
        return cache[key](params, x, y, ref)

    return f


# --------------------------------------------------------------------------- sweep
def _to_py(tree):
    return jax.tree_util.tree_map(lambda v: float(v) if np.ndim(v) == 0 else np.asarray(v, float).tolist(), tree)


def _mean_dicts(ds):
    return jax.tree_util.tree_map(lambda *v: np.mean(np.stack([np.asarray(a, float) for a in v]), axis=0), *ds)


def reference_summary(model, ref):
    """The beta-independent comparison true vs RBP (the asymmetry ceiling of Fig. 2b)."""
    return {
        "cos_true_rbp": layer_cosines(ref.err_true, ref.delta),
        "cos_true_rbp_overall": jnp.mean(overall_cosine(ref.err_true, ref.delta)),
        "cos_true_rbp_active": active_layer_cosines(model, ref.u0, ref.err_true, ref.delta),
        "grad_cos_true_rbp": {k: tree_cosine(ref.grads_true["net"][k], ref.grads_rbp["net"][k]) for k in sorted(ref.grads_true["net"])},
        "grad_cos_true_rbp_overall": tree_cosine(ref.grads_true["net"], ref.grads_rbp["net"]),
        "free_residual_max": jnp.max(ref.free_residual),
        "true_solve_residual_max": jnp.max(ref.true_residual),
        "rbp_solve_residual_max": jnp.max(ref.rbp_residual),
    }


def bias_sweep(model, params, batches, betas, specs, T_free=150, free_tol=None, T_nudge=20, steps_per_point=60,
               solve_cfg=SolveConfig(), evaluators=None, log=None, ref_fn=None):
    """Run the study on a list of (x, y) batches. Returns a JSON-able dict:
    {"betas", "reference": {...}, "estimators": {label: {"order", "metrics": [per-beta dict]}}}.
    ``evaluators`` (label -> jitted fn, from `make_evaluators`) may be shared between
    calls with the same model so nothing is recompiled; so may ``ref_fn`` (from
    `make_reference_fn`)."""
    betas = check_betas(betas)
    if not batches:
        raise ValueError("need at least one batch")
    evaluators = evaluators if evaluators is not None else make_evaluators(model, specs, T_nudge, steps_per_point, T_free)
    ref_fn = ref_fn or make_reference_fn(model, T_free, free_tol, solve_cfg)
    refs = [(x, y, ref_fn(params, x, y)) for x, y in batches]
    out = {"betas": betas.tolist(), "reference": _to_py(_mean_dicts([_to_py(reference_summary(model, r)) for _, _, r in refs])),
           "estimators": {}}
    for spec in specs:
        f = evaluators[spec.label]
        per_beta = []
        for b in betas:
            if spec.beta_independent and per_beta:
                per_beta.append(per_beta[0])
                continue
            try:
                vals = [f(params, x, y, r, jnp.asarray(b, x.dtype)) for x, y, r in refs]
            except ValueError as e:  # e.g. a rule that forbids this beta
                per_beta.append({"invalid": str(e)})
                continue
            per_beta.append(_to_py(_mean_dicts([_to_py(v) for v in vals])))
        if spec.kind == "continuous":
            for p in range(spec.periods):
                lab = f"continuous-N{spec.N}-P{p + 1}"
                out["estimators"][lab] = {"kind": "continuous", "order": spec.N, "periods": p + 1,
                                          "metrics": [m[p] if isinstance(m, list) else m for m in per_beta]}
        else:
            out["estimators"][spec.label] = {"kind": spec.kind, "order": spec.order, "metrics": per_beta}
        if log:
            last = per_beta[int(np.argmin(np.abs(np.log(betas / 0.5))))]
            if isinstance(last, list):
                last = last[-1]
            log(f"  {spec.label:>22s}: cos_rbp(|beta|={betas[int(np.argmin(np.abs(np.log(betas / 0.5))))]:.3g}) = {last.get('cos_rbp_overall', float('nan')):.4f}")
    return out


def make_reference_fn(model, T_free=150, free_tol=None, solve_cfg=SolveConfig()):
    """Jitted (params, x, y) -> `Reference`."""
    return jax.jit(lambda p, x, y: reference(model, p, x, y, T_free, free_tol, solve_cfg))


def make_evaluators(model, specs, T_nudge=20, steps_per_point=60, T_free=150):
    return {s.label: make_evaluator(model, s, T_nudge, steps_per_point, T_free) for s in specs}


# --------------------------------------------------------------------------- analysis
def loglog_slope(betas, values, beta_max=None, floor=0.0):
    """Least-squares slope of log(values) vs log(betas), on betas <= beta_max and values > floor."""
    b, v = np.asarray(betas, float), np.asarray(values, float)
    keep = np.isfinite(v) & (v > floor)
    if beta_max is not None:
        keep &= b <= beta_max
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(b[keep]), np.log(v[keep]), 1)[0])


def theory_bias(betas, N):
    """Leading relative-bias scale |beta|^N / (N+1)! of the N-point rule (App. D.1)."""
    return np.asarray(betas, float) ** N / math.factorial(N + 1)


def curve(result, label, key="cos_rbp_overall"):
    """The per-beta values of one metric of one estimator (nan where invalid)."""
    return np.array([m.get(key, np.nan) if isinstance(m.get(key, np.nan), (int, float)) else np.nan
                     for m in result["estimators"][label]["metrics"]], float)
