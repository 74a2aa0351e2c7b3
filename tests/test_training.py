"""Training loop and CLI on real Fashion-MNIST (tiny protocol)."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

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
    from holoeb.commands.bias import load_run_params
    from holoeb.data.registry import load_dataset
    from holoeb.training import evaluate_dataset, make_eval_step

    m = make_model("mlp", hidden=(256, 256), asymmetry=0.0)
    params = load_run_params(str(out))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(m.init(jax.random.PRNGKey(0)))
    val = load_dataset("fashion_mnist", "test", m.input_shape, size=200)
    ev = evaluate_dataset(jax.jit(make_eval_step(m, 30)), params, val, 1000)
    assert abs(ev["error"] - hist[-1]["val_error"]) < 1e-9


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
