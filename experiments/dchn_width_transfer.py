"""How far one SGD step moves the DCHN's free state, at the comparative study's full width
(channels 128-256-512-512) and at the CPU protocol's 1/8 width (16-32-64-64), at the paper's
gain 0.5 and per-layer learning rates (Scellier, Ernoult, Kendall, Kumar, arXiv:2312.15103,
App. D, Table 5).

With the standard ("fan-in") parametrisation, w ~ U(-a/sqrt(fan_in), a/sqrt(fan_in)), the
states at initialisation have the same statistics at every width, but an SGD step changes a
pre-activation z = sum_i w_i s_i by lr * sum_i s_i * dL/dz_i-terms, i.e. by an amount that
grows with fan_in. Layers 2-5 of the narrow network have 8x smaller fan-in than the paper's,
so this argument predicts up to 8x less movement per step at the paper's learning rates
(measured: 1.4-3.7x, since the gradients change with the width too); layer 1's fan-in
(9 x input channels) does not depend on the width. This script measures it: for the same images, it
takes one plain SGD step (the first step of SGD with momentum) along TBP's gradient and
reports the relative change of every layer's free state, ||s'_k - s_k|| / ||s_k||, and of
the loss, for the full width with the paper's rates and the narrow width with the paper's
rates scaled per layer by a factor (e.g. 1 and 8 for layers 2-5).

    python experiments/dchn_width_transfer.py --batch 32 --seeds 0 1 --scales 1 8 --out experiments/results/dchn_width_transfer.md
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from holoeb import dynamics, study, training
from holoeb.config import as_train_config
from holoeb.data.registry import load_dataset
from holoeb.optim import base_lr_tree

def one_step(channels, scale, seed, batch, gain):
    """(loss, loss after the step, per-layer relative state change, seconds) of one plain SGD
    step along TBP's gradient, with the study's per-layer rates of layers 2-5 times ``scale``."""
    lrs = study.StudyConfig.lrs
    sets = [f"channels={list(channels)}", f"gains=[{gain}]", f"lrs={[lrs[0]] + [lr * scale for lr in lrs[1:]]}"]
    cfg = as_train_config(study.train_config(study.load_study_config("cpu", sets=sets), "tbp", "fashion_mnist", seed))
    model, est = training.build(cfg)
    params = model.init(jax.random.split(jax.random.PRNGKey(seed))[1])  # the training loop's init key
    eta = base_lr_tree(cfg.optimizer, params)  # the trainer's per-parameter rates (layer_lrs)

    @jax.jit
    def measure(params):
        res = est(model, params, batch, jax.random.PRNGKey(0))
        new = jax.tree_util.tree_map(lambda v, g, e: v - e * g, params, res.grads, eta)
        free_new, _ = est.free_phase(model, new, batch.x)
        loss_new = dynamics.loss_at(model, new, free_new.state, batch.y)
        rel = [jnp.linalg.norm(a - b) / jnp.linalg.norm(b) for a, b in zip(free_new.state, res.free_state)]
        return res.loss, loss_new, jnp.stack(rel)

    t = time.time()
    loss, loss_new, rel = jax.device_get(measure(params))
    return float(loss), float(loss_new), np.asarray(rel), time.time() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 8.0],
                    help="factors on the narrow network's learning rates of layers 2-5")
    ap.add_argument("--gain", type=float, default=0.5)
    ap.add_argument("--out", default=None, help="also write the table to this markdown file")
    args = ap.parse_args()
    if args.batch < 1 or not args.seeds or any(s <= 0 for s in args.scales) or args.gain <= 0:
        ap.error("--batch >= 1, --seeds non-empty, --scales > 0 and --gain > 0")
    cases = [("full 128-256-512-512", (128, 256, 512, 512), 1.0)]
    cases += [(f"narrow 16-32-64-64, lr x{s:g} (layers 2-5)", (16, 32, 64, 64), s) for s in args.scales]
    # both widths take the same input: load the images once
    shape = training.build(study.train_config(study.load_study_config("cpu"), "tbp", "fashion_mnist", 0))[0].input_shape
    x, y = load_dataset("fashion_mnist", "train", shape, None, args.batch, True).take(args.batch)
    batch = dynamics.Batch(jnp.asarray(x), jnp.asarray(y))
    rows = []
    for label, channels, scale in cases:
        out = [one_step(channels, scale, seed, batch, args.gain) for seed in args.seeds]
        rel = np.mean([o[2] for o in out], 0)
        dl = np.mean([(o[1] - o[0]) / o[0] for o in out])
        rows.append(f"| {label} | {np.mean([o[0] for o in out]):.3f} | {100 * dl:+.2f} | "
                    + " | ".join(f"{r:.2e}" for r in rel) + f" | {np.mean([o[3] for o in out]):.0f} |")
        print(rows[-1], flush=True)
    head = (f"One SGD step along TBP's gradient (K = 15, T = 60), gain {args.gain:g}, Table 5 learning rates, "
            f"{args.batch} Fashion-MNIST training images, mean over seeds {args.seeds}.\n\n"
            "| network | loss | loss change (%) | " + " | ".join(f"rel. change s{k}" for k in range(1, 6))
            + " | s |\n|---|---|---|" + "---|" * 6)
    table = head + "\n" + "\n".join(rows) + "\n"
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
