"""`holoeb study`: the comparative study grid (comparative study, Sec. 4.1, Table 1).

Trains one energy-based model per (rule, dataset, seed) with SGD + momentum,
per-layer learning rates, weight decay and cosine annealing (App. D, Table 5),
and writes a Table-1-like summary (train/test error per rule, mean over seeds)
as markdown + JSON.

Protocols:
  --protocol cpu   (default) DCHN with channels 16-32-64-64 (Table 5 architecture,
                   8x narrower), gain 1.0, on a Fashion-MNIST subset (10k train /
                   full 10k test), 4 epochs, T=60, K=15, beta=0.25, Table 5 lrs;
  --protocol dense dense Hopfield 1024-512-256-10, gain 0.5, same subset, 5 epochs
                   (about a minute per rule on 2 CPU cores);
  --protocol paper DCHN of Table 5 on the full datasets, 100 epochs.
All protocols use C = 1/2 ||o - y||^2 (cost_scale 0.5) with beta = 0.25, as the
authors' released code that produced Table 1 does (Sec. 3 prints ||o - y||^2; with
that cost every nudge is twice as strong and every gradient twice as large).
Any field can be overridden with --set key=value or a JSON --config.
"""
import argparse
import dataclasses
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from holoeb.estimators import make_estimator
from holoeb.models import make_model

RULES = ("tbp", "rbp", "cl", "p-ep", "n-ep", "c-ep", "p-cpl", "n-cpl", "c-cpl")

# Table 4 normalisation; flips as in App. D; pad 28 -> 32 for the MNISTs.
DATASET_PREP = {
    "fashion_mnist": dict(mean=(0.2860,), std=(0.3530,), flip=True),
    "mnist": dict(mean=(0.1307,), std=(0.3081,), flip=False),
    "svhn_cropped": dict(mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970), flip=False),
    "cifar10": dict(mean=(0.4914, 0.4822, 0.4465), std=(3 * 0.2023, 3 * 0.1994, 3 * 0.2010), flip=True),
    "cifar100": dict(mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761), flip=True),
}


@dataclasses.dataclass
class StudyConfig:
    rules: tuple = RULES
    datasets: tuple = ("fashion_mnist",)
    seeds: tuple = (0,)
    model: str = "dchn"
    hidden: tuple = (512, 256)  # dense Hopfield widths
    channels: tuple = (16, 32, 64, 64)  # DCHN channels (Table 5: 128, 256, 512, 512)
    gains: tuple = (1.0,)
    schedule: str = "async"
    beta: float = 0.25
    cost_scale: float = 0.5  # C = c ||o - y||^2: 1/2 as in the authors' code that produced Table 1 (Sec. 3 prints c = 1)
    T_free: int = 60
    K: int = 15
    relax_dtype: str = None
    lrs: tuple = (0.0625, 0.0375, 0.025, 0.02, 0.0125)  # per layer (Table 5)
    momentum: float = 0.9
    weight_decay: float = 3e-4
    eta_min: float = 2e-6
    epochs: int = 4
    T_max: int = None  # cosine period in epochs (default: epochs)
    batch_size: int = 128
    n_train: int = 10000  # 0: full training set
    n_test: int = 0  # 0: full test set
    data_dir: str = None
    out_dir: str = "runs/study"


PROTOCOLS = {
    "cpu": {},
    "dense": dict(model="hopfield", hidden=(512, 256), gains=(0.5,), lrs=(0.0625, 0.0375, 0.0125), epochs=5),
    "paper": dict(model="dchn", channels=(128, 256, 512, 512), gains=(0.5,), epochs=100, n_train=0,
                  n_test=0, datasets=("mnist", "fashion_mnist", "svhn_cropped", "cifar10", "cifar100"),
                  seeds=(0, 1, 2)),
}


# ---- data ----------------------------------------------------------------------------
def load_split(name, split, data_dir=None):
    """uint8 images (n, H, W, C) and int32 labels."""
    if name == "fashion_mnist":
        from holoeb.data import load_fashion_mnist

        fm_dir = data_dir if data_dir and os.path.exists(os.path.join(data_dir, "train-labels-idx1-ubyte.gz")) else None
        images, labels = load_fashion_mnist(split, fm_dir)
    else:
        from holoeb.data.tfds_datasets import load_tfds

        images, labels = load_tfds(name, split, data_dir)
    if images.ndim == 3:
        images = images[..., None]
    return images, labels


