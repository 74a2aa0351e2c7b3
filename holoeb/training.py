"""Training: one jitted step (estimator gradient + lambda * homeostatic gradient,
optax update, refusal to apply non-finite updates), evaluation by free relaxation,
per-epoch diagnostics, and run-directory outputs (metrics.json / metrics.csv /
curves.png).

Scale (generalized hEP paper, App. D.4): the step is data-parallel over all
devices (holoeb.parallel: batch split, parameters replicated, same update as one
device), the free phase can run in half precision (holoeb.precision), and runs
checkpoint to run_dir/checkpoints with orbax (holoeb.checkpoint) and resume where
a killed run stopped (same data order, rng, optimizer state and metrics). For
datasets with more than 10 classes the history also holds val_top5_error."""
import contextlib
import copy
import dataclasses
import functools
import fcntl
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from holoeb import dynamics, homeostasis, parallel
from holoeb.checkpoint import Checkpointer
from holoeb.config import as_train_config
from holoeb.diagnostics import (active_layer_cosines, clamped_fractions, frozen_fractions, layer_cosines, tree_cosine,
                                weight_angles)
from holoeb.data.pipeline import Augmentation, StreamDataset, batches, prefetch
from holoeb.data.registry import dataset_spec, load_dataset
from holoeb.estimators import make_estimator
from holoeb.errors import ConfigError, DivergenceError
from holoeb.estimators.base import assemble_grads, check_positive_int, rbp_delta
from holoeb.models import make_model
from holoeb.optim import make_optimizer
from holoeb.precision import with_free_dtype
from holoeb.solvers import CONVERGED_TOL, relax


# A layer with at least this fraction of its units at the same clamp for every probe example is reported
# (per epoch, in the log) as disconnected: P-CpL's collapsed DCHN runs reach 0.94-0.96 in layers 2-4.
FROZEN_LAYER_WARNING = 0.9


class TrainingDiverged(DivergenceError):
    """Raised when a relaxation or gradient is not finite: the update is not applied."""


def build(cfg):
    """(model, estimator) from a config (TrainConfig or dict); make_model / make_estimator
    validate the keyword arguments of the model and estimator sections."""
    cfg = as_train_config(cfg)
    model = make_model(cfg.model.name, **cfg.model.kwargs)
    estimator = make_estimator(cfg.estimator.name, **cfg.estimator.kwargs)
    estimator.check_model(model)  # a mismatched pair is refused before any data is loaded
    return model, estimator


def residual_stats(residual, tol):
    """(max, median, fraction above ``tol``) of per-example residuals; a NaN residual counts
    as above tol and makes the max NaN."""
    return jnp.max(residual), jnp.nanmedian(residual), jnp.mean(~(residual <= tol))


