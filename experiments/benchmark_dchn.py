"""DCHN benchmark (comparative study, App. C, Table 3).

1. Iterations to reach a fixed-point residual ||sigma(dPhi/ds) - s|| <= tol from the
   zero state, async (Eqs. 100-101) vs sync (Eq. 99), DCHN at initialisation on
   real Fashion-MNIST images (Table 4 normalisation, padded to 32 x 32).
2. C-EP training-step time (T free + 2 x K nudged iterations + the energy-gradient
   update) at the given batch size: float32 vs bfloat16 relaxation, async vs sync
   at equal iteration counts, XLA's convolution vs the im2col matmul
   (holoeb.convolution).
3. Free-phase time: 60 async iterations vs 250 sync ones.

    python experiments/benchmark_dchn.py                         # Table 5 DCHN, batch 128
    python experiments/benchmark_dchn.py --channels 32 64 128 128 --batch 32   # CPU-sized

Prints markdown tables and writes them (and JSON) to --out.
"""
import argparse
import json
import os
import time

import jax
import jax.numpy as jnp

from holoeb import energy
from holoeb.data.registry import normalise
from holoeb.data import load_fashion_mnist
from holoeb.estimators import make_estimator
from holoeb.models import make_model
from holoeb.solvers import relax


def timed(f, *args, repeats=3):
    """(compile+first call seconds, mean seconds of the next `repeats` calls)."""
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(f(*args))
    return first, (time.perf_counter() - t) / repeats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", type=int, nargs="+", default=[128, 256, 512, 512])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--residual-batch", type=int, default=16)
    p.add_argument("--tols", type=float, nargs="+", default=[1e-2, 1e-3, 1e-4])
    p.add_argument("--max-iter", type=int, default=500)
    p.add_argument("--T", type=int, default=60)
    p.add_argument("--T-nudge", dest="T_nudge", type=int, default=15, help="iterations of each perturbed phase (K of Table 5)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--conv-impls", nargs="+", default=["xla", "im2col"], choices=["xla", "im2col"])
    p.add_argument("--skip", nargs="*", default=[], choices=["residual", "step", "free"])
    p.add_argument("--out", default="runs/benchmark_dchn")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    images, labels = load_fashion_mnist("train")
    n = max(args.batch, args.residual_batch)
    x_all = jnp.asarray(normalise(images[:n, ..., None], "fashion_mnist"))
    y_all = jnp.asarray(labels[:n])
    models = {s: make_model("dchn", in_channels=1, channels=tuple(args.channels), schedule=s) for s in ("async", "sync")}
    params = jax.jit(models["async"].init)(jax.random.PRNGKey(0))
    out, md = {"device": str(jax.devices()[0]), "config": vars(args)}, []
    md.append(f"DCHN channels {tuple(args.channels)}, device {jax.devices()[0].platform}\n")

    if "residual" not in args.skip:
        x = x_all[: args.residual_batch]
        rows = []
        for tol in args.tols:
            row = {"tol": tol}
            for s, m in models.items():
                f = jax.jit(lambda net, xx: energy.iterations_to_residual(m, net, xx, tol, args.max_iter))
                its, res = f(params["net"], x)
                row[s] = int(its) if int(its) <= args.max_iter else f">{args.max_iter}"
            rows.append(row)
            print(row, flush=True)
        out["iterations_to_residual"] = rows
        md += [f"Iterations to residual (batch {args.residual_batch}, at initialisation):", "",
               "| tol | async | sync |", "|---|---|---|"]
        md += [f"| {r['tol']:g} | {r['async']} | {r['sync']} |" for r in rows] + [""]

    x, y = x_all[: args.batch], y_all[: args.batch]
    if "step" not in args.skip:
        rows = []
        for impl in args.conv_impls:
            for s in ("async", "sync"):
                m = make_model("dchn", in_channels=1, channels=tuple(args.channels), schedule=s, conv_impl=impl)
                for dt in ("float32", "bfloat16"):
                    est = make_estimator("c-ep", T_free=args.T, T_nudge=args.T_nudge, beta=0.25,
                                         relax_dtype=None if dt == "float32" else dt)
                    f = jax.jit(lambda p, xx, yy: est(m, p, (xx, yy), None).grads)
                    first, sec = timed(f, params, x, y, repeats=args.repeats)
                    rows.append(dict(conv=impl, schedule=s, dtype=dt, step_s=sec, compile_s=first))
                    print(rows[-1], flush=True)
        out["cep_step"] = rows
        md += [f"C-EP training step, batch {args.batch}, {args.T} free + 2 x {args.T_nudge} nudged iterations:", "",
               "| convolution | schedule | relaxation dtype | step (s) |", "|---|---|---|---|"]
        md += [f"| {r['conv']} | {r['schedule']} | {r['dtype']} | {r['step_s']:.3f} |" for r in rows] + [""]

    if "free" not in args.skip:
        rows = []
        for s, T in (("async", 60), ("sync", 250)):
            m = models[s]
            for dt in ("float32", "bfloat16"):
                f = jax.jit(lambda p, xx: relax(lambda u: m.phi(p["net"], u, m.drive(p["net"], xx)),
                                                m.init_state(xx), T).state)
                pc = jax.tree_util.tree_map(lambda a: a.astype(dt), params)
                first, sec = timed(f, pc, x.astype(dt), repeats=args.repeats)
                rows.append(dict(schedule=s, iterations=T, dtype=dt, free_s=sec))
                print(rows[-1], flush=True)
        out["free_phase"] = rows
        md += [f"Free phase, batch {args.batch}:", "", "| schedule | iterations | dtype | time (s) |", "|---|---|---|---|"]
        md += [f"| {r['schedule']} | {r['iterations']} | {r['dtype']} | {r['free_s']:.3f} |" for r in rows]
        a = {r["dtype"]: r["free_s"] for r in rows if r["schedule"] == "async"}
        b = {r["dtype"]: r["free_s"] for r in rows if r["schedule"] == "sync"}
        md += ["", f"speed-up of 60 async (bf16) over 250 sync (float32): {b['float32'] / a['bfloat16']:.2f}x; "
                   f"same dtype (float32): {b['float32'] / a['float32']:.2f}x", ""]

    text = "\n".join(md)
    print(text)
    with open(os.path.join(args.out, "benchmark.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "benchmark.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
