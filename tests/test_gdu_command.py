"""`holoeb gdu` end to end on real Fashion-MNIST images: a small reciprocal MLP at init, EP at two
nudges and Cauchy N=4, each cut after k = 1..K nudged iterations against truncated BP through k
iterations. The command's table must show the GDU property (Ernoult et al. 2019): EP's distance
to TBP(k) is first order in beta at every k, and the Cauchy estimate (bias O(|beta|^4)) is closer."""
import json

import numpy as np

from holoeb.cli import main

K = 3


def test_gdu_command_writes_the_time_resolved_table(tmp_path, capsys):
    cfg = tmp_path / "mlp.json"
    cfg.write_text(json.dumps({"model": {"name": "mlp", "hidden": [24, 16], "asymmetry": 0.0},
                               "data": {"dataset": "fashion_mnist"}}))
    out = tmp_path / "gdu"
    argv = ["gdu", "--config", str(cfg), "--rules", "ep:beta=0.01", "ep:beta=0.1", "cauchy:N=4,beta=0.2",
            "--K", str(K), "--T-free", "300", "--batch-size", "16", "--out", str(out)]
    assert not main(argv)  # None (success), not the error status 2
    printed = capsys.readouterr().out
    assert "wrote" in printed and "ep-beta0.01" in printed
    res = json.load(open(out / "gdu.json"))
    assert set(res["settings"]["rules"]) == {"ep-beta0.01", "ep-beta0.1", "cauchy-N4-beta0.2"}
    assert res["settings"]["K"] == K and res["settings"]["batch_size"] == 16
    assert res["free_residual"] < 1e-4  # the check starts every rule from a converged free state
    small, large = (np.array(res[f"ep-beta{b}"]["rel_tbp"]) for b in ("0.01", "0.1"))
    cauchy = np.array(res["cauchy-N4-beta0.2"]["rel_tbp"])
    assert small.shape == large.shape == cauchy.shape == (K,)
    # first-order bias: x10 in beta gives ~x10 in the distance to TBP(k), at every k
    assert small.max() < 0.05 and np.all((large / small > 5) & (large / small < 20)), (small, large)
    assert np.all(cauchy < small), (cauchy, small)
    # TBP(k) approaches RBP as k grows (the curve the EP rules follow)
    tbp = np.array(res["tbp"]["rel_rbp"])
    assert tbp[-1] < 0.5 * tbp[0], tbp
    assert (out / "gdu.png").stat().st_size > 0
