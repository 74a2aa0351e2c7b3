"""`holoeb alignment`: distributions of the per-example cosine between d_beta u* (exact)
and RBP's delta for varying asymmetry and depth (generalized hEP paper, Fig. 2c,d), and
the check of Eq. 11 (d ~ delta - 2 S^{-1} A delta) on a small net with dense Jacobians.
Writes <out>/alignment.json and <out>/alignment.png.

    holoeb alignment --out runs/alignment
"""
import dataclasses
import json
import math
import os
import time

import numpy as np


def register(subparsers):
    p = subparsers.add_parser("alignment", help="cosine(d_beta u*, delta) distributions vs asymmetry/depth + Eq. 11 check")
    p.add_argument("--out", default="runs/alignment")
    p.add_argument("--model", default="mlp")
    p.add_argument("--width", type=int, default=256, help="hidden width of the distribution nets")
    p.add_argument("--depth", type=int, default=2, help="hidden layers for the asymmetry sweep")
    p.add_argument("--asymmetry-deg", type=float, nargs="+", default=[0.0, 15.0, 30.0, 45.0, 60.0, 90.0])
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3, 4], help="hidden layers for the depth sweep")
    p.add_argument("--depth-asymmetry-deg", type=float, default=45.0, help="initial angle of the depth sweep")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--num-examples", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--T-free", dest="T_free", type=int, default=200)
    p.add_argument("--eq11-width", type=int, default=32, help="hidden width of the small nets of the Eq. 11 check")
    p.add_argument("--eq11-examples", type=int, default=10)
    p.add_argument("--eq11-asymmetry-deg", type=float, nargs="+", default=[1.0, 2.0, 5.0, 10.0, 20.0, 45.0, 90.0])
    p.add_argument("--layer", type=int, default=0, help="0: cosine over all layers (default); l >= 1: layer l only")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _cosines(model, params, batches, T_free, layer=0):
    from holoeb.alignment import make_alignment_fn

    fn = make_alignment_fn(model, T_free)
    overall, layers = [], []
    for x, y in batches:
        o, l = fn(params, x, y)
        overall.append(np.asarray(o))
        layers.append(np.asarray(l))
    layers = np.concatenate(layers, axis=1).astype(np.float64)
    if layer > layers.shape[0]:
        raise ValueError(f"--layer {layer}: the model has {layers.shape[0]} layers")
    return (np.concatenate(overall).astype(np.float64) if layer == 0 else layers[layer - 1]), layers


