"""Whether a one-sided rule's finite-nudge bias grows the weights, checkpoint by checkpoint.

A one-sided rule (P-EP / P-CpL: phases at 0 and +beta) estimates the gradient with a forward
difference, g_P = g + (beta / 2) d^2/dbeta^2 [dE/dtheta(s_beta)] + O(beta^2); the centered rule of the same
kind (C-EP / C-CpL: phases at -beta and +beta) has no term of order beta. For a coupling term
-s_i . (W s_j) of the energy (comparative study, Scellier, Ernoult, Kendall, Kumar, arXiv:2312.15103,
Eq. 97), d^2/dbeta^2 of dE/dW = -s_i s_j^T contains -2 (ds_i/dbeta)(ds_j/dbeta)^T, so the update -lr g_P
carries +lr beta (ds_i/dbeta)(ds_j/dbeta)^T: a Hebbian product of the layers' error vectors, which a
positive beta adds to W and a negative beta subtracts. This script measures that part where a run
trained: at each given checkpoint of a run directory and on one batch of test images (free phase from
zero, T_free iterations, as the rule's own estimate), per weight tensor W_k,

  * the radial rate of each rule's update, <W_k, -g_k> / ||W_k|| (how fast SGD with unit learning rate
    grows the norm; positive = grows), for the one-sided rule, the centered rule and RBP's gradient;
  * the one-sided bias b = g_P - g_C: ||b_k|| / ||g_RBP,k|| and its radial rate <W_k, -b_k> / ||W_k||.

    python experiments/one_sided_norm_growth.py RUN --steps 78 138 144 --rule p-cpl \\
        --out experiments/results/p_cpl_collapse/norm_growth_seed2

writes OUT.md and OUT.json.
"""
import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from holoeb import dynamics, training
from holoeb.checkpoint import load_params
from holoeb.config import as_train_config
from holoeb.data.registry import load_dataset
from holoeb.errors import HoloebError
from holoeb.params_io import load_run
from holoeb.reports import write_report

ONE_SIDED = {"p-ep": "c-ep", "p-cpl": "c-cpl", "n-ep": "c-ep", "n-cpl": "c-cpl"}


def rule_config(cfg, name, beta=None, T_free=None, rerelax_free=None):
    """The run's config with its estimator replaced by rule ``name`` with the run's T_nudge and relaxation
    dtype, and the run's beta, T_free and re-relaxation setting (or ``beta`` / ``T_free`` /
    ``rerelax_free``)."""
    d = cfg.to_dict()
    run = d["estimator"]
    est = {"name": name, "T_free": run["T_free"] if T_free is None else T_free}
    if name != "rbp":
        est.update(beta=run["beta"] if beta is None else beta, T_nudge=run["T_nudge"],
                   **{k: run[k] for k in ("relax_dtype", "rerelax_free") if k in run})
        if rerelax_free is not None:
            est["rerelax_free"] = rerelax_free
    d["estimator"] = est
    return as_train_config(d)


def weights(net):
    return sorted(k for k in net if k.startswith("w"))


