"""Iterations to tolerance and time of a relaxation, plain (Picard) vs Anderson-accelerated,
for the free phase of the 2x256 MLP (Fashion-MNIST batch, trained or initial parameters)
and of the narrow DCHN (gain 1 at initialisation; a trained one with --dchn-params), and the
effect on an estimator: Cauchy N=6 (MLP) / C-EP (DCHN) gradients with each method compared to
the `true` / RBP gradient at the same method's equilibrium (cosine, relative error), and the
share of examples whose accelerated free phase ends at another equilibrium than the plain one.

    python experiments/benchmark_relaxation.py [--params runs/<run>] [--dchn-params RUN] [--tol 1e-4] [--memory 5]
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import holoeb  # noqa: F401
from holoeb import make_estimator, make_model
from holoeb.data.registry import load_dataset
from holoeb.diagnostics import tree_cosine
from holoeb.solvers import Relaxation, state_norm


def timed(fn, *args, repeats=5):
    out = jax.block_until_ready(fn(*args))
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = jax.block_until_ready(fn(*args))
    return out, (time.perf_counter() - t0) / repeats


def rel_err(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    num = sum(float(jnp.sum((x - y) ** 2)) for x, y in zip(la, lb))
    return float(np.sqrt(num / sum(float(jnp.sum(y ** 2)) for y in lb)))


def rows_for(label, model, params, batch, tol, memory, max_steps, est_name, est_hp, ref_name):
    """One row per method. Each estimate is compared with the reference estimator (``true`` /
    RBP) at the equilibrium the same method reaches (relaxed further, to tol / 100): where the
    map has several fixed points (the DCHN's energy has many) Anderson may reach another one than
    the plain iteration, which the 'other equilibrium' column counts (state distance > 100 tol)."""
    rows, plain_state = [], None
    for method in ("picard", "anderson"):
        relax = Relaxation(max_steps, tol=tol, method=method, memory=memory)
        ref_free = Relaxation(max_steps, tol=tol * 1e-2, method=method, memory=memory)
        ref = jax.jit(lambda p, b: make_estimator(ref_name, free=ref_free)(model, p, b, None))(params, batch)
        free = jax.jit(lambda p, x: relax.run_model(model, p["net"], x)[0])
        sol, t = timed(free, params, batch[0])
        if plain_state is None:
            plain_state = sol.state
        other = state_norm(tuple(a - b for a, b in zip(sol.state, plain_state))) > 100 * tol
        est = make_estimator(est_name, free=relax, nudge=relax, **est_hp)
        step = jax.jit(lambda p, b: est(model, p, b, None))
        res, t_est = timed(step, params, batch, repeats=3)
        rows.append(dict(model=label, method=method, iters=int(sol.steps), free_ms=1e3 * t,
                         max_res=float(jnp.max(sol.residual)), other=float(jnp.mean(other)), est_ms=1e3 * t_est,
                         cos=float(tree_cosine(res.grads["net"], ref.grads["net"])),
                         rel=rel_err(res.grads["net"], ref.grads["net"])))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", help="a training run directory: time its trained MLP parameters too")
    ap.add_argument("--dchn-params", help="a DCHN training run directory (e.g. a study run): time its trained DCHN too")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--memory", type=int, default=5)
    args = ap.parse_args()
    rows = []
    mlp = make_model("mlp", hidden=(256, 256))
    ds = load_dataset("fashion_mnist", "test", mlp.input_shape, size=50)
    batch = (jnp.asarray(ds.x), jnp.asarray(ds.y))
    cauchy = dict(N=6, beta=0.5)
    rows += rows_for("mlp 2x256 (init)", mlp, mlp.init(jax.random.PRNGKey(0)), batch, args.tol, args.memory, 500,
                     "cauchy", cauchy, "true")
    if args.params:
        from holoeb.checkpoint import load_params

        rows += rows_for("mlp 2x256 (trained)", mlp, load_params(args.params), batch, args.tol, args.memory, 500,
                         "cauchy", cauchy, "true")
    dchn = make_model("dchn", in_channels=1, image_size=32, channels=(16, 32, 64, 64), gains=1.0, cost_scale=0.5)
    dsd = load_dataset("fashion_mnist", "test", dchn.input_shape, size=32)
    rows += rows_for("dchn 16-32-64-64", dchn, dchn.init(jax.random.PRNGKey(0)), (jnp.asarray(dsd.x), jnp.asarray(dsd.y)),
                     args.tol, args.memory, 300, "c-ep", dict(beta=0.05), "rbp")
    if args.dchn_params:
        from holoeb.params_io import load_run

        _, trained, tparams = load_run(args.dchn_params)
        dst = load_dataset("fashion_mnist", "test", trained.input_shape, size=32)
        rows += rows_for(f"dchn {'-'.join(map(str, trained.channels))} (trained)", trained, tparams,
                         (jnp.asarray(dst.x), jnp.asarray(dst.y)), args.tol, args.memory, 300, "c-ep", dict(beta=0.05), "rbp")
    print(f"\nrelaxation to max residual {args.tol:g} (Anderson memory {args.memory}, restarts); estimator vs its "
          "reference at the same method's equilibrium (MLP: cauchy N=6 |beta|=0.5 vs true; DCHN: c-ep beta=0.05 vs "
          "rbp), same tolerance in every phase\n")
    print("| model | method | free iterations | free phase (ms) | max residual | other equilibrium than plain | "
          "estimator step (ms) | cos to ref | rel. error |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['method']} | {r['iters']} | {r['free_ms']:.1f} | {r['max_res']:.1e} | "
              f"{100 * r['other']:.0f}% | {r['est_ms']:.1f} | {r['cos']:.4f} | {r['rel']:.3f} |")


if __name__ == "__main__":
    main()
