"""Why a rule's free phases stay unconverged, and whether it matters for its update.

For a trained run of the comparative study (e.g. CL, whose warm-started free phases end above
the residual tolerance for ~40% of training examples from epoch 3 on), replay its training
conditions on a few training batches at the run's final parameters: each batch's free phase
starts where the previous batch left the network (training.warm_start = "last", as in the run).
From that same start the free phase is then relaxed for T = T_free, 2 T_free, ... iterations and
for each T this records

  * the fraction of examples whose residual ||g(u) - u|| (g one sweep of the schedule) is above
    the tolerance, and its median;
  * the two-sweep residual ||g(g(u)) - u|| relative to the one-sweep one: a ratio near 0 means
    the examples above tolerance sit on a period-2 cycle (the async sweep alternating between two
    states), a ratio near 2 a slow monotone approach;
  * the rule's parameter update: its cosine to the update at the longest T, and to RBP's
    gradient at the longest relaxation (the implicit-differentiation gradient at a state that
    is as close to a fixed point as the dynamics gets);

and the test error and unconverged fraction of the readout with free phases of T iterations from
zero (the run's own evaluation uses T_free).

    python experiments/study_free_convergence.py experiments/results/study_cpu_12ep/fashion_mnist-cl-seed2 \
        --out experiments/results/study_cpu_12ep/free_convergence_cl_seed2

writes OUT.md and OUT.json.
"""
import argparse
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from holoeb import dynamics, evaluation, training
from holoeb.data.pipeline import batches
from holoeb.data.registry import load_dataset
from holoeb.errors import HoloebError
from holoeb.estimators import make_estimator
from holoeb.params_io import load_run
from holoeb.solvers import CONVERGED_TOL, state_norm
from holoeb.reports import write_report


def flat(tree):
    return jnp.concatenate([jnp.ravel(v) for v in jax.tree_util.tree_leaves(tree)])


def cosine(a, b):
    return float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b) + 1e-30))


def with_free_steps(estimator, T):
    return dataclasses.replace(estimator, free=dataclasses.replace(estimator.free, max_steps=int(T), tol=None))


def replay(run_dir, multiples, num_batches, seed, test_size):
    cfg, model, params = load_run(run_dir)
    _, estimator = training.build(cfg)
    d = cfg.data
    train = load_dataset(d.dataset, "train", model.input_shape, d.data_dir, d.train_size, d.normalize)
    Ts = [estimator.T_free * m for m in multiples]
    rbp = make_estimator("rbp", T_free=Ts[-1])
    calls = {T: jax.jit(lambda p, b, k, s, e=with_free_steps(estimator, T): e(model, p, b, k, s)) for T in Ts + [2]}
    rbp_call = jax.jit(lambda p, b, k, s: rbp(model, p, b, k, s))
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    rows = {T: {"unconverged": [], "median": [], "two_sweep_ratio": [], "cos_to_longest": [], "cos_rbp": []} for T in Ts}
    state = None
    for i, b in enumerate(batches(train, cfg.training.batch_size, rng)):
        if i == num_batches:
            break
        b = dynamics.Batch(jnp.asarray(b.x), jnp.asarray(b.y))
        start = model.init_state(b.x) if state is None else state
        results = {T: calls[T](params, b, key, start) for T in Ts}
        g_rbp = flat(rbp_call(params, b, key, start).grads["net"])
        g_long = flat(results[Ts[-1]].grads["net"])
        for T, r in results.items():
            res = np.asarray(r.residual)
            above = res > CONVERGED_TOL
            two = calls[2](params, b, key, r.free_state).free_state  # g(g(u)) (and a nudged phase, unused)
            r2 = np.asarray(state_norm(tuple(a - c for a, c in zip(two, r.free_state))))
            g = flat(r.grads["net"])
            rows[T]["unconverged"].append(float(np.mean(above)))
            rows[T]["median"].append(float(np.median(res)))
            rows[T]["two_sweep_ratio"].append(float(np.median(r2[above] / res[above])) if above.any() else float("nan"))
            rows[T]["cos_to_longest"].append(cosine(g, g_long))
            rows[T]["cos_rbp"].append(cosine(g, g_rbp))
        state = results[Ts[0]].last_state  # the network as training left it: T_free iterations, then the nudged phase
        print(f"batch {i}: " + ", ".join(f"T={T} unconv {rows[T]['unconverged'][-1]:.2f} cos_rbp {rows[T]['cos_rbp'][-1]:.3f}"
                                          for T in Ts), flush=True)
    out = {"run": os.path.basename(os.path.normpath(run_dir)), "rule": cfg.estimator.name, "T_free": estimator.T_free,
           "tol": CONVERGED_TOL, "batches": num_batches, "batch_size": cfg.training.batch_size,
           "replay": {str(T): {k: float(np.nanmean(v)) for k, v in rows[T].items()} for T in Ts}}
    test = load_dataset(d.dataset, "test", model.input_shape, d.data_dir, test_size, d.normalize)
    out["evaluation"] = {}
    for T in Ts:
        ev = evaluation.make_eval_step(model, T, per_example_residual=True)
        r = evaluation.evaluate_dataset(jax.jit(ev), params, test, cfg.training.batch_size)
        out["evaluation"][str(T)] = {"error": r["error"], "unconverged": r["unconverged"],
                                     "residual_median": r["residual_median"]}
        print(f"test ({test_size} images), free phase of {T} iterations from zero: {r}", flush=True)
    return out


def write(result, path):
    r = result
    lines = [f"{r['run']} ({r['rule']}), final parameters; {r['batches']} training batches of {r['batch_size']} replayed "
             f"with the run's warm start; tolerance {r['tol']:g}.", "",
             "| free iterations | above tolerance (%) | median residual | two-sweep / one-sweep residual (above tol) | "
             "cos(update, update at longest T) | cos(update, RBP gradient) |", "|---|---|---|---|---|---|"]
    for T, v in r["replay"].items():
        lines.append(f"| {T} | {100 * v['unconverged']:.1f} | {v['median']:.2g} | {v['two_sweep_ratio']:.2f} | "
                     f"{v['cos_to_longest']:.3f} | {v['cos_rbp']:.3f} |")
    lines += ["", "Test images, free phase from zero:", "", "| free iterations | test error (%) | above tolerance (%) | median residual |",
              "|---|---|---|---|"]
    for T, v in r["evaluation"].items():
        lines.append(f"| {T} | {v['error']:.2f} | {100 * v['unconverged']:.1f} | {v['residual_median']:.2g} |")
    write_report(path, lines, r)
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a training run directory (config.json and checkpoints)")
    ap.add_argument("--out", required=True, help="path stem of the table (.md) and the data (.json)")
    ap.add_argument("--multiples", type=int, nargs="+", default=[1, 2, 4, 8],
                    help="free-phase lengths as multiples of the run's T_free, increasing")
    ap.add_argument("--batches", type=int, default=8, help="training batches to replay")
    ap.add_argument("--test-size", type=int, default=2000, help="test images for the evaluation")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if sorted(args.multiples) != args.multiples or args.multiples[0] < 1:
        ap.error(f"--multiples must be increasing integers >= 1, got {args.multiples}")
    if args.batches < 1 or args.test_size < 1:
        ap.error("--batches and --test-size must be >= 1")
    try:
        write(replay(args.run, args.multiples, args.batches, args.seed, args.test_size), args.out)
    except (HoloebError, FileNotFoundError) as e:
        ap.error(str(e))


if __name__ == "__main__":
    main()
