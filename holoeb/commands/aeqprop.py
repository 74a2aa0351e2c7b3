"""`holoeb aeqprop-linreg` and `holoeb aeqprop-fmnist`: the experiments of the Agnostic-EqProp
paper (Section 5.2, Figs. 2-3; Section 5.3, dense Hopfield on Fashion-MNIST).

    holoeb aeqprop-linreg --out runs/aeqprop_linreg      # fig2_<mode>.png, fig3_<mode>.png, results.json
    holoeb aeqprop-fmnist --out runs/aeqprop_fmnist      # results.json, fmnist.png (test error per variant)
"""


def register(subparsers):
    p = subparsers.add_parser("aeqprop-linreg", help="Aeqprop linear regression (Figs. 2 and 3 of the Aeqprop paper)")
    p.add_argument("--out", default="runs/aeqprop_linreg")
    p.add_argument("--modes", nargs="+", default=["gradient", "exact"], choices=["gradient", "exact"],
                   help="gradient: the paper's simulation (Eqs. 14-17, iterative controller); exact: block-exact")
    p.add_argument("--steps", type=int, default=50, help="relaxation steps per phase (paper: 50)")
    p.add_argument("--samples", type=int, default=1000, help="samples for Fig. 2 (paper: 1000)")
    p.add_argument("--samples-fig3", type=int, default=5000, help="samples for Fig. 3 (paper: 5000)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_linreg)

    from holoeb.aeqprop_experiments import FMNIST_DEFAULTS as DEFAULTS

    q = subparsers.add_parser("aeqprop-fmnist", help="dense Hopfield 784-2048-10 trained by Aeqprop on Fashion-MNIST")
    q.add_argument("--out", default="runs/aeqprop_fmnist")
    q.add_argument("--config", default=None, help="JSON file overriding the defaults below")
    q.add_argument("--variants", nargs="+", default=["optimistic", "pessimistic", "centered"])
    q.add_argument("--data-dir", default=None)
    for k, v in DEFAULTS.items():
        q.add_argument("--" + k.replace("_", "-"), dest=k, type=type(v), default=None, help=f"default {v}")
    q.set_defaults(func=run_fmnist)


def run_linreg(args):
    from holoeb.aeqprop_experiments import run_linreg_experiment

    run_linreg_experiment(args.out, args.modes, args.steps, args.samples, args.samples_fig3, args.seed)
    return 0


def fmnist_config(args):
    """The defaults, overridden by --config (JSON) and then by the command-line flags."""
    from holoeb.aeqprop_experiments import FMNIST_DEFAULTS as DEFAULTS
    from holoeb.config import read_json_object
    from holoeb.errors import ConfigError

    cfg = dict(DEFAULTS)
    if args.config:
        overrides = read_json_object(args.config, "aeqprop-fmnist config")
        unknown = sorted(set(overrides) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"{args.config}: unknown key(s) {unknown}; aeqprop-fmnist takes {sorted(DEFAULTS)}")
        cfg.update(overrides)
    cfg.update({k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None})
    return cfg


def run_fmnist(args):
    from holoeb.aeqprop_experiments import run_fmnist_experiment

    run_fmnist_experiment(args.out, fmnist_config(args), args.variants, args.data_dir)
    return 0
