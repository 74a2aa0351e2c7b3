"""`holoeb bias`: finite-nudge bias of every nudge-based estimator vs |beta|
(generalized hEP paper, Fig. 2a,b). Writes <out>/bias.json and <out>/bias.png.

Default settings are the paper figure's: the 2x256 reciprocal MLP on Fashion-MNIST
at initialisation, one symmetric (0 deg) and one asymmetric (90 deg: W_b independent
of W_f) panel, a batch of 100 validation images, |beta| = 5e-4 * 10^(k/3) up to 2.5 (12 points,
including 0.05 and 0.5):

    holoeb bias --out runs/bias_fmnist

Parameters can instead come from a checkpoint (``--params``): a run directory
(params.npz / params.pkl in it, or the orbax checkpoint via holoeb.checkpoint if
present; the model is rebuilt from its config.json) or a plain .npz (keys are
'/'-joined pytree paths, e.g. 'net/wf2', see `holoeb.params_io.save_params`) or a pickled pytree.
"""
import json
import math
import os
import time

import numpy as np

from holoeb.params_io import load_params_file, load_run, load_run_params


def register(subparsers):
    p = subparsers.add_parser("bias", help="finite-nudge bias of every estimator vs |beta| (Fig. 2a,b): JSON + figure")
    p.add_argument("--out", default="runs/bias", help="output directory (bias.json, bias.png)")
    p.add_argument("--model", default="mlp", help="model name (holoeb.models registry)")
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--activation", default=None, help="activation name (model default if omitted)")
    p.add_argument("--asymmetry-deg", type=float, nargs="+", default=[0.0, 90.0],
                   help="initial forward/backward weight angles, one panel each (fresh initialisation)")
    p.add_argument("--params", default=None, help="checkpoint: run directory, .npz or .pkl (one panel)")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--num-batches", type=int, default=1)
    p.add_argument("--betas", type=float, nargs="+", default=None, help="explicit |beta| grid (overrides the log grid)")
    p.add_argument("--beta-min", type=float, default=5e-4)
    p.add_argument("--beta-max", type=float, default=2.5)
    p.add_argument("--per-decade", type=int, default=3, help="log-grid points per decade from --beta-min")
    p.add_argument("--estimators", nargs="+", default=None,
                   help="specs: ep ep-neg centered cauchy:N continuous:N:P or registered names (default: all)")
    p.add_argument("--max-N", type=int, default=8, help="Cauchy N = 1..max-N in the default list")
    p.add_argument("--continuous-N", type=int, default=4)
    p.add_argument("--periods", type=int, default=5, help="continuous estimate read after each of 1..P periods (0: skip)")
    p.add_argument("--steps-per-point", type=int, default=60)
    p.add_argument("--T-free", dest="T_free", type=int, default=200)
    p.add_argument("--free-tol", type=float, default=None)
    p.add_argument("--T-nudge", dest="T_nudge", type=int, default=50)
    p.add_argument("--solve-tol", type=float, default=1e-6)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- figure
def _color(label):
    import matplotlib.pyplot as plt

    if label in ("ep", "cauchy-N1"):
        return "0.4"
    if label == "ep-neg":
        return "0.7"
    if label == "centered":
        return "C2"
    if label.startswith("cauchy-N"):
        n = int(label[len("cauchy-N"):])
        return plt.cm.cool(min(1.0, (n - 2) / 6.0))
    if label.startswith("continuous"):
        return "C1"
    return None


