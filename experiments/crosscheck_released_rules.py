"""holoeb's energy-based rules against the comparative study's released PyTorch code, in float64.

For a small DCHN (ConvHopfieldEnergy32 of rain-neuromorphics/energy-based-learning; Scellier, Ernoult,
Kendall, Kumar, "Energy-based learning algorithms for analog computing: a comparative study",
arXiv:2312.15103), the released code builds the network and its weights; holoeb gets the same weights,
the same batch and the released code's choices (async order odd layers first, max-pool derivative to
the first maximum, K iterations per perturbed phase started at the free state, the beta = 0 state of a
one-sided rule re-relaxed for K iterations (``rerelax_free``), the EP-nudged output moved by one
fixed-point step per iteration (``ep_output='step'``)). Both codes run a free phase of T iterations from
zero and each rule's parameter gradient; the table gives the free states' and the gradients' relative
differences, with holoeb set to the released code's choices and at holoeb's defaults (the free state as
the beta = 0 state, the exact output minimiser). A short free phase (T = 3) leaves the states far from
equilibrium, where those choices matter.

Needs a Python with both torch and holoeb (e.g. a venv with ``pip install torch`` and ``pip install -e .``):

    /tmp/torchvenv/bin/python experiments/crosscheck_released_rules.py /tmp/ebl \\
        --out experiments/results/crosscheck_released_rules

writes OUT.md and OUT.json.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmark_dchn_reference import import_reference  # noqa: E402

RULES = {"CL": "cl", "PEP": "p-ep", "NEP": "n-ep", "CEP": "c-ep", "PCpL": "p-cpl", "NCpL": "n-cpl", "CCpL": "c-cpl"}


def to_holoeb(name, a):
    """A released-code parameter (or gradient) in holoeb's layout: conv kernels OIHW -> HWIO, the dense
    kernel (C, H, W, out) -> (H * W * C, out) for holoeb's NHWC flattening, biases as they are."""
    if name.startswith("w") and a.ndim == 4 and name != "w5":
        return a.transpose(2, 3, 1, 0)
    if name == "w5":
        return a.transpose(1, 2, 0, 3).reshape(-1, a.shape[-1])
    return a


def nchw_to_nhwc(a):
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def rel(a, b):
    return float(np.linalg.norm(np.ravel(a) - np.ravel(b)) / max(np.linalg.norm(np.ravel(b)), 1e-300))


def reference_run(R, algorithm, channels, gain, beta, T, K, x, y, seed):
    """The released code's free phase and gradient for one batch: its Trainer.run body, float64."""
    torch = R.torch
    torch.manual_seed(seed)
    energy_fn = R.ConvHopfieldEnergy32(x.shape[1], 10, *channels, weight_gains=[gain] * 5)
    for p in energy_fn.params():
        p.state = p.state.double()
    cost_fn = R.SquaredError(energy_fn.layers()[-1])
    network = R.Network(energy_fn)
    R.namespace["network"] = network  # build_gradient_estimator reads the script's global `network`
    _, estimator = R.namespace["build_gradient_estimator"](energy_fn, cost_fn, algorithm, beta, K)
    inference = R.FixedPointMinimizer(energy_fn, network.free_layers())
    inference.num_iterations = T
    network.set_input(torch.from_numpy(x), reset=True)
    inference.compute_equilibrium()
    free = [layer.state.detach().numpy().copy() for layer in energy_fn.layers()[1:]]
    cost_fn.set_target(torch.from_numpy(y))
    grads = estimator.compute_gradient()
    names = [f"b{k}" for k in range(1, 6)] + [f"w{k}" for k in range(1, 6)]
    params = {n: to_holoeb(n, p.state.detach().numpy()) for n, p in zip(names, energy_fn.params())}
    g = {n: to_holoeb(n, t.detach().numpy()) for n, t in zip(names, grads)}
    return params, [nchw_to_nhwc(s) for s in free], g


