"""Training loop and CLI on real Fashion-MNIST (tiny protocol)."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from holoeb import dynamics, make_estimator
from holoeb.cli import main
from holoeb.estimators import run_estimator
from holoeb.estimators.nudged_phase import nudged_relaxations
from holoeb import make_model


def test_cli_train_writes_run_directory(tmp_path):
    out = tmp_path / "run"
    rc = main([
        "train", "--config", "experiments/fmnist_mlp.json", "--estimator", "cauchy", "--N", "6", "--beta", "0.5",
        "--epochs", "2", "--train-size", "500", "--val-size", "200", "--T-free", "30", "--T-nudge", "20",
        "--out", str(out), "--no-progress", "--set", "training.batch_size=50", "--set", "diagnostics.batch_size=20",
    ])
    assert rc is None
    for f in ("metrics.json", "metrics.csv", "curves.png", "config.json"):
        assert os.path.exists(out / f), f
    hist = json.load(open(out / "metrics.json"))["history"]
    assert [r["epoch"] for r in hist] == [1, 2]
    assert hist[1]["train_loss"] < hist[0]["train_loss"]  # it learns
    assert len(hist[0]["cosine_rbp"]) == 3 and all(-1 <= c <= 1 for c in hist[0]["cosine_rbp"])
    assert set(hist[0]["weight_angle"]) == {"w2", "w3"}
    # the final parameters come back from the run's checkpoint and reproduce its validation error
    from holoeb.params_io import load_run, load_run_params
    from holoeb.data.registry import load_dataset
    from holoeb.evaluation import evaluate_dataset, make_eval_step

    m = make_model("mlp", hidden=(256, 256), asymmetry=0.0)
    params = load_run_params(str(out))
    cfg, m_run, p_run = load_run(str(out))  # what `holoeb gdu --params` / `holoeb bias --params` rebuild
    assert m_run == m and cfg.estimator.kwargs["N"] == 6
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(p_run), jax.tree_util.tree_leaves(params)))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(m.init(jax.random.PRNGKey(0)))
    val = load_dataset("fashion_mnist", "test", m.input_shape, size=200)
    ev = evaluate_dataset(jax.jit(make_eval_step(m, 30)), params, val, 1000)
    assert abs(ev["error"] - hist[-1]["val_error"]) < 1e-9
    # `holoeb bias --params RUN` rebuilds that model from the run directory and evaluates the bias there
    assert main(["bias", "--params", str(out), "--num-batches", "1", "--batch-size", "4", "--betas", "0.1",
                 "--estimators", "ep", "cauchy:2", "--out", str(tmp_path / "bias")]) == 0
    panels = json.load(open(tmp_path / "bias" / "bias.json"))["panels"]
    assert list(panels) == ["checkpoint run"]


def test_final_train_error_flips_and_no_diagnostics(tmp_path):
    """training.eval_train adds the final training-set error (unaugmented data) to the last
    epoch; flips change training but not the evaluation; diagnostics can be switched off."""
    from holoeb.params_io import load_run_params
    from holoeb.config import load_config
    from holoeb.data.registry import DATASETS, load_dataset, register_dataset
    from holoeb.evaluation import evaluate_dataset, make_eval_step
    from holoeb.training import train

    rng = np.random.default_rng(0)
    y = np.arange(64) % 2
    imgs = np.where(y[:, None, None] == 1, np.tile(np.linspace(0, 255, 4), (4, 1)), 60.0)
    imgs = np.clip(imgs + rng.normal(0, 20, (64, 4, 4)), 0, 255).astype(np.uint8)  # class 1: a left-right ramp
    register_dataset("ramps", lambda split, data_dir: (imgs, y), 2, (0.5,), (0.25,), flip=False)
    over = {"model": {"name": "mlp", "in_features": 16, "hidden": [8], "num_classes": 2},
            "estimator": {"name": "ep", "beta": 0.5, "T_free": 10, "T_nudge": 5}, "data.dataset": "ramps",
            "training.epochs": 2, "training.batch_size": 16, "training.eval_train": True, "diagnostics.enabled": False}
    quiet = lambda *a: None
    try:
        hist = train(load_config(None, over), str(tmp_path / "a"), progress=False, log=quiet)
        flipped = train(load_config(None, dict(over, **{"data.random_flip": True})), str(tmp_path / "b"),
                        progress=False, log=quiet)
        cropped = train(load_config(None, dict(over, **{"data.random_crop": 1})), str(tmp_path / "c"),
                        progress=False, log=quiet)
        m = make_model("mlp", in_features=16, hidden=(8,), num_classes=2)
        ds = load_dataset("ramps", "train", m.input_shape)
    finally:
        DATASETS.pop("ramps")
    assert "train_error" not in hist[0] and "cosine_rbp" not in hist[0]
    ev = evaluate_dataset(jax.jit(make_eval_step(m, 10)), load_run_params(str(tmp_path / "a")), ds, 1000)
    assert abs(ev["error"] - hist[-1]["train_error"]) < 1e-9 and abs(ev["loss"] - hist[-1]["train_eval_loss"]) < 1e-6
    assert flipped[0]["train_loss"] != hist[0]["train_loss"] and cropped[0]["train_loss"] != hist[0]["train_loss"]
    assert os.path.exists(tmp_path / "a" / "curves.png")
    assert json.load(open(tmp_path / "b" / "config.json"))["data"]["random_flip"] is True


def test_cli_rejects_hyperparameter_of_other_estimator(tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="does not take"):
        main(["train", "--estimator", "true", "--N", "4", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="unknown estimator 'nope'"):
        main(["train", "--estimator", "nope", "--out", str(tmp_path / "y")])


def test_deterministic_seeding():
    m = make_model("mlp", hidden=(16,), in_features=784)
    p1, p2 = m.init(jax.random.PRNGKey(3)), m.init(jax.random.PRNGKey(3))
    for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(p2)):
        np.testing.assert_array_equal(a, b)


def test_six_complex_nudged_phases_T20_compile():
    """N = 6 with T_nudge = 20 (complex phases) compiles and runs inside one jit,
    also with two complex nudged phases in the same jit (the jaxlib 0.10 CPU pitfall)."""
    m = make_model("mlp", hidden=(32, 32), in_features=784)
    p = m.init(jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (8, 784))
    y = jnp.arange(8) % 10
    r = run_estimator(make_estimator("cauchy", N=6, beta=0.5, T_free=30, T_nudge=20, conjugate_symmetry=False), m, p, dynamics.Batch(x, y))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(r.grads))

    @jax.jit
    def two_phases(p):
        d = m.drive(p["net"], x)
        u0 = m.init_state(x)
        a = nudged_relaxations(m, p, d, y, u0, jnp.array([0.5j, 0.5 + 0.2j]), 20)
        b = nudged_relaxations(m, p, d, y, tuple(v[0].real for v in a.state), jnp.array([-0.5j, 0.3 - 0.1j]), 20)
        return a.state[-1].sum() + b.state[-1].sum()

    assert bool(jnp.isfinite(two_phases(p)))


def test_training_compiles_its_step_once(tmp_path, monkeypatch):
    """Issue: no recompiles during training. The training step and the evaluation are traced
    once for a whole run (3 epochs, warm-started carry, metrics fetched every step,
    checkpoints every epoch, diagnostics on); a resumed run traces its step once more only."""
    import holoeb.training as training
    from holoeb import compile_cache, evaluation, train_step
    from holoeb.config import load_config
    from holoeb.data.registry import DATASETS, register_dataset

    traces = {"step": 0, "eval": 0}

    def counting(name, make):
        def wrapped(*a, **k):
            f = make(*a, **k)

            def traced(*args, **kwargs):
                traces[name] += 1  # runs only while jax traces the function
                return f(*args, **kwargs)
            return traced
        return wrapped

    monkeypatch.setattr(train_step, "make_train_step", counting("step", train_step.make_train_step))
    monkeypatch.setattr(evaluation, "make_eval_step", counting("eval", evaluation.make_eval_step))
    compile_cache.clear()  # a compiled evaluation of an earlier test would hide the count
    rng = np.random.default_rng(1)
    y = np.arange(64) % 2
    imgs = (rng.uniform(0, 255, (64, 4, 4)) * (0.5 + 0.5 * y[:, None, None])).astype(np.uint8)
    register_dataset("traced", lambda split, data_dir: (imgs, y), 2, (0.5,), (0.25,), flip=False)
    over = {"model": {"name": "mlp", "in_features": 16, "hidden": [8], "num_classes": 2},
            "estimator": {"name": "cauchy", "N": 2, "beta": 0.2, "T_free": 8, "T_nudge": 4}, "data.dataset": "traced",
            "training.epochs": 3, "training.batch_size": 16, "training.log_every": 1, "training.warm_start": "last",
            "diagnostics.batch_size": 16}
    quiet = lambda *a: None
    try:
        hist = training.train(load_config(None, over), str(tmp_path / "a"), progress=False, log=quiet)
        assert len(hist) == 3 and traces == {"step": 1, "eval": 1}
        with pytest.raises(training.TrainingInterrupted):  # killed in epoch 2, then resumed
            training.train(load_config(None, over), str(tmp_path / "b"), progress=False, log=quiet, stop_after_steps=6)
        resumed = training.train(load_config(None, over), str(tmp_path / "b"), progress=False, log=quiet)
    finally:
        DATASETS.pop("traced")
        compile_cache.clear()
    assert len(resumed) == 3 and traces == {"step": 3, "eval": 1}


def test_stop_after_epochs_then_resume_is_the_uninterrupted_run(tmp_path, monkeypatch):
    """`train(..., stop_after_epochs=1)` ends after epoch 1 of 2 with its metrics and checkpoint written;
    training again resumes it, and the run ends with the same parameters and history as an uninterrupted
    one (the learning-rate schedule spans both epochs either way). The probe batch's clamp fractions
    are logged per layer each epoch."""
    import holoeb.training as training
    from holoeb import compile_cache, probe_diagnostics
    from holoeb.config import load_config
    from holoeb.data.registry import DATASETS, register_dataset
    from holoeb.errors import ConfigError
    from holoeb.params_io import load_run_params

    rng = np.random.default_rng(2)
    y = np.arange(64) % 2
    imgs = (rng.uniform(0, 255, (64, 4, 4)) * (0.5 + 0.5 * y[:, None, None])).astype(np.uint8)
    register_dataset("stopped", lambda split, data_dir: (imgs, y), 2, (0.5,), (0.25,), flip=False)
    over = {"model": {"name": "hopfield", "in_features": 16, "hidden": [8], "num_classes": 2},
            "estimator": {"name": "c-ep", "beta": 0.2, "T_free": 10, "T_nudge": 5}, "data.dataset": "stopped",
            "training.epochs": 2, "training.batch_size": 16, "diagnostics.batch_size": 16,
            "optimizer.schedule": "cosine"}
    quiet = lambda *a: None
    lines = []
    try:
        full = training.train(load_config(None, over), str(tmp_path / "full"), progress=False, log=quiet)
        # a non-finite diagnostic, and a hidden layer frozen at a clamp, are reported in the log (neither
        # stops the run)
        monkeypatch.setattr(probe_diagnostics.homeostasis, "symmetry_measure", lambda *a, **k: (jnp.nan, 0.0, 0.0))
        monkeypatch.setattr(probe_diagnostics, "frozen_fractions", lambda model, u: jnp.array([0.95, 0.0]))
        compile_cache.clear()
        training.train(load_config(None, {**over, "training.epochs": 1}), str(tmp_path / "nan"), progress=False,
                       log=lines.append)
        monkeypatch.undo()
        compile_cache.clear()
        assert any("non-finite diagnostics" in l and "symmetry" in l for l in lines), lines
        assert any("same clamp for every probe example in layer 1 (95.0%)" in l for l in lines), lines
        assert not any("layer 2 (" in l for l in lines), lines
        first = training.train(load_config(None, over), str(tmp_path / "part"), progress=False, log=quiet,
                               stop_after_epochs=1)
        assert [r["epoch"] for r in first] == [1]
        assert [r["epoch"] for r in json.load(open(tmp_path / "part" / "metrics.json"))["history"]] == [1]
        rest = training.train(load_config(None, over), str(tmp_path / "part"), progress=False, log=quiet)
        with pytest.raises(ConfigError, match="stop_after_epochs"):
            training.train(load_config(None, over), str(tmp_path / "bad"), progress=False, log=quiet, stop_after_epochs=0)
    finally:
        DATASETS.pop("stopped")
    assert [r["epoch"] for r in rest] == [1, 2]
    for a, b in zip(full, rest):
        assert a["val_error"] == b["val_error"] and a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(load_run_params(str(tmp_path / "full"))),
                    jax.tree_util.tree_leaves(load_run_params(str(tmp_path / "part")))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    for r in full:  # one hidden layer and the output layer
        assert len(r["clamped_lower"]) == len(r["clamped_upper"]) == 2
        assert all(0 <= lo and 0 <= hi and lo + hi <= 1 for lo, hi in zip(r["clamped_lower"], r["clamped_upper"]))
        assert r["clamped_lower"][1] == r["clamped_upper"][1] == 0.0  # the output layer is not boxed
        assert len(r["frozen"]) == 2 and all(0 <= f <= lo + hi + 1e-7
                                             for f, lo, hi in zip(r["frozen"], r["clamped_lower"], r["clamped_upper"]))


def test_init_from_starts_where_another_run_ended(tmp_path):
    """training.init_from: a run started from another run's parameters begins exactly there (with a vanishing
    learning rate it stays there: same validation error, same parameters); parameters of another
    architecture or a path that does not exist are refused with a ConfigError naming the problem."""
    import holoeb.training as training
    from holoeb.config import load_config
    from holoeb.data.registry import DATASETS, register_dataset
    from holoeb.errors import ConfigError
    from holoeb.params_io import load_run_params, save_params

    rng = np.random.default_rng(4)
    y = np.arange(48) % 2
    imgs = (rng.uniform(0, 255, (48, 4, 4)) * (0.5 + 0.5 * y[:, None, None])).astype(np.uint8)
    register_dataset("continued", lambda split, data_dir: (imgs, y), 2, (0.5,), (0.25,), flip=False)
    over = {"model": {"name": "mlp", "in_features": 16, "hidden": [8], "num_classes": 2},
            "estimator": {"name": "ep", "beta": 0.1, "T_free": 8}, "data.dataset": "continued",
            "training.epochs": 1, "training.batch_size": 16, "diagnostics.enabled": False}
    quiet = lambda *a: None
    try:
        first = training.train(load_config(None, over), str(tmp_path / "a"), progress=False, log=quiet)
        a = load_run_params(str(tmp_path / "a"))
        still = {**over, "training.init_from": str(tmp_path / "a"), "optimizer.learning_rate": 1e-30}
        again = training.train(load_config(None, still), str(tmp_path / "b"), progress=False, log=quiet)
        save_params(str(tmp_path / "a.npz"), a)  # a params file works as well as a run directory
        from_file = training.train(load_config(None, {**still, "training.init_from": str(tmp_path / "a.npz")}),
                                   str(tmp_path / "c"), progress=False, log=quiet)
        wider = {**over, "model": {**over["model"], "hidden": [9]}, "training.init_from": str(tmp_path / "a")}
        with pytest.raises(ConfigError, match=r"init_from.*shape"):
            training.train(load_config(None, wider), str(tmp_path / "d"), progress=False, log=quiet)
        with pytest.raises(ConfigError, match="does not exist"):
            training.train(load_config(None, {**over, "training.init_from": str(tmp_path / "nowhere")}),
                           str(tmp_path / "e"), progress=False, log=quiet)
    finally:
        DATASETS.pop("continued")
    assert again[0]["val_error"] == from_file[0]["val_error"] == first[0]["val_error"]
    for p, q in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(load_run_params(str(tmp_path / "b")))):
        np.testing.assert_array_equal(np.asarray(p), np.asarray(q))


def test_init_from_a_params_file_keeps_empty_subtrees(tmp_path):
    """A .npz params file has no entry for an empty subtree (the DCHN's readout {}); the parameters
    loaded for training.init_from still have the model's structure, values and dtypes."""
    from holoeb.params_io import save_params
    from holoeb.params_io import initial_params_from

    m = make_model("dchn", in_channels=1, image_size=8, channels=(2, 3), num_classes=3)
    p = m.init(jax.random.PRNGKey(0))
    assert p["readout"] == {}
    save_params(str(tmp_path / "p.npz"), jax.tree_util.tree_map(lambda a: np.asarray(a) + 1.0, p))
    q = initial_params_from(str(tmp_path / "p.npz"), p)
    assert jax.tree_util.tree_structure(q) == jax.tree_util.tree_structure(p)
    for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(q)):
        assert b.dtype == a.dtype
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a) + 1.0)


