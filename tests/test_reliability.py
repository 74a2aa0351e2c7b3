"""Non-finite updates are never applied, cosines stay in [-1, 1], convergence is reported
honestly (max, median, fraction above tolerance; NaN is never hidden), and run
directories are safe (a file, a locked directory or another run's directory is refused)."""
import fcntl
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from holoeb import make_estimator
from holoeb.config import load_config
from holoeb.data.registry import register_dataset
from holoeb.diagnostics import layer_cosines, per_example_cosine, tree_cosine
from holoeb.errors import ConfigError
from holoeb.train_step import make_train_step, residual_stats
from holoeb.training import train
from conftest import small_problem


def test_nan_learning_rate_update_is_not_applied():
    """Finite gradients but a NaN learning rate: the new parameters are NaN, so nothing moves."""
    m, p, b = small_problem(dtype="float32")
    tx = optax.sgd(float("nan"))
    step = jax.jit(make_train_step(m, make_estimator("ep", beta=0.5, T_free=10, T_nudge=5), tx))
    new_p, _, metrics = step(p, tx.init(p), b, jax.random.PRNGKey(0))
    assert not bool(metrics["finite"])
    for a, c in zip(jax.tree_util.tree_leaves(new_p), jax.tree_util.tree_leaves(p)):
        np.testing.assert_array_equal(a, c)


def test_train_step_probe_sees_the_applied_update_and_the_estimator_gradient():
    """A probe measures inside the step: its update equals new - old parameters for an applied step and
    is exactly 0 for a refused one (NaN learning rate); its gradient is the estimator's own."""
    m, p, b = small_problem(dtype="float32")
    est = make_estimator("ep", beta=0.5, T_free=10, T_nudge=5)

    def probe(old, new, grads, res):
        diff = jax.tree_util.tree_map(lambda a, c: a - c, new, old)
        return {"update": optax.global_norm(diff), "grad": grads, "loss_again": res.loss}

    for lr, applied in ((0.1, True), (float("nan"), False)):
        tx = optax.sgd(lr)
        step = jax.jit(make_train_step(m, est, tx, probe=probe))
        new_p, _, metrics = step(p, tx.init(p), b, jax.random.PRNGKey(0))
        assert bool(metrics["applied"]) == applied
        moved = optax.global_norm(jax.tree_util.tree_map(lambda a, c: a - c, new_p, p))
        np.testing.assert_allclose(float(metrics["update"]), float(moved), rtol=1e-6)
        assert (float(moved) > 0) == applied
        ref = jax.random.split(jax.random.PRNGKey(0))[0]  # the step's estimator key
        own = est(m, p, b, ref).grads
        for g, h in zip(jax.tree_util.tree_leaves(metrics["grad"]), jax.tree_util.tree_leaves(own)):
            np.testing.assert_allclose(g, h, rtol=1e-5, atol=1e-7)
        if applied:  # plain SGD: the update is -lr times the probed gradient
            np.testing.assert_allclose(float(moved), lr * float(optax.global_norm(metrics["grad"])), rtol=1e-5)
        assert float(metrics["loss_again"]) == float(metrics["loss"])


def test_cosines_stay_in_range_whatever_the_magnitudes():
    tiny = jnp.array([[1e-25, -2e-25, 3e-26]], jnp.float32)  # squared norm underflows in float32
    huge = jnp.array([[1e25, -2e25, 3e24]], jnp.float32)  # squared norm overflows
    for a, b in ((tiny, tiny), (tiny, huge), (huge, -huge)):
        c = per_example_cosine(a, b)
        assert bool(jnp.all(jnp.abs(c) <= 1.0)) and abs(abs(float(c[0])) - 1.0) < 1e-6
    assert float(per_example_cosine(jnp.zeros((1, 3)), huge)[0]) == 0.0
    assert abs(float(tree_cosine({"a": tiny}, {"a": -tiny})) + 1.0) < 1e-6
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    ref = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(per_example_cosine(jnp.asarray(a), jnp.asarray(b)), ref, rtol=1e-5)
    assert layer_cosines((jnp.asarray(a),), (jnp.asarray(b),)).shape == (1,)


def test_residual_stats_do_not_hide_unconverged_or_nan_examples():
    worst, median, frac = residual_stats(jnp.array([1e-6, 2e-6, 8.0, 3e-6]), 1e-3)
    assert float(worst) == 8.0 and float(median) == pytest.approx(2.5e-6) and float(frac) == 0.25
    worst, _, frac = residual_stats(jnp.array([1e-6, jnp.nan, 1e-6, 1e-6]), 1e-3)
    assert np.isnan(float(worst)) and float(frac) == 0.25


