"""Bad command lines are refused before any compute: exit status 2 and one line
`holoeb: error: ...` that names the offending field (the cases of the reliability issue)."""
import pytest

from holoeb.cli import main

CASES = [
    (["train", "--batch-size", "-5"], "training.batch_size must be a positive integer"),
    (["train", "--batch-size", "0"], "training.batch_size must be a positive integer"),
    (["train", "--epochs", "0"], "training.epochs must be a positive integer"),
    (["train", "--set", "training.epoch=1"], "unknown config key 'training.epoch'"),
    (["train", "--set", "training.batch_sze=10"], "unknown config key 'training.batch_sze'"),
    (["train", "--lr", "-0.01"], "optimizer.learning_rate must be finite and > 0"),
    (["train", "--lr", "nan"], "optimizer.learning_rate must be finite and > 0"),
    (["train", "--set", "optimizer.momentum=high"], "optimizer.momentum: expected a number"),
    (["train", "--set", "optimizer.lr_scales={\"w9\": 2}"], "w9"),
    (["train", "--lambda-homeo", "-1"], "homeostasis.lambda must be finite and >= 0"),
    (["train", "--set", "homeostasis.num_samples=0"], "homeostasis.num_samples"),
    (["train", "--set", "training.seed=1.5"], "training.seed"),
    (["train", "--train-size", "-1"], "data.train_size must be a positive integer or null"),
    (["train", "--train-size", "0"], "data.train_size must be a positive integer or null"),
    (["train", "--val-size", "0"], "data.val_size must be a positive integer or null"),
    (["train", "--val-size", "20000"], "asked for 20000 examples, the split has 10000"),
    (["train", "--estimator", "c-ep"], "needs an energy-based model"),
    (["train", "--set", "estimator.T_free=-3"], "T_free = -3 is invalid"),
    (["study", "--set", "epochs=0"], "epochs must be a positive integer"),
    (["study", "--set", "beta=0"], "beta must be finite and non-zero"),
    (["study", "--set", "T_nudge=0"], "T_nudge must be a positive integer"),
    (["study", "--set", "learning_rate=0.1"], "learning_rate"),
    (["study", "--summarize"], "--summarize: no study in"),
    (["gdu", "--rules", "ep", "c-ep:beta=0.1", "ep"], "rule 'ep' is given twice"),
    (["gdu", "--rules", "cauchy:N6"], "expected name:key=value"),
    (["gdu", "--K", "0"], "--K, --T-free and --batch-size must be >= 1"),
    (["aeqprop-linreg", "--steps", "-5"], "steps must be an integer >= 1"),
    (["aeqprop-fmnist", "--epochs", "0"], "training.epochs must be a positive integer"),
    (["aeqprop-fmnist", "--variants", "realistic"], "unknown Aeqprop variant 'realistic'"),
]


@pytest.mark.parametrize("argv, phrase", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_command_line_exits_2_with_one_line(tmp_path, capsys, argv, phrase):
    out = tmp_path / "out"
    flag = "--out-dir" if argv[0] == "study" else "--out"
    extra = ["--no-progress"] if argv[0] in ("train", "study") else []
    assert main(argv + [flag, str(out)] + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("holoeb: error: ") and phrase in err[0], err
    assert not list(out.rglob("metrics.json")) and not list(out.rglob("results.json"))


def test_out_pointing_at_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["train", "--out", str(f), "--no-progress"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path):
    from holoeb.errors import ConfigError

    with pytest.raises(ConfigError, match="training.epochs"):
        main(["--debug", "train", "--epochs", "0", "--out", str(tmp_path / "o")])
