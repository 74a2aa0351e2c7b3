"""The one config schema (holoeb.config): unknown keys and wrong types are named by their
dotted path, ranges are checked, --print-config prints the resolved config, and train /
study configs round-trip through JSON; the one optimizer builder (holoeb.optim)."""
import dataclasses
import glob
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from holoeb.cli import main
from holoeb.config import OptimizerConfig, TrainConfig, load_config, parse_value
from holoeb.errors import ConfigError, HoloebError
from holoeb.optim import make_optimizer
from holoeb.study import StudyConfig, load_study_config, train_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("item, key", [("training.batch_sze=10", "training.batch_sze"),
                                       ("training.epoch=1", "training.epoch"),
                                       ("optimizer.lr=0.1", "optimizer.lr")])
def test_unknown_set_key_names_path_and_valid_keys(item, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, sets=[item])
    msg = str(e.value)
    assert repr(key) in msg and "valid keys" in msg
    section = key.split(".")[0]
    for valid in dataclasses.fields(type(getattr(TrainConfig(), section))):
        assert valid.name in msg


def test_unknown_key_in_config_file(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"training": {"epochs": 2, "batchsize": 8}}))
    with pytest.raises(ConfigError, match=r"'training\.batchsize'.*batch_size"):
        load_config(str(p))
    p.write_text(json.dumps({"trainig": {"epochs": 2}}))
    with pytest.raises(ConfigError, match="unknown section.*trainig"):
        load_config(str(p))


