"""Training-step time per estimator on the 2x256 Fashion-MNIST MLP
(batch 50, T_free 150, T_nudge 20), compile time per configuration, and the
relaxation's achieved GFLOP/s against a plain matmul of the same shapes.

    python experiments/benchmark_estimators.py [--repeats 20] [--params runs/<run>] [--tol 1e-4] [--json out.json]

Rows marked "tol" stop the free phase once every example's residual is below --tol
(at most T_free iterations; the paper's protocol is the fixed T_free): the column
"free its" gives the iterations that took. Each row's matmul FLOPs (couplings of
the free and nudged iterations, the gradient's vjp) over its time give the achieved
GFLOP/s and the fraction of this machine's 512x512 matmul rate.

With --params the steps are also timed at a training run's (latest checkpoint) parameters,
with the number of subnormal float32 values in the free state (a slow path on x86).
The batch is prepared as training prepares it (holoeb.data.registry.load_dataset).
"""
import argparse
import json
import time

import holoeb  # noqa: F401
import jax
import jax.numpy as jnp
import numpy as np
import optax

from holoeb import dynamics, make_estimator, make_model
from holoeb.data.registry import load_dataset
from holoeb.solvers import relax
from holoeb.train_step import make_train_step

CONFIGS = [
    ("ep", dict(beta=0.5)),
    ("cauchy", dict(N=2, beta=0.5)),
    ("cauchy", dict(N=4, beta=0.5)),
    ("cauchy", dict(N=6, beta=0.5)),
    ("continuous", dict(N=4, beta=0.5, steps_per_point=60, periods=5)),
    ("true", dict()),
    ("rbp", dict()),
]
TOL_CONFIGS = [("ep", dict(beta=0.5)), ("cauchy", dict(N=2, beta=0.5)), ("cauchy", dict(N=6, beta=0.5))]


def nudged_rows(name, hp, batch):
    """Rows (examples x real-matmul blocks) one nudged iteration multiplies: conjugate symmetry
    relaxes the real nodes and half the complex ones; a complex row counts twice."""
    if name == "ep":
        return batch
    if name == "cauchy":
        N = hp["N"]
        real = 1 if N == 1 else 2 - N % 2
        cplx = (N - real) // 2
        return batch * (real + 2 * cplx)
    return 0


def step_flops(model, name, hp, batch, free_its, T_nudge):
    """Matmul FLOPs of one training step of the 2x256 MLP (elementwise work not counted)."""
    sizes = model.sizes
    coupling = sum(2 * 2 * sizes[l - 1] * sizes[l] for l in range(1, len(sizes)))  # fwd + bwd, per row
    f = free_its * batch * coupling + 2 * batch * model.in_features * sizes[0]  # drive
    f += T_nudge * nudged_rows(name, hp, batch) * coupling
    f += 2 * batch * coupling + 2 * batch * model.in_features * sizes[0]  # vjp wrt the weights
    return f


