"""Aeqprop linear regression (Agnostic-EqProp paper, Section 5.2, Figs. 2 and 3).

    python experiments/aeqprop_linear_regression.py --out runs/aeqprop_linreg
(same as `holoeb aeqprop-linreg`; see holoeb/commands/aeqprop.py for the options)."""
import sys

from holoeb.cli import main

if __name__ == "__main__":
    sys.exit(main(["aeqprop-linreg"] + sys.argv[1:]))
