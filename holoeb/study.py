"""The comparative study grid (Scellier, Ernoult, Kendall, Kumar, "Energy-Based Learning
Algorithms for Analog Computing: A Comparative Study", arXiv:2312.15103; Sec. 4.1, Table 1).

One energy-based model is trained per (rule, dataset, seed) with SGD + momentum,
per-layer learning rates, weight decay and per-epoch cosine annealing (App. D, Table 5).
``StudyConfig`` is the study's typed schema; ``train_config`` translates one cell of the
grid into the one training config (holoeb.config.TrainConfig), and each cell is an
ordinary run of ``holoeb.training.train`` in ``<out_dir>/<dataset>-<rule>-seed<seed>``
(metrics.json / .csv, curves, checkpoints and resume, divergence guard). The study then
writes a Table-1-like summary (train / test error per rule, mean over seeds) to
``<out_dir>/table.md`` and ``<out_dir>/results.json``.

Protocols (``PROTOCOLS``):
  cpu   (default) DCHN with channels 16-32-64-64 (Table 5 architecture, 8x narrower),
        gain 0.5 (Table 5; at gain 1.0 the first steps clamp layer 4 and TBP / RBP die at 90%:
        experiments/results/study_cpu_diagnosis.md), on a Fashion-MNIST subset (10k train /
        full 10k test), 4 epochs,
        T=60, T_nudge=15, beta=0.25, Table 5 lrs;
  dense dense Hopfield 1024-512-256-10, gain 0.5, same subset, 5 epochs;
  paper DCHN of Table 5 on the full datasets, 100 epochs, 3 seeds.
All protocols use C = 1/2 ||o - y||^2 (cost_scale 0.5) with beta = 0.25, as the authors'
released code that produced Table 1 does (Sec. 3 prints ||o - y||^2; with that cost
every nudge is twice as strong and every gradient twice as large).
Data: holoeb.data.registry (Table 4 normalisation, 28 -> 32 zero padding of the raw
image, then normalisation; flips on Fashion-MNIST / CIFAR training sets).
"""
import copy
import dataclasses
import json
import os
import time
from typing import Optional, Tuple

import numpy as np

from holoeb.config import (TrainConfig, build_dataclass, check, field_type, is_finite, parse_value, read_json_object,
                           split_assignment)
from holoeb.errors import ConfigError
from holoeb.estimators.energy_rules import EP_OUTPUTS
from holoeb.reports import write_json, write_text

RULES = ("tbp", "rbp", "cl", "p-ep", "n-ep", "c-ep", "p-cpl", "n-cpl", "c-cpl")
STUDY_DATASETS = ("mnist", "fashion_mnist", "svhn_cropped", "cifar10", "cifar100")

# The paper's test error (%), mean and std over 3 seeds (Table 7 = Table 1 with stds; 100 epochs,
# DCHN 128-256-512-512): shown next to ours in table.md (a std of None would print the mean alone).
PAPER_TEST_ERROR = {
    "mnist": dict(tbp=(0.42, 0.02), rbp=(0.44, 0.04), cl=(0.61, 0.02), **{"p-ep": (1.66, 0.80), "n-ep": (0.42, 0.01),
                  "c-ep": (0.44, 0.03), "p-cpl": (0.66, 0.13), "n-cpl": (0.50, 0.04), "c-cpl": (0.44, 0.01)}),
    "fashion_mnist": dict(tbp=(6.12, 0.10), rbp=(6.28, 0.12), cl=(10.10, 0.17), **{
        "p-ep": (90.00, 0.00), "n-ep": (6.22, 0.10), "c-ep": (6.47, 0.13), "p-cpl": (64.70, 35.77),
        "n-cpl": (6.86, 0.05), "c-cpl": (6.91, 0.11)}),
    "svhn_cropped": dict(tbp=(3.76, 0.06), rbp=(3.87, 0.09), cl=(6.10, 0.13), **{
        "p-ep": (83.9, 4.9), "n-ep": (80.4, 0.0), "c-ep": (3.51, 0.07), "p-cpl": (40.1, 28.6), "n-cpl": (80.4, 0.0),
        "c-cpl": (4.23, 0.09)}),
    "cifar10": dict(tbp=(10.1, 0.2), rbp=(10.7, 0.1), cl=(31.4, 2.2), **{
        "p-ep": (72.6, 0.7), "n-ep": (11.9, 0.3), "c-ep": (11.1, 0.1), "p-cpl": (46.9, 3.8), "n-cpl": (13.5, 0.3),
        "c-cpl": (14.9, 0.1)}),
    "cifar100": dict(tbp=(33.4, 0.5), rbp=(34.4, 0.2), cl=(71.4, 3.6), **{
        "p-ep": (89.4, 9.5), "n-ep": (44.7, 0.3), "c-ep": (37.0, 0.1), "p-cpl": (77.9, 0.5), "n-cpl": (51.9, 1.3),
        "c-cpl": (46.5, 0.1)}),
}


