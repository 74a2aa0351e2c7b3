"""End-of-epoch diagnostics on a fixed probe batch: how a rule's error vectors and update align
with RBP / truncated BP, the Jacobian's symmetry, the weights' angles and norms, and the units
stuck at a clamp (the measurements of holoeb.diagnostics, wired for the training loop)."""
import jax
import jax.numpy as jnp
import numpy as np

from holoeb import homeostasis
from holoeb.compile_cache import cached
from holoeb.config import as_train_config
from holoeb.diagnostics import (active_layer_cosines, clamped_fractions, frozen_fractions, layer_cosines, tree_cosine,
                                weight_angles)
from holoeb.estimators import make_estimator
from holoeb.estimators.base import assemble_grads, rbp_delta

# A layer with at least this fraction of its units at the same clamp for every probe example is reported
# (per epoch, in the log) as disconnected: P-CpL's collapsed DCHN runs reach 0.94-0.96 in layers 2-4.
FROZEN_LAYER_WARNING = 0.9


def _reference_function(model, solve_config, tbp_free, tbp_steps, num_samples, coordinates):
    tbp = make_estimator("tbp", K=tbp_steps, free=tbp_free)

    def reference(params, batch, free_state, rng):
        delta, _ = rbp_delta(model, params, batch, free_state, solve_config)
        g_rbp = assemble_grads(model, params, batch, free_state, delta)["net"]
        g_tbp = tbp(model, params, batch, None, free_state).grads["net"]
        sym = homeostasis.symmetry_measure(model, params["net"], batch.x, free_state, rng, num_samples, coordinates)[0]
        return delta, g_rbp, g_tbp, sym

    return jax.jit(reference)


def make_diagnostics(model, estimator, cfg):
    """On a fixed probe batch: per-layer cosine of the error vector to RBP's delta (on all units and on the
    active ones, holoeb.diagnostics.active_layer_cosines), the per-layer fractions of units at the
    activation's lower / upper bound at the free state (holoeb.diagnostics.clamped_fractions) and at the
    same bound for every probe example (holoeb.diagnostics.frozen_fractions), cosine of
    the parameter update (net parameters) to RBP's gradient and to truncated BP's through
    diagnostics.tbp_steps iterations (both at the estimator's free state), weight angles and
    Jacobian symmetry.

    The reference part (RBP's delta and gradient, TBP's gradient, the symmetry estimate)
    does not depend on the rule: it is one jitted function per (model, settings), compiled
    once for all the rules a process trains (a study)."""
    cfg = as_train_config(cfg)
    reference = cached(_reference_function, model, estimator.solve_config, estimator.free.exactly(0),
                        cfg.diagnostics.tbp_steps, cfg.diagnostics.num_samples, cfg.homeostasis.coordinates)

    @jax.jit
    def own(params, batch, rng):
        res = estimator(model, params, batch, rng)
        return res.error, res.grads["net"], res.free_state

    @jax.jit
    def cosines(params, free_state, error, g_own, delta, g_rbp, g_tbp, sym):
        lower, upper = clamped_fractions(model, free_state)
        return {"cosine_rbp": layer_cosines(error, delta), "clamped_lower": lower, "clamped_upper": upper,
                "frozen": frozen_fractions(model, free_state),
                "cosine_rbp_active": active_layer_cosines(model, free_state, error, delta),
                "weight_angle": weight_angles(model, params), "symmetry": sym,
                "update_cosine_rbp": tree_cosine(g_own, g_rbp), "update_cosine_tbp": tree_cosine(g_own, g_tbp)}

    def diag(params, batch, rng):
        k1, k2 = jax.random.split(rng)
        error, g_own, free_state = own(params, batch, k1)
        delta, g_rbp, g_tbp, sym = reference(params, batch, free_state, k2)
        return cosines(params, free_state, error, g_own, delta, g_rbp, g_tbp, sym)

    return diag


def weight_norms(params):
    """{name: Frobenius norm} of the network's parameters ('/'-joined paths for nested ones)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params["net"])[0]:
        name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        out[name] = float(jnp.linalg.norm(jnp.ravel(leaf)))
    return out


# The probe's entries in an epoch record, in the record's (and metrics.csv's) column order.
PROBE_ENTRIES = ("cosine_rbp", "cosine_rbp_active", "weight_angle", "symmetry", "update_cosine_rbp", "update_cosine_tbp",
                 "clamped_lower", "clamped_upper", "frozen")


def epoch_probe(diag_fn, params, batch, rng, epoch, log=print):
    """The probe diagnostics (a `make_diagnostics` function) at the end of an epoch as plain Python
    values, in PROBE_ENTRIES order. Logged as warnings, not raised (the diagnostics do not decide the
    training): non-finite entries, and layers with at least FROZEN_LAYER_WARNING of their units at the
    same clamp for every probe example (such a layer passes almost no signal forward or error back)."""
    diag = jax.tree_util.tree_map(lambda v: np.asarray(v).tolist(), diag_fn(params, batch, rng))
    bad = sorted(k for k, v in diag.items()
                 if not np.all(np.isfinite(np.asarray(list(v.values()) if isinstance(v, dict) else v, float))))
    if bad:
        log(f"warning: epoch {epoch}: non-finite diagnostics on the probe batch: {', '.join(bad)}")
    dead = [f"layer {l + 1} ({100 * f:.1f}%)" for l, f in enumerate(diag["frozen"]) if f >= FROZEN_LAYER_WARNING]
    if dead:
        log(f"warning: epoch {epoch}: units at the same clamp for every probe example in {', '.join(dead)}: "
            "such a layer passes almost no signal forward and no error backward")
    return {**{k: diag[k] for k in PROBE_ENTRIES}, **diag}  # any further entry after these
