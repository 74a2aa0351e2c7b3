"""How large each rule's update is, next to RBP's gradient, at the study's parameter points.

The per-epoch diagnostics of `holoeb study` log the cosine of each rule's update to RBP's
gradient; a rule can be well aligned and still learn slowly if its estimate is shorter than the
gradient, since SGD moves the weights by lr x estimate. For each parameter point (the study
model's initial parameters for a seed, and the final parameters of given run directories) and
one batch of the first B test images, this prints, per rule of the comparative study (Scellier et
al., "Energy-based learning algorithms for analog computing: a comparative study",
arXiv:2312.15103, Eqs. 3-9), the ratio ||g_rule|| / ||g_RBP|| for each weight tensor and for all
parameters, and the overall cosine. The free phase starts from zero (T_free iterations, as each
rule's own estimate does in a cold start).

    python experiments/study_gradient_scale.py --seeds 0 \\
        --runs experiments/results/study_cpu/fashion_mnist-tbp-seed0 \\
        --out experiments/results/study_cpu/gradient_scale

writes OUT.md and OUT.json.
"""
import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from holoeb import dynamics, study, training
from holoeb.data.registry import load_dataset
from holoeb.errors import HoloebError
from holoeb.params_io import load_run_params
from holoeb.reports import write_report

RULES = ["tbp", "cl", "p-ep", "n-ep", "c-ep", "p-cpl", "n-cpl", "c-cpl"]


def leaves(tree):
    """(name, array) of every parameter tensor, names from the pytree path."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in flat]


def norm(tree):
    return float(jnp.sqrt(sum(jnp.sum(jnp.abs(v) ** 2) for _, v in leaves(tree))))


def cosine(a, b):
    dot = sum(jnp.sum(x * y) for (_, x), (_, y) in zip(leaves(a), leaves(b)))
    return float(dot / (norm(a) * norm(b)))


def scales(scfg, params, batch, rules, key):
    """{rule: {"norm_ratio", "cosine", "per_tensor": {name: ratio}}} against RBP at ``params``."""
    def grads_of(rule):
        model, estimator = training.build(study.train_config(scfg, rule, "fashion_mnist", 0))
        return jax.jit(lambda p, b, k: estimator.estimate(model, p, b, k).grads)(params, batch, key)

    ref = grads_of("rbp")
    ref_leaves = dict(leaves(ref))
    out = {}
    for rule in rules:
        g = grads_of(rule)
        per = {name: float(jnp.linalg.norm(v.ravel()) / jnp.linalg.norm(ref_leaves[name].ravel()))
               for name, v in leaves(g) if v.ndim > 1}
        out[rule] = {"norm_ratio": norm(g) / norm(ref), "cosine": cosine(g, ref), "per_tensor": per}
        print(f"  {rule:6s} |g|/|g_RBP| {out[rule]['norm_ratio']:.3f}  cos {out[rule]['cosine']:.3f}", flush=True)
    return out


def write(points, out):
    lines = []
    for label, res in points.items():
        names = list(next(iter(res.values()))["per_tensor"])
        lines += [f"### {label}", "", "| rule | all parameters: norm ratio to RBP | cosine to RBP | weight tensors: norm ratio ("
                  + ", ".join(names) + ") |", "|---|---|---|---|"]
        for rule, r in res.items():
            lines.append(f"| {rule} | {r['norm_ratio']:.3f} | {r['cosine']:.3f} | "
                         + " / ".join(f"{v:.2f}" for v in r["per_tensor"].values()) + " |")
        lines.append("")
    write_report(out, lines, points)
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0], help="initial parameters of these seeds")
    ap.add_argument("--runs", nargs="*", default=[], help="run directories whose final parameters to use")
    ap.add_argument("--rules", nargs="+", default=RULES)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", required=True, help="path stem of the table (.md) and the data (.json)")
    args = ap.parse_args()
    try:
        scfg = study.load_study_config("cpu")
        model, _ = training.build(study.train_config(scfg, "rbp", "fashion_mnist", 0))
        test = load_dataset("fashion_mnist", "test", model.input_shape, None, None, True)
        batch = dynamics.Batch(*map(jnp.asarray, test.take(args.batch_size)))
        key = jax.random.PRNGKey(0)
        points = {}
        for seed in args.seeds:  # the trainer's initialisation: split PRNGKey(seed), init with the second key
            params = model.init(jax.random.split(jax.random.PRNGKey(seed))[1])
            label = f"initial parameters, seed {seed}"
            print(label, flush=True)
            points[label] = scales(scfg, params, batch, args.rules, key)
        for run in args.runs:
            label = f"final parameters of {os.path.basename(os.path.normpath(run))}"
            print(label, flush=True)
            points[label] = scales(scfg, load_run_params(run), batch, args.rules, key)
    except (HoloebError, FileNotFoundError, ValueError) as e:
        ap.error(str(e))
    write(points, args.out)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