def _toy_cfg(**over):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (60, 4, 3)).astype(np.uint8)
    register_dataset("toy_reliability", lambda split, data_dir: (images, np.arange(60) % 3), num_classes=3)
    cfg = {
        "model": {"name": "mlp", "in_features": 12, "hidden": [6], "num_classes": 3},
        "estimator": {"name": "ep", "beta": 0.5, "T_free": 5, "T_nudge": 3},
        "data.dataset": "toy_reliability", "training.epochs": 1, "training.batch_size": 20,
        "diagnostics.batch_size": 10, "training.checkpoint": False,
    }
    cfg.update(over)
    return load_config(None, cfg)


def test_run_reports_convergence_per_phase(tmp_path):
    hist = train(_toy_cfg(), str(tmp_path / "run"), progress=False, log=lambda *a: None)
    rec = hist[-1]
    for k in ("train_residual", "train_residual_median", "train_unconverged", "val_residual",
              "val_residual_median", "val_unconverged"):
        assert k in rec and np.isfinite(rec[k])
    assert 0.0 <= rec["train_unconverged"] <= 1.0 and 0.0 <= rec["val_unconverged"] <= 1.0
    assert rec["val_residual_median"] <= rec["val_residual"]


def test_run_directories_are_safe(tmp_path):
    quiet = dict(progress=False, log=lambda *a: None)
    afile = tmp_path / "afile"
    afile.write_text("not a run")
    with pytest.raises(ConfigError, match="is a file"):
        train(_toy_cfg(), str(afile), **quiet)
    run = tmp_path / "run"
    train(_toy_cfg(), str(run), **quiet)
    with pytest.raises(ConfigError, match="different config"):  # another run's directory
        train(_toy_cfg(**{"optimizer.learning_rate": 0.5}), str(run), **quiet)
    train(_toy_cfg(**{"optimizer.learning_rate": 0.5, "training.resume": False}), str(run), **quiet)
    assert json.load(open(run / "config.json"))["optimizer"]["learning_rate"] == 0.5
    with open(os.path.join(run, ".lock"), "w") as f:  # another process writing into it
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        import subprocess
        import sys
        code = ("import sys; sys.path.insert(0, 'tests'); import test_reliability as t; from holoeb.training import train\n"
                f"train(t._toy_cfg(**{{'optimizer.learning_rate': 0.5, 'training.resume': False}}), {str(run)!r}, "
                "progress=False, log=lambda *a: None)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.dirname(__file__)))
        assert out.returncode != 0 and "being written by another process" in out.stderr


@pytest.mark.parametrize("over, phrase", [
    ({"data.train_size": 0}, "data.train_size must be a positive integer or null"),
    ({"data.val_size": 0}, "data.val_size must be a positive integer or null"),
    ({"data.val_size": 100}, "asked for 100 examples, the split has 60"),
    ({"data.random_crop": -1}, "data.random_crop must be an integer >= 0"),
])
def test_sizes_out_of_range_are_refused(tmp_path, over, phrase):
    with pytest.raises(ConfigError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        train(_toy_cfg(**over), str(tmp_path / "run"), progress=False, log=lambda *a: None)


def test_truncated_idx_file_and_bad_labels_are_named(tmp_path):
    import gzip
    import struct

    from holoeb.data.fashion_mnist import read_idx

    raw = struct.pack(">BBBBIII", 0, 0, 0x08, 3, 10, 4, 3) + bytes(120)
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw)[:-30])  # cut the gzip stream
    with pytest.raises(ConfigError, match="truncated or corrupt"):
        read_idx(str(path))
    short = tmp_path / "y-idx3-ubyte"
    short.write_bytes(raw[:60])
    with pytest.raises(ConfigError, match="expected 120 values"):
        read_idx(str(short))
    images = np.zeros((60, 4, 3), np.uint8)
    register_dataset("toy_badlabels", lambda split, data_dir: (images, np.arange(60) % 4), num_classes=3)
    from holoeb.data.registry import load_dataset

    with pytest.raises(ConfigError, match=r"label 3 of example 3 is not a class index in \[0, 3\)"):
        load_dataset("toy_badlabels", "train", (12,))


