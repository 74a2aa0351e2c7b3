"""Comparative study of the seven energy-based rules + TBP + RBP (Table 1).

    python experiments/comparative_study.py                       # CPU protocol: narrow DCHN, FMNIST 10k, 4 epochs
    python experiments/comparative_study.py --protocol paper --data-dir ~/tensorflow_datasets
    python experiments/comparative_study.py --config experiments/comparative_study_dense.json   # dense Hopfield

Same as `holoeb study ...`. Writes <out_dir>/table.md and <out_dir>/results.json.
"""
import sys

from holoeb.commands.study import main

if __name__ == "__main__":
    sys.exit(main())
