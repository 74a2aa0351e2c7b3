"""`holoeb gdu` (holoeb.time_resolved.run_time_resolved_experiment): time-resolved gradient
check (GDU property, Ernoult et al. 2019, arXiv:1905.13633): each EP-family rule cut after k nudged iterations (continuous: k iterations per nudge point)
against truncated BP through k iterations, k = 1..K, on one batch (holoeb.time_resolved).
Writes <out>/gdu.json and <out>/gdu.png.

    holoeb gdu --config experiments/fmnist_mlp.json --out runs/gdu_mlp          # MLP at init
    holoeb gdu --params runs/main_job --out runs/gdu_mlp_trained                 # trained params
    holoeb gdu --config experiments/gdu_dchn_narrow.json --out runs/gdu_dchn     # narrow DCHN

Rules default to the family the model runs (EP, Cauchy N, continuous on holomorphic models;
EP and the seven energy rules on energy models); --rules takes specs 'name' or
'name:key=value,...' (e.g. cauchy:N=2 c-ep:beta=0.1).
"""


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
    from holoeb.time_resolved import run_time_resolved_experiment

    run_time_resolved_experiment(args.out, config=args.config, params=args.params, rules=args.rules, beta=args.beta,
                                 N=args.N, K=args.K, T_free=args.T_free, batch_size=args.batch_size,
                                 data_dir=args.data_dir, seed=args.seed)
    return 0