def test_implicit_solves_flag_examples_that_miss_the_tolerance():
    with jax.enable_x64(True):
        m, p, b = small_problem()
        for name in ("true", "rbp"):
            ok = make_estimator(name, T_free=200, solve_tol=1e-10, solve_maxiter=40)(m, p, b, None)
            assert float(ok.aux["solve_unconverged"]) == 0.0 and float(ok.aux["solve_residual"]) <= 1e-10
            cut = make_estimator(name, T_free=200, solve_tol=1e-14, solve_restart=1, solve_maxiter=1)(m, p, b, None)
            assert float(cut.aux["solve_unconverged"]) == 1.0 and float(cut.aux["solve_residual"]) > 1e-14


_KILL_AFTER_SAVE = """
import os, signal, sys
sys.path.insert(0, 'tests')
import test_reliability as t
from holoeb import checkpoint
from holoeb.training import train
save = checkpoint.Checkpointer.save
def save_then_die(self, step, state, meta):
    save(self, step, state, meta)
    if step == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 right after this checkpoint, mid-epoch
checkpoint.Checkpointer.save = save_then_die
train(t._toy_cfg(**t.RESUMABLE), {run!r}, progress=False, log=lambda *a: None)
"""
RESUMABLE = {"training.checkpoint": True, "training.checkpoint_every": 1, "training.checkpoints_to_keep": 3,
             "training.epochs": 2}
TIMING = ("epoch_time_s", "step_time_s")


def _csv_without_timing(run):
    rows = [line.split(",") for line in open(os.path.join(run, "metrics.csv")).read().splitlines()]
    keep = [i for i, c in enumerate(rows[0]) if c not in TIMING]
    return [[r[i] for i in keep] for r in rows]


