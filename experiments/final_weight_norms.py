"""Final weight norms of a study's runs, per rule, and the one-sided ordering P > C > N.

A one-sided energy-based rule estimates the gradient with a forward difference in beta; its bias of
order beta carries, for every coupling W between layers i and j, the Hebbian term
+lr beta (ds_i/dbeta)(ds_j/dbeta)^T (see ``experiments/one_sided_norm_growth.py``): it grows the
weights for P rules (beta > 0), shrinks them for N rules (beta < 0) and cancels in the centered C rules
(comparative study, Scellier, Ernoult, Kendall, Kumar, arXiv:2312.15103, Sec. 3 and Eq. 97). This
script reads the ``weight_norm.wK`` column of each run's metrics.csv (last epoch) and prints, per
rule, mean +- sample std over seeds, then for each family (EP, CpL) and weight on how many seeds
||W||_P > ||W||_C and ||W||_C > ||W||_N.

    python experiments/final_weight_norms.py experiments/results/study_cpu_12ep \\
        --out experiments/results/p_cpl_collapse/final_weight_norms_12ep.md
"""
import argparse
import csv
import glob
import os
import re

import numpy as np

RULE_ORDER = ["tbp", "rbp", "cl", "p-ep", "c-ep", "n-ep", "p-cpl", "c-cpl", "n-cpl"]


def final_norms(study_dir):
    """{rule: {seed: {weight: norm}}} from the last row of every RUN/metrics.csv under study_dir."""
    out = {}
    for path in sorted(glob.glob(os.path.join(study_dir, "*-seed*", "metrics.csv"))):
        m = re.match(r".*?-(?P<rule>[a-z-]+)-seed(?P<seed>\d+)$", os.path.basename(os.path.dirname(path)))
        if m is None:
            continue
        with open(path) as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        last = rows[-1]
        norms = {k.split(".", 1)[1]: float(v) for k, v in last.items()
                 if k.startswith("weight_norm.w") and v not in ("", None)}
        out.setdefault(m["rule"], {})[int(m["seed"])] = norms
    return out


def table(norms):
    weights = sorted({w for r in norms.values() for s in r.values() for w in s}, key=lambda w: int(w[1:]))
    rules = [r for r in RULE_ORDER if r in norms] + sorted(set(norms) - set(RULE_ORDER))
    lines = ["| rule | seeds | " + " | ".join(f"||{w}||" for w in weights) + " |",
             "|---|---|" + "---|" * len(weights)]
    for r in rules:
        cells = []
        for w in weights:
            v = np.array([s[w] for s in norms[r].values() if w in s])
            cells.append(f"{v.mean():.2f} +- {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f}")
        lines.append(f"| {r.upper()} | {len(norms[r])} | " + " | ".join(cells) + " |")
    lines += ["", "Seeds (of those where all three rules finished) with ||W||_P > ||W||_C, and with ||W||_C > ||W||_N, "
              "at the end of training:", "",
              "| family | order | " + " | ".join(weights) + " |", "|---|---|" + "---|" * len(weights)]
    for fam in ("ep", "cpl"):
        p, c, n = (norms.get(f"{k}-{fam}", {}) for k in "pcn")
        seeds = sorted(set(p) & set(c) & set(n))
        if not seeds:
            continue
        for name, hi, lo in (("P > C", p, c), ("C > N", c, n)):
            cells = [f"{sum(hi[s][w] > lo[s][w] for s in seeds)} of {len(seeds)}" for w in weights]
            lines.append(f"| {fam.upper()} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study_dir", help="a study output directory with one RULE-seedK run directory per run")
    ap.add_argument("--out", help="write the table to this markdown file as well")
    args = ap.parse_args()
    norms = final_norms(args.study_dir)
    if not norms:
        ap.error(f"no RULE-seedK run directories with a metrics.csv under {args.study_dir!r}")
    text = (f"Final weight norms (last epoch, mean +- sample std over seeds) of the runs in `{args.study_dir}`\n\n"
            + table(norms))
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
