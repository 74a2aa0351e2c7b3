"""`holoeb aeqprop-linreg` and `holoeb aeqprop-fmnist`: the experiments of the Agnostic-EqProp
paper (Section 5.2, Figs. 2-3; Section 5.3, dense Hopfield on Fashion-MNIST).

    holoeb aeqprop-linreg --out runs/aeqprop_linreg      # fig2_<mode>.png, fig3_<mode>.png, results.json
    holoeb aeqprop-fmnist --out runs/aeqprop_fmnist      # results.json, fmnist.png (test error per variant)
"""
import json
import os
import time

import numpy as np


def register(subparsers):
    p = subparsers.add_parser("aeqprop-linreg", help="Aeqprop linear regression (Figs. 2 and 3 of the Aeqprop paper)")
    p.add_argument("--out", default="runs/aeqprop_linreg")
    p.add_argument("--modes", nargs="+", default=["gradient", "exact"], choices=["gradient", "exact"],
                   help="gradient: the paper's simulation (Eqs. 14-17, iterative controller); exact: block-exact")
    p.add_argument("--steps", type=int, default=50, help="relaxation steps per phase (paper: 50)")
    p.add_argument("--samples", type=int, default=1000, help="samples for Fig. 2 (paper: 1000)")
    p.add_argument("--samples-fig3", type=int, default=5000, help="samples for Fig. 3 (paper: 5000)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_linreg)

    from holoeb.agnostic.fmnist_experiment import DEFAULTS

    q = subparsers.add_parser("aeqprop-fmnist", help="dense Hopfield 784-2048-10 trained by Aeqprop on Fashion-MNIST")
    q.add_argument("--out", default="runs/aeqprop_fmnist")
    q.add_argument("--config", default=None, help="JSON file overriding the defaults below")
    q.add_argument("--variants", nargs="+", default=["optimistic", "pessimistic", "centered"])
    q.add_argument("--data-dir", default=None)
    for k, v in DEFAULTS.items():
        q.add_argument("--" + k.replace("_", "-"), dest=k, type=type(v), default=None, help=f"default {v}")
    q.set_defaults(func=run_fmnist)


def run_linreg(args):
    from holoeb.agnostic.regression_experiment import plot_grid, run_grid

    os.makedirs(args.out, exist_ok=True)
    results = {"protocol": {"features": "Fourier up to frequency 10", "target": "random degree-10 Legendre",
                            "steps_per_phase": args.steps, "samples_fig2": args.samples,
                            "samples_fig3": args.samples_fig3, "seed": args.seed,
                            "loss": "mean 1/2 (s_0(theta,z) - f(z))^2 on 512 grid points"}}
    for mode in args.modes:
        t0 = time.time()
        betas, epss = (0.5, 0.1, 0.01), (0.5, 0.1, 0.01)
        curves, _ = run_grid(betas, epss, args.samples, seed=args.seed, mode=mode, steps=args.steps)
        plot_grid(curves, betas, epss, os.path.join(args.out, f"fig2_{mode}.png"),
                  f"Aeqprop linear regression ({mode} relaxation); rows beta, columns eps")
        curves3, _ = run_grid((1.5,), epss, args.samples_fig3, state_l2=1.0, seed=args.seed, mode=mode, steps=args.steps)
        plot_grid(curves3, (1.5,), epss, os.path.join(args.out, f"fig3_{mode}.png"),
                  f"beta = 1.5 with the ||s||^2 stabiliser ({mode} relaxation)")
        summ = lambda cs: {f"beta={b},eps={e},{m}": {"final": _num(v[-1]), "mean_last_100": _num(np.mean(v[-100:]))}
                           for (b, e, m), v in cs.items()}
        results[mode] = {"fig2": summ(curves), "fig3": summ(curves3), "seconds": time.time() - t0}
        print(f"[{mode}] done in {time.time() - t0:.1f}s")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {args.out}/results.json and figures")
    return 0


def _num(v):
    v = float(v)
    return v if np.isfinite(v) else str(v)


def run_fmnist(args):
    from holoeb.agnostic.fmnist_experiment import DEFAULTS, load, train_variant

    cfg = dict(DEFAULTS)
    if args.config:
        with open(args.config) as f:
            cfg.update(json.load(f))
    cfg.update({k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None})
    os.makedirs(args.out, exist_ok=True)
    data = (load("train", cfg["train_subset"], args.data_dir), load("test", 0, args.data_dir))
    results = {"config": cfg, "variants": {}}
    for v in args.variants:
        _, hist = train_variant(v, cfg, data)
        results["variants"][v] = {"history": hist, "final_test_error": hist[-1]["test_error"]}
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
    _plot_fmnist(results, os.path.join(args.out, "fmnist.png"))
    for v, r in results["variants"].items():
        print(f"{v}: test error {100 * r['final_test_error']:.2f}%")
    return 0


def _plot_fmnist(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for v, r in results["variants"].items():
        h = r["history"]
        ax.plot([e["epoch"] for e in h], [100 * e["test_error"] for e in h], "o-", label=f"{v} Aeqprop")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%)")
    ax.set_title("Dense Hopfield 784-2048-10, Fashion-MNIST")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
