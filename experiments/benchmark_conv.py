"""Benchmark: asymmetric conv net training-step time (estimator + homeostasis + SGD update),
float32 vs half-precision free phase, 1 vs several data-parallel devices.

    python experiments/benchmark_conv.py                      # CPU-sized net (channels /8), batch 256
    python experiments/benchmark_conv.py --paper --batch 256  # the paper's net (GPU)

Each device count runs in its own process (the device count is fixed when the
backend starts); on CPU the host is split with
XLA_FLAGS=--xla_force_host_platform_device_count=n, so "2 devices" shares the same
cores. Prints a table and writes JSON to --out.
"""
import argparse
import json
import os
import subprocess
import sys
import time


def worker(args):
    import jax
    import numpy as np

    from holoeb import dynamics, parallel
    from holoeb.estimators import make_estimator
    from holoeb.models import make_model
    from holoeb.optim import make_optimizer
    from holoeb.precision import with_free_dtype
    from holoeb.train_step import make_train_step

    channels = (128, 256, 512, 512) if args.paper else tuple(args.channels)
    model = make_model("asym_conv", in_shape=(32, 32, 3), channels=channels, num_classes=10)
    params = model.init(jax.random.PRNGKey(0))
    opt_cfg = {"name": "sgd", "learning_rate": 5e-3, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "cosine",
               "lr_scales": {"layer1": 25, "layer2": 15, "layer3": 10, "layer4": 8, "readout": 5}}
    tx = make_optimizer(opt_cfg, params, 1000)
    rng = np.random.default_rng(0)
    batch = dynamics.Batch(rng.normal(size=(args.batch, 32, 32, 3)).astype(np.float32), (np.arange(args.batch) % 10).astype(np.int32))
    mesh = parallel.make_mesh(args.devices)
    rows = []
    for free_dtype in args.free_dtypes:
        est = make_estimator("cauchy", N=2, beta=1.0, T_free=args.T_free, T_nudge=args.T_nudge)
        est = with_free_dtype(est, None if free_dtype == "float32" else free_dtype, args.refine)
        step = parallel.shard_step(make_train_step(model, est, tx, args.lam, 5, None, "per_unit"), mesh)
        p, o, k = parallel.replicate((params, tx.init(params), jax.random.PRNGKey(1)), mesh)
        b = parallel.shard_batch(batch, mesh)
        t0 = time.perf_counter()
        out = step(p, o, b, k)
        jax.block_until_ready(out)
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = step(p, o, b, k)
            jax.block_until_ready(out)
            times.append(time.perf_counter() - t0)
        rows.append({"devices": mesh.size, "free_dtype": free_dtype, "batch": args.batch, "channels": list(channels),
                     "T_free": args.T_free, "T_nudge": args.T_nudge, "lambda_homeo": args.lam, "platform": jax.devices()[0].platform,
                     "step_s_median": float(np.median(times)), "step_s_min": float(np.min(times)), "first_call_s": compile_s,
                     "finite": bool(out[2]["finite"])})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paper", action="store_true", help="channels (128, 256, 512, 512) as in App. D.2")
    ap.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 64])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--T-free", dest="T_free", type=int, default=250)
    ap.add_argument("--T-nudge", dest="T_nudge", type=int, default=40)
    ap.add_argument("--lam", type=float, default=10.0)
    ap.add_argument("--refine", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device-counts", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--free-dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--out", default="runs/benchmark_conv.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--devices", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    rows = []
    for n in args.device_counts:
        env = dict(os.environ)
        if env.get("JAX_PLATFORMS", "cpu") == "cpu" and "cuda" not in env.get("JAX_PLATFORMS", ""):
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}").strip()
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--devices", str(n)] + [
            a for a in sys.argv[1:] if a not in ("--worker",)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"benchmark worker with {n} device(s) failed")
        rows += [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=2)
    base = {r["devices"]: r["step_s_median"] for r in rows if r["free_dtype"] == "float32"}
    print(f"\n| devices | free phase | batch | step time (s, median of {args.repeats}) | speed-up vs float32, 1 device |")
    print("|---|---|---|---|---|")
    for r in rows:
        ref = base.get(1, r["step_s_median"])
        print(f"| {r['devices']} | {r['free_dtype']} | {r['batch']} | {r['step_s_median']:.3f} | {ref / r['step_s_median']:.2f}x |")
    print(f"platform: {rows[0]['platform']}, channels {rows[0]['channels']}, T_free {rows[0]['T_free']}, T_nudge {rows[0]['T_nudge']}")


if __name__ == "__main__":
    main()
