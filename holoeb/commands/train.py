"""`holoeb train`: train a model with any estimator on a config (holoeb.config.TrainConfig)."""
import os
import time

from holoeb.config import load_config, to_json

SHORTCUTS = {
    # flag: (config path, type)
    "estimator": ("estimator.name", str),
    "N": ("estimator.N", int),
    "beta": ("estimator.beta", float),
    "T_free": ("estimator.T_free", int),
    "T_nudge": ("estimator.T_nudge", int),
    "epochs": ("training.epochs", int),
    "seed": ("training.seed", int),
    "batch_size": ("training.batch_size", int),
    "lr": ("optimizer.learning_rate", float),
    "lambda_homeo": ("homeostasis.lambda", float),
    "asymmetry": ("model.asymmetry", float),
    "train_size": ("data.train_size", int),
    "val_size": ("data.val_size", int),
    "data_dir": ("data.data_dir", str),
}

ESTIMATOR_ONLY = {"N", "beta", "T_nudge"}


def register(subparsers):
    p = subparsers.add_parser("train", help="train a network with a gradient estimator; writes a run directory")
    p.add_argument("--config", help="JSON config (see experiments/); defaults: holoeb.config.TrainConfig")
    for flag, (_, typ) in SHORTCUTS.items():
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, type=typ, default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config entry, e.g. --set optimizer.name=adam")
    p.add_argument("--out", help="run directory (default runs/<config>-<estimator>-<time>)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--stop-after-epochs", type=int, default=None, metavar="N",
                   help="end after N epochs of this call (metrics and checkpoint written; the learning-rate schedule "
                        "still spans training.epochs); the same command again resumes the run")
    p.set_defaults(func=run)


def run(args):
    from holoeb.errors import UsageExit

    overrides = {}
    for flag, (path, _) in SHORTCUTS.items():
        v = getattr(args, flag)
        if v is not None:
            overrides[path] = v
    if args.estimator and args.estimator != "cauchy":
        # drop hyper-parameters the new estimator does not take (e.g. N for ep)
        from holoeb.config import DEFAULTS
        from holoeb.estimators import ESTIMATORS, estimator_fields

        if args.estimator not in ESTIMATORS:
            raise UsageExit(f"unknown estimator {args.estimator!r}; choose one of {sorted(ESTIMATORS)}")
        allowed = set(estimator_fields(args.estimator)) | {"name"}
        explicit = {f for f in ESTIMATOR_ONLY if getattr(args, f) is not None}
        bad = sorted(f for f in explicit if f not in allowed)
        if bad:
            raise UsageExit(f"estimator {args.estimator!r} does not take {bad}")
        base = load_config(args.config).estimator.to_dict() if args.config else dict(DEFAULTS["estimator"])
        est = {k: v for k, v in base.items() if k in allowed}
        est.update({p.split(".", 1)[1]: overrides.pop(p) for p in list(overrides) if p.startswith("estimator.")})
        overrides = {"estimator": est, **overrides}
    cfg = load_config(args.config, overrides, sets=args.set)
    if args.print_config:
        print(to_json(cfg))
        return 0
    from holoeb.training import train

    name = os.path.splitext(os.path.basename(args.config or "default"))[0]
    out = args.out or os.path.join("runs", f"{name}-{cfg.estimator.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    print(f"run directory: {out}")
    history = train(cfg, out, progress=not args.no_progress, stop_after_epochs=args.stop_after_epochs)
    last = history[-1]
    done = "final" if last["epoch"] == cfg.training.epochs else "latest"
    print(f"{done} validation error {last['val_error']:.2f}% after {last['epoch']} of {cfg.training.epochs} epochs "
          f"-> {out}/metrics.json, curves.png")
