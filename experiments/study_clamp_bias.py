"""Why the N-nudge rules leave the chance plateau late: the finite nudge crosses the hard-sigmoid clamps.

The comparative study's DCHN clips each hidden layer to [0, 1] (Scellier et al., "Energy-based
learning algorithms for analog computing: a comparative study", arXiv:2312.15103, Eqs. 96-97).
A rule contrasts the equilibria of two perturbations beta_a < beta_b (Eqs. 3-9), so its estimate
of -ds/dbeta is the finite difference -(s_b - s_a) / (beta_b - beta_a). For a unit near a clamp,
the nudge can move it onto the clamp (or off it) on one side only, and the difference is then not
the derivative: a unit at s = 0 moved up by +beta responds linearly, moved down it stays at 0. The
one-sided estimates are biased in opposite directions at such units, the centered one in between.
The bias gradient of layer k is the finite difference itself, dE/db_k = -s_k summed over the
positions of a channel, so the bias shows up first in the biases b_k.

For each parameter point (a seed's initial parameters, checkpoints of run directories) and a few
training batches (cold free phase, as each rule's own estimate), this prints
  * per bias tensor, the mean over its entries of each rule's update direction -g next to RBP's,
    and that difference in units of RBP's root mean square on the tensor (the drift the rule adds);
  * per hidden layer, the fraction of free-state units on the lower / upper clamp, and the fraction
    of units whose clamp status changes between the free state and the +beta or -beta EP phase
    (the phases of P-EP and N-EP; C-EP contrasts the same two states).

    python experiments/study_clamp_bias.py --seeds 2 \\
        --points experiments/results/study_cpu/fashion_mnist-n-ep-seed2@234 \\
        --out experiments/results/study_cpu/clamp_bias

writes OUT.md and OUT.json.
"""
import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from holoeb import dynamics, study, training
from holoeb.checkpoint import load_params
from holoeb.data.registry import load_dataset
from holoeb.errors import HoloebError
from holoeb.reports import write_report

RULES = ["tbp", "cl", "p-ep", "n-ep", "c-ep", "p-cpl", "n-cpl", "c-cpl"]
TOL = 1e-6  # a state within TOL of 0 or 1 is on the clamp


def build(scfg, rule):
    model, estimator = training.build(study.train_config(scfg, rule, "fashion_mnist", 0))
    return model, jax.jit(lambda p, b, k: estimator.estimate(model, p, b, k))


def clamp_status(s):
    """-1 on the lower clamp, +1 on the upper one, 0 in between."""
    return jnp.where(s <= TOL, -1, jnp.where(s >= 1.0 - TOL, 1, 0))


def measure(estimates, beta, params, batches, key):
    """{"bias_drift": {rule: {tensor: (mean -g, drift in RBP rms)}}, "clamps": [per hidden layer dict]}
    for the jitted estimates {rule: f(params, batch, key)}, which hold "rbp", "p-ep" and "n-ep"."""
    sums = {rule: None for rule in estimates}
    layer_stats = None
    for batch in batches:
        results = {rule: est(params, batch, key) for rule, est in estimates.items()}
        for rule, res in results.items():
            g = {k: np.asarray(v) for k, v in res.grads["net"].items() if k.startswith("b")}
            sums[rule] = g if sums[rule] is None else {k: sums[rule][k] + g[k] for k in g}
        s0 = results["rbp"].free_state
        s_plus = [a - beta * e for a, e in zip(results["p-ep"].free_state, results["p-ep"].error)]
        s_minus = [a + beta * e for a, e in zip(results["n-ep"].free_state, results["n-ep"].error)]
        stats = []
        for k in range(len(s0) - 1):  # hidden layers; the output is not clipped
            st0 = clamp_status(s0[k])
            row = {"at_0": float(jnp.mean(st0 == -1)), "at_1": float(jnp.mean(st0 == 1))}
            for name, sb in (("+beta", s_plus[k]), ("-beta", s_minus[k])):
                stb = clamp_status(sb)
                row[f"{name} onto 0"] = float(jnp.mean((st0 == 0) & (stb == -1)))
                row[f"{name} off 0"] = float(jnp.mean((st0 == -1) & (stb == 0)))
                row[f"{name} onto 1"] = float(jnp.mean((st0 == 0) & (stb == 1)))
                row[f"{name} off 1"] = float(jnp.mean((st0 == 1) & (stb == 0)))
            stats.append(row)
        layer_stats = stats if layer_stats is None else [{k: a[k] + b[k] for k in a} for a, b in zip(layer_stats, stats)]
    n = len(batches)
    mean_g = {rule: {k: v / n for k, v in g.items()} for rule, g in sums.items()}
    ref = mean_g["rbp"]
    drift = {}
    for rule, g in mean_g.items():
        drift[rule] = {}
        for k, v in g.items():
            rms = float(np.sqrt(np.mean(ref[k] ** 2)))
            drift[rule][k] = {"mean_update": float(-v.mean()),
                              "drift_rms": float((-v.mean() + ref[k].mean()) / rms) if rms > 0 else float("nan")}
    clamps = [{k: v / n for k, v in row.items()} for row in layer_stats]
    for rule in drift:
        print(f"  {rule:6s} " + "  ".join(f"{k} {d['mean_update']:+.2e} ({d['drift_rms']:+.2f})"
                                          for k, d in drift[rule].items()), flush=True)
    return {"bias_drift": drift, "clamps": clamps}


