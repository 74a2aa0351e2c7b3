"""Dense Hopfield 784-2048-10 trained by optimistic / pessimistic / centered Aeqprop on
Fashion-MNIST (Agnostic-EqProp paper, Section 5.3), CPU protocol of experiments/aeqprop_fmnist.json.

    python experiments/aeqprop_fmnist.py --config experiments/aeqprop_fmnist.json --out runs/aeqprop_fmnist
(same as `holoeb aeqprop-fmnist`)."""
import sys

from holoeb.cli import main

if __name__ == "__main__":
    sys.exit(main(["aeqprop-fmnist"] + sys.argv[1:]))
