"""`holoeb study` end to end on a few real Fashion-MNIST images with a tiny DCHN."""
import argparse
import dataclasses
import json
import os

import numpy as np
import pytest

from holoeb.commands import study


def _cfg(tmp_path, *sets):
    p = argparse.ArgumentParser()
    study.add_arguments(p)
    args = ["--out-dir", str(tmp_path)]
    for s in sets:
        args += ["--set", s]
    return study.config_from_args(p.parse_args(args))


def test_protocols_follow_table5_and_the_authors_cost():
    p = argparse.ArgumentParser()
    study.add_arguments(p)
    paper = study.config_from_args(p.parse_args(["--protocol", "paper"]))
    assert paper.channels == (128, 256, 512, 512) and paper.gains == (0.5,) and paper.epochs == 100
    assert paper.lrs == (0.0625, 0.0375, 0.025, 0.02, 0.0125) and paper.batch_size == 128
    cpu = study.config_from_args(p.parse_args([]))
    assert cpu.model == "dchn" and len(cpu.lrs) == len(cpu.channels) + 1 and cpu.gains == (0.5,)
    for cfg in (paper, cpu):
        assert (cfg.beta, cfg.cost_scale, cfg.T_free, cfg.T_nudge) == (0.25, 0.5, 60, 15)


def test_study_writes_a_table_for_every_rule(tmp_path):
    cfg = _cfg(tmp_path, 'rules=["c-ep","tbp"]', "channels=[2,2,2,2]", "n_train=256", "n_test=128",
               "epochs=1", "T_free=5", "T_nudge=3")
    summary, md = study.run_study(cfg, log=lambda *a: None)
    assert set(summary) == {"c-ep", "tbp"}
    for rule, per in summary.items():
        r = per["fashion_mnist"]
        assert 0.0 <= r["test"] <= 100.0 and 0.0 <= r["train"] <= 100.0 and r["n"] == 1
    error_table, rest = md.split("Last epoch, mean over seeds")
    convergence_table, epochs_table = rest.split("fashion_mnist: test error (%) after each epoch")
    rows = [line for line in error_table.splitlines() if line.startswith("| ") and not line.startswith("| rule")]
    assert [r.split("|")[1].strip() for r in rows] == ["C-EP", "TBP"]
    conv = [line.split("|") for line in convergence_table.splitlines() if line.startswith("| ") and not line.startswith("| rule")]
    assert [c[1].strip() for c in conv] == ["C-EP", "TBP"]
    for c in conv:  # fractions of unconverged examples (%) and a cosine
        assert 0.0 <= float(c[3]) <= 100.0 and -1.0 <= float(c[5]) <= 1.0
        assert (c[4].strip() == "-") == (c[1].strip() == "TBP")  # TBP has no nudged phase
    by_epoch = [line.split("|")[1:-1] for line in epochs_table.splitlines() if line.startswith("| ") and not line.startswith("| rule")]
    assert [[c.strip() for c in row] for row in by_epoch] == [
        [_label, "0", f"{summary[rule]['fashion_mnist']['test']:.1f}"] for rule, _label in (("c-ep", "C-EP"), ("tbp", "TBP"))]
    saved = json.load(open(os.path.join(tmp_path, "results.json")))
    assert saved["config"]["cost_scale"] == 0.5 and len(saved["runs"]) == 2
    assert all(np.isfinite(h["train_loss"]) for r in saved["runs"] for h in r["history"])
    # every cell is an ordinary holoeb.training.train run directory; a second call resumes them
    for r in saved["runs"]:
        run = json.load(open(os.path.join(tmp_path, f"fashion_mnist-{r['rule']}-seed0", "metrics.json")))
        assert run["history"][-1]["train_error"] == r["train_error"] and run["history"][-1]["val_error"] == r["test_error"]
        assert run["config"]["optimizer"]["layer_lrs"] == list(cfg.lrs) and run["config"]["data"]["train_size"] == 256
    assert study.run_study(cfg, log=lambda *a: None)[0] == summary
    # a second study with another rule set in the same directory (e.g. the other background
    # process) writes the table of both; the paper's Table 7 value sits next to ours
    other = _cfg(tmp_path, 'rules=["cl"]', "channels=[2,2,2,2]", "n_train=256", "n_test=128", "epochs=1", "T_free=5",
                 "T_nudge=3")
    both, md = study.run_study(other, log=lambda *a: None)
    assert set(both) == {"c-ep", "tbp", "cl"} and both["c-ep"] == summary["c-ep"]
    assert "| CL | " in md and "6.47 +- 0.13" in md  # C-EP's Fashion-MNIST test error in Table 7
    assert len(json.load(open(os.path.join(tmp_path, "results.json")))["runs"]) == 3
    # a run of another protocol does not count; a run short of its epochs is listed as unfinished
    assert study.write_summary(dataclasses.replace(other, epochs=2))[0] == {}
    path = os.path.join(tmp_path, "fashion_mnist-cl-seed0", "metrics.json")
    run = json.load(open(path))
    run["history"] = []
    json.dump(run, open(path, "w"))
    summary3, md3 = study.write_summary(other)
    assert set(summary3) == {"c-ep", "tbp"} and "CL fashion_mnist seed 0 (0 of 1 epochs)" in md3


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown study setting"):
        _cfg(tmp_path, "learning_rate=0.1")
    with pytest.raises(ValueError, match="unknown rule"):
        study.run_study(_cfg(tmp_path, 'rules=["q-ep"]'))
    with pytest.raises(ValueError, match="one learning rate per layer"):
        study.run_study(_cfg(tmp_path, 'rules=["cl"]', "lrs=[0.1]", "n_train=128", "n_test=128", "epochs=1"),
                        log=lambda *a: None)


