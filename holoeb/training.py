"""The training loop: epochs of jitted steps (holoeb.train_step) over shuffled, augmented
batches, evaluation on the test split (holoeb.evaluation), end-of-epoch probe diagnostics
(holoeb.probe_diagnostics), and the run directory's outputs (holoeb.run_directory).

Scale (generalized hEP paper, App. D.4): the step is data-parallel over all
devices (holoeb.parallel: batch split, parameters replicated, same update as one
device), the free phase can run in half precision (holoeb.precision), and runs
checkpoint to run_dir/checkpoints with orbax (holoeb.checkpoint) and resume where
a killed run stopped (same data order, rng, optimizer state and metrics). For
datasets with more than 10 classes the history also holds val_top5_error."""
import copy
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from holoeb import dynamics, parallel
from holoeb.checkpoint import Checkpointer
from holoeb.config import as_train_config
from holoeb.data.pipeline import Augmentation, StreamDataset, batches, prefetch
from holoeb.data.registry import dataset_spec, load_dataset
from holoeb.errors import ConfigError, DivergenceError
from holoeb.estimators import make_estimator
from holoeb.estimators.base import check_positive_int
from holoeb.evaluation import eval_function, evaluate_dataset
from holoeb.models import make_model
from holoeb.optim import make_optimizer
from holoeb.params_io import initial_params_from
from holoeb.probe_diagnostics import epoch_probe, make_diagnostics, weight_norms
from holoeb.run_directory import check_resumable, locked_run_directory, write_config, write_metrics
from holoeb.train_step import config_train_step, residual_tol
from holoeb.warm_start import WarmStart

# The per-step metrics an epoch sums (means over its steps in the record); "skipped" counts refused updates.
STEP_SUMS = ("loss", "accuracy", "residual", "residual_median", "unconverged", "nudge_residual",
             "nudge_residual_median", "nudge_unconverged", "skipped", "homeo_loss", "free_steps")


class TrainingDiverged(DivergenceError):
    """Raised when a relaxation or gradient is not finite: the update is not applied."""


class TrainingInterrupted(RuntimeError):
    """Raised by ``train(..., stop_after_steps=n)``: simulates a killed run (tests of resume)."""


def build(cfg):
    """(model, estimator) from a config (TrainConfig or dict); make_model / make_estimator
    validate the keyword arguments of the model and estimator sections."""
    cfg = as_train_config(cfg)
    model = make_model(cfg.model.name, **cfg.model.kwargs)
    estimator = make_estimator(cfg.estimator.name, **cfg.estimator.kwargs)
    estimator.check_model(model)  # a mismatched pair is refused before any data is loaded
    return model, estimator


def check_step(m, epoch, j, max_residual, on_unconverged):
    """Raise TrainingDiverged for a step whose fetched metrics ``m`` show a refused update that
    ends the run: a non-finite loss / state / gradient, or (training.on_unconverged="stop") a
    free residual above training.max_residual."""
    if not m["finite"]:
        raise TrainingDiverged(
            f"epoch {epoch}, step {j}: non-finite loss/state/gradient (free residual {float(m['residual']):.3g}); "
            "the update was not applied. Lower the learning rate or beta, or increase T_free."
        )
    if max_residual is not None and float(m["residual"]) > max_residual and on_unconverged == "stop":
        raise TrainingDiverged(
            f"epoch {epoch}, step {j}: free phase did not converge (residual {float(m['residual']):.3g} > "
            f"max_residual {max_residual}); the update was not applied (training.on_unconverged=skip skips such steps)"
        )


def add_step(sums, m):
    """Add one step's fetched metrics to the epoch sums (in place); a refused update counts as skipped."""
    sums["skipped"] += 1.0 - float(m["applied"])
    for k in sums:
        if k in m:
            sums[k] += float(m[k])


