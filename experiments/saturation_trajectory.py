"""How a run's hidden layers saturate, checkpoint by checkpoint.

For every checkpoint of one or more training run directories (train with
``--set training.checkpoint_every=K --set training.checkpoints_to_keep=N`` to keep a trajectory):
the test error on the first ``--images`` test examples, and per hidden layer the fraction of units
at the activation's lower and upper bound at the free state (``model.clamped_units``), the fraction
at the same bound for every one of those examples (frozen: ``holoeb.diagnostics.frozen_fractions``),
the mean bias and the weight norm. On the hard-sigmoid DCHN (comparative study, Scellier, Ernoult, Kendall,
Kumar, arXiv:2312.15103, Eq. 98) a clamped unit passes no error backward, and a frozen one passes the
same value forward whatever the input: a layer that is almost all frozen disconnects the readout from
the input (the network predicts a few classes whatever the image), and no gradient-based rule, exact
or not, gets a signal below that layer.

    python experiments/saturation_trajectory.py RUN [RUN ...] --out experiments/results/.../saturation

writes OUT.md (one table per run) and OUT.png (clamped fractions and test error against the step).
"""
import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from holoeb import probe_diagnostics, training
from holoeb.checkpoint import Checkpointer, load_params
from holoeb.data.registry import load_dataset
from holoeb.diagnostics import clamped_fractions, frozen_fractions
from holoeb.errors import HoloebError
from holoeb.params_io import load_run
from holoeb.reports import write_report


def checkpoint_steps(run_dir):
    ckpt = Checkpointer(os.path.join(run_dir, "checkpoints"))
    try:
        return sorted(ckpt.manager.all_steps())
    finally:
        ckpt.close()


def trajectory(run_dir, images):
    cfg, model, _ = load_run(run_dir)
    _, est = training.build(cfg)
    d = cfg.data
    x, y = load_dataset(d.dataset, "test", model.input_shape, d.data_dir, images, d.normalize).take(images)
    x, y = jnp.asarray(x), np.asarray(y)

    @jax.jit
    def probe(params):
        u = est.free_phase(model, params, x)[0].state
        lower, upper = clamped_fractions(model, u)
        return lower, upper, frozen_fractions(model, u), jnp.argmax(jnp.real(model.predict(params, u)), -1)

    rows = []
    for step in checkpoint_steps(run_dir):
        params = load_params(run_dir, step)
        lower, upper, frozen, pred = jax.device_get(probe(params))
        net = params["net"]
        names = sorted(k for k in net if k.startswith("b"))
        rows.append({"step": int(step), "test_error": float(100 * np.mean(pred != y)),
                     "classes_predicted": int(len(np.unique(pred))),
                     "lower": np.asarray(lower)[:-1].tolist(), "upper": np.asarray(upper)[:-1].tolist(),
                     "frozen": np.asarray(frozen)[:-1].tolist(),
                     "bias_mean": {k: float(jnp.mean(net[k])) for k in names},
                     "weight_norm": probe_diagnostics.weight_norms(params)})
        r = rows[-1]
        print(f"{os.path.basename(os.path.normpath(run_dir))} step {step}: test error {r['test_error']:.1f}% "
              f"({r['classes_predicted']} classes) lower " + " ".join(f"{v:.2f}" for v in r["lower"])
              + " upper " + " ".join(f"{v:.2f}" for v in r["upper"])
              + " frozen " + " ".join(f"{v:.2f}" for v in r["frozen"]), flush=True)
    return {"run": os.path.basename(os.path.normpath(run_dir)), "images": images, "rows": rows}


def write(runs, out):
    lines = []
    for run in runs:
        rows = run["rows"]
        L = len(rows[0]["lower"])
        fz = "frozen" in rows[0]  # runs measured before 2026-12-07 afternoon have no frozen fractions
        ws = sorted((k for k in rows[0]["weight_norm"] if k.startswith("w")), key=lambda k: int(k[1:]))
        lines += [f"## {run['run']} (first {run['images']} test images)", "",
                  "| step | test error (%) | classes predicted | " + " | ".join(f"layer {l + 1} at 0 / at 1" + (" / frozen" if fz else "") for l in range(L))
                  + " | " + " | ".join(rows[0]["bias_mean"]) + " (mean) | " + " | ".join(f"norm {w}" for w in ws) + " |",
                  "|" + "---|" * (3 + L + len(rows[0]["bias_mean"]) + len(ws))]
        for r in rows:
            lines.append(f"| {r['step']} | {r['test_error']:.1f} | {r['classes_predicted']} | "
                         + " | ".join(f"{a:.2f} / {b:.2f}" + (f" / {c:.2f}" if fz else "")
                                      for a, b, c in zip(r["lower"], r["upper"], r.get("frozen", r["lower"]))) + " | "
                         + " | ".join(f"{v:+.3f}" for v in r["bias_mean"].values()) + " | "
                         + " | ".join(f"{r['weight_norm'][w]:.2f}" for w in ws) + " |")
        lines.append("")
    write_report(out, lines, runs)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(len(runs), 2, figsize=(11, 3.4 * len(runs)), squeeze=False)
    for i, run in enumerate(runs):
        steps = [r["step"] for r in run["rows"]]
        for l in range(len(run["rows"][0]["lower"])):
            ax[i, 0].plot(steps, [r["lower"][l] for r in run["rows"]], "o-", ms=3, color=f"C{l}", label=f"layer {l + 1} at 0")
            ax[i, 0].plot(steps, [r["upper"][l] for r in run["rows"]], "s--", ms=3, color=f"C{l}", label=f"layer {l + 1} at 1")
        ax[i, 0].set(title=f"{run['run']}: units at a clamp (free state)", xlabel="step", ylim=(-0.02, 1.02))
        ax[i, 0].legend(fontsize=6, ncol=2)
        ax[i, 1].plot(steps, [r["test_error"] for r in run["rows"]], "o-", color="C3")
        ax[i, 1].set(title="test error (%)", xlabel="step", ylim=(0, 100))
    fig.tight_layout()
    fig.savefig(out + ".png", dpi=100)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", help="training run directories with checkpoints")
    ap.add_argument("--images", type=int, default=1000, help="test images per checkpoint")
    ap.add_argument("--from-json", action="store_true",
                    help="re-render OUT.md / OUT.png from an existing OUT.json instead of measuring (RUN arguments ignored)")
    ap.add_argument("--out", required=True, help="path stem of the table (.md / .json) and figure (.png)")
    args = ap.parse_args()
    if args.images < 1:
        ap.error(f"--images must be >= 1, got {args.images}")
    if args.from_json:
        with open(args.out + ".json") as f:
            write(json.load(f), args.out)
        print(f"re-rendered {args.out}.md and .png from {args.out}.json")
        return
    if not args.runs:
        ap.error("give at least one run directory (or --from-json)")
    try:
        runs = [trajectory(r, args.images) for r in args.runs]
    except (HoloebError, FileNotFoundError, ValueError) as e:
        ap.exit(2, f"saturation_trajectory.py: error: {e}\n")
    write(runs, args.out)
    print(f"wrote {args.out}.md, .json and .png")


if __name__ == "__main__":
    main()