def make_train_step(model, estimator, tx, lam=0.0, homeo_samples=5, coordinates=None, homeo_normalize="per_unit",
                    tol=CONVERGED_TOL, skip_unconverged=False, warm_start="none", probe=None):
    """step(params, opt_state, batch, rng) -> (params, opt_state, metrics); the gradient is the
    estimator's plus lam * dL_homeo/dtheta (holoeb.homeostasis, normalisation ``homeo_normalize``).
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


def _cached(factory, *key):
    """factory(*key), memoised per process when the key is hashable: runs in one process that
    share a model and settings (a study's rules, a seed sweep) then reuse one compiled function."""
    try:
        hash(key)
    except TypeError:
        return factory(*key)
    return _cached_call(factory, *key)


@functools.lru_cache(maxsize=64)
def _cached_call(factory, *key):
    return factory(*key)


def _eval_function(model, T_free):
    return jax.jit(make_eval_step(model, T_free, per_example_residual=True))


def eval_function(model, T_free):
    """The jitted evaluation (per-example residuals) of ``model`` after ``T_free`` iterations;
    one compilation per (model, T_free) in a process."""
    return _cached(_eval_function, model, T_free)


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
    reference = _cached(_reference_function, model, estimator.solve_config, estimator.free.exactly(0),
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


def initial_params_from(path, like):
    """The parameters stored at ``path`` (a run directory or a .npz / .pkl params file, holoeb.params_io)
    as arrays of ``like``'s dtypes: a run that continues another one (training.init_from). Refused
    with a ConfigError naming the first difference when their structure or shapes differ from
    ``like`` (the model the config describes)."""
    from holoeb.params_io import load_params_file, load_run_params

    if not os.path.exists(path):
        raise ConfigError(f"training.init_from: {path!r} does not exist (a run directory or a .npz / .pkl params file)")
    try:
        loaded = load_run_params(path) if os.path.isdir(path) else load_params_file(path)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"training.init_from: {e}") from None
    want = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(like)[0]}
    got = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(loaded)[0]}
    if set(want) != set(got):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        raise ConfigError(f"training.init_from: the parameters in {path!r} do not fit the config's model "
                          f"(missing {missing[:4]}, unexpected {extra[:4]})")
    for k, v in want.items():
        if tuple(np.shape(got[k])) != tuple(v.shape):
            raise ConfigError(f"training.init_from: parameter {k} in {path!r} has shape {tuple(np.shape(got[k]))}, "
                              f"the config's model needs {tuple(v.shape)}")
    # rebuilt in ``like``'s structure: a params file drops empty subtrees (the DCHN's readout {})
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like),
                                        [jnp.asarray(got[k], v.dtype) for k, v in want.items()])


