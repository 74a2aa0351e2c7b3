"""Per-example accuracy of the Cauchy estimate of d_beta u* on a trained network.

The N-point estimate (generalized hEP paper, Laborieux & Zenke, arXiv:2309.02214, Eq. 7)
averages u*_beta over the circle |beta| = r; its error falls like (r / R)^N only while the
circle stays inside the disc of radius R where beta -> u*_beta is holomorphic. This script
measures, example by example, how far each estimate's error vector is from the exact one
(the `true` estimator's implicit linear solve), in float64 with every phase relaxed to 1e-10,
so that what remains is the estimate's own bias:

    python experiments/cauchy_trained_radius.py runs/main_job --out experiments/results/cauchy_trained_radius

Prints (and writes OUT.md / OUT.json) per (N, r): the median per-example relative error of
delta, the fraction of examples above 10% (split into examples the network misclassifies at
its free state and examples it classifies correctly), the examples whose nudged phases did
not converge, and the cosine of the batch gradient to the exact one; then, for the examples the
estimate misses most at the smallest |beta| (and a few median ones), the eigenvalue of the free
state's Jacobian J = dPhi/du closest to 1 (one example's dense Jacobian, a diagnostic): an
equilibrium near a saddle-node (|1 - lambda| small) has a large d_beta u* and a branch point of
u*_beta close to beta = 0.
"""
import argparse

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from holoeb import make_estimator  # noqa: E402
from holoeb.data.registry import load_dataset  # noqa: E402
from holoeb.diagnostics import tree_cosine  # noqa: E402
from holoeb.params_io import load_run  # noqa: E402
from holoeb.reports import write_report  # noqa: E402


def flat(error):
    return jnp.concatenate([e.reshape(e.shape[0], -1) for e in error], axis=1)


def example_jacobian(model, params, u, drive, i, batch):
    """Dense dPhi/du (synchronous map) at example i's free state: (n, n), n the state size."""
    ui = tuple(v[i:i + 1] for v in u)
    di = jax.tree_util.tree_map(lambda d: d[i:i + 1] if d.ndim >= 1 and d.shape[0] == batch else d, drive)
    sizes = [v.size for v in ui]

    def phi(z):
        parts = jnp.split(z, np.cumsum(sizes)[:-1])
        return flat(model.phi_sync(params["net"], tuple(q.reshape(v.shape) for q, v in zip(parts, ui)), di))[0]

    return jax.jacfwd(phi)(flat(ui)[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a training run directory (its config.json and parameters)")
    ap.add_argument("--betas", type=float, nargs="+", default=[0.5, 0.2, 0.1, 0.05, 0.02, 0.01])
    ap.add_argument("--N", type=int, nargs="+", default=[2, 6])
    ap.add_argument("--batch", type=int, default=200, help="test images")
    ap.add_argument("--schedule", default="async", help="schedule of the nudged phases (async avoids sync 2-cycles)")
    ap.add_argument("--jacobian", type=int, default=5, help="examples (worst, and as many median) to analyse")
    ap.add_argument("--out", help="write OUT.md and OUT.json")
    args = ap.parse_args()

    _, model, params = load_run(args.run)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
    ds = load_dataset("fashion_mnist", "test", model.input_shape, size=args.batch)
    batch = (jnp.asarray(ds.x, jnp.float64), jnp.asarray(ds.y))
    tight = dict(T_free=5000, free_tol=1e-10)
    ref = jax.jit(lambda p, b: make_estimator("true", **tight, solve_tol=1e-10, solve_maxiter=100)(model, p, b, None))(
        params, batch)
    exact = flat(ref.error)
    wrong = np.asarray(jnp.argmax(model.predict(params, ref.free_state), -1) != batch[1])
    rows = []
    for N in args.N:
        for r in args.betas:
            est = make_estimator("cauchy", N=N, beta=r, **tight, T_nudge=5000, nudge_tol=1e-10, nudge_schedule=args.schedule)
            res = jax.jit(lambda p, b: est(model, p, b, None))(params, batch)
            err = flat(res.error)
            rel = np.asarray(jnp.linalg.norm(err - exact, axis=1) / jnp.linalg.norm(exact, axis=1))
            rows.append(dict(N=N, r=r, median=float(np.median(rel)), above=float(np.mean(rel > 0.1)),
                             above_wrong=float(np.mean(rel[wrong] > 0.1)) if wrong.any() else float("nan"),
                             above_right=float(np.mean(rel[~wrong] > 0.1)) if (~wrong).any() else float("nan"),
                             unconverged=int(jnp.sum(res.aux["nudge_residual"] > 1e-6)),
                             cos=float(tree_cosine(res.grads["net"], ref.grads["net"]))))
            print(rows[-1], flush=True)
    lines = [f"Cauchy estimate vs exact d_beta u* on `{args.run}`, {args.batch} test images "
             f"({100 * wrong.mean():.1f}% misclassified at the free state), float64, every phase to 1e-10, "
             f"nudged phases {args.schedule}; per-example relative error of the error vector delta\n",
             "| N | \\|beta\\| | median rel. error | > 10% (all) | > 10% (misclassified) | > 10% (correct) | "
             "nudged unconverged | cos(batch gradient, exact) |", "|---|---|---|---|---|---|---|---|"]
    for w in rows:
        lines.append(f"| {w['N']} | {w['r']:g} | {w['median']:.1e} | {100 * w['above']:.1f}% | {100 * w['above_wrong']:.1f}% | "
                     f"{100 * w['above_right']:.1f}% | {w['unconverged']} | {w['cos']:.4f} |")
    # the examples the estimate misses most at the last (N, r), and some median ones
    order = np.argsort(-rel)
    picks = list(order[:args.jacobian]) + list(order[len(order) // 2:len(order) // 2 + args.jacobian])
    drive = model.drive(params["net"], batch[0])
    jac_rows = []
    for i in picks:
        J = np.asarray(example_jacobian(model, params, ref.free_state, drive, int(i), args.batch))
        lam = np.linalg.eigvals(J)
        jac_rows.append(dict(example=int(i), rel=float(rel[i]), misclassified=bool(wrong[i]),
                             delta_norm=float(jnp.linalg.norm(exact[i])), spectral_radius=float(np.max(np.abs(lam))),
                             gap=float(np.min(np.abs(1 - lam)))))
    lines += ["", f"Free-state Jacobian of the examples with the largest and median errors at N = {args.N[-1]}, "
              f"|beta| = {args.betas[-1]:g}\n", "| example | rel. error | misclassified | \\|delta\\| | spectral radius of J | "
              "min \\|1 - lambda(J)\\| |", "|---|---|---|---|---|---|"]
    for w in jac_rows:
        lines.append(f"| {w['example']} | {w['rel']:.1e} | {w['misclassified']} | {w['delta_norm']:.2e} | "
                     f"{w['spectral_radius']:.3f} | {w['gap']:.2e} |")
    print("\n".join(lines))
    if args.out:
        write_report(args.out, lines, dict(run=args.run, batch=args.batch, misclassified=float(wrong.mean()),
                                           rows=rows, jacobian=jac_rows))


if __name__ == "__main__":
    main()
