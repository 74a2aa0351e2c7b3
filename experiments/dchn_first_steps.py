"""The first training steps of one rule of the comparative study on the DCHN, step by step:
loss and accuracy of the batch, and per hidden layer the fraction of units the hard sigmoid
clamps at 0 and at 1 in the free state, the norm of the rule's gradient and of the applied
update (SGD with momentum, weight decay, per-layer learning rates: the study's optimizer, with
its warm start). It shows how a network dies: once (almost) every unit of a layer sits in
the clamp, sigma' = 0 there, the output no longer depends on the layers below and every
hidden error vector is zero (Scellier, Ernoult, Kendall, Kumar, arXiv:2312.15103, Eq. 98).

    python experiments/dchn_first_steps.py --rule tbp --steps 12 --set gains=[1.0] --out experiments/results/dchn_first_steps/tbp_gain1
    python experiments/dchn_first_steps.py --rule tbp --steps 12 --set gains=[0.5] --out .../tbp_gain05

writes OUT.md (the table) and OUT.png (fractions clamped at 0 and loss against the step).
Settings are the CPU study protocol's (``holoeb study --print-config``), changed with --set.
"""
import argparse

import jax
import jax.numpy as jnp
import numpy as np

from holoeb import dynamics, study, training
from holoeb.train_step import config_train_step
from holoeb.config import as_train_config
from holoeb.data.pipeline import batches
from holoeb.data.registry import load_dataset
from holoeb.diagnostics import clamped_fractions
from holoeb.errors import ConfigError, HoloebError
from holoeb.optim import make_optimizer
from holoeb.reports import write_report


def first_steps(rule, sets, steps, seed=0):
    scfg = study.load_study_config("cpu", sets=sets)
    if scfg.model != "dchn":
        raise ConfigError(f"dchn_first_steps.py follows the DCHN's layers; got model={scfg.model!r}")
    cfg = as_train_config(study.train_config(scfg, rule, "fashion_mnist", seed))
    model, est = training.build(cfg)
    bs = cfg.training.batch_size
    ds = load_dataset("fashion_mnist", "train", model.input_shape, None, scfg.n_train or None, True)
    key = jax.random.PRNGKey(seed)
    key, k_init = jax.random.split(key)  # the training loop's initialisation key
    params = model.init(k_init)
    tx = make_optimizer(cfg.optimizer, params, len(ds) // bs, cfg.training.epochs)
    opt = tx.init(params)
    warm = cfg.training.warm_start != "none"
    L = model.num_layers

    def probe(params, new, grads, res):
        net, g, dn = params["net"], grads["net"], new["net"]
        at_zero, at_one = clamped_fractions(model, res.free_state)
        return dict(at_zero=at_zero[:-1], at_one=at_one[:-1],  # hidden layers
                    grad=jnp.stack([jnp.linalg.norm(g[f"w{k}"]) for k in range(1, L + 1)]),
                    update=jnp.stack([jnp.linalg.norm(dn[f"w{k}"] - net[f"w{k}"]) for k in range(1, L + 1)]))

    _, train_step = config_train_step(cfg, model, est, tx, probe)  # the training loop's own step
    train_step = jax.jit(train_step)

    def step(params, opt, batch, rng, carry):
        if warm:
            return train_step(params, opt, batch, rng, carry)
        return train_step(params, opt, batch, rng) + (carry,)

    carry = model.init_state(jnp.zeros((bs,) + tuple(model.input_shape), jnp.float32))
    rows = []
    for i, b in enumerate(batches(ds, bs, np.random.default_rng(seed))):  # the trainer's batch order
        if i >= steps:
            break
        key, k = jax.random.split(key)
        params, opt, row, carry = step(params, opt, dynamics.Batch(*map(jnp.asarray, b)), k, carry)
        rows.append(jax.device_get(row))
        r = rows[-1]
        print(f"step {i:3d} loss {float(r['loss']):.3f} acc {float(r['accuracy']):.2f} at 0: "
              + " ".join(f"{v:.2f}" for v in r["at_zero"]) + " | grad " + " ".join(f"{v:.1e}" for v in r["grad"]),
              flush=True)
    return rows, scfg


def write(rows, scfg, rule, out):
    L = len(rows[0]["grad"])
    head = (f"{rule.upper()} on the DCHN {'-'.join(map(str, scfg.channels))}, gains {list(scfg.gains)}, lrs "
            f"{list(scfg.lrs)}, momentum {scfg.momentum}, batch {scfg.batch_size}, warm start {scfg.warm_start}, "
            f"T = {scfg.T_free}, K = {scfg.T_nudge}. Per step (before its update): batch loss and accuracy, the "
            "fraction of units at 0 / at 1 in the free state per hidden layer, the norm of the rule's gradient and "
            "of the applied update per weight.\n\n")
    cols = (["step", "loss", "acc"] + [f"s{k} at 0/1" for k in range(1, L)] + [f"|g w{k}|" for k in range(1, L + 1)]
            + [f"|dw{k}|" for k in range(1, L + 1)])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for i, r in enumerate(rows):
        cells = [str(i), f"{float(r['loss']):.3f}", f"{float(r['accuracy']):.2f}"]
        cells += [f"{a:.2f}/{b:.2f}" for a, b in zip(r["at_zero"], r["at_one"])]
        cells += [f"{v:.2e}" for v in r["grad"]] + [f"{v:.2e}" for v in r["update"]]
        lines.append("| " + " | ".join(cells) + " |")
    write_report(out, head + "\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.5))
    z = np.array([r["at_zero"] for r in rows])
    for k in range(z.shape[1]):
        ax[0].plot(z[:, k], "o-", label=f"layer {k + 1}")
    ax[0].set(title="fraction of units clamped at 0", xlabel="step", ylim=(0, 1))
    ax[0].legend(fontsize=7)
    g = np.array([r["grad"] for r in rows])
    for k in range(g.shape[1]):
        ax[1].semilogy(g[:, k], "o-", label=f"w{k + 1}")
    ax[1].set(title="|gradient|", xlabel="step")
    ax[1].legend(fontsize=7)
    ax[2].plot([float(r["loss"]) for r in rows], "o-", color="C3")
    ax[2].set(title="batch loss", xlabel="step")
    fig.suptitle(f"{rule}, gains {list(scfg.gains)}")
    fig.tight_layout()
    fig.savefig(out + ".png", dpi=100)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rule", required=True, choices=study.RULES)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a study setting, repeatable")
    ap.add_argument("--out", required=True, help="path stem of the table (.md) and figure (.png)")
    args = ap.parse_args()
    if args.steps < 1:
        ap.error(f"--steps must be >= 1, got {args.steps}")
    try:
        rows, scfg = first_steps(args.rule, args.set, args.steps, args.seed)
    except HoloebError as e:
        ap.exit(2, f"dchn_first_steps.py: error: {e}\n")
    write(rows, scfg, args.rule, args.out)
    print(f"wrote {args.out}.md and {args.out}.png")


if __name__ == "__main__":
    main()