@dataclasses.dataclass
class StudyConfig:
    rules: Tuple[str, ...] = RULES
    datasets: Tuple[str, ...] = ("fashion_mnist",)
    seeds: Tuple[int, ...] = (0,)
    model: str = "dchn"  # dchn | hopfield
    hidden: Tuple[int, ...] = (512, 256)  # dense Hopfield widths
    channels: Tuple[int, ...] = (16, 32, 64, 64)  # DCHN channels (Table 5: 128, 256, 512, 512)
    gains: Tuple[float, ...] = (0.5,)  # Table 5 (the CL comparison with the released code ran at 1.0)
    bias_gain: Optional[float] = None  # DCHN bias init bound bias_gain/sqrt(fan_in) (null: the gain; released code: 0.5)
    schedule: str = "async"
    pool_ties: str = "split"  # DCHN max-pool derivative at tied maxima: split (JAX) or first (released code / PyTorch)
    beta: float = 0.25
    cost_scale: float = 0.5  # C = c ||o - y||^2: 1/2 as in the authors' code that produced Table 1 (Sec. 3 prints c = 1)
    T_free: int = 60
    T_nudge: int = 15  # energy rules: nudged-phase iterations; TBP: truncation depth K
    relax_dtype: Optional[str] = None
    rerelax_free: bool = False  # one-sided rules: beta = 0 state = T_nudge more iterations at beta = 0 (released code)
    ep_output: str = "minimiser"  # EP rules' nudged output: exact minimiser or one fixed-point step (released code)
    lrs: Tuple[float, ...] = (0.0625, 0.0375, 0.025, 0.02, 0.0125)  # per layer (Table 5)
    momentum: float = 0.9
    weight_decay: float = 3e-4
    eta_min: float = 2e-6
    epochs: int = 4
    T_max: Optional[int] = None  # cosine period in epochs (default: epochs)
    batch_size: int = 128
    n_train: int = 10000  # 0: full training set
    n_test: int = 0  # 0: full test set
    random_flip: Optional[bool] = None  # null: per dataset (App. D)
    random_crop: int = 0  # training translations by up to this many pixels (released code's Fashion-MNIST loader: 2)
    warm_start: str = "last"  # training.warm_start: each batch starts where the previous one left the network (see README)
    diagnostics: bool = True  # per-epoch cosines of the error vector and update to RBP / TBP, symmetry (probe batch)
    data_dir: Optional[str] = None
    out_dir: str = "runs/study"

    def validate(self):
        check(self.model in ("dchn", "hopfield"), "model", "'dchn' or 'hopfield'", self.model)
        for k in ("epochs", "batch_size", "T_free", "T_nudge"):
            check(getattr(self, k) >= 1, k, "a positive integer", getattr(self, k))
        check(self.n_train >= 0 and self.n_test >= 0, "n_train / n_test", ">= 0 (0: all)", (self.n_train, self.n_test))
        check(is_finite(self.beta) and self.beta != 0, "beta", "finite and non-zero", self.beta)
        check(all(is_finite(v) and v > 0 for v in self.lrs), "lrs", "finite and > 0", self.lrs)
        check(is_finite(self.eta_min) and self.eta_min >= 0, "eta_min", "finite and >= 0", self.eta_min)
        check(self.ep_output in EP_OUTPUTS, "ep_output", f"one of {EP_OUTPUTS}", self.ep_output)
        check(len(self.seeds) >= 1 and len(self.rules) >= 1 and len(self.datasets) >= 1, "rules / datasets / seeds",
              "non-empty", (self.rules, self.datasets, self.seeds))


PROTOCOLS = {
    "cpu": {},
    "dense": dict(model="hopfield", hidden=(512, 256), gains=(0.5,), lrs=(0.0625, 0.0375, 0.0125), epochs=5),
    "paper": dict(model="dchn", channels=(128, 256, 512, 512), gains=(0.5,), epochs=100, n_train=0,
                  n_test=0, datasets=STUDY_DATASETS, seeds=(0, 1, 2)),
}


