"""The finite-nudge bias experiment (generalized hEP paper, "Improving equilibrium propagation
without weight symmetry through Jacobian homeostasis", Laborieux & Zenke, arXiv:2309.02214,
Fig. 2a,b): every nudge-based estimator's error vector against RBP's delta and against the
exact d_beta u*, versus |beta|, on one or more panels (networks), written to <out>/bias.json
and <out>/bias.png. `holoeb bias` parses its options and calls `run_bias_experiment`.

Panels: fresh initialisations of one model at several forward / backward weight angles (the
paper's symmetric 0 deg and asymmetric 90 deg), or the parameters of a checkpoint (a run
directory, whose config.json gives the model, or a .npz / .pkl params file for the model named
by the arguments). The dynamics are compiled once for all panels (the angle only changes the
initial parameters)."""
import contextlib
import dataclasses
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from holoeb import bias
from holoeb.bias import curve, theory_bias
from holoeb.data.registry import load_dataset
from holoeb.linear_solve import SolveConfig
from holoeb.models import make_model
from holoeb.params_io import load_params_file, load_run, load_run_params


def bias_panels(model="mlp", hidden=(256, 256), activation=None, asymmetry_deg=(0.0, 90.0), params=None, dtype="float32",
                seed=0):
    """(model name, {panel label: (model, params)}): one panel per initial angle, or the one of ``params``."""
    kw = {"hidden": tuple(hidden), "dtype": dtype}
    if activation:
        kw["activation_name"] = activation
    if params:
        if os.path.exists(os.path.join(params, "config.json")):  # a training run directory
            cfg, m, p = load_run(params)
            model = cfg.model.name
        else:  # a params file, or a directory of one: the model comes from the arguments
            p = load_run_params(params) if os.path.isdir(params) else load_params_file(params)
            m = make_model(model, **kw)
        return model, {f"checkpoint {os.path.basename(os.path.normpath(params))}": (m, jax.tree_util.tree_map(jnp.asarray, p))}
    panels = {}
    for a in asymmetry_deg:
        m = make_model(model, **kw, asymmetry=math.radians(a)) if a else make_model(model, **kw)
        panels[f"{'symmetric' if a == 0 else 'asymmetric'} (angle {a:g} deg)"] = (m, m.init(jax.random.PRNGKey(seed)))
    return model, panels


def run_bias_experiment(out, *, model="mlp", hidden=(256, 256), activation=None, asymmetry_deg=(0.0, 90.0), params=None,
                        dataset="fashion_mnist", data_dir=None, split="test", batch_size=100, num_batches=1, betas=None,
                        beta_min=5e-4, beta_max=2.5, per_decade=3, estimators=None, max_N=8, continuous_N=4, periods=5,
                        steps_per_point=60, T_free=200, free_tol=None, T_nudge=50, solve_tol=1e-6, dtype="float32",
                        seed=0, log=print):
    """Sweep |beta| (``betas``, else the log grid beta_min * 10^(k / per_decade) up to beta_max) for the
    estimator specs ``estimators`` (holoeb.bias.parse_spec; default holoeb.bias.default_specs: ep, centered,
    Cauchy N = 1..max_N, continuous N = continuous_N read after 1..periods periods, and the seven energy
    rules on energy models) on ``num_batches`` batches of ``batch_size`` examples of ``dataset`` / ``split``,
    for every panel (`bias_panels`). Writes <out>/bias.json (settings, runtime, per panel the sweep of
    holoeb.bias.bias_sweep) and <out>/bias.png (`plot_bias`); returns the panels' results."""
    settings = {k: v for k, v in locals().items() if k != "log"}
    t0 = time.time()
    if batch_size < 1 or num_batches < 1:
        raise ValueError("batch_size and num_batches must be >= 1")
    betas = bias.check_betas(betas) if betas else bias.log_grid(beta_min, beta_max, per_decade)
    specs = [bias.parse_spec(s) for s in estimators] if estimators else None  # bad specs fail before any compute
    # float64 only inside this call: the caller's jax_enable_x64 setting is left as it was
    with jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext():
        name, panels = bias_panels(model, hidden, activation, asymmetry_deg, params, dtype, seed)
        first = next(iter(panels.values()))[0]
        # dynamics do not depend on the initial angle: one model object -> one compilation
        dyn_model = dataclasses.replace(first, asymmetry=0.0) if first.asymmetry is not None else first

        n = batch_size * num_batches
        ds = load_dataset(dataset, split, dyn_model.input_shape, data_dir, n)
        if len(ds) < n:
            raise ValueError(f"dataset has {len(ds)} examples, fewer than {n} requested")
        dt = jnp.dtype(dtype)
        batches = [(jnp.asarray(ds.x[i * batch_size:(i + 1) * batch_size], dt),
                    jnp.asarray(ds.y[i * batch_size:(i + 1) * batch_size])) for i in range(num_batches)]
        specs = specs or bias.default_specs(dyn_model, max_N, continuous_N, periods)
        evaluators = bias.make_evaluators(dyn_model, specs, T_nudge, steps_per_point, T_free)
        cfg = SolveConfig(solve_tol, 30, 20)
        ref_fn = bias.make_reference_fn(dyn_model, T_free, free_tol, cfg)
        results = {}
        for label, (m, p) in panels.items():
            log(f"{label}: {len(specs)} estimators x {len(betas)} |beta| x {num_batches} batch(es) of {batch_size}")
            t1 = time.time()
            r = bias.bias_sweep(dyn_model, p, batches, betas, specs, T_free, free_tol, T_nudge, steps_per_point, cfg,
                                evaluators, log=log, ref_fn=ref_fn)
            r["time_s"] = time.time() - t1
            r["asymmetry_deg"] = (m.asymmetry or 0.0) * 180 / math.pi
            results[label] = r
            ref = r["reference"]
            log(f"  true vs RBP cosine {ref['cos_true_rbp_overall']:.4f} (layers {np.round(ref['cos_true_rbp'], 4).tolist()}), "
                f"free residual {ref['free_residual_max']:.2e}; {r['time_s']:.1f} s")
        os.makedirs(out, exist_ok=True)
        total = time.time() - t0
        with open(os.path.join(out, "bias.json"), "w") as f:
            json.dump({"settings": settings, "runtime_s": total, "panels": results}, f, indent=1)
        plot_bias(results, os.path.join(out, "bias.png"),
                  title=f"finite-nudge bias, {name} {list(hidden) if not params else ''} on {dataset} "
                        f"({num_batches}x{batch_size} examples)")
        log(f"wrote {out}/bias.json and {out}/bias.png in {total:.1f} s")
        return results


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