def test_epoch_record_means_and_optional_entries():
    """An epoch's record: step sums divided by the epoch's steps (a resumed epoch's sums cover all
    of them), time per step over the steps this call ran, and the nudged-phase / free-iteration /
    homeostasis / top-5 / training-split entries only where the run has them; the log line names
    what the record holds."""
    from holoeb.training import STEP_SUMS, epoch_record, format_epoch

    sums = dict.fromkeys(STEP_SUMS, 0.0)
    sums.update(loss=8.0, accuracy=2.0, residual=0.4, residual_median=0.04, unconverged=0.2, skipped=1.0)
    val = {"loss": 0.5, "error": 12.5, "residual": 0.3, "residual_median": 1e-6, "unconverged": 0.01}
    rec = epoch_record(3, sums, 4, val, None, {"w1": 2.0}, 10.0, 2, lam=0.0)
    assert (rec["train_loss"], rec["train_acc"], rec["train_residual"], rec["train_unconverged"]) == (2.0, 0.5, 0.1, 0.05)
    assert rec["skipped_steps"] == 1 and rec["step_time_s"] == 5.0 and rec["val_error"] == 12.5
    for absent in ("train_nudge_residual", "train_free_steps", "homeo_loss", "val_top5_error", "train_error", "cosine_rbp"):
        assert absent not in rec
    line = format_epoch(rec, 1e-3)
    assert line.startswith("epoch 3: train loss 2.0000 acc 50.00% | val error 12.50%") and line.endswith("5000.0 ms/step")
    assert "top-5" not in line and "cos vs RBP" not in line and "free iterations" not in line

    sums.update(nudge_residual=2.0, nudge_residual_median=0.2, nudge_unconverged=0.4, free_steps=240.0, homeo_loss=1.2)
    probe = {"cosine_rbp": [0.9, 1.0], "cosine_rbp_active": [0.95, 1.0], "symmetry": 0.8}
    rec = epoch_record(3, sums, 4, {**val, "top5_error": 3.0}, probe, {}, 10.0, 4, lam=0.5,
                       train_eval={"loss": 0.4, "error": 10.0, "top5_error": 2.0}, topk=True)
    assert (rec["train_nudge_residual"], rec["train_free_steps"], rec["homeo_loss"]) == (0.5, 60.0, 0.3)
    assert (rec["val_top5_error"], rec["train_error"], rec["train_top5_error"], rec["cosine_rbp"]) == (3.0, 10.0, 2.0, [0.9, 1.0])
    line = format_epoch(rec, 1e-3)
    assert "(top-5 3.00%)" in line and "train error 10.00%" in line and "free iterations 60.0" in line
    assert "cos vs RBP [0.9, 1.0] (active units [0.95, 1.0]) | symmetry 0.800" in line


def test_check_step_refuses_a_non_finite_or_unconverged_step():
    """A fetched step that was not finite ends the run naming the epoch and step; an unconverged one
    only with training.on_unconverged="stop" (with "skip" it was skipped and counts as such)."""
    from holoeb.training import STEP_SUMS, TrainingDiverged, add_step, check_step

    ok = {"finite": True, "applied": True, "residual": 0.5, "loss": 1.0}
    check_step(ok, 1, 0, None, "stop")
    with pytest.raises(TrainingDiverged, match="epoch 2, step 7: non-finite"):
        check_step({**ok, "finite": False}, 2, 7, None, "stop")
    with pytest.raises(TrainingDiverged, match="epoch 1, step 3: free phase did not converge"):
        check_step(ok, 1, 3, 0.1, "stop")
    check_step(ok, 1, 3, 0.1, "skip")
    sums = dict.fromkeys(STEP_SUMS, 0.0)
    add_step(sums, {**ok, "applied": False})
    add_step(sums, ok)
    assert (sums["skipped"], sums["loss"], sums["residual"]) == (1.0, 2.0, 1.0)