def weight_norms(params):
    """{name: Frobenius norm} of the network's parameters ('/'-joined paths for nested ones)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params["net"])[0]:
        name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        out[name] = float(jnp.linalg.norm(jnp.ravel(leaf)))
    return out


def _to_py(tree):
    return jax.tree_util.tree_map(lambda v: np.asarray(v).tolist(), tree)


class TrainingInterrupted(RuntimeError):
    """Raised by ``train(..., stop_after_steps=n)``: simulates a killed run (tests of resume)."""


def same_run_settings(a, b):
    """True when two run configs (TrainConfig or plain dicts, e.g. a run directory's config.json)
    decide the same results: a resume continues a run only then, and a study counts a run
    directory as its cell only then."""
    return _config_for_compare(a) == _config_for_compare(b)


def _config_for_compare(cfg):
    """The settings that decide a run's results: a saved config written before a setting
    existed gets its default (a model / estimator option equal to its default counts as absent), and settings that only change how a run is carried out
    (resuming, checkpoint / logging intervals, the evaluation batch size: every example relaxes on its
    own, so evaluation does not depend on how the examples are batched) are left out."""
    try:
        cfg = as_train_config(cfg).to_dict()
    except (ConfigError, TypeError, ValueError):
        pass
    c = json.loads(json.dumps(cfg))
    for k in ("resume", "checkpoint_every", "progress", "log_every", "eval_batch_size"):
        c.get("training", {}).pop(k, None)
    from holoeb.estimators import ESTIMATORS
    from holoeb.models import MODELS

    for section, registry in (("model", MODELS), ("estimator", ESTIMATORS)):  # an option at its default = absent
        sec = c.get(section)
        cls = registry.get(sec.get("name")) if isinstance(sec, dict) else None
        if cls is not None and dataclasses.is_dataclass(cls):
            for f in dataclasses.fields(cls):
                if f.name in sec and f.name != "name" and f.default is not dataclasses.MISSING:
                    try:
                        if json.loads(json.dumps(f.default)) == sec[f.name]:
                            del sec[f.name]
                    except TypeError:  # a default that is not JSON (e.g. a Relaxation) stays as given
                        pass
    return c


@contextlib.contextmanager
def run_directory(run_dir):
    """Create ``run_dir`` and hold an exclusive lock on it (run_dir/.lock, flock: released when
    the process ends, also by kill -9). A path that is a file, or a directory another process
    is training into, is refused with a ConfigError."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise ConfigError(f"run directory {run_dir!r} is a file; give --out a directory (new or a run to resume)")
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, ".lock"), "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"run directory {run_dir!r} is being written by another process; use another --out") from None
        try:
            yield run_dir
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def train(cfg, run_dir, progress=True, log=print, stop_after_steps=None, stop_after_epochs=None):
    """Train per ``cfg`` (a holoeb.config.TrainConfig, or a plain dict merged over its
    defaults); write outputs into ``run_dir`` (config.json, metrics.json / .csv,
    curves.png, checkpoints/). Returns the list of per-epoch metric dicts.

    Each epoch: shuffled training batches (random horizontal flips when
    data.random_flip, default per dataset from holoeb.data.registry; random translations by up to
    data.random_crop pixels), then evaluation
    on the test split (val_loss / val_error, val_top5_error for > 10 classes) and the
    diagnostics (when diagnostics.enabled). With training.eval_train the last epoch's
    record also holds train_error / train_eval_loss: the error on the (unaugmented)
    training set after training.

    training options (holoeb.config.TrainingConfig):
      devices: number of local devices for data parallelism (default: all; the batch is split)
      distributed: call jax.distributed.initialize() first (multi-host, see holoeb.parallel)
      free_dtype: "bfloat16" | "float16" runs the free phase in half precision (holoeb.precision)
      free_refine_steps: full-precision iterations after it (default 20)
      checkpoint: save orbax checkpoints into run_dir/checkpoints (default true); resume: continue
      from the latest one if present (default true); checkpoint_every: also save every n steps.
    ``stop_after_steps`` raises TrainingInterrupted after that many steps of this call (tests).
    ``stop_after_epochs`` ends this call after that many epochs (the one it resumes in counts), with
    the epochs' metrics written and a checkpoint saved: the first epochs of a long schedule (the
    learning-rate schedule still spans training.epochs); calling train again resumes the run.

    Run directories: ``run_dir`` is locked while training (see `run_directory`); one that
    holds a run with a different config is refused unless training.resume is false.
    """
    cfg = as_train_config(cfg)
    model, estimator = build(cfg)  # a bad model / estimator is refused before the run directory exists
    if stop_after_epochs is not None:
        check_positive_int("stop_after_epochs", stop_after_epochs)
    with run_directory(run_dir):
        return _train(cfg, model, estimator, run_dir, progress, log, stop_after_steps, stop_after_epochs)


