"""Multi-run overlays and the comparison table (holoeb.run_plots, `holoeb compare` / `plot-runs`)."""
import json
import os

import numpy as np
import pytest

from holoeb import run_plots
from holoeb.cli import main


def fake_run(root, name, estimator, seed, val_errors, asym=0.0):
    d = os.path.join(root, name)
    os.makedirs(d)
    cfg = {"model": {"name": "mlp", "asymmetry": asym}, "estimator": {"name": estimator, "beta": 0.5},
           "training": {"seed": seed, "epochs": 3}, "description": "x"}
    hist = [{"epoch": i + 1, "train_loss": 1.0 / (i + 1) + seed, "val_error": v, "cosine_rbp": [0.9 + 0.01 * seed, 1.0],
             "weight_angle": {"w2": 10.0 + i + seed, "w3": 20.0 + i}, "symmetry": 0.99 - 0.01 * i}
            for i, v in enumerate(val_errors)]
    with open(os.path.join(d, "metrics.json"), "w") as f:
        json.dump({"config": cfg, "history": hist}, f)
    return d


@pytest.fixture
def runs(tmp_path):
    r = str(tmp_path)
    return [fake_run(r, "a0", "cauchy", 0, [30.0, 20.0, 14.0]),
            fake_run(r, "a1", "cauchy", 1, [31.0, 21.0, 16.0]),
            fake_run(r, "a2", "cauchy", 2, [29.0, 19.0, 18.0]),
            fake_run(r, "b0", "ep", 0, [40.0, 35.0]),
            fake_run(r, "b1", "ep", 1, [41.0, 33.0, 30.0])]


def test_grouping_and_table(runs):
    groups = run_plots.group_runs([run_plots.load_run(d) for d in runs])
    assert sorted(groups) == ["estimator=cauchy", "estimator=ep"]
    assert [len(v) for v in groups.values()] == [3, 2]
    rows = {r["label"]: r for r in run_plots.compare_table(groups)}
    c = rows["estimator=cauchy"]
    assert c["final_val_error_mean"] == pytest.approx(16.0)
    assert c["final_val_error_std"] == pytest.approx(np.std([14.0, 16.0, 18.0], ddof=1))
    e = rows["estimator=ep"]  # b0 is still running: both compared at epoch 2, not at their own last
    assert e["epoch"] == 2 and e["epochs"] == [2, 3]
    assert e["final_val_error_mean"] == pytest.approx(34.0)
    assert e["best_val_error_mean"] == pytest.approx(34.0)
    md = run_plots.format_table(run_plots.compare_table(groups))
    assert "16.00 +/- 2.00" in md and md.count("\n") == 3
    assert "| 2 (runs at 2/3) |" in md and "| 3 |" in md


def test_ignored_entries_do_not_split_groups(runs, tmp_path):
    """A run differing from its group only in an ignored entry joins it; without --ignore it is its own group."""
    odd = fake_run(str(tmp_path), "a3", "cauchy", 3, [28.0, 18.0, 10.0], asym=0.5)
    loaded = [run_plots.load_run(d) for d in runs + [odd]]
    assert sorted(run_plots.group_runs(loaded)) == ["estimator=cauchy, asymmetry=0.0", "estimator=cauchy, asymmetry=0.5",
                                                   "estimator=ep, asymmetry=0.0"]
    groups = run_plots.group_runs(loaded, label_by=["estimator.name"], ignore=["model.asymmetry"])
    assert [len(v) for v in groups.values()] == [4, 2]
    row = run_plots.compare_table(groups)[0]
    assert row["final_val_error_mean"] == pytest.approx(14.5)  # (14 + 16 + 18 + 10) / 4
    with pytest.raises(ValueError, match="--ignore 'nope.key' is not a config entry"):
        run_plots.group_runs(loaded, ignore=["nope.key"])


def test_mean_std_truncates_to_common_epochs(runs):
    groups = run_plots.group_runs([run_plots.load_run(d) for d in runs], label_by=["estimator.name"])
    ep, m, s, n = run_plots.mean_std(groups["estimator=ep"], "val_error")
    assert list(ep) == [1, 2] and n == 2
    np.testing.assert_allclose(m, [40.5, 34.0])
    ep, m, s, n = run_plots.mean_std(groups["estimator=cauchy"], "cosine_rbp")
    assert m.shape == (3, 2)
    np.testing.assert_allclose(m[:, 0], 0.91)
    ep, m, s, n = run_plots.mean_std(groups["estimator=cauchy"], "weight_angle_mean")
    np.testing.assert_allclose(m, [15.5, 16.5, 17.5])  # ((10 + i + 1) + (20 + i)) / 2


def test_cli_writes_outputs(runs, tmp_path, capsys):
    out = str(tmp_path / "cmp")
    assert main(["compare", *runs, "--out", out, "--ignore", "model.asymmetry"]) in (0, None)
    for f in ("compare.md", "compare.json", "compare.png"):
        assert os.path.getsize(os.path.join(out, f)) > 0
    png = str(tmp_path / "dyn" / "d.png")
    assert main(["plot-runs", *runs, "--out", png]) in (0, None)
    assert os.path.getsize(png) > 0


def test_bad_inputs(tmp_path, runs, capsys):
    assert main(["compare", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    os.makedirs(tmp_path / "empty")
    assert main(["compare", str(tmp_path / "empty")]) == 2
    assert "metrics.json" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a config entry"):
        run_plots.group_runs([run_plots.load_run(runs[0])], label_by=["nope.key"])
    with pytest.raises(ValueError, match="not in the history"):
        run_plots.series(run_plots.load_run(runs[0])["history"], "nope")