def test_summary_gives_mean_and_sample_std_over_seeds(tmp_path):
    from holoeb.study import summarise

    cfg = _cfg(tmp_path, 'rules=["cl","tbp"]')
    errs = {"cl": [40.0, 50.0, 66.0], "tbp": [20.0]}
    results = [dict(rule=rule, dataset="fashion_mnist", seed=i, test_error=e, train_error=e - 1.0, history=[{}])
               for rule, es in errs.items() for i, e in enumerate(es)]
    summary, md = summarise(results, cfg)
    cl = summary["cl"]["fashion_mnist"]
    assert cl["n"] == 3 and cl["test"] == pytest.approx(52.0)
    assert cl["test_std"] == pytest.approx(np.sqrt(((40 - 52) ** 2 + (50 - 52) ** 2 + (66 - 52) ** 2) / 2))  # ddof = 1
    assert summary["tbp"]["fashion_mnist"]["test_std"] == 0.0
    assert f"| CL | 52.00 +- {cl['test_std']:.2f} (n=3) | 51.00 | 10.10 +- 0.17 |" in md
    assert "| TBP | 20.00 (n=1) | 19.00 | 6.12 +- 0.10 |" in md


def test_summary_lists_every_run_epoch_by_epoch(tmp_path):
    from holoeb.study import summarise

    cfg = _cfg(tmp_path, 'rules=["tbp","cl"]')
    curves = {("cl", 1): [80.0, 45.25], ("cl", 0): [90.0, 50.0], ("tbp", 0): [70.0, 30.04]}
    results = [dict(rule=rule, dataset="fashion_mnist", seed=seed, test_error=c[-1], train_error=c[-1],
                    history=[{"epoch": i + 1, "val_error": e} for i, e in enumerate(c)]) for (rule, seed), c in curves.items()]
    partial = [dict(rule="tbp", dataset="fashion_mnist", seed=1, epochs=1, history=[{"epoch": 1, "val_error": 60.0}])]
    _, md = summarise(results, cfg, partial)
    lines = md.splitlines()
    head = lines.index("| rule | seed | 1 | 2 |")
    # rules in the protocol's order, seeds ascending, one decimal; an unfinished run marked partial
    assert lines[head + 2:head + 6] == ["| TBP | 0 | 70.0 | 30.0 |", "| TBP | 1 (partial) | 60.0 |  |",
                                        "| CL | 0 | 90.0 | 50.0 |", "| CL | 1 | 80.0 | 45.2 |"]
    assert f"Unfinished (resumable) runs: TBP fashion_mnist seed 1 (1 of {cfg.epochs} epochs)" in md
