"""DCHN benchmark (comparative study, App. C, Table 3).

1. Iterations to reach a fixed-point residual ||sigma(dPhi/ds) - s|| <= tol from the
   zero state, async (Eqs. 100-101) vs sync (Eq. 99), DCHN at initialisation on
   real Fashion-MNIST images (Table 4 normalisation, padded to 32 x 32).
2. Estimator step time (C-EP: T free + 2 x K nudged iterations + the energy gradient;
   --rules adds TBP, RBP, true) at the given batch size: float32 vs bfloat16 relaxation,
   async vs sync at equal iteration counts (C-EP), XLA's convolution vs the im2col matmul
   (holoeb.convolution).
3. Free-phase time: 60 async iterations vs 250 sync ones.
4. Where a C-EP step's time goes (free phase / the two nudged phases / the energy
   gradient), its FLOP count, the achieved GFLOP/s and the fraction of this machine's
   measured peak (one convolution of the costliest layer, and a 512x512 matmul).

    python experiments/benchmark_dchn.py                         # Table 5 DCHN, batch 128
    python experiments/benchmark_dchn.py --channels 32 64 128 128 --batch 32   # CPU-sized

Prints markdown tables and writes them (and JSON) to --out.
"""
import argparse
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
from holoeb.reports import write_report


def timed(f, *args, repeats=3):
    """(compile+first call seconds, mean seconds of the next `repeats` calls)."""
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(f(*args))
    return first, (time.perf_counter() - t) / repeats


def conv_flops(batch, size, c_in, c_out):
    """Multiply-adds x 2 of a 3x3 SAME convolution on a size x size map."""
    return 2 * batch * size * size * 9 * c_in * c_out


def step_flops(args, batch):
    """FLOPs of one C-EP step with the minimal work per iteration: every coupling's forward
    convolution and its transpose once (dPhi/ds of all layers); the energy gradient is a
    forward and a weight-gradient convolution per layer at the two nudged states."""
    ch, size, fwd = tuple(args.channels), 32, []
    for k, c in enumerate(ch):
        fwd.append(conv_flops(batch, size, ch[k - 1] if k else 1, c))
        size //= 2
    dense = 2 * batch * size * size * ch[-1] * 10
    per_iter = 2 * (sum(fwd[1:]) + dense)
    iters = args.T + 2 * args.T_nudge
    grad = 2 * 2 * (sum(fwd) + dense)
    return per_iter, iters, grad, fwd


def rule_estimator(rule, args, relax_dtype=None):
    """The estimator of one step-table row: C-EP at beta 0.25, TBP with K = T_nudge, RBP, true."""
    if rule == "c-ep":
        return make_estimator("c-ep", T_free=args.T, T_nudge=args.T_nudge, beta=0.25, relax_dtype=relax_dtype)
    if rule == "tbp":
        return make_estimator("tbp", T_free=args.T, K=args.T_nudge)
    return make_estimator(rule, T_free=args.T)