def normalise(images, name):
    """Zero padding of the raw image to 32 x 32 (black border, like the MNIST backgrounds;
    App. D), then the Table 4 normalisation; NHWC float32."""
    prep = DATASET_PREP[name]
    ph, pw = 32 - images.shape[1], 32 - images.shape[2]
    if ph < 0 or pw < 0:
        raise ValueError(f"{name}: images of size {images.shape[1:3]} are larger than 32 x 32")
    x = np.pad(images, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    return (x.astype(np.float32) / 255.0 - np.asarray(prep["mean"], np.float32)) / np.asarray(prep["std"], np.float32)


def random_flip(x, rng):
    """Random horizontal flips (NHWC), each example with probability 1/2."""
    flip = rng.random(x.shape[0]) < 0.5
    return np.where(flip[:, None, None, None], x[:, :, ::-1, :], x)


# ---- model / optimiser -----------------------------------------------------------------
def build_model(cfg, image_shape, num_classes):
    n_layers = (len(cfg.hidden) if cfg.model == "hopfield" else len(cfg.channels)) + 1
    gains = tuple(cfg.gains) * n_layers if len(cfg.gains) == 1 else tuple(cfg.gains)
    if cfg.model == "hopfield":
        return make_model("hopfield", in_features=int(np.prod(image_shape)), hidden=tuple(cfg.hidden),
                          num_classes=num_classes, gains=gains, schedule=cfg.schedule, cost_scale=cfg.cost_scale)
    if cfg.model == "dchn":
        return make_model("dchn", in_channels=image_shape[-1], image_size=image_shape[0], channels=tuple(cfg.channels),
                          num_classes=num_classes, gains=gains, schedule=cfg.schedule, cost_scale=cfg.cost_scale)
    raise ValueError(f"unknown study model {cfg.model!r}; use 'hopfield' or 'dchn'")


def make_optimizer(cfg, params, steps_per_epoch):
    """SGD(momentum) with weight decay and a per-layer cosine-annealed lr (App. D):
    lr_k(epoch) = eta_min + (eta_k - eta_min) (1 + cos(pi epoch / T_max)) / 2."""
    names = sorted({int(n[1:]) for n in params["net"]})
    if len(cfg.lrs) != len(names):
        raise ValueError(f"lrs must give one learning rate per layer ({len(names)}), got {tuple(cfg.lrs)}")
    T_max = cfg.T_max or cfg.epochs

    def schedule(eta):
        def lr(count):
            epoch = jnp.minimum(count // steps_per_epoch, T_max)
            return cfg.eta_min + (eta - cfg.eta_min) * (1 + jnp.cos(jnp.pi * epoch / T_max)) / 2

        return lr

    transforms = {
        f"layer{k}": optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                                 optax.sgd(schedule(eta), momentum=cfg.momentum))
        for k, eta in zip(names, cfg.lrs)
    }
    labels = {"net": {n: f"layer{int(n[1:])}" for n in params["net"]}, "readout": {}}
    return optax.multi_transform(transforms, labels)


def estimator_for(rule, cfg):
    hp = dict(T_free=cfg.T_free)
    if rule in ("tbp",):
        hp["K"] = cfg.K
    elif rule != "rbp":
        hp["K"] = cfg.K
        hp["relax_dtype"] = cfg.relax_dtype
        if rule != "cl":
            hp["beta"] = cfg.beta
    return make_estimator(rule, **hp)


def train_one(rule, dataset, seed, cfg, data, log=print):
    (xtr, ytr), (xte, yte), num_classes = data
    model = build_model(cfg, xtr.shape[1:], num_classes)
    to_input = (lambda x: x.reshape(x.shape[0], -1)) if cfg.model == "hopfield" else (lambda x: x)
    est = estimator_for(rule, cfg)
    params = jax.jit(model.init)(jax.random.PRNGKey(seed))
    steps = len(ytr) // cfg.batch_size
    opt = make_optimizer(cfg, params, steps)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        res = est(model, params, (x, y), None)
        updates, opt_state = opt.update(res.grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, res.accuracy, res.loss

    @jax.jit
    def evaluate(params, x, y):
        res = make_estimator("rbp", T_free=cfg.T_free)  # only its free phase is used
        free, _ = res.free_phase(model, params, x)
        return jnp.sum(jnp.argmax(free.state[-1], -1) == y)

    def error(params, x, y):
        correct = 0
        for i in range(0, len(y), 1000):
            correct += int(evaluate(params, to_input(jnp.asarray(x[i : i + 1000])), jnp.asarray(y[i : i + 1000])))
        return 100.0 * (1 - correct / len(y))

    rng = np.random.default_rng(seed)
    history, t0 = [], time.time()
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(ytr))
        accs, losses = [], []
        for b in range(steps):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x = xtr[idx]
            if DATASET_PREP[dataset]["flip"]:
                x = random_flip(x, rng)
            params, opt_state, acc, loss = step(params, opt_state, to_input(jnp.asarray(x)), jnp.asarray(ytr[idx]))
            accs.append(float(acc))
            losses.append(float(loss))
        if not all(math.isfinite(v) for v in losses):
            log(f"  {rule} {dataset} seed {seed}: non-finite loss at epoch {epoch + 1}")
        history.append(dict(epoch=epoch + 1, train_error_running=100 * (1 - float(np.mean(accs))),
                            train_loss=float(np.mean(losses)), time_s=time.time() - t0))
        log(f"  {rule:6s} {dataset} seed {seed} epoch {epoch + 1}: running train error "
            f"{history[-1]['train_error_running']:.2f}% loss {history[-1]['train_loss']:.4f} ({time.time() - t0:.0f}s)")
    return dict(rule=rule, dataset=dataset, seed=seed, train_error=error(params, xtr, ytr),
                test_error=error(params, xte, yte), history=history, time_s=time.time() - t0)


def prepare_dataset(name, cfg):
    if name not in DATASET_PREP:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASET_PREP)}")
    (itr, ytr), (ite, yte) = load_split(name, "train", cfg.data_dir), load_split(name, "test", cfg.data_dir)
    if cfg.n_train:
        itr, ytr = itr[: cfg.n_train], ytr[: cfg.n_train]
    if cfg.n_test:
        ite, yte = ite[: cfg.n_test], yte[: cfg.n_test]
    num_classes = int(max(ytr.max(), yte.max())) + 1
    return (normalise(itr, name), ytr.astype(np.int32)), (normalise(ite, name), yte.astype(np.int32)), num_classes


