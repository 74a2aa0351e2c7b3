"""Neuronal error alignment of trained runs, on all units and on the active ones.

For each run directory, the run's own end-of-epoch diagnostics (holoeb.probe_diagnostics.make_diagnostics:
the rule's error vector against RBP's delta on the run's probe batch, the first
``diagnostics.batch_size`` test examples) recomputed at its final parameters, with the per-layer
cosine both on every unit and on the units active at the free state
(holoeb.diagnostics.active_layer_cosines). On a hard-sigmoid network a nudge-based error vector is
D delta (D = sigma' in {0, 1}), zero on clamped units where RBP's delta is not, so the cosine on
all units mixes the estimator's bias with the fraction of clamped units; the one on active
units measures the bias alone. Also the fraction of active units per layer.

    python experiments/study_error_alignment.py experiments/results/study_cpu/fashion_mnist-*-seed0 \
        --out experiments/results/study_cpu/error_alignment_seed0

writes OUT.md and OUT.json.
"""
import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from holoeb import dynamics, probe_diagnostics, run_plots, training
from holoeb.data.registry import load_dataset
from holoeb.errors import HoloebError
from holoeb.params_io import load_run
from holoeb.reports import write_report


def alignment(run_dir, seed=0):
    cfg, model, params = load_run(run_dir)
    _, estimator = training.build(cfg)
    d = cfg.data
    val = load_dataset(d.dataset, "test", model.input_shape, d.data_dir, d.val_size, d.normalize)
    batch = dynamics.Batch(*map(jnp.asarray, val.take(cfg.diagnostics.batch_size)))
    diag = probe_diagnostics.make_diagnostics(model, estimator, cfg)(params, batch, jax.random.PRNGKey(seed))
    free = estimator.free_phase(model, params, batch.x)[0].state
    active = [float(jnp.mean(m)) for m in model.active_units(free)]
    history = run_plots.load_run(run_dir)["history"]
    return {"run": os.path.basename(os.path.normpath(run_dir)), "rule": cfg.estimator.name,
            "epochs": len(history), "val_error": history[-1]["val_error"],
            "cosine_rbp": np.asarray(diag["cosine_rbp"]).tolist(),
            "cosine_rbp_active": np.asarray(diag["cosine_rbp_active"]).tolist(),
            "update_cosine_rbp": float(diag["update_cosine_rbp"]), "active_fraction": active}


def write(rows, out):
    fmt = lambda v: "/".join(f"{x:.3f}" for x in v)
    lines = ["| run | epochs | test error (%) | cos to delta, all units (layers 1..L) | cos to delta, active units | "
             "active fraction | cos(update, RBP) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['epochs']} | {r['val_error']:.2f} | {fmt(r['cosine_rbp'])} | "
                     f"{fmt(r['cosine_rbp_active'])} | {fmt(r['active_fraction'])} | {r['update_cosine_rbp']:.3f} |")
    write_report(out, lines, rows)
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="training run directories (config.json, metrics.json, checkpoints)")
    ap.add_argument("--out", required=True, help="path stem of the table (.md) and the data (.json)")
    args = ap.parse_args()
    rows = []
    try:
        for run in args.runs:
            rows.append(alignment(run))
            print(rows[-1], flush=True)
    except (HoloebError, FileNotFoundError, ValueError) as e:
        ap.error(str(e))
    write(rows, args.out)


if __name__ == "__main__":
    main()