def write(points, beta, out):
    lines = []
    for label, res in points.items():
        tensors = list(next(iter(res["bias_drift"].values())))
        lines += [f"### {label}", "",
                  "Mean over each bias tensor's entries of the update direction -g (x 1e-3), and in parentheses its "
                  "difference to RBP's in units of RBP's root mean square on the tensor", "",
                  "| rule | " + " | ".join(tensors) + " |", "|---|" + "---|" * len(tensors)]
        for rule, d in res["bias_drift"].items():
            lines.append(f"| {rule} | " + " | ".join(f"{1e3 * d[k]['mean_update']:+.3f} ({d[k]['drift_rms']:+.2f})"
                                                     for k in tensors) + " |")
        lines += ["", f"Hidden layers, % of units: free state on the clamps, and clamp status changed by the "
                      f"+beta / -beta EP phase (beta = {beta})", "",
                  "| layer | at 0 | at 1 | +beta onto 0 | +beta off 0 | +beta onto 1 | +beta off 1 "
                  "| -beta onto 0 | -beta off 0 | -beta onto 1 | -beta off 1 |", "|---|" + "---|" * 10]
        for k, row in enumerate(res["clamps"], 1):
            lines.append(f"| {k} | " + " | ".join(f"{100 * v:.2f}" for v in row.values()) + " |")
        lines.append("")
    write_report(out, lines, points)
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0], help="initial parameters of these seeds")
    ap.add_argument("--points", nargs="*", default=[],
                    help="RUN_DIR or RUN_DIR@STEP: the parameters of that run's latest (or given) checkpoint")
    ap.add_argument("--rules", nargs="+", default=RULES)
    ap.add_argument("--batches", type=int, default=4, help="number of training batches to average over")
    ap.add_argument("--beta", type=float, default=None, help="nudge strength (default: the study protocol's, 0.25)")
    ap.add_argument("--out", required=True, help="path stem of the table (.md) and the data (.json)")
    args = ap.parse_args()
    rules = list(dict.fromkeys(args.rules + ["p-ep", "n-ep"]))  # their phases give the +-beta states
    try:
        scfg = study.load_study_config("cpu", overrides=None if args.beta is None else {"beta": args.beta})
        model, _ = build(scfg, "rbp")
        train = load_dataset("fashion_mnist", "train", model.input_shape, None, None, True)
        x, y = train.take(args.batches * scfg.batch_size)
        batches = [dynamics.Batch(jnp.asarray(x[i::args.batches]), jnp.asarray(y[i::args.batches]))
                   for i in range(args.batches)]
        key = jax.random.PRNGKey(0)
        estimates = {rule: build(scfg, rule)[1] for rule in ["rbp"] + rules}
        beta = float(scfg.beta)
        points = {}
        for seed in args.seeds:  # the trainer's initialisation: split PRNGKey(seed), init with the second key
            label = f"initial parameters, seed {seed}"
            print(label, flush=True)
            points[label] = measure(estimates, beta, model.init(jax.random.split(jax.random.PRNGKey(seed))[1]), batches, key)
        for spec in args.points:
            run, _, step = spec.partition("@")
            label = f"{os.path.normpath(run)}, checkpoint {step or 'latest'}"  # full path: run names repeat across studies
            print(label, flush=True)
            points[label] = measure(estimates, beta, load_params(run, int(step) if step else None), batches, key)
    except (HoloebError, FileNotFoundError, ValueError) as e:
        ap.error(str(e))
    write(points, float(scfg.beta), args.out)


if __name__ == "__main__":
    main()
