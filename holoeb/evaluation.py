"""Evaluation by free relaxation: loss, top-1 / top-k error and the relaxation's residual of a
model over a dataset, batched, padded to the device count and split over a mesh."""
import jax
import jax.numpy as jnp
import numpy as np

from holoeb import dynamics, parallel
from holoeb.compile_cache import cached
from holoeb.data.pipeline import batches, prefetch
from holoeb.solvers import CONVERGED_TOL, relax


def make_eval_step(model, T_free, topk=5, per_example_residual=False):
    """evaluate(params, batch, mask=None) -> (sum loss, sum top-1 correct, sum top-k correct,
    residual), sums over the rows with mask 1 (mask pads batches to a multiple of the device
    count); residual is the max over those rows, or with ``per_example_residual`` the (B,)
    residuals with the padded rows set to 0 (for medians and unconverged fractions)."""

    def evaluate(params, batch, mask=None):
        x, y = batch
        mask = jnp.ones(y.shape, jnp.float32) if mask is None else mask
        drive = model.drive(params["net"], x)
        rel = relax(lambda u: model.phi(params["net"], u, drive), model.init_state(x), T_free)
        loss = jnp.real(model.cost(params, rel.state, y))
        sc = jnp.real(model.predict(params, rel.state))
        correct = jnp.argmax(sc, -1) == y
        top = jax.lax.top_k(sc, min(topk, sc.shape[-1]))[1]
        correct_k = jnp.any(top == y[:, None], axis=-1)
        res = jnp.where(mask > 0, rel.residual, 0.0)
        if not per_example_residual:
            res = jnp.max(res)
        return jnp.sum(loss * mask), jnp.sum(correct * mask), jnp.sum(correct_k * mask), res

    return evaluate


def evaluate_dataset(eval_fn, params, ds, batch_size, mesh=None, tol=CONVERGED_TOL):
    """Validation loss, top-1 error (%), top-5 error (%) and the free relaxation's residual
    over a dataset: its max, and with an ``eval_fn`` made with per_example_residual=True also
    the median and the fraction of examples above ``tol`` (NaN stays NaN). Batches are padded
    to a multiple of the mesh size and split over it when a mesh is given."""
    tot_loss, tot_correct, tot_k, n, res = 0.0, 0.0, 0.0, 0, []
    for b in prefetch(batches(ds, batch_size, drop_last=False)):  # next batch prepared in the background
        mult = mesh.size if mesh is not None else 1
        x, mask = parallel.pad_to_multiple(np.asarray(b.x), mult)
        y, _ = parallel.pad_to_multiple(np.asarray(b.y), mult)
        if mesh is not None:
            args = (parallel.shard_batch(dynamics.Batch(x, y), mesh), parallel.shard_array(mask, mesh))
        else:
            args = (dynamics.Batch(jnp.asarray(x), jnp.asarray(y)), jnp.asarray(mask))
        l, c, ck, r = eval_fn(params, *args)
        tot_loss += float(l)
        tot_correct += float(c)
        tot_k += float(ck)
        res.append(np.atleast_1d(np.asarray(r))[: len(b.y)])
        n += len(b.y)
    res = np.concatenate(res)
    out = {"loss": tot_loss / n, "error": 100.0 * (1 - tot_correct / n), "top5_error": 100.0 * (1 - tot_k / n),
           "residual": float(np.max(res))}
    if len(res) == n:  # per-example residuals
        out.update(residual_median=float(np.median(res)), unconverged=float(np.mean(~(res <= tol))))
    return out


def _eval_function(model, T_free):
    return jax.jit(make_eval_step(model, T_free, per_example_residual=True))


def eval_function(model, T_free):
    """The jitted evaluation (per-example residuals) of ``model`` after ``T_free`` iterations;
    one compilation per (model, T_free) in a process."""
    return cached(_eval_function, model, T_free)
