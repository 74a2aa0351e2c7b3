"""holoeb command line: `holoeb <command> ...` (see `holoeb --help`)."""
import argparse
import importlib
import sys

COMMAND_MODULES = [
    "holoeb.commands.train",
    "holoeb.commands.bias",
    "holoeb.commands.alignment",
    "holoeb.commands.compare",
    "holoeb.commands.aeqprop",
    "holoeb.commands.study",
    "holoeb.commands.gdu",
]


def build_parser():
    parser = argparse.ArgumentParser(prog="holoeb", description="energy-based learning in JAX")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None):
    from holoeb.errors import HoloebError, UsageExit

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (HoloebError, ValueError, FileNotFoundError) as e:
        if args.debug:
            raise
        print(f"holoeb: error: {e}", file=sys.stderr)
        return 2
    except UsageExit as e:  # exits with status 2 after this one line
        print(f"holoeb: error: {e}", file=sys.stderr)
        raise


if __name__ == "__main__":
    sys.exit(main())
