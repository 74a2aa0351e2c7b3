"""`holoeb bias` (holoeb.bias_experiment): finite-nudge bias of every nudge-based estimator vs |beta|
(generalized hEP paper, Fig. 2a,b). Writes <out>/bias.json and <out>/bias.png.

Default settings are the paper figure's: the 2x256 reciprocal MLP on Fashion-MNIST
at initialisation, one symmetric (0 deg) and one asymmetric (90 deg: W_b independent
of W_f) panel, a batch of 100 validation images, |beta| = 5e-4 * 10^(k/3) up to 2.5 (12 points,
including 0.05 and 0.5):

    holoeb bias --out runs/bias_fmnist

Parameters can instead come from a checkpoint (``--params``): a run directory
(params.npz / params.pkl in it, or the orbax checkpoint via holoeb.checkpoint if
present; the model is rebuilt from its config.json) or a plain .npz (keys are
'/'-joined pytree paths, e.g. 'net/wf2', see `holoeb.params_io.save_params`) or a pickled pytree.
"""


def register(subparsers):
    p = subparsers.add_parser("bias", help="finite-nudge bias of every estimator vs |beta| (Fig. 2a,b): JSON + figure")
    p.add_argument("--out", default="runs/bias", help="output directory (bias.json, bias.png)")
    p.add_argument("--model", default="mlp", help="model name (holoeb.models registry)")
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--activation", default=None, help="activation name (model default if omitted)")
    p.add_argument("--asymmetry-deg", type=float, nargs="+", default=[0.0, 90.0],
                   help="initial forward/backward weight angles, one panel each (fresh initialisation)")
    p.add_argument("--params", default=None, help="checkpoint: run directory, .npz or .pkl (one panel)")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--num-batches", type=int, default=1)
    p.add_argument("--betas", type=float, nargs="+", default=None, help="explicit |beta| grid (overrides the log grid)")
    p.add_argument("--beta-min", type=float, default=5e-4)
    p.add_argument("--beta-max", type=float, default=2.5)
    p.add_argument("--per-decade", type=int, default=3, help="log-grid points per decade from --beta-min")
    p.add_argument("--estimators", nargs="+", default=None,
                   help="specs: ep ep-neg centered cauchy:N continuous:N:P or registered names (default: all)")
    p.add_argument("--max-N", type=int, default=8, help="Cauchy N = 1..max-N in the default list")
    p.add_argument("--continuous-N", type=int, default=4)
    p.add_argument("--periods", type=int, default=5, help="continuous estimate read after each of 1..P periods (0: skip)")
    p.add_argument("--steps-per-point", type=int, default=60)
    p.add_argument("--T-free", dest="T_free", type=int, default=200)
    p.add_argument("--free-tol", type=float, default=None)
    p.add_argument("--T-nudge", dest="T_nudge", type=int, default=50)
    p.add_argument("--solve-tol", type=float, default=1e-6)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args):
    from holoeb.bias_experiment import run_bias_experiment

    run_bias_experiment(
        args.out, model=args.model, hidden=args.hidden, activation=args.activation, asymmetry_deg=args.asymmetry_deg,
        params=args.params, dataset=args.dataset, data_dir=args.data_dir, split=args.split, batch_size=args.batch_size,
        num_batches=args.num_batches, betas=args.betas, beta_min=args.beta_min, beta_max=args.beta_max,
        per_decade=args.per_decade, estimators=args.estimators, max_N=args.max_N, continuous_N=args.continuous_N,
        periods=args.periods, steps_per_point=args.steps_per_point, T_free=args.T_free, free_tol=args.free_tol,
        T_nudge=args.T_nudge, solve_tol=args.solve_tol, dtype=args.dtype, seed=args.seed)
    return 0