def _train(cfg, model, estimator, run_dir, progress, log, stop_after_steps, stop_after_epochs):
    cfg_dict = cfg.to_dict()
    tcfg, dcfg, hcfg = cfg.training, cfg.data, cfg.homeostasis
    if tcfg.distributed:
        parallel.initialize_distributed()
    is_main = jax.process_index() == 0
    saved_cfg_path = os.path.join(run_dir, "config.json")
    if tcfg.resume and os.path.exists(saved_cfg_path):
        with open(saved_cfg_path) as f:
            saved = json.load(f)
        if not same_run_settings(saved, cfg_dict):
            raise ConfigError(
                f"{run_dir} holds a run with a different config; use another --out, "
                "or --set training.resume=false to start over in it"
            )

    spec = dataset_spec(dcfg.dataset)
    train_ds = load_dataset(dcfg.dataset, "train", model.input_shape, dcfg.data_dir, dcfg.train_size, dcfg.normalize,
                            dcfg.stream, dcfg.shuffle_buffer)
    val_ds = load_dataset(dcfg.dataset, "test", model.input_shape, dcfg.data_dir, dcfg.val_size, dcfg.normalize)
    flip = spec.flip if dcfg.random_flip is None else dcfg.random_flip
    bs = tcfg.batch_size
    if len(train_ds) < bs:
        raise ConfigError(f"training set has {len(train_ds)} examples, fewer than one batch of {bs} (training.batch_size)")
    mesh = parallel.make_mesh(tcfg.devices)
    parallel.check_batch_size(bs, mesh)
    steps_per_epoch = len(train_ds) // bs
    epochs = tcfg.epochs

    seed = tcfg.seed
    key = jax.random.PRNGKey(seed)
    key, k_init = jax.random.split(key)
    params = model.init(k_init)
    if tcfg.init_from is not None:
        params = initial_params_from(tcfg.init_from, params)
    tx = make_optimizer(cfg.optimizer, params, steps_per_epoch, epochs)
    opt_state = tx.init(params)
    params, opt_state, key = parallel.replicate((params, opt_state, key), mesh)
    lam = hcfg.lambda_
    tol = residual_tol(tcfg)
    warm = tcfg.warm_start != "none"
    per_example = tcfg.warm_start == "example"
    if per_example and (isinstance(train_ds, StreamDataset) or tcfg.distributed):
        raise ConfigError("training.warm_start='example' keeps one free state per training example: it needs the "
                          "whole training split on this process (not data.stream, not training.distributed)")
    estimator, step = config_train_step(cfg, model, estimator, tx)
    step = parallel.shard_step(step, mesh, carry=warm, donate=True)
    log_every = tcfg.log_every

    def zero_carry():  # the state each epoch's first batch starts from (warm_start != "none")
        u0 = model.init_state(jnp.zeros((bs,) + tuple(model.input_shape), jnp.float32))
        return tuple(parallel.shard_array(np.asarray(v), mesh) for v in u0)

    carry = zero_carry() if warm else None
    # warm_start="example": every training example's last free state, on the host (zero until it is seen)
    bank = tuple(np.zeros((len(train_ds),) + v.shape[1:], np.asarray(v).dtype) for v in carry) if per_example else None
    eval_fn = eval_function(model, estimator.T_free)
    diag_fn = make_diagnostics(model, estimator, cfg) if cfg.diagnostics.enabled else None
    nd = cfg.diagnostics.batch_size
    diag_np = dynamics.Batch(*val_ds.take(nd))  # prepared from the first nd raw examples only
    if len(diag_np.y) % mesh.size == 0:
        diag_batch = parallel.shard_batch(diag_np, mesh)
    else:
        diag_batch = parallel.replicate(dynamics.Batch(*map(jnp.asarray, diag_np)), mesh)
    max_res = tcfg.max_residual
    topk = model.num_classes > 10

    history = []
    data_rng = np.random.default_rng(seed)
    start_epoch, start_step, global_step = 1, 0, 0
    sums0 = {"loss": 0.0, "accuracy": 0.0, "residual": 0.0, "residual_median": 0.0, "unconverged": 0.0,
             "nudge_residual": 0.0, "nudge_residual_median": 0.0, "nudge_unconverged": 0.0, "skipped": 0.0,
             "homeo_loss": 0.0, "free_steps": 0.0}
    ckpt = None
    if tcfg.checkpoint:
        ckpt = Checkpointer(os.path.join(run_dir, "checkpoints"), max_to_keep=tcfg.checkpoints_to_keep)
        if tcfg.resume and ckpt.latest_step() is not None:
            template = {"params": params, "opt_state": opt_state, "key": key}
            if per_example:
                template["bank"] = bank
            elif warm:
                template["carry"] = carry
            _, state, meta = ckpt.restore_latest_intact(template, log)
            params, opt_state, key = state["params"], state["opt_state"], state["key"]
            if per_example:
                bank = tuple(np.array(v) for v in state["bank"])
            elif warm:
                carry = tuple(parallel.shard_array(np.asarray(v), mesh) for v in state["carry"])
            start_epoch, start_step, global_step = meta["epoch"], meta["step_in_epoch"], meta["global_step"]
            data_rng.bit_generator.state = meta["data_rng_state"]
            sums0 = {**sums0, **meta["sums"]}  # checkpoints of older versions lack newer sums
            history = meta["history"]
            log(f"resuming from {ckpt.directory} at epoch {start_epoch}, step {start_step} (global step {global_step})")
    if is_main:
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            json.dump(cfg_dict, f, indent=2)
    every = int(tcfg.checkpoint_every or 0)
    steps_this_call = 0

    def save(epoch, step_in_epoch, rng_state, sums):
        if ckpt is not None:
            meta = {"epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
                    "data_rng_state": rng_state, "sums": sums, "history": history}
            state = {"params": params, "opt_state": opt_state, "key": key}
            if per_example:
                state["bank"] = bank
            elif warm:
                state["carry"] = carry
            ckpt.save(global_step, state, meta)

    for epoch in range(start_epoch, epochs + 1):
        t0 = time.time()
        first = start_step if epoch == start_epoch else 0
        if warm and not per_example and first == 0:
            carry = zero_carry()
        sums = dict(sums0) if epoch == start_epoch else {k: 0.0 for k in sums0}
        epoch_rng_state = copy.deepcopy(data_rng.bit_generator.state)
        # augmentation: its own generator per (seed, epoch, step), so a resumed run augments the same
        # examples the same way; applied per batch to the raw images (before normalisation)
        augment = (Augmentation(lambda i, e=epoch: np.random.default_rng((seed, e, i)), flip, dcfg.random_crop)
                   if flip or dcfg.random_crop else None)
        # each batch is prepared from the uint8 split and put on the devices in a background thread
        shard = (lambda bi: (parallel.shard_batch(bi[0], mesh), bi[1])) if per_example else (
            lambda b: parallel.shard_batch(b, mesh))
        it = prefetch(batches(train_ds, bs, data_rng, start=first, augment=augment, with_index=per_example),
                      transform=shard)
        bar = tqdm(it, total=steps_per_epoch, initial=first, desc=f"epoch {epoch}/{epochs}",
                   disable=not (progress and is_main), leave=False)
        pending = []  # (step index, metrics still on the device)
        pending_states = []  # warm_start="example": (example indices, free states still on the device)

        def flush():
            """Fetch the pending steps' metrics in one transfer, check them in step order and add
            them to the epoch sums. A refused step (non-finite, or unconverged with max_residual)
            was not applied; the run stops here, before any later checkpoint is written. With
            warm_start="example" the steps' free states are written to the bank here, one
            transfer too (each example occurs once per epoch, so no step reads a pending one)."""
            for (idx, _), states in zip(pending_states, jax.device_get([u for _, u in pending_states])):
                for dst, v in zip(bank, states):
                    dst[idx] = v
            pending_states.clear()
            for j, m in zip([j for j, _ in pending], jax.device_get([m for _, m in pending])):
                if not m["finite"]:
                    raise TrainingDiverged(
                        f"epoch {epoch}, step {j}: non-finite loss/state/gradient (free residual {float(m['residual']):.3g}); "
                        "the update was not applied. Lower the learning rate or beta, or increase T_free."
                    )
                if max_res is not None and float(m["residual"]) > max_res and tcfg.on_unconverged == "stop":
                    raise TrainingDiverged(
                        f"epoch {epoch}, step {j}: free phase did not converge (residual {float(m['residual']):.3g} > "
                        f"max_residual {max_res}); the update was not applied (training.on_unconverged=skip skips such steps)"
                    )
                sums["skipped"] += 1.0 - float(m["applied"])
                for k_ in sums:
                    if k_ in m:
                        sums[k_] += float(m[k_])
            if pending:
                bar.set_postfix(loss=f"{float(m['loss']):.3f}", acc=f"{float(m['accuracy']):.3f}")
            pending.clear()

        for i, item in enumerate(bar, start=first):
            key, k = jax.random.split(key)
            if per_example:
                b, idx = item
                start_state = tuple(parallel.shard_array(v[idx], mesh) for v in bank)
                params, opt_state, m, left = step(params, opt_state, b, k, start_state)
                pending_states.append((idx, left))
            elif warm:
                params, opt_state, m, carry = step(params, opt_state, item, k, carry)
            else:
                params, opt_state, m = step(params, opt_state, item, k)
            pending.append((i, m))
            global_step += 1
            steps_this_call += 1
            if len(pending) >= log_every:
                flush()
            if every and (i + 1) % every == 0 and i + 1 < steps_per_epoch:
                flush()
                save(epoch, i + 1, epoch_rng_state, sums)
            if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                flush()
                raise TrainingInterrupted(f"stopped after {steps_this_call} steps (epoch {epoch}, step {i + 1})")
        flush()
        train_time = time.time() - t0
        n_steps = steps_per_epoch - first
        val = evaluate_dataset(eval_fn, params, val_ds, tcfg.eval_batch_size, mesh, tol)
        rec = {
            "epoch": epoch,
            "train_loss": sums["loss"] / steps_per_epoch,
            "train_acc": sums["accuracy"] / steps_per_epoch,
            "train_residual": sums["residual"] / steps_per_epoch,  # mean over steps of the batch max
            "train_residual_median": sums["residual_median"] / steps_per_epoch,
            "train_unconverged": sums["unconverged"] / steps_per_epoch,  # fraction of examples above tol
            "skipped_steps": int(sums["skipped"]),  # updates not applied (training.on_unconverged=skip)
            "val_loss": val["loss"],
            "val_error": val["error"],
            "val_residual": val["residual"],  # max over the validation set
            "val_residual_median": val["residual_median"],
            "val_unconverged": val["unconverged"],
        }
        if diag_fn is not None:
            key, kd = jax.random.split(key)
            diag = _to_py(diag_fn(params, diag_batch, kd))
            bad = sorted(k for k, v in diag.items() if not np.all(np.isfinite(np.asarray(list(v.values()) if isinstance(v, dict) else v, float))))
            if bad:  # a diagnostic, not the training: reported, not fatal
                log(f"warning: epoch {epoch}: non-finite diagnostics on the probe batch: {', '.join(bad)}")
            dead = [f"layer {l + 1} ({100 * f:.1f}%)" for l, f in enumerate(diag["frozen"]) if f >= FROZEN_LAYER_WARNING]
            if dead:  # saturation a gradient cannot undo: say so while the run goes on
                log(f"warning: epoch {epoch}: units at the same clamp for every probe example in {', '.join(dead)}: "
                    "such a layer passes almost no signal forward and no error backward")
            rec.update(cosine_rbp=diag["cosine_rbp"], cosine_rbp_active=diag["cosine_rbp_active"],
                       weight_angle=diag["weight_angle"], symmetry=diag["symmetry"],
                       update_cosine_rbp=diag["update_cosine_rbp"], update_cosine_tbp=diag["update_cosine_tbp"],
                       clamped_lower=diag["clamped_lower"], clamped_upper=diag["clamped_upper"], frozen=diag["frozen"])
        rec["weight_norm"] = weight_norms(params)
        rec.update(epoch_time_s=train_time, step_time_s=train_time / max(n_steps, 1))
        if topk:
            rec["val_top5_error"] = val["top5_error"]
        if sums["nudge_residual"] > 0:  # estimators with nudged phases (mean over steps of the batch max)
            rec["train_nudge_residual"] = sums["nudge_residual"] / steps_per_epoch
            rec["train_nudge_residual_median"] = sums["nudge_residual_median"] / steps_per_epoch
            rec["train_nudge_unconverged"] = sums["nudge_unconverged"] / steps_per_epoch
        if sums["free_steps"] > 0:  # mean over steps of the free phase's iterations (T_free unless free_tol stops it)
            rec["train_free_steps"] = sums["free_steps"] / steps_per_epoch
        if lam:
            rec["homeo_loss"] = sums["homeo_loss"] / steps_per_epoch
        if tcfg.eval_train and epoch == epochs:
            tr = evaluate_dataset(eval_fn, params, train_ds, tcfg.eval_batch_size, mesh, tol)
            rec.update(train_error=tr["error"], train_eval_loss=tr["loss"])
            if topk:
                rec["train_top5_error"] = tr["top5_error"]
        history.append(rec)
        log(
            f"epoch {epoch}: train loss {rec['train_loss']:.4f} acc {100 * rec['train_acc']:.2f}% | "
            f"val error {rec['val_error']:.2f}%" + (f" (top-5 {rec['val_top5_error']:.2f}%)" if topk else "") +
            f" | unconverged (residual > {tol:g}) train {100 * rec['train_unconverged']:.2f}% "
            f"val {100 * rec['val_unconverged']:.2f}% (val median {rec['val_residual_median']:.2g}, max {rec['val_residual']:.2g})" +
            (f" | train error {rec['train_error']:.2f}%" if "train_error" in rec else "") +
            (f" | free iterations {rec['train_free_steps']:.1f}" if "train_free_steps" in rec else "") +
            (f" | cos vs RBP {np.round(rec['cosine_rbp'], 3).tolist()}" +
             (f" (active units {np.round(rec['cosine_rbp_active'], 3).tolist()})"
              if np.max(np.abs(np.subtract(rec["cosine_rbp"], rec["cosine_rbp_active"]))) > 1e-3 else "") +
             f" | symmetry {rec['symmetry']:.3f}" if diag_fn is not None else "") +
            f" | {rec['step_time_s'] * 1e3:.1f} ms/step"
        )
        if is_main:
            write_metrics(run_dir, cfg_dict, history)
        save(epoch + 1, 0, copy.deepcopy(data_rng.bit_generator.state), {k: 0.0 for k in sums0})
        if stop_after_epochs is not None and epoch - start_epoch + 1 >= stop_after_epochs and epoch < epochs:
            log(f"stopped after epoch {epoch} of {epochs} (stop_after_epochs={stop_after_epochs}); "
                "training again with the same config and run directory resumes it")
            break
    if ckpt is not None:
        ckpt.close()
    return history