def summarise(results, cfg):
    """{rule: {dataset: {test, train, test_std, n}}} and a markdown table like Table 1."""
    table = {}
    for r in results:
        table.setdefault(r["rule"], {}).setdefault(r["dataset"], []).append(r)
    summary = {
        rule: {
            ds: dict(test=float(np.mean([r["test_error"] for r in rs])), train=float(np.mean([r["train_error"] for r in rs])),
                     test_std=float(np.std([r["test_error"] for r in rs])), n=len(rs))
            for ds, rs in per.items()
        }
        for rule, per in table.items()
    }
    head = "| rule | " + " | ".join(f"{d} test | {d} train" for d in cfg.datasets) + " |"
    sep = "|---|" + "---|---|" * len(cfg.datasets)
    rows = []
    for rule in cfg.rules:
        cells = []
        for d in cfg.datasets:
            s = summary.get(rule, {}).get(d)
            cells += [f"{s['test']:.2f}" if s else "-", f"{s['train']:.2f}" if s else "-"]
        rows.append(f"| {rule.upper()} | " + " | ".join(cells) + " |")
    md = "\n".join([f"Error rates in % (mean over seeds {list(cfg.seeds)}); protocol: {json.dumps(dataclasses.asdict(cfg))}",
                    "", head, sep] + rows) + "\n"
    return summary, md


def run_study(cfg, log=print):
    unknown = sorted(set(cfg.rules) - set(RULES))
    if unknown:
        raise ValueError(f"unknown rule(s) {unknown}; choose from {RULES}")
    os.makedirs(cfg.out_dir, exist_ok=True)
    results = []
    for ds in cfg.datasets:
        data = prepare_dataset(ds, cfg)
        for rule in cfg.rules:
            for seed in cfg.seeds:
                r = train_one(rule, ds, seed, cfg, data, log)
                log(f"{rule} {ds} seed {seed}: train {r['train_error']:.2f}% test {r['test_error']:.2f}% ({r['time_s']:.0f}s)")
                results.append(r)
                summary, md = summarise(results, cfg)
                with open(os.path.join(cfg.out_dir, "results.json"), "w") as f:
                    json.dump(dict(config=dataclasses.asdict(cfg), summary=summary, runs=results), f, indent=1)
                with open(os.path.join(cfg.out_dir, "table.md"), "w") as f:
                    f.write(md)
    return summary, md


def _parse_value(v):
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def config_from_args(args):
    fields = dict(PROTOCOLS[args.protocol])
    if args.config:
        with open(args.config) as f:
            fields.update(json.load(f))
    for item in args.set or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        fields[k] = _parse_value(v)
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    bad = sorted(set(fields) - known)
    if bad:
        raise ValueError(f"unknown study setting(s) {bad}; known: {sorted(known)}")
    for k in ("rules", "datasets", "seeds", "hidden", "channels", "gains", "lrs"):
        if k in fields and not isinstance(fields[k], (list, tuple)):
            fields[k] = (fields[k],)
        if k in fields:
            fields[k] = tuple(fields[k])
    if args.data_dir:
        fields["data_dir"] = args.data_dir
    if args.out_dir:
        fields["out_dir"] = args.out_dir
    return StudyConfig(**fields)


def add_arguments(p):
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cpu")
    p.add_argument("--config", help="JSON file of StudyConfig fields")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field (JSON value), repeatable")
    p.add_argument("--data-dir", help="TFDS data_dir (MNIST, SVHN, CIFAR) or a Fashion-MNIST IDX directory")
    p.add_argument("--out-dir")


def main_from_args(args):
    cfg = config_from_args(args)
    _, md = run_study(cfg)
    print(md)


def register(subparsers):
    p = subparsers.add_parser("study", help="comparative study of the energy-based rules (Table 1)")
    add_arguments(p)
    p.set_defaults(func=main_from_args)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    main_from_args(p.parse_args(argv))


if __name__ == "__main__":
    main()