def epoch_record(epoch, sums, steps_per_epoch, val, probe, weight_norm, train_time, n_steps, lam, train_eval=None,
                 topk=False):
    """One epoch's history entry: the means over its steps of the summed step metrics (the residual
    entries are means of the batch max / median), the test split's evaluation ``val``, the probe
    diagnostics (None when off), weight norms, timing, the nudged-phase / free-iteration / homeostasis
    means where the run has them, and ``train_eval`` (the training split's evaluation, last epoch); the
    top-5 errors with ``topk`` (datasets with more than 10 classes)."""
    mean = lambda k: sums[k] / steps_per_epoch
    rec = {
        "epoch": epoch,
        "train_loss": mean("loss"),
        "train_acc": mean("accuracy"),
        "train_residual": mean("residual"),  # mean over steps of the batch max
        "train_residual_median": mean("residual_median"),
        "train_unconverged": mean("unconverged"),  # fraction of examples above tol
        "skipped_steps": int(sums["skipped"]),  # updates not applied (training.on_unconverged=skip)
        "val_loss": val["loss"],
        "val_error": val["error"],
        "val_residual": val["residual"],  # max over the validation set
        "val_residual_median": val["residual_median"],
        "val_unconverged": val["unconverged"],
    }
    rec.update(probe or {})
    rec["weight_norm"] = weight_norm
    rec.update(epoch_time_s=train_time, step_time_s=train_time / max(n_steps, 1))
    if topk:
        rec["val_top5_error"] = val["top5_error"]
    if sums["nudge_residual"] > 0:  # estimators with nudged phases (mean over steps of the batch max)
        rec["train_nudge_residual"] = mean("nudge_residual")
        rec["train_nudge_residual_median"] = mean("nudge_residual_median")
        rec["train_nudge_unconverged"] = mean("nudge_unconverged")
    if sums["free_steps"] > 0:  # mean over steps of the free phase's iterations (T_free unless free_tol stops it)
        rec["train_free_steps"] = mean("free_steps")
    if lam:
        rec["homeo_loss"] = mean("homeo_loss")
    if train_eval is not None:
        rec.update(train_error=train_eval["error"], train_eval_loss=train_eval["loss"])
        if topk:
            rec["train_top5_error"] = train_eval["top5_error"]
    return rec