def load_study_config(protocol="cpu", path=None, overrides=None, sets=()):
    """StudyConfig from a protocol <- JSON file <- ``overrides`` (field -> value) <- ``sets``
    ('field=text'); unknown fields and wrong types raise ConfigError naming the field."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown study protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    fields = dataclasses.asdict(StudyConfig())
    fields.update(copy.deepcopy(PROTOCOLS[protocol]))
    if path:
        fields.update(read_json_object(path, "study config"))
    fields.update(copy.deepcopy(overrides or {}))
    for item in sets or ():
        k, text = split_assignment(item)
        fields[k] = parse_value(text, field_type(StudyConfig, k))
    cfg = build_dataclass(StudyConfig, fields, "", what="study setting")
    cfg.validate()
    return cfg


# ---- one cell of the grid -> one training config --------------------------------------------------
def estimator_section(rule, cfg):
    """make_estimator keyword arguments of ``rule`` under the study's settings."""
    hp = {"name": rule, "T_free": cfg.T_free}
    if rule == "tbp":
        hp["K"] = cfg.T_nudge  # truncated BPTT over the last T_nudge iterations
    elif rule != "rbp":
        hp["T_nudge"] = cfg.T_nudge
        hp["relax_dtype"] = cfg.relax_dtype
        hp["rerelax_free"] = cfg.rerelax_free
        if rule.endswith("-ep"):
            hp["ep_output"] = cfg.ep_output
        if rule != "cl":
            hp["beta"] = cfg.beta
    return hp


def model_section(cfg, dataset):
    from holoeb.data.registry import dataset_spec

    spec = dataset_spec(dataset)
    channels = spec.channels or 1
    n_layers = (len(cfg.hidden) if cfg.model == "hopfield" else len(cfg.channels)) + 1
    gains = list(cfg.gains) * n_layers if len(cfg.gains) == 1 else list(cfg.gains)
    common = dict(num_classes=spec.num_classes, gains=gains, schedule=cfg.schedule, cost_scale=cfg.cost_scale)
    if cfg.model == "hopfield":  # 32 x 32 (padded) images, flattened
        return dict(name="hopfield", in_features=32 * 32 * channels, hidden=list(cfg.hidden), **common)
    return dict(name="dchn", in_channels=channels, image_size=32, channels=list(cfg.channels), bias_gain=cfg.bias_gain,
                pool_ties=cfg.pool_ties, **common)


def _data_dir(cfg, dataset):
    # one --data-dir serves the TFDS datasets; Fashion-MNIST reads it only when it holds the IDX files
    if dataset == "fashion_mnist" and cfg.data_dir and not os.path.exists(
            os.path.join(cfg.data_dir, "train-labels-idx1-ubyte.gz")) and not os.path.exists(
            os.path.join(cfg.data_dir, "train-labels-idx1-ubyte")):
        return None
    return cfg.data_dir


def train_config(cfg, rule, dataset, seed):
    """The holoeb.config.TrainConfig of one (rule, dataset, seed) cell of the study."""
    return TrainConfig.from_dict({
        "description": f"comparative study: {rule} on {dataset}, seed {seed}",
        "model": model_section(cfg, dataset),
        "estimator": estimator_section(rule, cfg),
        "optimizer": dict(name="sgd", learning_rate=max(cfg.lrs), momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          schedule="cosine_epochs", eta_min=cfg.eta_min, T_max=cfg.T_max, layer_lrs=list(cfg.lrs)),
        "data": dict(dataset=dataset, data_dir=_data_dir(cfg, dataset), train_size=cfg.n_train or None,
                     val_size=cfg.n_test or None, random_flip=cfg.random_flip, random_crop=cfg.random_crop,
                     normalize=True),
        # evaluation batches of the training batch size: every example relaxes on its own, and on this CPU the
        # DCHN evaluates 20% faster at 128 than at 1000 (activations of 1000 images do not fit in cache)
        "training": dict(batch_size=cfg.batch_size, epochs=cfg.epochs, seed=seed, eval_batch_size=cfg.batch_size, eval_train=True,
                         warm_start=cfg.warm_start),
        "homeostasis": {"lambda": 0.0},
        "diagnostics": dict(enabled=cfg.diagnostics),
    })


def run_dir(cfg, rule, dataset, seed):
    return os.path.join(cfg.out_dir, f"{dataset}-{rule}-seed{seed}")


def train_one(rule, dataset, seed, cfg, log=print, progress=False):
    """Train one cell through holoeb.training.train; its train / test error after training."""
    from holoeb.training import train

    tcfg = train_config(cfg, rule, dataset, seed)
    d = run_dir(cfg, rule, dataset, seed)
    t0 = time.time()
    history = train(tcfg, d, progress=progress, log=lambda msg: log(f"  {rule:6s} {dataset} seed {seed} {msg}"))
    last = history[-1]
    return dict(rule=rule, dataset=dataset, seed=seed, train_error=last["train_error"], test_error=last["val_error"],
                history=history, time_s=time.time() - t0, run_dir=d)