def plot_alignment(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from holoeb.alignment import kde

    grid = np.linspace(-1, 1, 801)
    fig, ax = plt.subplots(1, 3, figsize=(17, 4.3))
    for k, (key, title) in enumerate((("asymmetry", "varying asymmetry"), ("depth", "varying depth"))):
        entries = res[key]
        for i, e in enumerate(entries):
            c = plt.cm.viridis(i / max(1, len(entries) - 1))
            cos = np.asarray(e["cosines"])
            if np.ptp(cos) < 1e-6:
                ax[k].axvline(cos.mean(), color=c, label=f"{e['label']} (all {cos.mean():.3f})")
            else:
                ax[k].plot(grid, kde(cos, grid), color=c, label=f"{e['label']} (mean {cos.mean():.3f})")
        lo = min(np.min(e["cosines"]) for e in entries)
        which = "all layers" if res["settings"]["layer"] == 0 else f"layer {res['settings']['layer']}"
        ax[k].set(title=f"cos(d_beta u*, delta), {which}: {title}", xlabel="cosine", ylabel="density",
                  xlim=(max(-1.0, lo - 0.15), 1.02))
        ax[k].legend(fontsize=7, loc="upper left")
    eq = res["eq11"]
    n = np.concatenate([np.asarray(e["norm_SinvA"]) for e in eq["angles"]])
    e0 = np.concatenate([np.asarray(e["relerr0"]) for e in eq["angles"]])
    e1 = np.concatenate([np.asarray(e["relerr1"]) for e in eq["angles"]])
    ax[2].loglog(n, e0, "o", ms=3, color="C0", label="zeroth order: d ~ delta")
    ax[2].loglog(n, e1, "s", ms=3, color="C3", label="first order: d ~ delta - 2 S^-1 A delta (Eq. 11)")
    xs = np.geomspace(n.min(), n.max(), 20)
    ax[2].loglog(xs, xs * np.median(e0 / n), "--", color="C0", lw=0.8, label="~ ||S^-1 A||")
    ax[2].loglog(xs, xs ** 2 * np.median(e1 / n ** 2), "--", color="C3", lw=0.8, label="~ ||S^-1 A||^2")
    ax[2].set(title=f"Eq. 11 on {eq['model']}", xlabel="||S^-1 A||_F", ylabel="||prediction - d|| / ||d||")
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args):
    import jax
    import jax.numpy as jnp

    from holoeb.alignment import eq11_check, summarize
    from holoeb.data.registry import load_dataset
    from holoeb.models import make_model

    t0 = time.time()
    if args.num_examples < 1 or args.batch_size < 1 or args.width < 1 or min(args.depths) < 1 or args.depth < 1:
        raise ValueError("--num-examples, --batch-size, --width, --depth(s) must be >= 1")
    key = jax.random.PRNGKey(args.seed)

    def make(depth, width, angle_deg):
        m = make_model(args.model, hidden=(width,) * depth)
        dyn = dataclasses.replace(m, asymmetry=0.0) if m.asymmetry is not None else m
        init = dataclasses.replace(m, asymmetry=math.radians(angle_deg)) if m.asymmetry is not None else m
        return dyn, init.init(key)

    probe = make_model(args.model, hidden=(args.width,))
    ds = load_dataset(args.dataset, "test", probe.input_shape, args.data_dir, args.num_examples)
    bs = min(args.batch_size, len(ds))
    batches = [(jnp.asarray(ds.x[i:i + bs]), jnp.asarray(ds.y[i:i + bs])) for i in range(0, len(ds) - bs + 1, bs)]
    res = {"settings": {k: v for k, v in vars(args).items() if k != "func"}, "asymmetry": [], "depth": []}
    for a in args.asymmetry_deg:
        m, p = make(args.depth, args.width, a)
        cos, layers = _cosines(m, p, batches, args.T_free, args.layer)
        res["asymmetry"].append({"label": f"{a:g} deg", "angle_deg": a, "depth": args.depth, "summary": summarize(cos),
                                 "layer_mean": layers.mean(axis=1).tolist(), "cosines": cos.tolist()})
        print(f"asymmetry {a:5.1f} deg, depth {args.depth}: cosine mean {cos.mean():.4f} (layers {np.round(layers.mean(1), 3).tolist()})")
    for d in args.depths:
        m, p = make(d, args.width, args.depth_asymmetry_deg)
        cos, layers = _cosines(m, p, batches, args.T_free, args.layer)
        res["depth"].append({"label": f"{d} hidden", "angle_deg": args.depth_asymmetry_deg, "depth": d,
                             "summary": summarize(cos), "layer_mean": layers.mean(axis=1).tolist(), "cosines": cos.tolist()})
        print(f"depth {d}, asymmetry {args.depth_asymmetry_deg:g} deg: cosine mean {cos.mean():.4f}")

    # Eq. 11 on a small net, float64, dense Jacobians
    jax.config.update("jax_enable_x64", True)
    small = make_model(args.model, hidden=(args.eq11_width,) * 2, dtype="float64")
    dyn = dataclasses.replace(small, asymmetry=0.0) if small.asymmetry is not None else small
    n = min(args.eq11_examples, len(ds))
    x, y = jnp.asarray(ds.x[:n], jnp.float64), jnp.asarray(ds.y[:n])
    eq = {"model": f"{args.model} {args.eq11_width}x2 (float64, {n} examples)", "angles": []}
    for a in args.eq11_asymmetry_deg:
        p = dataclasses.replace(small, asymmetry=math.radians(a)).init(key) if small.asymmetry is not None else small.init(key)
        r = eq11_check(dyn, p, x, y)
        eq["angles"].append({"angle_deg": a, **{k: v.tolist() for k, v in r.items()}})
        print(f"Eq. 11, {a:5.1f} deg: ||S^-1 A|| {r['norm_SinvA'].mean():.3g}, rel. error zeroth order "
              f"{r['relerr0'].mean():.3g}, first order {r['relerr1'].mean():.3g} (Eq. 10 residual {r['eq10_relerr'].max():.1e})")
    res["eq11"] = eq
    os.makedirs(args.out, exist_ok=True)
    res["runtime_s"] = time.time() - t0
    with open(os.path.join(args.out, "alignment.json"), "w") as f:
        json.dump(res, f)
    plot_alignment(res, os.path.join(args.out, "alignment.png"))
    print(f"wrote {args.out}/alignment.json and alignment.png in {time.time() - t0:.1f} s")
    return 0
