"""Why EP-family estimates on the DCHN do not converge to RBP as beta -> 0.

On the narrow DCHN at initialisation (batch of Fashion-MNIST test images, free state relaxed
to residual ~1e-6), for nudges beta of both signs:

1. how far the nudged equilibrium s_beta moves from the free one s_* (max over units and
   examples), and how many examples move by more than 10 |beta| (a smooth branch s_beta moves
   by O(|beta|); a larger move is a jump to another equilibrium);
2. the relative distance of P-EP and C-EP (and N-EP) to RBP's gradient, per beta and number K
   of nudged iterations.

With hard-sigmoid states, max-pooling windows whose units all sit at the clamp are exact ties;
a nudge of either sign breaks some of them, the pooled derivative changes discontinuously and
a few examples jump to another equilibrium, so d s_beta / d beta does not exist at beta = 0
for them and an EP estimate's error stops shrinking, or grows like 1/|beta| (C-EP), below a
beta that depends on the batch. ``--pool-ties first`` repeats the scan with the released code's
tie rule.

    python experiments/dchn_beta_scan.py [--pool-ties split|first] [--batch 32]
    python experiments/dchn_beta_scan.py --params experiments/results/study_cpu/fashion_mnist-p-ep-seed0   # trained
    python experiments/dchn_beta_scan.py --params RUN --float64   # rounding vs non-smoothness
"""
import argparse

import jax
import jax.numpy as jnp

from holoeb import dynamics, energy, readout
from holoeb.config import load_config
from holoeb.data.registry import load_dataset
from holoeb.diagnostics import tree_cosine, tree_relative_distance
from holoeb.errors import ConfigError
from holoeb.estimators import make_estimator
from holoeb.estimators.base import assemble_grads, rbp_delta
from holoeb.linear_solve import SolveConfig
from holoeb.models import make_model
from holoeb.params_io import load_run
from holoeb.solvers import Relaxation
from holoeb.time_resolved import free_fixed_point, frozen_free


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="experiments/gdu_dchn_narrow.json")
    ap.add_argument("--pool-ties", default=None, help="split (default) or first; not with --params (the run's own)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--T-free", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--params", help="a run directory: its model and latest parameters instead of an initialisation")
    ap.add_argument("--betas", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2, 5e-2, 0.25])
    ap.add_argument("--float64", action="store_true",
                    help="parameters, images and states in float64: separates float32 rounding from non-smoothness")
    ap.add_argument("--rule-betas", type=float, nargs="+", default=[0.05, 0.01, 0.002])
    args = ap.parse_args()
    try:  # a bad --rule-betas value is refused here, before any relaxation
        rules = {(rule, beta, K): frozen_free(make_estimator(rule, beta=beta, T_nudge=K))
                 for rule in ("p-ep", "n-ep", "c-ep") for beta in args.rule_betas for K in (15, 60)}
    except ConfigError as e:
        ap.error(f"--rule-betas: {e}")
    if args.float64:
        jax.config.update("jax_enable_x64", True)
    if args.params:
        if args.pool_ties is not None:
            ap.error("--pool-ties applies to an initialisation; a --params run keeps its own pool_ties")
        cfg, model, params = load_run(args.params)
    else:
        cfg = load_config(args.config)
        model = make_model(cfg.model.name, **dict(cfg.model.kwargs, pool_ties=args.pool_ties or "split"))
        params = model.init(jax.random.PRNGKey(args.seed))
    x, y = load_dataset(cfg.data.dataset, "test", model.input_shape, cfg.data.data_dir, args.batch, True).take(args.batch)
    dtype = jnp.float64 if args.float64 else jnp.float32
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
    batch = dynamics.Batch(jnp.asarray(x, dtype), jnp.asarray(y))
    u, res = free_fixed_point(model, params, batch.x, Relaxation(args.T_free))
    delta, _ = rbp_delta(model, params, batch, u, SolveConfig(1e-8, 20, 50))
    g_rbp = assemble_grads(model, params, batch, u, delta)["net"]
    net, y1 = params["net"], readout.one_hot(batch.y, model.num_classes, dtype)
    drive = model.drive(net, batch.x)

    def nudged(beta):
        upd = lambda s, g: energy.layer_update(model, net, s, drive, g, energy.nudged_output(y1, beta, model.cost_scale))
        return jax.jit(lambda: Relaxation(60).run_layers(upd, u, model.schedule).state)()

    print(f"DCHN {cfg.model.kwargs.get('channels')}, {args.params or 'init seed %d' % args.seed}, "
          f"pool_ties={model.pool_ties}, batch {args.batch}, {jnp.dtype(dtype).name}, "
          f"free residual {float(jnp.max(res)):.1e}\n")
    print("| beta | max \\|s_beta - s_*\\| | examples moved > 10 \\|beta\\| |\n|---|---|---|")
    for mag in args.betas:
        for beta in (mag, -mag):
            s = nudged(beta)
            per = jnp.sqrt(sum(jnp.sum((a - b).reshape(a.shape[0], -1) ** 2, 1) for a, b in zip(s, u)))
            print(f"| {beta:+.2g} | {float(jnp.max(per)):.2e} | {int(jnp.sum(per > 10 * abs(beta)))}/{args.batch} |", flush=True)
    print("\n| rule | beta | K = 15: rel. distance to RBP (cosine) | K = 60 |\n|---|---|---|---|")
    for rule in ("p-ep", "n-ep", "c-ep"):
        for beta in args.rule_betas:
            cells = []
            for K in (15, 60):
                est = rules[(rule, beta, K)]
                g = jax.jit(lambda p, b, u0: est(model, p, b, None, u0))(params, batch, u).grads["net"]
                cells.append(f"{float(tree_relative_distance(g, g_rbp)):.3g} ({float(tree_cosine(g, g_rbp)):.3f})")
            print(f"| {rule} | {beta} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