def _cell_result(rule, dataset, seed, history, run_dir):
    last = history[-1]
    return dict(rule=rule, dataset=dataset, seed=seed, train_error=last["train_error"], test_error=last["val_error"],
                history=history, run_dir=run_dir)


def grid_results(cfg):
    """The cells of this study's protocol already in ``cfg.out_dir``, whatever invocation trained
    them (any rule of RULES, any seed): a run directory <dataset>-<rule>-seed<n> counts when its
    config is the one ``train_config`` gives for that cell (holoeb.run_directory.same_run_settings).
    Returns (finished results, unfinished results with ``epochs`` = epochs done): two studies
    sharing an out_dir (e.g. two processes, one rule set each) then write the same table."""
    from holoeb.run_directory import same_run_settings

    finished, unfinished = [], []
    names = sorted(os.listdir(cfg.out_dir)) if os.path.isdir(cfg.out_dir) else []
    for ds in cfg.datasets:
        for rule in RULES:
            prefix = f"{ds}-{rule}-seed"
            seeds = sorted(int(n[len(prefix):]) for n in names if n.startswith(prefix) and n[len(prefix):].isdigit())
            for seed in seeds:
                d = run_dir(cfg, rule, ds, seed)
                try:
                    with open(os.path.join(d, "metrics.json")) as f:
                        saved = json.load(f)
                    history = saved["history"]
                    if not same_run_settings(saved["config"], train_config(cfg, rule, ds, seed).to_dict()):
                        continue
                except (OSError, ValueError, KeyError, TypeError, ConfigError):
                    continue  # not a run of this protocol (or not a run at all)
                done = history[-1].get("epoch", 0) if history else 0
                if done >= cfg.epochs:
                    finished.append(_cell_result(rule, ds, seed, history, d))
                else:
                    unfinished.append(dict(rule=rule, dataset=ds, seed=seed, epochs=done, history=history, run_dir=d))
    return finished, unfinished


def _label(rule: str) -> str:
    """The paper's name of a rule: "c-cpl" -> "C-CpL", "n-ep" -> "N-EP", "tbp" -> "TBP"."""
    return rule.upper().replace("CPL", "CpL")


def _paper(rule, dataset):
    v = PAPER_TEST_ERROR.get(dataset, {}).get(rule)
    return "-" if v is None else (f"{v[0]:.2f}" if v[1] is None else f"{v[0]:.2f} +- {v[1]:.2f}")


def summarise(results, cfg, unfinished=()):
    """{rule: {dataset: {test, train, test_std, n}}} and a markdown table like Table 1, with the
    paper's test error (Table 7) next to ours; rows: ``cfg.rules``, then any other rule with
    results; ``unfinished`` cells (`grid_results`) are listed below it and, marked partial, in
    the epoch-by-epoch table."""
    table = {}
    for r in results:
        table.setdefault(r["rule"], {}).setdefault(r["dataset"], []).append(r)
    def last(rs, key):  # mean over seeds of the last epoch's value (None where not logged)
        vals = [r["history"][-1].get(key) for r in rs if r.get("history")]
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else None

    summary = {
        rule: {
            ds: dict(test=float(np.mean([r["test_error"] for r in rs])), train=float(np.mean([r["train_error"] for r in rs])),
                     test_std=float(np.std([r["test_error"] for r in rs], ddof=1)) if len(rs) > 1 else 0.0, n=len(rs),
                     free_unconverged=last(rs, "train_unconverged"), nudge_unconverged=last(rs, "train_nudge_unconverged"),
                     update_cosine_rbp=last(rs, "update_cosine_rbp"))
            for ds, rs in per.items()
        }
        for rule, per in table.items()
    }
    rules = list(cfg.rules) + [r for r in RULES if r in summary and r not in cfg.rules]
    head = "| rule | " + " | ".join(f"{d} test | {d} train | {d} paper test" for d in cfg.datasets) + " |"
    sep = "|---|" + "---|---|---|" * len(cfg.datasets)
    rows = []
    for rule in rules:
        cells = []
        for d in cfg.datasets:
            s = summary.get(rule, {}).get(d)
            test = f"{s['test']:.2f} +- {s['test_std']:.2f} (n={s['n']})" if s and s["n"] > 1 else (
                f"{s['test']:.2f} (n=1)" if s else "-")
            cells += [test, f"{s['train']:.2f}" if s else "-", _paper(rule, d)]
        rows.append(f"| {_label(rule)} | " + " | ".join(cells) + " |")
    conv = ["", "Last epoch, mean over seeds: examples above the residual tolerance (free / nudged phases, %) and "
            "cosine of the update to RBP's gradient on the probe batch", "",
            "| rule | dataset | free unconverged | nudged unconverged | cos(update, RBP) |", "|---|---|---|---|---|"]
    for rule in rules:
        for d in cfg.datasets:
            s_ = summary.get(rule, {}).get(d)
            if s_:
                fmt = lambda v, scale, spec: "-" if v is None else format(scale * v, spec)
                conv.append(f"| {_label(rule)} | {d} | {fmt(s_['free_unconverged'], 100, '.1f')} | "
                            f"{fmt(s_['nudge_unconverged'], 100, '.1f')} | {fmt(s_['update_cosine_rbp'], 1, '.3f')} |")
    conv += epoch_table(results, rules, cfg.datasets, partial=unfinished)
    protocol = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("rules", "seeds", "out_dir")}
    if unfinished:
        conv += ["", "Unfinished (resumable) runs: " + ", ".join(
            f"{_label(u['rule'])} {u['dataset']} seed {u['seed']} ({u['epochs']} of {cfg.epochs} epochs)" for u in unfinished)]
    md = "\n".join([f"Test / train error in % after {cfg.epochs} epochs (mean +- sample std over the finished seeds, n of "
                     "them); paper: Table 7 of the comparative study (100 epochs, channels 128-256-512-512, 3 seeds). "
                     f"Protocol: {json.dumps(protocol)}", "", head, sep] + rows + conv) + "\n"
    return summary, md


