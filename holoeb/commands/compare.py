"""`holoeb compare` (Tables 1-2: final validation error, mean +/- std over seeds, and an
overlaid plot) and `holoeb plot-runs` (Figs. 3-4: training dynamics of several runs
overlaid, mean +/- std over seeds). Runs differing only by seed are grouped.

    holoeb compare runs/a-s0 runs/a-s1 runs/b-s0 runs/b-s1 --out runs/compare
    holoeb plot-runs runs/a-s* runs/b-s* --out runs/dynamics.png
"""
import os


def _common(p):
    p.add_argument("runs", nargs="+", help="run directories (each with metrics.json)")
    p.add_argument("--label-by", nargs="+", default=None, metavar="KEY",
                   help="config entries naming the groups, e.g. estimator.name model.asymmetry (default: those that differ)")
    p.add_argument("--ignore", nargs="+", default=(), metavar="KEY",
                   help="config entries that do not split groups, e.g. training.eval_batch_size (the seed never does)")


def register(subparsers):
    p = subparsers.add_parser("compare", help="table of final validation errors (mean +/- std over seeds) + overlaid plot")
    _common(p)
    p.add_argument("--out", default="runs/compare", help="output directory (compare.md, compare.json, compare.png)")
    p.set_defaults(func=run_compare)
    q = subparsers.add_parser("plot-runs", help="training dynamics of several runs overlaid (Figs. 3-4)")
    _common(q)
    q.add_argument("--out", default="runs/dynamics.png", help="figure path")
    q.add_argument("--title", default="")
    q.set_defaults(func=run_plot_runs)


def _groups(args):
    from holoeb.run_plots import group_runs, load_run

    return group_runs([load_run(d) for d in args.runs], args.label_by, args.ignore)


def run_compare(args):
    from holoeb.reports import write_report
    from holoeb.run_plots import compare_table, format_table, plot_compare

    groups = _groups(args)
    rows = compare_table(groups)
    table = format_table(rows)
    write_report(os.path.join(args.out, "compare"), table, rows)
    plot_compare(rows, groups, os.path.join(args.out, "compare.png"))
    print(table)
    print(f"wrote {args.out}/compare.md, compare.json, compare.png")
    return 0


def run_plot_runs(args):
    from holoeb.run_plots import plot_runs

    groups = _groups(args)
    d = os.path.dirname(args.out)
    if d:
        os.makedirs(d, exist_ok=True)
    plot_runs(groups, args.out, args.title)
    print(f"wrote {args.out} ({len(groups)} group(s): {', '.join(f'{k} n={len(v)}' for k, v in groups.items())})")
    return 0
