"""`holoeb study`: the comparative study grid (Table 1) — argument parsing only; the
study itself is holoeb.study (each (rule, dataset, seed) is a holoeb.training.train run)."""
import argparse
import dataclasses
import json
import os

from holoeb.errors import ConfigError
from holoeb.study import PROTOCOLS, load_study_config, run_study, write_summary


def config_from_args(args):
    """StudyConfig from the parsed arguments (protocol <- --config <- --set <- --data-dir / --out-dir)."""
    overrides = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    if getattr(args, "out_dir", None):
        overrides["out_dir"] = args.out_dir
    cfg = load_study_config(args.protocol, args.config, sets=args.set or ())
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


def add_arguments(p):
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cpu")
    p.add_argument("--config", help="JSON file of StudyConfig fields")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field (JSON value), repeatable")
    p.add_argument("--data-dir", help="TFDS data_dir (MNIST, SVHN, CIFAR) or a Fashion-MNIST IDX directory")
    p.add_argument("--out-dir")
    p.add_argument("--print-config", action="store_true", help="print the resolved study config as JSON and exit")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--summarize", action="store_true",
                   help="train nothing: write table.md and results.json from the runs already in the output directory")


def main_from_args(args):
    cfg = config_from_args(args)
    if args.print_config:
        print(json.dumps(dataclasses.asdict(cfg), indent=2))
        return 0
    if args.summarize:
        if not os.path.isdir(cfg.out_dir):
            raise ConfigError(f"--summarize: no study in {cfg.out_dir!r} (it does not exist)")
        _, md = write_summary(cfg)
    else:
        _, md = run_study(cfg, progress=not args.no_progress)
    print(md)


def register(subparsers):
    p = subparsers.add_parser("study", help="comparative study of the energy-based rules (Table 1)")
    add_arguments(p)
    p.set_defaults(func=main_from_args)


def main(argv=None):
    import holoeb.study

    p = argparse.ArgumentParser(description=holoeb.study.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return main_from_args(p.parse_args(argv))


if __name__ == "__main__":
    main()
