"""Time one C-EP training step of the DCHN in the reference PyTorch code.

One step = the free phase (60 async iterations), the two nudged phases (+beta, -beta;
15 async iterations each), the parameter gradients and the SGD update, as the
reference's `Trainer.run` does for one mini-batch with the settings of
papers/ebl-algorithms/comparative-study.py. The reference code
(rain-neuromorphics/energy-based-learning) is imported from the path given; see
Scellier et al., "Energy-based learning algorithms for analog computing: a comparative
study", arXiv:2312.15103. Compare with experiments/benchmark_dchn.py.

    /tmp/torchvenv/bin/python experiments/benchmark_dchn_reference.py /tmp/ebl \\
        --channels 16 32 64 64 --size 28 --batch 128 --repeats 3
"""
import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import time
import types


def import_reference(ref):
    """The reference's classes, and its `build_gradient_estimator` (taken from the study's
    script by parsing it, since the script parses argv and loads data when imported)."""
    sys.path.insert(0, os.path.abspath(ref))
    import torch
    try:
        import torch.utils.tensorboard  # noqa: F401  (training.monitor imports SummaryWriter)
    except ImportError:  # only Optimizer is used from training.monitor
        stub = types.ModuleType("torch.utils.tensorboard")
        stub.SummaryWriter = object
        sys.modules["torch.utils.tensorboard"] = stub
    from model.hopfield.network import ConvHopfieldEnergy32
    from model.function.network import Network
    from model.function.cost import SquaredError
    from model.hopfield.minimizer import FixedPointMinimizer
    from training.sgd import EquilibriumProp, ContrastiveLearning, Backprop, RecurrentBackprop, AugmentedFunction
    from training.monitor import Optimizer

    script = os.path.join(ref, "papers", "ebl-algorithms", "comparative-study.py")
    with open(script) as f:
        tree = ast.parse(f.read(), script)
    fn = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build_gradient_estimator"]
    namespace = dict(FixedPointMinimizer=FixedPointMinimizer, EquilibriumProp=EquilibriumProp,
                     ContrastiveLearning=ContrastiveLearning, Backprop=Backprop,
                     RecurrentBackprop=RecurrentBackprop, AugmentedFunction=AugmentedFunction)
    exec(compile(ast.Module(body=fn, type_ignores=[]), script, "exec"), namespace)
    return types.SimpleNamespace(torch=torch, ConvHopfieldEnergy32=ConvHopfieldEnergy32, Network=Network,
                                 SquaredError=SquaredError, FixedPointMinimizer=FixedPointMinimizer,
                                 Optimizer=Optimizer, namespace=namespace)


def build(R, args):
    """The network, cost, estimator, optimiser and inference minimiser of comparative-study.py."""
    energy_fn = R.ConvHopfieldEnergy32(args.in_channels, args.classes, *args.channels, weight_gains=[args.gain] * 5)
    energy_fn.set_device(args.device)
    cost_fn = R.SquaredError(energy_fn.layers()[-1])
    network = R.Network(energy_fn)
    R.namespace["network"] = network  # the script's build_gradient_estimator reads the global `network`
    minimizer_training, estimator = R.namespace["build_gradient_estimator"](
        energy_fn, cost_fn, "CEP", args.beta, args.T_nudge)
    learning_rates = [0.0625, 0.0375, 0.025, 0.02, 0.0125] * 2  # biases then weights
    optimizer = R.Optimizer(energy_fn, cost_fn, learning_rates, 0.9, 3e-4)
    minimizer_inference = R.FixedPointMinimizer(energy_fn, network.free_layers())
    minimizer_inference.num_iterations = args.T
    params = energy_fn.params() + cost_fn.params()
    return network, cost_fn, estimator, optimizer, minimizer_inference, minimizer_training, params


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ref", help="checkout of rain-neuromorphics/energy-based-learning")
    p.add_argument("--channels", type=int, nargs=4, default=[128, 256, 512, 512])
    p.add_argument("--size", type=int, default=32, choices=[28, 32],
                   help="28: Fashion-MNIST-sized input, zero-padded to 32 as the study's data loader does")
    p.add_argument("--in-channels", type=int, default=None, help="default 1 for --size 28, 3 for --size 32")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--T", type=int, default=60, help="free-phase iterations")
    p.add_argument("--T-nudge", dest="T_nudge", type=int, default=15, help="iterations of each nudged phase")
    p.add_argument("--beta", type=float, default=0.25)
    p.add_argument("--gain", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=3, help="timed steps after the first")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args()
    if args.in_channels is None:
        args.in_channels = 1 if args.size == 28 else 3

    R = import_reference(args.ref)
    torch = R.torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    network, cost_fn, estimator, optimizer, inference, training, params = build(R, args)

    pad = (32 - args.size) // 2  # torchvision.transforms.Pad(2) for 28 x 28 images
    batches = []
    for _ in range(args.repeats + 1):
        x = torch.randn(args.batch, args.in_channels, args.size, args.size)
        x = torch.nn.functional.pad(x, (pad, pad, pad, pad)).to(args.device)
        y = torch.randint(0, args.classes, (args.batch,))
        batches.append((x, y))

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def step(x, y):
        """The body of the reference's Trainer.run for one mini-batch, less its statistics."""
        t0 = time.perf_counter()
        network.set_input(x, reset=False)
        inference.compute_equilibrium()
        cost_fn.set_target(y)
        sync()
        t1 = time.perf_counter()
        grads = estimator.compute_gradient()
        sync()
        t2 = time.perf_counter()
        for param, grad in zip(params, grads):
            param.state.grad = grad
        optimizer.step()
        for param in params:
            param.clamp_()
        sync()
        t3 = time.perf_counter()
        return t3 - t0, t1 - t0, t2 - t1, t3 - t2

    first = step(*batches[0])
    timed = [step(*b) for b in batches[1:]]
    med = [statistics.median(t[i] for t in timed) if timed else None for i in range(4)]

    try:
        commit = subprocess.run(["git", "-C", args.ref, "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    result = {
        "reference": "rain-neuromorphics/energy-based-learning",
        "reference_commit": commit,
        "network": "ConvHopfieldEnergy32 (3x3 conv, padding 1, 2x2 max pooling, hard-sigmoid, dense output)",
        "rule": "CEP (EquilibriumProp, variant=centered, AugmentedFunction, SquaredError)",
        "channels": args.channels, "input_size": args.size, "network_input": [args.in_channels, 32, 32],
        "batch": args.batch, "T_free": inference.num_iterations, "T_nudge": training.num_iterations,
        "nudgings": [estimator._first_nudging, estimator._second_nudging],
        "mode": inference.mode, "mode_nudged": training.mode,
        "optimizer": str(optimizer), "device": args.device,
        "first_step_s": first[0], "repeats": len(timed), "median_step_s": med[0],
        "median_free_s": med[1], "median_nudged_and_grads_s": med[2], "median_update_s": med[3],
        "steps_s": [t[0] for t in timed],
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"| reference PyTorch C-EP | {'-'.join(map(str, args.channels))} | {args.size} | {args.batch} "
          f"| first {fmt(first[0])} s | median {fmt(med[0])} s (free {fmt(med[1])}, nudged+grads {fmt(med[2])}, "
          f"update {fmt(med[3])}) | torch {torch.__version__} | {torch.get_num_threads()} threads |")


if __name__ == "__main__":
    main()
