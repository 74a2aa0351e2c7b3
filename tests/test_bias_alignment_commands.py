"""`holoeb bias` and `holoeb alignment` end to end on real Fashion-MNIST images (small MLPs at
init): the commands parse their options and run holoeb.bias_experiment / holoeb.alignment_experiment,
whose JSON must show the paper's Fig. 2 facts: exact error vectors equal RBP's delta for symmetric
weights and not for 90-degree ones; EP's bias is first order in |beta|, the Cauchy N = 2 estimate's
second order; and Eq. 11's first-order correction beats the zeroth order at a small angle."""
import json

import jax
import numpy as np

from holoeb.bias import curve
from holoeb.cli import main


def test_bias_command_orders_and_panels(tmp_path, capsys):
    out = tmp_path / "bias"
    assert main(["bias", "--out", str(out), "--hidden", "16", "--batch-size", "10", "--betas", "0.01", "0.1",
                 "--estimators", "ep", "cauchy:2", "--T-free", "100", "--T-nudge", "40"]) == 0
    assert "wrote" in capsys.readouterr().out and (out / "bias.png").exists()
    res = json.load(open(out / "bias.json"))
    assert res["settings"]["betas"] == [0.01, 0.1] and res["settings"]["hidden"] == [16]
    sym, asym = res["panels"]["symmetric (angle 0 deg)"], res["panels"]["asymmetric (angle 90 deg)"]
    assert sym["reference"]["cos_true_rbp_overall"] > 0.9999 > 0.95 > asym["reference"]["cos_true_rbp_overall"]
    for panel in (sym, asym):
        ep, c2 = curve(panel, "ep", "relerr_true_overall"), curve(panel, "cauchy-N2", "relerr_true_overall")
        assert 5 < ep[1] / ep[0] < 20  # O(|beta|): x10 over a decade
        assert c2[1] / c2[0] > 25 and np.all(c2 < ep)  # O(|beta|^2): x100 (float32 floor at 0.01)


def test_alignment_command_cosines_and_eq11(tmp_path, capsys):
    out = tmp_path / "align"
    assert main(["alignment", "--out", str(out), "--width", "16", "--depth", "1", "--asymmetry-deg", "0", "90",
                 "--depths", "1", "--num-examples", "20", "--batch-size", "10", "--T-free", "100", "--eq11-width", "8",
                 "--eq11-examples", "3", "--eq11-asymmetry-deg", "5", "45"]) == 0
    assert "wrote" in capsys.readouterr().out and (out / "alignment.png").exists()
    assert not jax.config.jax_enable_x64  # Eq. 11 ran in float64 without switching the process to it
    res = json.load(open(out / "alignment.json"))
    sym, asym = (np.asarray(e["cosines"]) for e in res["asymmetry"])
    assert sym.shape == asym.shape == (20,)
    assert sym.min() > 0.9999 and asym.mean() < 0.95
    small, large = res["eq11"]["angles"]
    assert max(small["eq10_relerr"] + large["eq10_relerr"]) < 1e-10  # Eq. 10 is exact (float64)
    assert np.mean(small["relerr1"]) < 0.2 * np.mean(small["relerr0"])  # first order wins at 5 degrees
    assert np.mean(small["norm_SinvA"]) < np.mean(large["norm_SinvA"])