def plot_bias(results, path, title="finite-nudge bias"):
    """Fig. 2a,b-like: top row cosine with RBP's delta vs |beta| (dotted: true vs RBP),
    bottom row relative error vs true with the leading bias |beta|^N/(N+1)! dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from holoeb.bias import curve, theory_bias

    panels = list(results)
    fig, axes = plt.subplots(2, len(panels), figsize=(6.2 * len(panels), 8.5), squeeze=False)
    for j, name in enumerate(panels):
        res = results[name]
        b = np.asarray(res["betas"])
        top, bot = axes[0, j], axes[1, j]
        labels = [l for l in res["estimators"] if not (l.startswith("continuous") and res["estimators"][l]["periods"]
                  not in (1, max(e.get("periods", 0) for e in res["estimators"].values())))]
        for i, lab in enumerate(labels):
            if lab == "cauchy-N1" and "ep" in res["estimators"]:
                continue  # identical to ep
            col = _color(lab) or plt.cm.tab10((i % 10))
            ls = ":" if lab.endswith("-P1") else ("--" if lab.startswith("continuous") else "-")
            mk = "s" if lab in ("ep", "ep-neg") else ("^" if lab == "centered" else "o")
            top.plot(b, curve(res, lab, "cos_rbp_overall"), ls, marker=mk, ms=3, color=col, label=lab)
            bot.loglog(b, curve(res, lab, "relerr_true_overall"), ls, marker=mk, ms=3, color=col, label=lab)
        ceil = res["reference"]["cos_true_rbp_overall"]
        top.axhline(ceil, color="k", ls=":", lw=1, label=f"true vs RBP ({ceil:.3f})")
        top.set(xscale="log", xlabel="|beta|", ylabel="cosine(error, RBP delta)", title=name)
        vals = np.concatenate([curve(res, l, "cos_rbp_overall") for l in labels] + [[ceil]])
        lo, hi = np.nanmin(vals), np.nanmax(vals)
        pad = 0.08 * max(hi - lo, 0.01)
        top.set_ylim(lo - pad, min(hi + pad, 1.0 + pad / 4))
        for lab, e in res["estimators"].items():
            if e["kind"] == "cauchy" and not (lab == "cauchy-N1" and "ep" in res["estimators"]):
                bot.loglog(b, theory_bias(b, e["order"]), "--", lw=0.8, color=_color(lab), alpha=0.7)
        bot.loglog([], [], "--", color="k", lw=0.8, label="|beta|^N/(N+1)!")
        bot.set(xlabel="|beta|", ylabel="||err - err_true|| / ||err_true||", title=f"{name}: relative error vs true")
        lo = np.nanmin([np.nanmin(curve(res, l, "relerr_true_overall")) for l in labels] + [1e-8])
        bot.set_ylim(max(lo / 3, 1e-12), 10)
        if j == len(panels) - 1:
            top.legend(fontsize=7, loc="lower left", ncol=2)
            bot.legend(fontsize=7, loc="lower right", ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- command
def _model_kwargs(args):
    kw = {"hidden": tuple(args.hidden), "dtype": args.dtype}
    if args.activation:
        kw["activation_name"] = args.activation
    return args.model, kw


def run(args):
    import dataclasses

    import jax
    import jax.numpy as jnp

    from holoeb import bias
    from holoeb.data.registry import load_dataset
    from holoeb.linear_solve import SolveConfig
    from holoeb.models import make_model

    t0 = time.time()
    if args.batch_size < 1 or args.num_batches < 1:
        raise ValueError("--batch-size and --num-batches must be >= 1")
    betas = bias.check_betas(args.betas) if args.betas else bias.log_grid(args.beta_min, args.beta_max, args.per_decade)
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)

    panels = {}
    if args.params:
        if os.path.exists(os.path.join(args.params, "config.json")):  # a training run directory
            cfg, model, params = load_run(args.params)
            name = cfg.model.name
        else:  # a params file, or a directory of one: the model comes from the command line
            params = load_run_params(args.params) if os.path.isdir(args.params) else load_params_file(args.params)
            name, kw = _model_kwargs(args)
            model = make_model(name, **kw)
        params = jax.tree_util.tree_map(jnp.asarray, params)
        panels[f"checkpoint {os.path.basename(os.path.normpath(args.params))}"] = (model, params)
    else:
        name, kw = _model_kwargs(args)
        for a in args.asymmetry_deg:
            m = make_model(name, **kw, asymmetry=math.radians(a)) if a else make_model(name, **kw)
            panels[f"{'symmetric' if a == 0 else 'asymmetric'} (angle {a:g} deg)"] = (m, m.init(jax.random.PRNGKey(args.seed)))
    first = next(iter(panels.values()))[0]
    # dynamics do not depend on the initial angle: one model object -> one compilation
    dyn_model = dataclasses.replace(first, asymmetry=0.0) if first.asymmetry is not None else first

    n = args.batch_size * args.num_batches
    ds = load_dataset(args.dataset, args.split, dyn_model.input_shape, args.data_dir, n)
    if len(ds) < n:
        raise ValueError(f"dataset has {len(ds)} examples, fewer than {n} requested")
    dt = jnp.dtype(args.dtype)
    batches = [(jnp.asarray(ds.x[i * args.batch_size:(i + 1) * args.batch_size], dt),
                jnp.asarray(ds.y[i * args.batch_size:(i + 1) * args.batch_size]))
               for i in range(args.num_batches)]

    if args.estimators:
        specs = [bias.parse_spec(s) for s in args.estimators]
    else:
        specs = bias.default_specs(dyn_model, args.max_N, args.continuous_N, args.periods)
    evaluators = bias.make_evaluators(dyn_model, specs, args.T_nudge, args.steps_per_point, args.T_free)
    cfg = SolveConfig(args.solve_tol, 30, 20)
    ref_fn = bias.make_reference_fn(dyn_model, args.T_free, args.free_tol, cfg)
    results = {}
    for label, (model, params) in panels.items():
        print(f"{label}: {len(specs)} estimators x {len(betas)} |beta| x {args.num_batches} batch(es) of {args.batch_size}")
        t1 = time.time()
        r = bias.bias_sweep(dyn_model, params, batches, betas, specs, args.T_free, args.free_tol, args.T_nudge,
                            args.steps_per_point, cfg, evaluators, log=print, ref_fn=ref_fn)
        r["time_s"] = time.time() - t1
        r["asymmetry_deg"] = (model.asymmetry or 0.0) * 180 / math.pi
        results[label] = r
        ref = r["reference"]
        print(f"  true vs RBP cosine {ref['cos_true_rbp_overall']:.4f} (layers {np.round(ref['cos_true_rbp'], 4).tolist()}), "
              f"free residual {ref['free_residual_max']:.2e}; {r['time_s']:.1f} s")
    os.makedirs(args.out, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "func"}
    total = time.time() - t0
    with open(os.path.join(args.out, "bias.json"), "w") as f:
        json.dump({"settings": settings, "runtime_s": total, "panels": results}, f, indent=1)
    plot_bias(results, os.path.join(args.out, "bias.png"),
              title=f"finite-nudge bias, {name} {args.hidden if not args.params else ''} on {args.dataset} "
                    f"({args.num_batches}x{args.batch_size} examples)")
    print(f"wrote {args.out}/bias.json and {args.out}/bias.png in {total:.1f} s")
    return 0