def measure(run_dir, steps, rule, images, betas=None, T_free=None, rerelax_free=None, log=print):
    if rule not in ONE_SIDED:
        raise HoloebError(f"--rule must be a one-sided rule, one of {sorted(ONE_SIDED)}; got {rule!r}")
    cfg, model, _ = load_run(run_dir)
    names = (rule, ONE_SIDED[rule], "rbp")
    betas = [cfg.to_dict()["estimator"]["beta"]] if not betas else list(betas)

    def grad_fn(name, beta):  # the estimator's config is validated here, before any data or compute
        _, est = training.build(rule_config(cfg, name, beta, T_free, rerelax_free))
        return jax.jit(lambda p, b: est(model, p, b, jax.random.PRNGKey(0)).grads["net"])

    rbp = grad_fn("rbp", None)
    fns = {(beta, n): grad_fn(n, beta) for beta in betas for n in names[:2]}
    d = cfg.data
    x, y = load_dataset(d.dataset, "test", model.input_shape, d.data_dir, images, d.normalize).take(images)
    batch = dynamics.Batch(jnp.asarray(x), jnp.asarray(y))
    rows = []
    for step in steps:  # each checkpoint loaded once, RBP's gradient computed once for all betas
        params = load_params(run_dir, step)
        net = params["net"]
        g_rbp = jax.device_get(rbp(params, batch))
        for beta in betas:
            g = {n: jax.device_get(fns[(beta, n)](params, batch)) for n in names[:2]}
            g["rbp"] = g_rbp
            row = {"step": int(step), "beta": float(beta), "layers": {}}
            for k in weights(net):
                w = np.asarray(net[k]).ravel()
                wn = float(np.linalg.norm(w))
                radial = lambda v: float(np.dot(w, -np.asarray(v).ravel()) / wn)
                bias = np.asarray(g[rule][k]) - np.asarray(g[ONE_SIDED[rule]][k])
                rbp_norm = float(np.linalg.norm(np.asarray(g["rbp"][k])))
                row["layers"][k] = {"norm": wn, **{f"radial_{n}": radial(g[n][k]) for n in names},
                                    "bias_over_rbp": float(np.linalg.norm(bias)) / max(rbp_norm, 1e-30),
                                    "radial_bias": radial(bias)}
            rows.append(row)
            log(f"step {step} beta {beta}: " + " | ".join(
                f"{k} |W| {v['norm']:.2f} radial {rule} {v[f'radial_{rule}']:+.3g} {ONE_SIDED[rule]} "
                f"{v[f'radial_{ONE_SIDED[rule]}']:+.3g} rbp {v['radial_rbp']:+.3g} bias {v['radial_bias']:+.3g} "
                f"(|b|/|g_rbp| {v['bias_over_rbp']:.2f})" for k, v in row["layers"].items()))
    return {"run": os.path.basename(os.path.normpath(run_dir)), "rule": rule, "centered": ONE_SIDED[rule],
            "T_free": cfg.to_dict()["estimator"]["T_free"] if T_free is None else T_free,
            "rerelax_free": bool(cfg.to_dict()["estimator"].get("rerelax_free", False)) if rerelax_free is None
            else rerelax_free, "images": images, "rows": rows}


def write(res, out):
    r, c = res["rule"], res["centered"]
    lines = [f"# {res['run']}: radial rates of the updates (first {res['images']} test images, "
             f"T_free {res.get('T_free', 'as the run')}"
             + (", beta = 0 state re-relaxed" if res.get("rerelax_free") else "") + ")", "",
             f"Per weight tensor: ||W||; <W, -g> / ||W|| for {r.upper()}, {c.upper()} and RBP (positive: the "
             f"update grows ||W||); the one-sided bias b = g_{r.upper()} - g_{c.upper()}: its radial rate and "
             "||b|| / ||g_RBP||.", "",
             f"| step | beta | weight | norm | {r.upper()} | {c.upper()} | RBP | bias: radial | bias: norm / RBP's |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in res["rows"]:
        beta = f"{row['beta']:g}" if "beta" in row else "run's"
        for k, v in row["layers"].items():
            lines.append(f"| {row['step']} | {beta} | {k} | {v['norm']:.2f} | {v[f'radial_{r}']:+.3g} | {v[f'radial_{c}']:+.3g} | "
                         f"{v['radial_rbp']:+.3g} | {v['radial_bias']:+.3g} | {v['bias_over_rbp']:.2f} |")
    write_report(out, lines, res)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a training run directory with checkpoints at --steps")
    ap.add_argument("--steps", type=int, nargs="+", required=True, help="checkpoint steps")
    ap.add_argument("--rule", default="p-cpl", choices=sorted(ONE_SIDED), help="the one-sided rule")
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--betas", type=float, nargs="+", help="nudge strengths to measure at (default: the run's beta)")
    ap.add_argument("--T-free", type=int, help="free-phase iterations (default: the run's; RBP's too)")
    ap.add_argument("--rerelax-free", choices=["true", "false"],
                    help="re-relax the one-sided rule's beta = 0 state for T_nudge iterations (default: as the run)")
    ap.add_argument("--out", required=True, help="path stem of the table (.md) and the data (.json)")
    args = ap.parse_args()
    if args.images < 1:
        ap.error(f"--images must be >= 1, got {args.images}")
    if args.betas and not all(b > 0 for b in args.betas):  # also refuses NaN
        ap.error(f"--betas must be positive (the rule sets the nudge's sign), got {args.betas}")
    if args.T_free is not None and args.T_free < 1:
        ap.error(f"--T-free must be >= 1, got {args.T_free}")
    if any(s < 0 for s in args.steps):
        ap.error(f"--steps must be checkpoint steps >= 0, got {args.steps}")
    try:
        rerelax = None if args.rerelax_free is None else args.rerelax_free == "true"
        res = measure(args.run, args.steps, args.rule, args.images, args.betas, args.T_free, rerelax)
    except (HoloebError, FileNotFoundError, ValueError) as e:
        ap.exit(2, f"one_sided_norm_growth.py: error: {e}\n")
    write(res, args.out)
    print(f"wrote {args.out}.md and {args.out}.json")


if __name__ == "__main__":
    main()
