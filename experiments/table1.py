"""Table 1 of the generalized-hEP paper: validation error on Fashion-MNIST for
N = 1, 2, 4, 6, continuous-time and the true d_beta u*, at |beta| = 0.05 and 0.5,
over several seeds (2x256 reciprocal MLP, Table 3 settings).

    python experiments/table1.py                      # paper protocol: 50 epochs, 5 seeds (long)
    python experiments/table1.py --epochs 3 --seeds 1 # short CPU protocol
    holoeb compare runs/table1/*                      # the table (mean +/- std over seeds)
    python experiments/table1.py --summarize --epochs 10 --out runs/table1   # finished runs vs the paper's values

Runs already finished (metrics.json with all epochs) are skipped, so the grid can
be resumed or run in several processes.
"""
import argparse
import json
import os
import sys

from holoeb.config import load_config
from holoeb.errors import HoloebError
from holoeb.training import train

GRID = [
    ("N1", {"name": "ep"}),
    ("N2", {"name": "cauchy", "N": 2}),
    ("N4", {"name": "cauchy", "N": 4}),
    ("N6", {"name": "cauchy", "N": 6}),
    ("continuous", {"name": "continuous", "N": 4, "steps_per_point": 60, "periods": 5}),
    ("true", {"name": "true"}),
]


# Table 1 of the paper (50 epochs, n = 5): mean, std of the final validation error (%)
PAPER = {
    ("N1", 0.05): (15.8, 0.6), ("N2", 0.05): (14.6, 0.4), ("N4", 0.05): (14.7, 0.7), ("N6", 0.05): (14.5, 0.6),
    ("continuous", 0.05): (15.8, 0.8), ("N1", 0.5): (38.4, 6.2), ("N2", 0.5): (16.3, 0.7), ("N4", 0.5): (14.8, 0.8),
    ("N6", 0.5): (14.3, 0.6), ("continuous", 0.5): (17.3, 1.0), ("true", None): (14.7, 0.6),
}


def summarize(out, epochs):
    """Markdown table of the runs under ``out`` that finished ``epochs`` epochs (runs still going
    are counted apart), with the paper's value."""
    import numpy as np

    print(f"| estimator | beta (abs) | seeds done ({epochs} epochs) | val error per seed (%) | mean +- std | paper (50 epochs, n=5) |")
    print("|---|---|---|---|---|---|")
    for name in sorted(os.listdir(out)):
        d = os.path.join(out, name)
        if not os.path.isdir(d):
            continue
        label, _, b = name.partition("-beta")
        beta = float(b) if b else None
        errs, partial = [], 0
        for seed in sorted(os.listdir(d)):
            path = os.path.join(d, seed, "metrics.json")
            hist = json.load(open(path))["history"] if os.path.exists(path) else []
            if len(hist) >= epochs:
                errs.append(hist[epochs - 1]["val_error"])
            elif os.path.isdir(os.path.join(d, seed)):
                partial += 1
        paper = PAPER.get((label, beta))
        stat = f"{np.mean(errs):.2f} +- {np.std(errs, ddof=1):.2f}" if len(errs) > 1 else (f"{errs[0]:.2f}" if errs else "-")
        print(f"| {label} | {b or 'n/a'} | {len(errs)}{f' (+{partial} running)' if partial else ''} "
              f"| {', '.join(f'{e:.2f}' for e in errs) or '-'} | {stat} | {f'{paper[0]} +- {paper[1]}' if paper else '-'} |")


def finished(run_dir, epochs):
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.exists(path):
        return False
    return len(json.load(open(path))["history"]) >= epochs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="experiments/fmnist_mlp.json")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--betas", type=float, nargs="+", default=[0.05, 0.5])
    ap.add_argument("--only", nargs="*", help="labels from the grid, e.g. N6 true")
    ap.add_argument("--out", default="runs/table1")
    ap.add_argument("--summarize", action="store_true", help="print the table of finished runs under --out and exit")
    ap.add_argument("--checkpoint-every", type=int, default=None,
                    help="also checkpoint every n steps inside an epoch (long continuous-time epochs)")
    ap.add_argument("--checkpoints-to-keep", type=int, default=2)
    args = ap.parse_args()
    for flag, value, low in (("--checkpoint-every", args.checkpoint_every, 0),
                             ("--checkpoints-to-keep", args.checkpoints_to_keep, 1), ("--epochs", args.epochs, 1),
                             ("--seeds", args.seeds, 1)):
        if value is not None and value < low:
            ap.error(f"{flag} must be an integer >= {low}, got {value}")
    if args.summarize:
        return summarize(args.out, args.epochs)
    for beta in args.betas:
        for label, est in GRID:
            if args.only and label not in args.only:
                continue
            if label == "true" and beta != args.betas[0]:
                continue  # does not depend on beta
            for seed in range(args.seeds):
                name = f"{label}-beta{beta:g}" if label != "true" else label
                run_dir = os.path.join(args.out, name, f"seed{seed}")
                if finished(run_dir, args.epochs):
                    continue
                e = dict(est, T_free=150) if est["name"] != "continuous" else dict(est)
                if est["name"] in ("ep", "cauchy"):
                    e["T_nudge"] = 20
                if est["name"] != "true":
                    e["beta"] = beta
                cfg = load_config(args.config, {"estimator": e, "training.epochs": args.epochs, "training.seed": seed,
                                                "training.checkpoint_every": args.checkpoint_every,
                                                "training.checkpoints_to_keep": args.checkpoints_to_keep})
                print(f"== {run_dir}")
                train(cfg, run_dir)


if __name__ == "__main__":
    try:
        main()
    except HoloebError as e:  # a config the library refuses: one line naming it, exit 2
        print(f"table1.py: error: {e}", file=sys.stderr)
        sys.exit(2)