def epoch_table(results, rules, datasets, partial=()):
    """Markdown lines: per dataset, the test error (%) after every epoch, one row per (rule, seed),
    rules in the order of ``rules``, seeds ascending; runs in ``partial`` (unfinished) are marked
    so. Empty when no run logged an epoch."""
    results = [dict(r, partial=False) for r in results] + [dict(r, partial=True) for r in partial]
    lines = []
    for d in datasets:
        runs = sorted((r for r in results if r["dataset"] == d and r.get("history") and "val_error" in r["history"][0]),
                      key=lambda r: (rules.index(r["rule"]) if r["rule"] in rules else len(rules), r["seed"]))
        if not runs:
            continue
        n = max(len(r["history"]) for r in runs)
        lines += ["", f"{d}: test error (%) after each epoch", "",
                  "| rule | seed | " + " | ".join(str(e) for e in range(1, n + 1)) + " |", "|---|---|" + "---|" * n]
        for r in runs:
            errs = [f"{h['val_error']:.1f}" for h in r["history"]] + [""] * (n - len(r["history"]))
            seed = f"{r['seed']} (partial)" if r["partial"] else str(r["seed"])
            lines.append(f"| {_label(r['rule'])} | {seed} | " + " | ".join(errs) + " |")
    return lines


def run_study(cfg, log=print, progress=False):
    """Train every (dataset, rule, seed) cell (one run directory each, resumed if present) and
    write <out_dir>/results.json and table.md after each; returns (summary, markdown table)."""
    unknown = sorted(set(cfg.rules) - set(RULES))
    if unknown:
        raise ConfigError(f"unknown rule(s) {unknown}; choose from {RULES}")
    from holoeb.data.registry import dataset_spec

    for ds in cfg.datasets:
        dataset_spec(ds)
    os.makedirs(cfg.out_dir, exist_ok=True)
    summary, md = summarise([], cfg)
    for ds in cfg.datasets:
        for rule in cfg.rules:
            for seed in cfg.seeds:
                r = train_one(rule, ds, seed, cfg, log, progress)
                log(f"{rule} {ds} seed {seed}: train {r['train_error']:.2f}% test {r['test_error']:.2f}% ({r['time_s']:.0f}s)")
                summary, md = write_summary(cfg)
    return summary, md


def write_summary(cfg):
    """Write <out_dir>/results.json and table.md from every cell of the protocol in out_dir
    (`grid_results`); returns (summary, markdown)."""
    results, unfinished = grid_results(cfg)
    summary, md = summarise(results, cfg, unfinished)
    protocol = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("rules", "seeds")}
    write_json(os.path.join(cfg.out_dir, "results.json"),
               dict(config=protocol, summary=summary, runs=results, unfinished=unfinished))
    write_text(os.path.join(cfg.out_dir, "table.md"), md)
    return summary, md