@pytest.mark.parametrize("item, pattern", [
    ("optimizer.momentum=high", r"optimizer\.momentum: expected a number, got 'high'"),
    ("training.seed=1.5", r"training\.seed: expected an integer"),
    ("training.checkpoint=yes", r"training\.checkpoint: expected true or false"),
    ("optimizer.lr_scales=3", r"optimizer\.lr_scales: expected an object"),
    ("training.batch_size=0", r"training\.batch_size must be a positive integer, got 0"),
    ("training.epochs=-2", r"training\.epochs must be a positive integer"),
    ("optimizer.learning_rate=NaN", r"optimizer\.learning_rate must be finite and > 0"),
    ("optimizer.learning_rate=0", r"optimizer\.learning_rate must be finite and > 0"),
    ("homeostasis.lambda=-0.5", r"homeostasis\.lambda must be finite and >= 0"),
    ("homeostasis.num_samples=0", r"homeostasis\.num_samples must be an integer >= 1"),
    ("optimizer.schedule=linear", r"optimizer\.schedule must be one of"),
])
def test_wrong_types_and_ranges_are_named(item, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, sets=[item])


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    assert main(["train", "--set", "training.epoch=1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("holoeb: error: unknown config key 'training.epoch'")
    assert not os.path.exists(tmp_path / "r")
    assert main(["study", "--set", "K=3", "--print-config"]) == 2
    assert "unknown study setting 'K'" in capsys.readouterr().err


def test_set_values_are_parsed_by_field_type():
    assert parse_value("6") == 6 and parse_value("[1, 2]") == [1, 2] and parse_value("adam") == "adam"
    cfg = load_config(None, sets=["data.data_dir=2024", "training.max_residual=1e3", "model.hidden=[8,4]",
                                  "estimator.name=true", "data.train_size=null"])
    assert cfg.data.data_dir == "2024" and cfg.training.max_residual == 1000.0 and cfg.data.train_size is None
    assert cfg.model.kwargs["hidden"] == [8, 4] and cfg.estimator.name == "true"
    assert load_config(None, sets=["data.data_dir=null"]).data.data_dir is None
    assert isinstance(load_config(None, {"optimizer.learning_rate": 1}).optimizer.learning_rate, float)


def test_print_config_train(capsys):
    rc = main(["train", "--config", os.path.join(ROOT, "experiments/fmnist_mlp.json"), "--epochs", "3", "--lr", "0.02",
               "--set", "optimizer.momentum=0.5", "--print-config"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    expected = load_config(os.path.join(ROOT, "experiments/fmnist_mlp.json"),
                           {"training.epochs": 3, "optimizer.learning_rate": 0.02}, ["optimizer.momentum=0.5"])
    assert printed == expected.to_dict()
    assert printed["estimator"] == {"name": "cauchy", "N": 6, "beta": 0.5, "T_free": 150, "T_nudge": 20}
    assert printed["training"]["epochs"] == 3 and printed["training"]["batch_size"] == 50
    assert printed["homeostasis"]["lambda"] == 0.0 and printed["data"]["random_flip"] is False


def test_print_config_study(capsys):
    assert main(["study", "--protocol", "paper", "--set", "T_nudge=7", "--out-dir", "x", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["channels"] == [128, 256, 512, 512] and printed["T_nudge"] == 7 and printed["out_dir"] == "x"
    assert printed["seeds"] == [0, 1, 2] and printed["epochs"] == 100
    assert StudyConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in printed.items()}) == \
        load_study_config("paper", sets=["T_nudge=7", "out_dir=x"])


@pytest.mark.parametrize("path", sorted(p for p in glob.glob(os.path.join(ROOT, "experiments/*.json"))
                                        if not os.path.basename(p).startswith(("aeqprop", "comparative_study"))))
def test_experiment_configs_round_trip(path):
    cfg = load_config(path)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert TrainConfig.from_dict(d) == cfg and TrainConfig.from_dict(d).to_dict() == d
    with open(path) as f:
        user = json.load(f)
    for section, values in user.items():
        if isinstance(values, dict):
            for k, v in values.items():
                assert d[section][k] == v, (section, k)


def test_study_config_translates_to_the_training_config():
    cfg = load_study_config("cpu", os.path.join(ROOT, "experiments/comparative_study_dense.json"), sets=["seeds=[4]"])
    assert cfg.model == "hopfield" and cfg.seeds == (4,) and cfg.T_nudge == 15
    t = train_config(cfg, "c-ep", "fashion_mnist", 4)
    assert TrainConfig.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    assert t.model.name == "hopfield" and t.model.kwargs["in_features"] == 1024 and t.model.kwargs["num_classes"] == 10
    assert t.model.kwargs["gains"] == [0.5] * 3 and t.model.kwargs["cost_scale"] == 0.5
    assert t.estimator.to_dict() == {"name": "c-ep", "T_free": 60, "T_nudge": 15, "relax_dtype": None,
                                     "rerelax_free": False, "ep_output": "minimiser", "beta": 0.25}
    assert "ep_output" not in train_config(cfg, "c-cpl", "fashion_mnist", 4).estimator.kwargs
    o = t.optimizer
    assert (o.name, o.momentum, o.weight_decay, o.schedule, o.eta_min, o.T_max) == ("sgd", 0.9, 3e-4, "cosine_epochs", 2e-6, None)
    assert o.layer_lrs == [0.0625, 0.0375, 0.0125]
    assert (t.data.dataset, t.data.train_size, t.data.val_size, t.data.random_flip) == ("fashion_mnist", 10000, None, None)
    assert (t.training.batch_size, t.training.epochs, t.training.seed, t.training.eval_train) == (128, 5, 4, True)
    assert "beta" not in train_config(cfg, "cl", "fashion_mnist", 0).estimator.kwargs
    assert train_config(cfg, "tbp", "fashion_mnist", 0).estimator.to_dict() == {"name": "tbp", "T_free": 60, "K": 15}
    assert train_config(cfg, "rbp", "fashion_mnist", 0).estimator.to_dict() == {"name": "rbp", "T_free": 60}
    # the released code's choices (warm start, beta = 0 re-relaxation, layer order, pool ties, bias init, augmentation)
    rel = load_study_config("cpu", os.path.join(ROOT, "experiments/comparative_study_released.json"))
    t = train_config(rel, "cl", "fashion_mnist", 0)
    assert t.estimator.kwargs["rerelax_free"] is True and t.training.warm_start == "last"
    assert train_config(rel, "p-ep", "fashion_mnist", 0).estimator.kwargs["ep_output"] == "step"
    assert (t.model.kwargs["schedule"], t.model.kwargs["pool_ties"], t.model.kwargs["bias_gain"]) == ("async_odd_first", "first", 0.5)
    assert (t.data.random_flip, t.data.random_crop) == (True, 2)
    assert t.model.kwargs["gains"] == [1.0] * 5  # the gain both codes were compared at (the study's default is 0.5)
    dchn = train_config(load_study_config("paper"), "p-ep", "fashion_mnist", 0).model.kwargs
    assert (dchn["in_channels"], dchn["image_size"], dchn["channels"]) == (1, 32, [128, 256, 512, 512])
    with pytest.raises(ConfigError, match=r"lrs\[1\]: expected a number"):
        load_study_config("cpu", sets=['lrs=[0.1, "x"]'])
    with pytest.raises(ConfigError, match="ep_output"):
        load_study_config("cpu", sets=["ep_output=exact"])


# ---- the optimizer ----------------------------------------------------------------------------------
def _params():
    return {"net": {"w1": jnp.ones((2, 2)), "b1": jnp.ones(2), "w2": jnp.ones((2, 3)), "b2": jnp.ones(3)},
            "readout": {"w": jnp.ones((3, 2))}}


def test_cosine_epochs_per_layer_schedule_matches_the_formula():
    eta, eta_min, T_max, spe = (0.5, 0.1), 0.01, 3, 4
    cfg = OptimizerConfig(learning_rate=0.2, momentum=0.0, schedule="cosine_epochs", eta_min=eta_min, T_max=T_max,
                          layer_lrs=list(eta))
    p = _params()
    tx = make_optimizer(cfg, p, spe, epochs=10)
    state = tx.init(p)
    g = jax.tree_util.tree_map(jnp.ones_like, p)
    for step in range(6 * spe):
        upd, state = tx.update(g, state, p)
        epoch = min(step // spe, T_max)
        for k, name in ((0, "w1"), (0, "b1"), (1, "w2"), (1, "b2")):
            want = eta_min + (eta[k] - eta_min) * (1 + math.cos(math.pi * epoch / T_max)) / 2
            np.testing.assert_allclose(upd["net"][name], -want, rtol=1e-6)
        np.testing.assert_allclose(upd["readout"]["w"], -(eta_min + (0.2 - eta_min) * (1 + math.cos(math.pi * epoch / T_max)) / 2),
                                   rtol=1e-6)


def test_weight_decay_momentum_and_lr_scales():
    p = _params()
    tx = make_optimizer({"learning_rate": 0.1, "momentum": 0.5, "weight_decay": 0.01, "lr_scales": {"w2": 3.0}}, p, 1)
    state = tx.init(p)
    g = jax.tree_util.tree_map(jnp.ones_like, p)
    u1, state = tx.update(g, state, p)
    u2, state = tx.update(g, state, p)
    np.testing.assert_allclose(u1["net"]["w1"], -0.1 * 1.01, rtol=1e-6)
    np.testing.assert_allclose(u2["net"]["w1"], -0.1 * 1.01 * 1.5, rtol=1e-6)  # trace = g + 0.5 g
    np.testing.assert_allclose(u2["net"]["w2"], -0.3 * 1.01 * 1.5, rtol=1e-6)


def test_optimizer_rejects_unknown_lr_scales_and_wrong_layer_count():
    p = _params()
    with pytest.raises(ConfigError, match=r"lr_scales.*\['layer9'\].*valid names.*'w1'"):
        make_optimizer(OptimizerConfig(lr_scales={"layer9": 2.0}), p, 10)
    with pytest.raises(ConfigError, match=r"one learning rate per layer \(2"):
        make_optimizer(OptimizerConfig(layer_lrs=[0.1, 0.2, 0.3]), p, 10)
    assert issubclass(ConfigError, HoloebError) and issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("argv, phrase", [
    (["--estimator", "c-ep"], "needs an energy-based model"),
    (["--estimator", "cauchy", "--set", "model.name=hopfield"], "model 'hopfield' has no option(s) ['asymmetry']"),
    (["--set", "estimator.T_free=-3"], "T_free = -3 is invalid"),
])
def test_cli_refuses_bad_model_or_pair_with_one_line_before_training(tmp_path, capsys, argv, phrase):
    from holoeb.cli import main

    assert main(["train", *argv, "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("holoeb: error:") and phrase in err[0]
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_cli_usage_errors_exit_2_with_one_line(tmp_path, capsys):
    from holoeb.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--estimator", "cuachy", "--out", str(tmp_path / "run")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["holoeb: error: " + str(e.value)] and "unknown estimator 'cuachy'" in err[0]


def test_run_config_comparison_treats_an_option_at_its_default_as_absent():
    """A run directory written before a model / estimator option existed resumes under the new code (the option
    at its default is the old behaviour); a non-default value is a different run."""
    from holoeb.run_directory import comparable_config

    cfg = train_config(load_study_config("cpu", sets=["rules=[cl]"]), "cl", "fashion_mnist", 0).to_dict()
    old = json.loads(json.dumps(cfg))
    del old["estimator"]["rerelax_free"], old["model"]["pool_ties"], old["model"]["bias_gain"]
    assert comparable_config(old) == comparable_config(cfg)
    for section, key, value in (("estimator", "rerelax_free", True), ("model", "pool_ties", "first"),
                                ("estimator", "T_nudge", 16)):
        other = json.loads(json.dumps(cfg))
        other[section][key] = value
        assert comparable_config(other) != comparable_config(cfg), key


@pytest.mark.parametrize("flag, value", [("--checkpoint-every", "-3"), ("--checkpoints-to-keep", "0"),
                                         ("--epochs", "0")])
def test_table1_script_refuses_bad_counts_with_one_line(tmp_path, flag, value):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, os.path.join(ROOT, "experiments/table1.py"), "--only", "N2", "--epochs", "1",
                          "--out", str(tmp_path), flag, value], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and flag in out.stderr.strip().splitlines()[-1]
    assert not os.listdir(tmp_path)  # nothing was trained
