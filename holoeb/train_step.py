"""The training step: theta <- optax update of g = g_estimator + lambda * dL_homeo/dtheta
("Improving equilibrium propagation without weight symmetry through Jacobian homeostasis",
Laborieux & Zenke, arXiv:2309.02214, Eq. 12 and holoeb.homeostasis), applied only when the
loss, states, gradient and new parameters are finite (and, optionally, the free phase
converged); its metrics (loss, accuracy, free / nudged residual statistics) stay on the device."""
import jax
import jax.numpy as jnp
import optax

from holoeb import homeostasis
from holoeb.precision import with_free_dtype
from holoeb.solvers import CONVERGED_TOL


def residual_stats(residual, tol):
    """(max, median, fraction above ``tol``) of per-example residuals; a NaN residual counts
    as above tol and makes the max NaN."""
    return jnp.max(residual), jnp.nanmedian(residual), jnp.mean(~(residual <= tol))


def make_train_step(model, estimator, tx, lam=0.0, homeo_samples=5, coordinates=None, homeo_normalize="per_unit",
                    tol=CONVERGED_TOL, skip_unconverged=False, warm_start="none", probe=None):
    """step(params, opt_state, batch, rng) -> (params, opt_state, metrics); the gradient is the
    estimator's plus lam * dL_homeo/dtheta (holoeb.homeostasis, normalisation ``homeo_normalize``); rng is
    split in two (jax.random.split): the estimator's key and the Hutchinson samples' key.
    Nothing is applied unless the loss, free state, gradients *and* the new parameters and
    optimizer state are all finite (metrics["finite"]), nor, with ``skip_unconverged``, when
    an example's free residual exceeds ``tol`` (metrics["applied"]). metrics also hold the
    free phase's residual max / median, the fraction of examples above ``tol``, and the
    nudged phases' residual max / median / fraction above ``tol`` for estimators that report
    one (aux["nudge_residual"]), and the free phase's iteration count (aux["free_steps"]).

    warm_start "last" / "free" / "example": the step is step(params, opt_state, batch, rng, state) ->
    (params, opt_state, metrics, state); the free phase starts from ``state`` and the step
    returns where the network was left (the result's last_state, "last") or the free state
    ("free", "example"), for the next batch or, "example", for these examples' next visit.

    probe(params, new_params, grads, result) -> dict of arrays: extra per-step measurements
    (e.g. update norms, clamped units) added to metrics, computed inside the jitted step from the
    parameters before and after it (after = what was applied), the full gradient and the
    estimator's result."""

    def step(params, opt_state, batch, rng, init_state=None):
        k_est, k_h = jax.random.split(rng)
        res = estimator(model, params, batch, k_est, init_state)
        grads = res.grads
        worst, median, frac = residual_stats(res.residual, tol)
        metrics = {"loss": res.loss, "accuracy": res.accuracy, "residual": worst, "residual_median": median,
                   "unconverged": frac}
        if "nudge_residual" in res.aux:  # per example (worst nudged phase), or one value for the batch
            n_worst, n_median, n_frac = residual_stats(jnp.atleast_1d(res.aux["nudge_residual"]), tol)
            metrics.update(nudge_residual=n_worst, nudge_residual_median=n_median, nudge_unconverged=n_frac)
        if "free_steps" in res.aux:
            metrics["free_steps"] = res.aux["free_steps"]
        if lam:
            h, hg = homeostasis.homeostatic_grad(
                model, params, batch.x, res.free_state, k_h, homeo_samples, coordinates, homeo_normalize
            )
            grads = jax.tree_util.tree_map(lambda a, b: a + lam * b, grads, hg)
            metrics["homeo_loss"] = h
        updates, new_opt = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        leaves = jax.tree_util.tree_leaves((grads, res.loss, res.free_state, new_params, new_opt))
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in leaves
                                    if jnp.issubdtype(jnp.asarray(v).dtype, jnp.inexact)]))
        apply = finite & (worst <= tol) if skip_unconverged else finite
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(apply, a, b), new, old)
        metrics["finite"] = finite
        metrics["applied"] = apply
        out = keep(new_params, params), keep(new_opt, opt_state), metrics
        if probe is not None:
            metrics.update(probe(params, out[0], grads, res))
        if warm_start == "none":
            return out
        left = res.last_state if (warm_start == "last" and res.last_state is not None) else res.free_state
        return out + (tuple(jnp.real(v).astype(u.dtype) for v, u in zip(left, init_state)),)

    if warm_start == "none":
        return lambda params, opt_state, batch, rng: step(params, opt_state, batch, rng)
    return step


def residual_tol(tcfg):
    """What "converged" means for a training config: training.max_residual, else CONVERGED_TOL."""
    return tcfg.max_residual if tcfg.max_residual is not None else CONVERGED_TOL


def config_train_step(cfg, model, estimator, tx, probe=None):
    """(estimator, step): the training loop's step for a config, neither jitted nor sharded: the
    estimator with the config's free-phase precision, homeostasis weight and samples, convergence
    tolerance (training.max_residual, which also skips unconverged batches) and warm start."""
    tcfg, hcfg = cfg.training, cfg.homeostasis
    estimator = with_free_dtype(estimator, tcfg.free_dtype, tcfg.free_refine_steps)
    tol = residual_tol(tcfg)
    step = make_train_step(model, estimator, tx, hcfg.lambda_, hcfg.num_samples, hcfg.coordinates, hcfg.normalize,
                           tol, skip_unconverged=tcfg.max_residual is not None, warm_start=tcfg.warm_start,
                           probe=probe)
    return estimator, step
