"""Would per-example persistent free states (each example's free phase started from its
equilibrium one epoch earlier) shorten the tolerance-stopped free phase of a trained net?

Relaxes batches of training images with a run's latest parameters, from zero and from the
equilibria under the checkpoint one epoch earlier, and prints the iterations each batch
needs to reach a max residual of --tol.

    python experiments/persistent_states.py --run runs/main_job
"""
import argparse

import holoeb  # noqa: F401
import jax
import jax.numpy as jnp
import numpy as np

from holoeb.checkpoint import Checkpointer
from holoeb.data.registry import load_dataset
from holoeb.params_io import load_run
from holoeb.solvers import Relaxation


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/main_job", help="training run directory with two checkpoints")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=50)
    args = ap.parse_args()
    cfg, model, latest = load_run(args.run)
    ckpt = Checkpointer(f"{args.run}/checkpoints")
    steps = sorted(ckpt.manager.all_steps())
    if len(steps) < 2:
        raise SystemExit(f"{args.run} keeps {len(steps)} checkpoint(s); two (e.g. consecutive epochs) are needed")
    state, _ = ckpt.restore(None, steps[-2])
    ckpt.close()
    earlier = jax.tree_util.tree_map(jnp.asarray, state["params"])
    n = args.batches * args.batch_size
    x = jnp.asarray(load_dataset(cfg.data.dataset, "train", model.input_shape, cfg.data.data_dir, n).x)
    converged = Relaxation(4 * cfg.estimator.kwargs.get("T_free", 150))
    to_tol = Relaxation(4 * cfg.estimator.kwargs.get("T_free", 150), args.tol)
    relax = jax.jit(lambda rel, p, x, u0: rel.run_model(model, p["net"], x, u0)[0], static_argnums=0)
    print(f"{args.run}: checkpoints {steps[-2]} -> {steps[-1]}, {args.batches} batches of {args.batch_size}, tol {args.tol:g}")
    print("| start | iterations per batch (median) | max | all |")
    print("|---|---|---|---|")
    for name, use_prev in (("zero", False), (f"equilibrium at step {steps[-2]}", True)):
        its = []
        for b in range(args.batches):
            xb = x[b * args.batch_size:(b + 1) * args.batch_size]
            u0 = relax(converged, earlier, xb, None).state if use_prev else None
            its.append(int(relax(to_tol, latest, xb, u0).steps))
        print(f"| {name} | {np.median(its):g} | {max(its)} | {its} |")


if __name__ == "__main__":
    main()
