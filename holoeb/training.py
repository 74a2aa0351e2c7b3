"""Training: one jitted step (estimator gradient + lambda * homeostatic gradient,
optax update, refusal to apply non-finite updates), evaluation by free relaxation,
per-epoch diagnostics, and run-directory outputs (metrics.json / metrics.csv /
curves.png)."""
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from holoeb import dynamics, homeostasis
from holoeb.diagnostics import layer_cosines, weight_angles
from holoeb.data.pipeline import batches
from holoeb.data.registry import load_dataset
from holoeb.estimators import make_estimator
from holoeb.estimators.base import rbp_delta
from holoeb.models import make_model
from holoeb.optim import make_optimizer
from holoeb.solvers import relax


class TrainingDiverged(RuntimeError):
    """Raised when a relaxation or gradient is not finite: the update is not applied."""


def build(cfg):
    """(model, estimator) from a config dict."""
    mcfg = dict(cfg["model"])
    model = make_model(mcfg.pop("name"), **mcfg)
    ecfg = dict(cfg["estimator"])
    estimator = make_estimator(ecfg.pop("name"), **ecfg)
    return model, estimator


def make_train_step(model, estimator, tx, lam=0.0, homeo_samples=5, coordinates=None):
    """step(params, opt_state, batch, rng) -> (params, opt_state, metrics)."""

    def step(params, opt_state, batch, rng):
        k_est, k_h = jax.random.split(rng)
        res = estimator(model, params, batch, k_est)
        grads = res.grads
        metrics = {"loss": res.loss, "accuracy": res.accuracy, "residual": jnp.max(res.residual)}
        if lam:
            h, hg = homeostasis.homeostatic_grad(model, params, batch.x, res.free_state, k_h, homeo_samples, coordinates)
            grads = jax.tree_util.tree_map(lambda a, b: a + lam * b, grads, hg)
            metrics["homeo_loss"] = h
        leaves = jax.tree_util.tree_leaves(grads) + [res.loss] + jax.tree_util.tree_leaves(res.free_state)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in leaves]))
        updates, new_opt = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)
        metrics["finite"] = finite
        return keep(new_params, params), keep(new_opt, opt_state), metrics

    return step


def make_eval_step(model, T_free):
    def evaluate(params, batch):
        x, y = batch
        drive = model.drive(params["net"], x)
        rel = relax(lambda u: model.phi(params["net"], u, drive), model.init_state(x), T_free)
        loss = dynamics.per_example_loss(model, params, rel.state, y)
        correct = jnp.argmax(jnp.real(dynamics.scores(model, params, rel.state)), -1) == y
        return jnp.sum(loss), jnp.sum(correct), jnp.max(rel.residual)

    return evaluate


def evaluate_dataset(eval_fn, params, ds, batch_size):
    tot_loss, tot_correct, n, res = 0.0, 0, 0, 0.0
    for b in batches(ds, batch_size, drop_last=False):
        l, c, r = eval_fn(params, dynamics.Batch(jnp.asarray(b.x), jnp.asarray(b.y)))
        tot_loss += float(l)
        tot_correct += int(c)
        n += len(b.y)
        res = max(res, float(r))
    return {"loss": tot_loss / n, "error": 100.0 * (1 - tot_correct / n), "residual": res}


def make_diagnostics(model, estimator, cfg):
    """Per-layer cosine vs RBP, weight angles and Jacobian symmetry on a fixed batch."""
    num_samples = cfg["diagnostics"].get("num_samples", 20)
    coords = cfg["homeostasis"].get("coordinates")

    def diag(params, batch, rng):
        k1, k2 = jax.random.split(rng)
        res = estimator(model, params, batch, k1)
        delta, _ = rbp_delta(model, params, batch, res.free_state, estimator.solve_config)
        sym = homeostasis.symmetry_measure(model, params["net"], batch.x, res.free_state, k2, num_samples, coords)[0]
        return {"cosine_rbp": layer_cosines(res.error, delta), "weight_angle": weight_angles(model, params), "symmetry": sym}

    return jax.jit(diag)


def _to_py(tree):
    return jax.tree_util.tree_map(lambda v: np.asarray(v).tolist(), tree)