def write_metrics(run_dir, cfg, history):
    from holoeb.plotting import plot_convergence, plot_history

    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump({"config": cfg, "history": history}, f, indent=2)
    flat = [flatten_record(r) for r in history]
    cols = list(dict.fromkeys(k for r in flat for k in r))
    with open(os.path.join(run_dir, "metrics.csv"), "w") as f:
        f.write(",".join(cols) + "\n")
        for r in flat:
            f.write(",".join(str(r.get(c, "")) for c in cols) + "\n")
    path, title = os.path.join(run_dir, "curves.png"), os.path.basename(os.path.normpath(run_dir))
    if all("cosine_rbp" in r for r in history):
        plot_history(history, path, title=title)
    else:  # diagnostics off: loss and error curves only
        _plot_loss_error(history, path, title)
    plot_convergence(history, os.path.join(run_dir, "convergence.png"), title)


def _plot_loss_error(history, path, title=""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, ax = plt.subplots(1, 2, figsize=(8, 3.6))
    ax[0].plot(ep, [r["train_loss"] for r in history], "o-")
    ax[0].set(title="train loss", xlabel="epoch")
    ax[1].plot(ep, [r["val_error"] for r in history], "o-", color="C3", label="test")
    ax[1].plot(ep, [100 * (1 - r["train_acc"]) for r in history], "o-", color="C0", label="train (running)")
    ax[1].set(title="error (%)", xlabel="epoch")
    ax[1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def flatten_record(rec):
    out = {}
    for k, v in rec.items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                out[f"{k}.{kk}"] = vv
        elif isinstance(v, list):
            for i, vv in enumerate(v):
                out[f"{k}.{i + 1}"] = vv
        else:
            out[k] = v
    return out
