"""The alignment experiment (generalized hEP paper, "Improving equilibrium propagation without
weight symmetry through Jacobian homeostasis", Laborieux & Zenke, arXiv:2309.02214, Fig. 2c,d
and Eq. 11): distributions of the per-example cosine between the exact nudge-based error
d = -d sigma(u*)/d beta and RBP's delta over forward / backward weight angles and depths, and the
check of Eq. 11 (d ~ delta - 2 S^{-1} A delta) on small float64 nets with dense Jacobians
(holoeb.alignment). Written to <out>/alignment.json and <out>/alignment.png; `holoeb alignment`
parses its options and calls `run_alignment_experiment`."""
import dataclasses
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from holoeb.alignment import eq11_check, kde, make_alignment_fn, summarize
from holoeb.data.registry import load_dataset
from holoeb.models import make_model


def batch_alignment_cosines(model, params, batches, T_free, layer=0):
    """(per-example cosines, (layers, examples) per-layer cosines) of d vs delta over ``batches``; the
    first is over all layers (``layer`` 0) or layer ``layer`` (1-based)."""
    fn = make_alignment_fn(model, T_free)
    overall, layers = [], []
    for x, y in batches:
        o, l = fn(params, x, y)
        overall.append(np.asarray(o))
        layers.append(np.asarray(l))
    layers = np.concatenate(layers, axis=1).astype(np.float64)
    if layer > layers.shape[0]:
        raise ValueError(f"layer {layer}: the model has {layers.shape[0]} layers")
    return (np.concatenate(overall).astype(np.float64) if layer == 0 else layers[layer - 1]), layers


def run_alignment_experiment(out, *, model="mlp", width=256, depth=2, asymmetry_deg=(0.0, 15.0, 30.0, 45.0, 60.0, 90.0),
                             depths=(1, 2, 3, 4), depth_asymmetry_deg=45.0, dataset="fashion_mnist", data_dir=None,
                             num_examples=500, batch_size=250, T_free=200, eq11_width=32, eq11_examples=10,
                             eq11_asymmetry_deg=(1.0, 2.0, 5.0, 10.0, 20.0, 45.0, 90.0), layer=0, seed=0, log=print):
    """The asymmetry sweep (``depth`` hidden layers of ``width``, one initial angle each), the depth sweep
    (at ``depth_asymmetry_deg``), both on ``num_examples`` test images, and Eq. 11 on 2 x ``eq11_width``
    float64 nets (``eq11_examples`` images, one angle each, under jax.enable_x64). The dynamics are the
    symmetric model's (the angle only sets the initial parameters). Returns the results written to
    <out>/alignment.json."""
    settings = {k: v for k, v in locals().items() if k != "log"}
    t0 = time.time()
    if num_examples < 1 or batch_size < 1 or width < 1 or min(depths) < 1 or depth < 1:
        raise ValueError("num_examples, batch_size, width, depth(s) must be >= 1")
    key = jax.random.PRNGKey(seed)

    def make(d, w, angle_deg):
        m = make_model(model, hidden=(w,) * d)
        dyn = dataclasses.replace(m, asymmetry=0.0) if m.asymmetry is not None else m
        init = dataclasses.replace(m, asymmetry=math.radians(angle_deg)) if m.asymmetry is not None else m
        return dyn, init.init(key)

    probe = make_model(model, hidden=(width,))
    ds = load_dataset(dataset, "test", probe.input_shape, data_dir, num_examples)
    bs = min(batch_size, len(ds))
    batches = [(jnp.asarray(ds.x[i:i + bs]), jnp.asarray(ds.y[i:i + bs])) for i in range(0, len(ds) - bs + 1, bs)]
    res = {"settings": settings, "asymmetry": [], "depth": []}
    for a in asymmetry_deg:
        m, p = make(depth, width, a)
        cos, layers = batch_alignment_cosines(m, p, batches, T_free, layer)
        res["asymmetry"].append({"label": f"{a:g} deg", "angle_deg": a, "depth": depth, "summary": summarize(cos),
                                 "layer_mean": layers.mean(axis=1).tolist(), "cosines": cos.tolist()})
        log(f"asymmetry {a:5.1f} deg, depth {depth}: cosine mean {cos.mean():.4f} (layers {np.round(layers.mean(1), 3).tolist()})")
    for d in depths:
        m, p = make(d, width, depth_asymmetry_deg)
        cos, layers = batch_alignment_cosines(m, p, batches, T_free, layer)
        res["depth"].append({"label": f"{d} hidden", "angle_deg": depth_asymmetry_deg, "depth": d,
                             "summary": summarize(cos), "layer_mean": layers.mean(axis=1).tolist(), "cosines": cos.tolist()})
        log(f"depth {d}, asymmetry {depth_asymmetry_deg:g} deg: cosine mean {cos.mean():.4f}")

    # Eq. 11 on a small net, float64 (enabled here only: the caller's setting is left as it was), dense Jacobians
    with jax.enable_x64(True):
        small = make_model(model, hidden=(eq11_width,) * 2, dtype="float64")
        dyn = dataclasses.replace(small, asymmetry=0.0) if small.asymmetry is not None else small
        n = min(eq11_examples, len(ds))
        x, y = jnp.asarray(ds.x[:n], jnp.float64), jnp.asarray(ds.y[:n])
        eq = {"model": f"{model} {eq11_width}x2 (float64, {n} examples)", "angles": []}
        for a in eq11_asymmetry_deg:
            p = dataclasses.replace(small, asymmetry=math.radians(a)).init(key) if small.asymmetry is not None else small.init(key)
            r = eq11_check(dyn, p, x, y)
            eq["angles"].append({"angle_deg": a, **{k: v.tolist() for k, v in r.items()}})
            log(f"Eq. 11, {a:5.1f} deg: ||S^-1 A|| {r['norm_SinvA'].mean():.3g}, rel. error zeroth order "
                f"{r['relerr0'].mean():.3g}, first order {r['relerr1'].mean():.3g} (Eq. 10 residual {r['eq10_relerr'].max():.1e})")
    res["eq11"] = eq
    os.makedirs(out, exist_ok=True)
    res["runtime_s"] = time.time() - t0
    with open(os.path.join(out, "alignment.json"), "w") as f:
        json.dump(res, f)
    plot_alignment(res, os.path.join(out, "alignment.png"))
    log(f"wrote {out}/alignment.json and alignment.png in {time.time() - t0:.1f} s")
    return res


def plot_alignment(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
