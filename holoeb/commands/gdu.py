"""`holoeb gdu`: time-resolved gradient check (GDU property, Ernoult et al. 2019,
arXiv:1905.13633): each EP-family rule cut after k nudged iterations (continuous: k iterations per nudge point)
against truncated BP through k iterations, k = 1..K, on one batch (holoeb.time_resolved).
Writes <out>/gdu.json and <out>/gdu.png.

    holoeb gdu --config experiments/fmnist_mlp.json --out runs/gdu_mlp          # MLP at init
    holoeb gdu --params runs/main_job --out runs/gdu_mlp_trained                 # trained params
    holoeb gdu --config experiments/gdu_dchn_narrow.json --out runs/gdu_dchn     # narrow DCHN

Rules default to the family the model runs (EP, Cauchy N, continuous on holomorphic models;
EP and the seven energy rules on energy models); --rules takes specs 'name' or
'name:key=value,...' (e.g. cauchy:N=2 c-ep:beta=0.1).
"""
import json
import os
import time


def register(subparsers):
    p = subparsers.add_parser("gdu", help="time-resolved gradient check: rules after k nudged steps vs TBP(k)")
    p.add_argument("--config", default=None, help="training config JSON (model and data sections)")
    p.add_argument("--params", default=None, help="run directory (its config.json and checkpoint) instead of --config")
    p.add_argument("--rules", nargs="+", default=None, help="rule specs (default: the EP family the model runs)")
    p.add_argument("--beta", type=float, default=0.05, help="nudge of rules given without one")
    p.add_argument("--N", type=int, default=6, help="Cauchy points in the default rule list")
    p.add_argument("--K", type=int, default=20, help="largest k")
    p.add_argument("--T-free", dest="T_free", type=int, default=300, help="free iterations to the fixed point")
    p.add_argument("--batch-size", type=int, default=32, help="examples of the test split (the first ones)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=0, help="initialisation seed (without --params)")
    p.add_argument("--out", default="runs/gdu")
    p.set_defaults(func=run)


def run(args):
    import jax

    from holoeb.config import load_config
    from holoeb.data.registry import load_dataset
    from holoeb.errors import ConfigError
    from holoeb.models import make_model
    from holoeb.params_io import load_run
    from holoeb.solvers import Relaxation
    from holoeb.time_resolved import default_rules, parse_rules, plot_time_resolved, time_resolved_check

    if args.K < 1 or args.T_free < 1 or args.batch_size < 1:
        raise ConfigError(f"--K, --T-free and --batch-size must be >= 1, got {args.K}, {args.T_free}, {args.batch_size}")
    rules = parse_rules(args.rules, args.beta) if args.rules else None  # bad specs fail before any loading
    if args.params:
        cfg, model, params = load_run(args.params)
    else:
        cfg = load_config(args.config)
        model = make_model(cfg.model.name, **cfg.model.kwargs)
        params = model.init(jax.random.PRNGKey(args.seed))
    ds = load_dataset(cfg.data.dataset, "test", model.input_shape, args.data_dir or cfg.data.data_dir, args.batch_size,
                      cfg.data.normalize)
    x, y = ds.take(args.batch_size)
    rules = rules or default_rules(model, args.beta, args.N)
    t0 = time.time()
    out = time_resolved_check(model, params, (jax.numpy.asarray(x), jax.numpy.asarray(y)), rules, args.K,
                              Relaxation(args.T_free, schedule=None))
    out["settings"] = dict(model={"name": cfg.model.name, **cfg.model.kwargs},
                           params=args.params or f"init seed {args.seed}", beta=args.beta, K=args.K, T_free=args.T_free,
                           batch_size=args.batch_size, rules={k: repr(v) for k, v in rules.items()},
                           time_s=time.time() - t0)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gdu.json"), "w") as f:
        json.dump(out, f, indent=1)
    title = f"{cfg.model.name} ({'trained: ' + args.params if args.params else 'init'}), batch {args.batch_size}"
    plot_time_resolved(out, os.path.join(args.out, "gdu.png"), title)
    print(f"free residual {out['free_residual']:.2e}; rel. distance to TBP(k) at k = 1, K/2, K "
          f"and to RBP at K; per-layer error cosine to TBP(K) on active units:")
    for label in rules:
        r = out[label]["rel_tbp"]
        act = "/".join(f"{c:.3f}" for c in out[label]["error_cosine_tbp_active"][-1])
        print(f"  {label:14s} {r[0]:.3g}  {r[len(r) // 2]:.3g}  {r[-1]:.3g}   | RBP {out[label]['rel_rbp'][-1]:.3g}"
              f"   | error cos {act}")
    print(f"  {'tbp':14s} to RBP at k = 1, K: {out['tbp']['rel_rbp'][0]:.3g}  {out['tbp']['rel_rbp'][-1]:.3g}")
    print(f"wrote {args.out}/gdu.json and gdu.png ({time.time() - t0:.0f} s)")