def holoeb_run(model, params, rule, beta, T, K, released, x, y):
    import jax
    import jax.numpy as jnp

    from holoeb import make_estimator

    hp = dict(T_free=T, T_nudge=K, rerelax_free=released, ep_output="step" if released else "minimiser")
    if rule != "cl":
        hp["beta"] = beta
    est = make_estimator(rule, **hp)
    p = {"net": {k: jnp.asarray(v) for k, v in params.items()}, "readout": {}}
    res = jax.jit(lambda pp, xx, yy: est(model, pp, (xx, yy), None))(p, jnp.asarray(nchw_to_nhwc(x)), jnp.asarray(y))
    return [np.asarray(s) for s in res.free_state], {k: np.asarray(v) for k, v in res.grads["net"].items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ref", help="checkout of rain-neuromorphics/energy-based-learning")
    ap.add_argument("--channels", type=int, nargs=4, default=[4, 4, 8, 8])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--gain", type=float, default=1.0)
    ap.add_argument("--beta", type=float, default=0.25)
    ap.add_argument("--T", type=int, nargs="+", default=[3, 60], help="free-phase iterations")
    ap.add_argument("--K", type=int, default=15, help="iterations of each perturbed phase")
    ap.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="path stem of the table (.md) and the data (.json)")
    args = ap.parse_args()
    if args.batch < 1 or args.K < 1 or min(args.T) < 1:
        ap.error("--batch, --K and --T must be >= 1")

    import jax

    jax.config.update("jax_enable_x64", True)
    from holoeb.models import make_model
    from holoeb.reports import write_report

    R = import_reference(args.ref)
    R.torch.set_default_dtype(R.torch.float64)
    rng = np.random.default_rng(args.seed)
    x = rng.uniform(-1.0, 1.0, (args.batch, 1, 32, 32))
    y = rng.integers(0, 10, args.batch)
    model = make_model("dchn", in_channels=1, image_size=32, channels=tuple(args.channels), gains=args.gain,
                       pool_ties="first", schedule="async_odd_first", cost_scale=0.5)
    rows = []
    for T in args.T:
        for algorithm in args.rules:
            params, free_ref, g_ref = reference_run(R, algorithm, args.channels, args.gain, args.beta, T, args.K, x, y,
                                                    args.seed)
            row = {"T": T, "rule": algorithm, "grad_norm": float(np.sqrt(sum(np.sum(v ** 2) for v in g_ref.values())))}
            for released in (True, False):
                free, g = holoeb_run(model, params, RULES[algorithm], args.beta, T, args.K, released, x, y)
                key = "released" if released else "default"
                row[f"free_{key}"] = max(rel(a, b) for a, b in zip(free, free_ref))
                row[f"grad_{key}"] = rel(np.concatenate([g[k].ravel() for k in sorted(g_ref)]),
                                         np.concatenate([g_ref[k].ravel() for k in sorted(g_ref)]))
                row[f"grad_{key}_worst"] = max((rel(g[k], g_ref[k]), k) for k in g_ref)
            rows.append(row)
            print(row, flush=True)

    lines = [f"# holoeb vs the released PyTorch code: DCHN {'-'.join(map(str, args.channels))}, batch {args.batch}, "
             f"gain {args.gain:g}, beta {args.beta:g}, K = {args.K}, float64", "",
             "Relative difference of the free state (worst layer) and of the parameter gradient (all tensors; worst "
             "tensor in brackets) between the released code and holoeb with its choices (`rerelax_free=true`, "
             "`ep_output=step`) or at holoeb's defaults.", "",
             "| T free | rule | free state | gradient, released choices | gradient, holoeb defaults |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['T']} | {r['rule']} | {r['free_released']:.1e} | {r['grad_released']:.1e} "
                     f"({r['grad_released_worst'][1]} {r['grad_released_worst'][0]:.1e}) | {r['grad_default']:.1e} |")
    print("\n".join(lines))
    write_report(args.out, lines, {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