def train(cfg, run_dir, progress=True, log=print):
    """Train per ``cfg`` (see holoeb.config.DEFAULTS); write outputs into ``run_dir``.
    Returns the list of per-epoch metric dicts."""
    model, estimator = build(cfg)
    tcfg = cfg["training"]
    dcfg = cfg["data"]
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

    train_ds = load_dataset(dcfg["dataset"], "train", model.input_shape, dcfg.get("data_dir"), dcfg.get("train_size"))
    val_ds = load_dataset(dcfg["dataset"], "test", model.input_shape, dcfg.get("data_dir"), dcfg.get("val_size"))
    bs = int(tcfg["batch_size"])
    if len(train_ds) < bs:
        raise ValueError(f"training set has {len(train_ds)} examples, fewer than one batch of {bs}")
    steps_per_epoch = len(train_ds) // bs
    epochs = int(tcfg["epochs"])

    seed = int(tcfg.get("seed", 0))
    key = jax.random.PRNGKey(seed)
    key, k_init = jax.random.split(key)
    params = model.init(k_init)
    tx = make_optimizer(cfg["optimizer"], params, steps_per_epoch * epochs)
    opt_state = tx.init(params)
    hcfg = cfg["homeostasis"]
    step = jax.jit(make_train_step(model, estimator, tx, float(hcfg.get("lambda", 0.0)), int(hcfg.get("num_samples", 5)), hcfg.get("coordinates")))
    eval_fn = jax.jit(make_eval_step(model, estimator.T_free))
    diag_fn = make_diagnostics(model, estimator, cfg)
    nd = int(cfg["diagnostics"].get("batch_size", 100))
    diag_batch = dynamics.Batch(jnp.asarray(val_ds.x[:nd]), jnp.asarray(val_ds.y[:nd]))
    max_res = tcfg.get("max_residual")

    history = []
    data_rng = np.random.default_rng(seed)
    for epoch in range(1, epochs + 1):
        t0 = time.time()
        sums = {"loss": 0.0, "accuracy": 0.0, "residual": 0.0, "homeo_loss": 0.0}
        it = batches(train_ds, bs, data_rng)
        bar = tqdm(it, total=steps_per_epoch, desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False)
        for i, b in enumerate(bar):
            key, k = jax.random.split(key)
            params, opt_state, m = step(params, opt_state, dynamics.Batch(jnp.asarray(b.x), jnp.asarray(b.y)), k)
            if not bool(m["finite"]):
                raise TrainingDiverged(
                    f"epoch {epoch}, step {i}: non-finite loss/state/gradient (free residual {float(m['residual']):.3g}); "
                    "the update was not applied. Lower the learning rate or beta, or increase T_free."
                )
            if max_res is not None and float(m["residual"]) > max_res:
                raise TrainingDiverged(
                    f"epoch {epoch}, step {i}: free phase did not converge (residual {float(m['residual']):.3g} > max_residual {max_res})"
                )
            for k_ in sums:
                if k_ in m:
                    sums[k_] += float(m[k_])
            if i % 20 == 0:
                bar.set_postfix(loss=f"{float(m['loss']):.3f}", acc=f"{float(m['accuracy']):.3f}")
        train_time = time.time() - t0
        val = evaluate_dataset(eval_fn, params, val_ds, int(tcfg.get("eval_batch_size", 1000)))
        key, kd = jax.random.split(key)
        diag = _to_py(diag_fn(params, diag_batch, kd))
        rec = {
            "epoch": epoch,
            "train_loss": sums["loss"] / steps_per_epoch,
            "train_acc": sums["accuracy"] / steps_per_epoch,
            "train_residual": sums["residual"] / steps_per_epoch,
            "val_loss": val["loss"],
            "val_error": val["error"],
            "val_residual": val["residual"],
            "cosine_rbp": diag["cosine_rbp"],
            "weight_angle": diag["weight_angle"],
            "symmetry": diag["symmetry"],
            "epoch_time_s": train_time,
            "step_time_s": train_time / steps_per_epoch,
        }
        if float(hcfg.get("lambda", 0.0)):
            rec["homeo_loss"] = sums["homeo_loss"] / steps_per_epoch
        history.append(rec)
        log(
            f"epoch {epoch}: train loss {rec['train_loss']:.4f} acc {100 * rec['train_acc']:.2f}% | "
            f"val error {rec['val_error']:.2f}% | cos vs RBP {np.round(rec['cosine_rbp'], 3).tolist()} | "
            f"symmetry {rec['symmetry']:.3f} | {rec['step_time_s'] * 1e3:.1f} ms/step"
        )
        write_metrics(run_dir, cfg, history)
    return history


def write_metrics(run_dir, cfg, history):
    from holoeb.plotting import plot_history

    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump({"config": cfg, "history": history}, f, indent=2)
    flat = [flatten_record(r) for r in history]
    cols = list(dict.fromkeys(k for r in flat for k in r))
    with open(os.path.join(run_dir, "metrics.csv"), "w") as f:
        f.write(",".join(cols) + "\n")
        for r in flat:
            f.write(",".join(str(r.get(c, "")) for c in cols) + "\n")
    plot_history(history, os.path.join(run_dir, "curves.png"), title=os.path.basename(os.path.normpath(run_dir)))


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