def breakdown(args, params, x, y, out):
    m = make_model("dchn", in_channels=1, channels=tuple(args.channels), schedule="async")
    net = params["net"]
    est = make_estimator("c-ep", T_free=args.T, T_nudge=args.T_nudge, beta=0.25)
    B = x.shape[0]
    y1 = jax.nn.one_hot(y, 10)

    def free(net, xx):
        return est.free.run_model(m, net, xx)[0].state

    def nudged(net, xx, s0):
        drive = m.drive(net, xx)
        outs = []
        for b in (-0.25, 0.25):
            upd = energy.nudged_output(y1, b, m.cost_scale)
            outs.append(est.nudge.run_layers(lambda s, g: energy.layer_update(m, net, s, drive, g, upd), s0, m.schedule).state)
        return outs

    def grad(net, xx, sa, sb):
        return energy.contrast_grad(m, net, xx, sa, -0.25, sb, 0.25)

    full = jax.jit(lambda p, xx, yy: est(m, p, (xx, yy), None).grads)
    s0 = jax.jit(free)(net, x)
    sa, sb = jax.jit(nudged)(net, x, s0)
    parts = [("free phase", timed(jax.jit(free), net, x, repeats=args.repeats)[1]),
             ("two nudged phases", timed(jax.jit(nudged), net, x, s0, repeats=args.repeats)[1]),
             ("energy gradient", timed(jax.jit(grad), net, x, sa, sb, repeats=args.repeats)[1])]
    total = timed(full, params, x, y, repeats=args.repeats)[1]
    per_iter, iters, g_flops, fwd = step_flops(args, B)
    flops = per_iter * iters + g_flops
    k = max(range(1, len(fwd)), key=lambda i: fwd[i])
    size = 32 // 2 ** k
    # the costliest layer's convolution as one im2col GEMM: (B H W, 9 c_in) @ (9 c_in, c_out)
    cin, cout, hw = args.channels[k - 1], args.channels[k], (size * 2) ** 2
    cols = jnp.ones((B * hw, 9 * cin), jnp.float32) * 0.1
    w = jnp.ones((9 * cin, cout), jnp.float32) * 0.01
    t_conv = timed(jax.jit(lambda a: a @ w), cols, repeats=10)[1]
    peak_conv = conv_flops(B, size * 2, cin, cout) / t_conv / 1e9
    big = jnp.ones((512, 512), jnp.float32)
    peak_mm = 2 * 512 ** 3 / timed(jax.jit(lambda a: a @ a), big, repeats=20)[1] / 1e9
    achieved = flops / total / 1e9
    out["breakdown"] = dict(parts=dict(parts), step_s=total, gflop=flops / 1e9, achieved_gflops=achieved,
                            conv_peak_gflops=peak_conv, matmul512_gflops=peak_mm)
    md = [f"Where a C-EP step goes (async, float32, batch {B}, {args.T} + 2 x {args.T_nudge} iterations): "
          f"{flops / 1e9:.1f} GFLOP, {total:.3f} s, {achieved:.1f} GFLOP/s = {100 * achieved / peak_conv:.0f}% of the "
          f"layer-{k + 1} convolution's im2col GEMM alone ({peak_conv:.1f} GFLOP/s) ({100 * achieved / peak_mm:.0f}% of a 512x512 matmul's "
          f"{peak_mm:.1f})", "", "| part (jitted alone) | time (s) | of the fused step |", "|---|---|---|"]
    md += [f"| {name} | {t:.3f} | {100 * t / total:.0f}% |" for name, t in parts] + [""]
    return md


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
    p.add_argument("--rules", nargs="+", default=["c-ep"], choices=["c-ep", "tbp", "rbp", "true"],
                   help="estimators of the step table (C-EP also async vs sync and each dtype)")
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"],
                   help="relaxation dtypes of the step table")
    p.add_argument("--skip", nargs="*", default=[], choices=["residual", "step", "free", "breakdown"])
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
        for rule in args.rules:
            for impl in args.conv_impls:
                for s in ("async", "sync") if rule == "c-ep" else ("async",):
                    m = make_model("dchn", in_channels=1, channels=tuple(args.channels), schedule=s, conv_impl=impl)
                    for dt in args.dtypes if rule == "c-ep" else ("float32",):
                        est = rule_estimator(rule, args, None if dt == "float32" else dt)
                        f = jax.jit(lambda p, xx, yy: est(m, p, (xx, yy), None).grads)
                        first, sec = timed(f, params, x, y, repeats=args.repeats)
                        rows.append(dict(rule=rule, conv=impl, schedule=s, dtype=dt, step_s=sec, compile_s=first))
                        print(rows[-1], flush=True)
        out["step"] = rows
        md += [f"Estimator step, batch {args.batch}, {args.T} free + 2 x {args.T_nudge} nudged iterations "
               f"(TBP: K = {args.T_nudge}):", "",
               "| rule | convolution | schedule | relaxation dtype | step (s) |", "|---|---|---|---|---|"]
        md += [f"| {r['rule']} | {r['conv']} | {r['schedule']} | {r['dtype']} | {r['step_s']:.3f} |" for r in rows] + [""]

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

    if "breakdown" not in args.skip:
        md += breakdown(args, params, x, y, out)

    text = "\n".join(md)
    print(text)
    write_report(os.path.join(args.out, "benchmark"), text, out)


if __name__ == "__main__":
    main()