def test_kill_9_then_rerun_equals_an_uninterrupted_run(tmp_path):
    """kill -9 mid-epoch, then the same command: the metrics equal an uninterrupted run's (same
    seed) to the byte apart from timing; a truncated latest checkpoint falls back to the one
    before it with a warning. Two uninterrupted runs give byte-identical metrics.csv."""
    import subprocess
    import sys

    quiet = dict(progress=False, log=lambda *a: None)
    ref, again = str(tmp_path / "ref"), str(tmp_path / "again")
    train(_toy_cfg(**RESUMABLE), ref, **quiet)
    train(_toy_cfg(**RESUMABLE), again, **quiet)
    assert _csv_without_timing(ref) == _csv_without_timing(again)
    root = os.path.dirname(os.path.dirname(__file__))
    for damage in (True,):  # (the undamaged resume is covered in-process by test_parallel_checkpoint)
        run = str(tmp_path / f"killed{int(damage)}")
        out = subprocess.run([sys.executable, "-c", _KILL_AFTER_SAVE.format(kill_at=4, run=run)], cwd=root,
                             capture_output=True, text=True)
        assert out.returncode == -9, out.stderr[-2000:]  # killed (epoch 2, step 1 of 3)
        assert not os.path.exists(os.path.join(run, "metrics.json")) or len(json.load(
            open(os.path.join(run, "metrics.json")))["history"]) == 1
        warnings = []
        if damage:  # truncate the largest file of the newest checkpoint
            newest = os.path.join(run, "checkpoints", "4")
            files = [os.path.join(d, f) for d, _, fs in os.walk(newest) for f in fs]
            biggest = max(files, key=os.path.getsize)
            with open(biggest, "r+b") as f:
                f.truncate(os.path.getsize(biggest) // 3)
        train(_toy_cfg(**RESUMABLE), run, progress=False, log=warnings.append)
        assert _csv_without_timing(run) == _csv_without_timing(ref)
        assert any("does not restore" in w for w in warnings) == damage


def test_unconverged_steps_stop_the_run_or_are_skipped_and_counted(tmp_path):
    """max_residual below what 5 free iterations reach: 'stop' refuses the first step (nothing
    applied), 'skip' applies no update at all and counts every step; the nudged phases'
    residual is logged for estimators that have them."""
    from holoeb.training import TrainingDiverged

    quiet = dict(progress=False, log=lambda *a: None)
    with pytest.raises(TrainingDiverged, match="did not converge"):
        train(_toy_cfg(**{"training.max_residual": 1e-9}), str(tmp_path / "stop"), **quiet)
    hist = train(_toy_cfg(**{"training.max_residual": 1e-9, "training.on_unconverged": "skip",
                             "training.checkpoint": True}), str(tmp_path / "skip"), **quiet)
    assert hist[-1]["skipped_steps"] == 3 and hist[-1]["train_unconverged"] == 1.0
    assert hist[-1]["train_nudge_residual"] > 0
    from holoeb.checkpoint import load_params

    cfg = _toy_cfg()
    from holoeb import make_model
    init = make_model("mlp", in_features=12, hidden=(6,), num_classes=3).init(
        jax.random.split(jax.random.PRNGKey(cfg.training.seed))[1])
    for a, b in zip(jax.tree_util.tree_leaves(load_params(str(tmp_path / "skip"))), jax.tree_util.tree_leaves(init)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # nothing was applied


def test_metrics_fetched_per_interval_equal_per_step_and_name_the_failing_step(tmp_path):
    """training.log_every only changes when the host reads the step metrics: the history is the
    same to the byte for 1, 4 and 50 steps per fetch (9 steps: intervals that do and do not
    divide the epoch), and a step that turns non-finite is reported with its own index and
    nothing after it is saved."""
    from holoeb.training import TrainingDiverged

    quiet = dict(progress=False, log=lambda *a: None)
    over = {"training.epochs": 3, "training.batch_size": 20, "diagnostics.enabled": False}
    runs = {}
    for every in (1, 4, 50):
        run = str(tmp_path / f"every{every}")
        train(_toy_cfg(**over, **{"training.log_every": every}), run, **quiet)
        runs[every] = _csv_without_timing(run)
    assert runs[1] == runs[4] == runs[50] and len(runs[1]) == 4
    # a learning rate at float32's limit: step 0 is finite, step 1 overflows; fetched per step or
    # after the epoch's three steps, the message names step 1
    bad = {"training.epochs": 1, "diagnostics.enabled": False, "optimizer": {"name": "sgd", "learning_rate": 3e38}}
    messages = []
    for every in (1, 50):
        with pytest.raises(TrainingDiverged, match="non-finite") as e:
            train(_toy_cfg(**bad, **{"training.log_every": every, "training.checkpoint": True}),
                  str(tmp_path / f"bad{every}"), **quiet)
        messages.append(str(e.value).split(":")[0])
        assert not os.path.exists(os.path.join(tmp_path, f"bad{every}", "metrics.json"))
    assert messages == ["epoch 1, step 1", "epoch 1, step 1"]


@pytest.mark.parametrize("name", ["ep", "cauchy", "true", "rbp", "tbp"])
def test_free_steps_are_the_iterations_to_tolerance(name, x64):
    """aux["free_steps"] is the free phase's iteration count: with a tolerance, the first k at
    which the batch's largest residual ||Phi(u_k) - u_k|| is <= tol (plain iterations from zero,
    recomputed here step by step); the cap when the tolerance is never met; without one, T_free."""
    from holoeb.solvers import Relaxation

    m, p, b = small_problem()
    tol = 1e-6
    res = make_estimator(name, free=Relaxation(200, tol=tol))(m, p, b, jax.random.PRNGKey(0))
    k = int(res.aux["free_steps"])
    drive = m.drive(p["net"], b.x)
    step = jax.jit(lambda u: m.phi_layers(p["net"], u, drive, tuple(range(len(u)))))
    flat = lambda u: np.concatenate([np.reshape(np.asarray(v), (v.shape[0], -1)) for v in u], axis=1)
    u, first = m.init_state(b.x), None
    for i in range(1, 201):
        new = step(u)
        if np.max(np.linalg.norm(flat(new) - flat(u), axis=1)) <= tol:
            first = i
            break
        u = new
    assert 1 < k < 200 and k == first
    for free in (Relaxation(7), Relaxation(7, tol=1e-30)):
        assert int(make_estimator(name, free=free)(m, p, b, jax.random.PRNGKey(0)).aux["free_steps"]) == 7


def test_trainer_logs_the_mean_free_iterations(tmp_path):
    """train_free_steps, the mean over an epoch's steps: T_free for a fixed free phase, fewer
    when a loose tolerance stops it."""
    quiet = dict(progress=False, log=lambda *a: None)
    fixed = train(_toy_cfg(), str(tmp_path / "fixed"), **quiet)[-1]
    loose = train(_toy_cfg(**{"estimator.T_free": 400, "estimator.free_tol": 1e-2}), str(tmp_path / "loose"), **quiet)[-1]
    assert fixed["train_free_steps"] == 5.0
    assert 1.0 <= loose["train_free_steps"] < 400.0