def timeit(fn, repeats):
    fn()  # warm
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--T-free", type=int, default=150)
    ap.add_argument("--T-nudge", type=int, default=20)
    ap.add_argument("--only", nargs="*", help="estimator labels to run, e.g. cauchy-N6")
    ap.add_argument("--params", help="training run directory: also time its trained parameters")
    ap.add_argument("--tol", type=float, default=1e-4, help="free-phase residual tolerance of the 'tol' rows (0: no such rows)")
    ap.add_argument("--json")
    args = ap.parse_args()

    model = make_model("mlp", hidden=(256, 256))
    init_params = model.init(jax.random.PRNGKey(0))
    ds = load_dataset("fashion_mnist", "train", model.input_shape, size=args.batch)
    x = jnp.asarray(ds.x)
    batch = dynamics.Batch(x, jnp.asarray(ds.y))
    tx = optax.sgd(0.01, momentum=0.9)
    rng = jax.random.PRNGKey(1)
    param_sets = [("init", init_params)]
    if args.params:
        from holoeb.checkpoint import load_params

        param_sets.append(("trained", load_params(args.params)))

    configs = [(n, hp, None) for n, hp in CONFIGS] + ([(n, hp, args.tol) for n, hp in TOL_CONFIGS] if args.tol else [])
    rows = []
    for (name, hp, tol), (which, params) in [(c, ps) for c in configs for ps in param_sets]:
        opt_state = tx.init(params)
        label = name + (f"-N{hp['N']}" if "N" in hp and name == "cauchy" else "")
        if args.only and label not in args.only:
            continue
        if name != "continuous":
            hp = dict(hp, T_free=args.T_free)
            if name in ("ep", "cauchy"):
                hp["T_nudge"] = args.T_nudge
        if tol:
            hp["free_tol"] = tol
        est = make_estimator(name, **hp)
        step = jax.jit(make_train_step(model, est, tx))
        t0 = time.perf_counter()
        compiled = step.lower(params, opt_state, batch, rng).compile()
        compile_s = time.perf_counter() - t0
        run = lambda: jax.block_until_ready(compiled(params, opt_state, batch, rng))
        s = timeit(run, args.repeats)
        free = jax.jit(lambda p: est.free_phase(model, p, batch.x)[0])(params)
        free_its = int(free.steps)
        tiny = np.finfo(np.float32).tiny
        subnormal = sum(int(np.sum((np.abs(np.asarray(v)) < tiny) & (np.asarray(v) != 0))) for v in free.state)
        flops = step_flops(model, name, hp, args.batch, free_its, args.T_nudge) if name in ("ep", "cauchy") else None
        rows.append({"estimator": label, "params": which, "tol": tol, "free_its": free_its, "step_s": s,
                     "compile_s": compile_s, "subnormal": subnormal, "gflop": flops / 1e9 if flops else None})
        print(f"{label:14s} {which:8s} {'tol ' + format(tol, 'g') if tol else 'fixed':9s} {s * 1e3:8.1f} ms/step"
              f"   free its {free_its:4d}   compile {compile_s:5.1f} s", flush=True)

    # relaxation throughput vs a plain matmul of the same shapes
    params = init_params
    drive = model.drive(params["net"], x)
    step_fn = lambda u: model.phi(params["net"], u, drive)
    T = args.T_free
    free = jax.jit(lambda u0: relax(step_fn, u0, T).state)
    u0 = model.init_state(x)
    t_relax = timeit(lambda: jax.block_until_ready(free(u0)), args.repeats)
    sizes = model.sizes
    flop_iter = sum(2 * args.batch * sizes[l - 1] * sizes[l] * 2 for l in range(1, len(sizes)))  # fwd + bwd couplings
    gflops_relax = flop_iter * T / t_relax / 1e9
    n = sizes[0]
    a = jnp.ones((args.batch, n), jnp.float32)
    w = jnp.ones((n, n), jnp.float32) * 0.001
    mm = jax.jit(lambda a: jax.lax.fori_loop(0, T, lambda i, v: jnp.tanh(v @ w), a))
    t_mm = timeit(lambda: jax.block_until_ready(mm(a)), args.repeats)
    gflops_mm = 2 * args.batch * n * n * T / t_mm / 1e9
    # the machine's matmul rate: 20 chained 512x512 products per call (no per-call dispatch
    # in the figure), the fastest of the repeats
    big = jnp.full((512, 512), 1.0 / 512, jnp.float32)
    mm_big = jax.jit(lambda a: jax.lax.fori_loop(0, 20, lambda i, v: v @ big, a))
    jax.block_until_ready(mm_big(big))
    t_big = min(timeit(lambda: jax.block_until_ready(mm_big(big)), 1) for _ in range(max(args.repeats, 5))) / 20
    gflops_big = 2 * 512**3 / t_big / 1e9
    print()
    print(f"free relaxation ({T} steps, batch {args.batch}): {t_relax * 1e3:.1f} ms, {gflops_relax:.1f} GFLOP/s")
    print(f"plain {args.batch}x{n} @ {n}x{n} matmul chain ({T} steps): {gflops_mm:.1f} GFLOP/s")
    print(f"512x512 matmul: {gflops_big:.1f} GFLOP/s")

    print("\n| estimator | parameters | free phase | free its | ms / training step | x cauchy-N2 (init, fixed) "
          "| GFLOP/s (matmul) | % of 512x512 peak | compile (s) | subnormal free-state values |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ref = next((r["step_s"] for r in rows if r["estimator"] == "cauchy-N2" and r["params"] == "init" and not r["tol"]), None)
    for r in rows:
        ratio = f"{r['step_s'] / ref:.2f}" if ref else "-"
        rate = r["gflop"] / r["step_s"] if r["gflop"] else None
        print(f"| {r['estimator']} | {r['params']} | {'tol ' + format(r['tol'], 'g') if r['tol'] else 'fixed'} | {r['free_its']} "
              f"| {r['step_s'] * 1e3:.1f} | {ratio} | {f'{rate:.0f}' if rate else '-'} "
              f"| {f'{100 * rate / gflops_big:.0f}' if rate else '-'} | {r['compile_s']:.1f} | {r['subnormal']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "relax_gflops": gflops_relax, "matmul_gflops": gflops_mm, "matmul512_gflops": gflops_big}, f, indent=2)


if __name__ == "__main__":
    main()