def format_epoch(rec, tol):
    """The log line of an epoch record."""
    topk = "val_top5_error" in rec
    line = (f"epoch {rec['epoch']}: train loss {rec['train_loss']:.4f} acc {100 * rec['train_acc']:.2f}% | "
            f"val error {rec['val_error']:.2f}%" + (f" (top-5 {rec['val_top5_error']:.2f}%)" if topk else "") +
            f" | unconverged (residual > {tol:g}) train {100 * rec['train_unconverged']:.2f}% "
            f"val {100 * rec['val_unconverged']:.2f}% (val median {rec['val_residual_median']:.2g}, "
            f"max {rec['val_residual']:.2g})")
    if "train_error" in rec:
        line += f" | train error {rec['train_error']:.2f}%"
    if "train_free_steps" in rec:
        line += f" | free iterations {rec['train_free_steps']:.1f}"
    if "cosine_rbp" in rec:
        line += f" | cos vs RBP {np.round(rec['cosine_rbp'], 3).tolist()}"
        if np.max(np.abs(np.subtract(rec["cosine_rbp"], rec["cosine_rbp_active"]))) > 1e-3:
            line += f" (active units {np.round(rec['cosine_rbp_active'], 3).tolist()})"
        line += f" | symmetry {rec['symmetry']:.3f}"
    return line + f" | {rec['step_time_s'] * 1e3:.1f} ms/step"


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

    Run directories: ``run_dir`` is locked while training (holoeb.run_directory); one that
    holds a run with a different config is refused unless training.resume is false.
    """
    cfg = as_train_config(cfg)
    model, estimator = build(cfg)  # a bad model / estimator is refused before the run directory exists
    if stop_after_epochs is not None:
        check_positive_int("stop_after_epochs", stop_after_epochs)
    with locked_run_directory(run_dir):
        return _train(cfg, model, estimator, run_dir, progress, log, stop_after_steps, stop_after_epochs)




def _datasets(cfg, model):
    """(train split, test split, random flips on?) of a config, refused when the training split
    holds less than one batch."""
    dcfg, bs = cfg.data, cfg.training.batch_size
    train_ds = load_dataset(dcfg.dataset, "train", model.input_shape, dcfg.data_dir, dcfg.train_size, dcfg.normalize,
                            dcfg.stream, dcfg.shuffle_buffer)
    val_ds = load_dataset(dcfg.dataset, "test", model.input_shape, dcfg.data_dir, dcfg.val_size, dcfg.normalize)
    if len(train_ds) < bs:
        raise ConfigError(f"training set has {len(train_ds)} examples, fewer than one batch of {bs} (training.batch_size)")
    flip = dataset_spec(dcfg.dataset).flip if dcfg.random_flip is None else dcfg.random_flip
    return train_ds, val_ds, flip


def _probe_batch(val_ds, n, mesh):
    """The diagnostics' fixed probe batch: the test split's first ``n`` examples, split over the mesh
    when they divide evenly, else replicated."""
    probe = dynamics.Batch(*val_ds.take(n))
    if len(probe.y) % mesh.size == 0:
        return parallel.shard_batch(probe, mesh)
    return parallel.replicate(dynamics.Batch(*map(jnp.asarray, probe)), mesh)


def _train(cfg, model, estimator, run_dir, progress, log, stop_after_steps, stop_after_epochs):
    cfg_dict = cfg.to_dict()
    tcfg, dcfg = cfg.training, cfg.data
    if tcfg.distributed:
        parallel.initialize_distributed()
    is_main = jax.process_index() == 0
    if tcfg.resume:
        check_resumable(run_dir, cfg_dict)
    train_ds, val_ds, flip = _datasets(cfg, model)
    bs = tcfg.batch_size
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
    tol = residual_tol(tcfg)
    if tcfg.warm_start == "example" and (isinstance(train_ds, StreamDataset) or tcfg.distributed):
        raise ConfigError("training.warm_start='example' keeps one free state per training example: it needs the "
                          "whole training split on this process (not data.stream, not training.distributed)")
    warm = WarmStart(tcfg.warm_start, model, bs, len(train_ds), mesh)
    estimator, step = config_train_step(cfg, model, estimator, tx)
    step = parallel.shard_step(step, mesh, carry=warm.carries_state, donate=True)
    eval_fn = eval_function(model, estimator.T_free)
    diag_fn = make_diagnostics(model, estimator, cfg) if cfg.diagnostics.enabled else None
    probe_batch = _probe_batch(val_ds, cfg.diagnostics.batch_size, mesh)

    history = []
    data_rng = np.random.default_rng(seed)
    start_epoch, start_step, global_step = 1, 0, 0
    sums0 = dict.fromkeys(STEP_SUMS, 0.0)
    ckpt = None
    if tcfg.checkpoint:
        ckpt = Checkpointer(os.path.join(run_dir, "checkpoints"), max_to_keep=tcfg.checkpoints_to_keep)
        if tcfg.resume and ckpt.latest_step() is not None:
            template = {"params": params, "opt_state": opt_state, "key": key, **warm.checkpoint_entries()}
            _, state, meta = ckpt.restore_latest_intact(template, log)
            params, opt_state, key = state["params"], state["opt_state"], state["key"]
            warm.restore(state)
            start_epoch, start_step, global_step = meta["epoch"], meta["step_in_epoch"], meta["global_step"]
            data_rng.bit_generator.state = meta["data_rng_state"]
            sums0 = {**sums0, **meta["sums"]}  # checkpoints of older versions lack newer sums
            history = meta["history"]
            log(f"resuming from {ckpt.directory} at epoch {start_epoch}, step {start_step} (global step {global_step})")
    if is_main:
        write_config(run_dir, cfg_dict)
    every = int(tcfg.checkpoint_every or 0)
    steps_this_call = 0

    def save(epoch, step_in_epoch, rng_state, sums):
        if ckpt is not None:
            meta = {"epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
                    "data_rng_state": rng_state, "sums": sums, "history": history}
            state = {"params": params, "opt_state": opt_state, "key": key, **warm.checkpoint_entries()}
            ckpt.save(global_step, state, meta)

    for epoch in range(start_epoch, epochs + 1):
        t0 = time.time()
        first = start_step if epoch == start_epoch else 0
        warm.new_epoch(first)
        sums = dict(sums0) if epoch == start_epoch else dict.fromkeys(STEP_SUMS, 0.0)
        epoch_rng_state = copy.deepcopy(data_rng.bit_generator.state)
        # augmentation: its own generator per (seed, epoch, step), so a resumed run augments the same
        # examples the same way; applied per batch to the raw images (before normalisation)
        augment = (Augmentation(lambda i, e=epoch: np.random.default_rng((seed, e, i)), flip, dcfg.random_crop)
                   if flip or dcfg.random_crop else None)
        # each batch is prepared from the uint8 split and put on the devices in a background thread
        it = prefetch(batches(train_ds, bs, data_rng, start=first, augment=augment, with_index=warm.per_example),
                      transform=warm.shard)
        bar = tqdm(it, total=steps_per_epoch, initial=first, desc=f"epoch {epoch}/{epochs}",
                   disable=not (progress and is_main), leave=False)
        pending = []  # (step index, metrics still on the device)

        def flush():
            """Fetch the pending steps' metrics in one transfer, check them in step order and add
            them to the epoch sums. A refused step (non-finite, or unconverged with max_residual)
            was not applied; the run stops here, before any later checkpoint is written. With
            warm_start="example" the steps' free states go to the bank here too (WarmStart.flush)."""
            warm.flush()
            for j, m in zip([j for j, _ in pending], jax.device_get([m for _, m in pending])):
                check_step(m, epoch, j, tcfg.max_residual, tcfg.on_unconverged)
                add_step(sums, m)
            if pending:
                bar.set_postfix(loss=f"{float(m['loss']):.3f}", acc=f"{float(m['accuracy']):.3f}")
            pending.clear()

        for i, item in enumerate(bar, start=first):
            key, k = jax.random.split(key)
            params, opt_state, m = warm.step(step, params, opt_state, item, k)
            pending.append((i, m))
            global_step += 1
            steps_this_call += 1
            if len(pending) >= tcfg.log_every:
                flush()
            if every and (i + 1) % every == 0 and i + 1 < steps_per_epoch:
                flush()
                save(epoch, i + 1, epoch_rng_state, sums)
            if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                flush()
                raise TrainingInterrupted(f"stopped after {steps_this_call} steps (epoch {epoch}, step {i + 1})")
        flush()
        train_time = time.time() - t0
        val = evaluate_dataset(eval_fn, params, val_ds, tcfg.eval_batch_size, mesh, tol)
        probe = None
        if diag_fn is not None:
            key, kd = jax.random.split(key)
            probe = epoch_probe(diag_fn, params, probe_batch, kd, epoch, log)
        train_eval = None
        if tcfg.eval_train and epoch == epochs:
            train_eval = evaluate_dataset(eval_fn, params, train_ds, tcfg.eval_batch_size, mesh, tol)
        rec = epoch_record(epoch, sums, steps_per_epoch, val, probe, weight_norms(params), train_time,
                           steps_per_epoch - first, cfg.homeostasis.lambda_, train_eval, topk=model.num_classes > 10)
        history.append(rec)
        log(format_epoch(rec, tol))
        if is_main:
            write_metrics(run_dir, cfg_dict, history)
        save(epoch + 1, 0, copy.deepcopy(data_rng.bit_generator.state), dict.fromkeys(STEP_SUMS, 0.0))
        if stop_after_epochs is not None and epoch - start_epoch + 1 >= stop_after_epochs and epoch < epochs:
            log(f"stopped after epoch {epoch} of {epochs} (stop_after_epochs={stop_after_epochs}); "
                "training again with the same config and run directory resumes it")
            break
    if ckpt is not None:
        ckpt.close()
    return history
