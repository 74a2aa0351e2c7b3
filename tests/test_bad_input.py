"""Bad input gets a clear error naming what is wrong; nothing is trained on."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from holoeb import dynamics, make_estimator, make_model
from holoeb.data.registry import register_dataset
from holoeb.training import TrainingDiverged, train
from holoeb.train_step import make_train_step
from holoeb.config import load_config
from conftest import small_problem


def test_unknown_estimator_and_hyperparameter():
    with pytest.raises(ValueError, match="unknown estimator 'hep'.*cauchy"):
        make_estimator("hep")
    with pytest.raises(ValueError, match="no hyper-parameter.*'M'"):
        make_estimator("cauchy", M=3)


@pytest.mark.parametrize("N", [0, -1, 2.5])
def test_cauchy_needs_positive_integer_N(N):
    with pytest.raises(ValueError, match="N must be an integer >= 1"):
        make_estimator("cauchy", N=N)


@pytest.mark.parametrize("name", ["ep", "cauchy", "continuous"])
def test_zero_beta_rejected(name):
    with pytest.raises(ValueError, match="beta must be a finite non-zero"):
        make_estimator(name, beta=0.0)


def test_continuous_needs_two_points_per_period():
    with pytest.raises(ValueError, match="N must be an integer >= 2"):
        make_estimator("continuous", N=1)


def test_input_shape_mismatch():
    m, p, b = small_problem(dtype="float32")
    est = make_estimator("ep", T_free=5, T_nudge=5)
    with pytest.raises(ValueError, match=r"input shape mismatch.*\(12,\).*\(3, 13\)"):
        est(m, p, dynamics.Batch(jnp.ones((3, 13)), b.y), None)
    with pytest.raises(ValueError, match="labels must have shape"):
        est(m, p, dynamics.Batch(b.x, jnp.zeros((4,), jnp.int32)), None)
    with pytest.raises(ValueError, match="integer class indices"):
        est(m, p, dynamics.Batch(b.x, jnp.zeros((3,))), None)


def test_unknown_model_and_activation():
    with pytest.raises(ValueError, match="unknown model"):
        make_model("transformer")
    with pytest.raises(ValueError, match="unknown activation"):
        make_model("mlp", activation_name="relu6")


def test_nan_relaxation_is_not_applied():
    """A diverging relaxation (NaN) leaves params and optimizer state untouched."""
    m, p, b = small_problem(dtype="float32")
    tx = optax.sgd(0.1, momentum=0.9)
    step = jax.jit(make_train_step(m, make_estimator("cauchy", N=2, T_free=10, T_nudge=5), tx))
    bad = dynamics.Batch(b.x.at[0, 0].set(jnp.nan), b.y)
    new_p, new_s, metrics = step(p, tx.init(p), bad, jax.random.PRNGKey(0))
    assert not bool(metrics["finite"])
    for a, c in zip(jax.tree_util.tree_leaves(new_p), jax.tree_util.tree_leaves(p)):
        np.testing.assert_array_equal(a, c)
    ok_p, _, ok = step(p, tx.init(p), b, jax.random.PRNGKey(0))
    assert bool(ok["finite"])
    assert any(not np.array_equal(a, c) for a, c in zip(jax.tree_util.tree_leaves(ok_p), jax.tree_util.tree_leaves(p)))


def test_training_refuses_nan_data(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (120, 4, 3)).astype(np.float32)
    images[7, 1, 1] = np.nan

    register_dataset("nan_toy", lambda split, data_dir: (images, np.arange(120) % 3), num_classes=3)
    cfg = load_config(None, {
        "model": {"name": "mlp", "in_features": 12, "hidden": [6], "num_classes": 3},
        "estimator": {"name": "ep", "beta": 0.5, "T_free": 5, "T_nudge": 3},
        "data.dataset": "nan_toy", "training.epochs": 1, "training.batch_size": 120, "diagnostics.batch_size": 10,
    })
    with pytest.raises(TrainingDiverged, match="non-finite"):
        train(cfg, str(tmp_path / "run"), progress=False, log=lambda *a: None)


def test_missing_dataset_message(tmp_path):
    from holoeb.data import load_fashion_mnist

    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_fashion_mnist("train", data_dir=str(tmp_path))
