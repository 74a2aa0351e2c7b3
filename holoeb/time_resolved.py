"""Time-resolved gradient check: the GDU property (Ernoult, Grollier, Querlioz, Bengio,
Scellier, "Updates of Equilibrium Prop Match Gradients of Backprop Through Time in an RNN
with Static Input", NeurIPS 2019, arXiv:1905.13633, Theorem 1).

From the free fixed point u* of a batch, an estimator cut after k steps of its nudged
dynamics (EP, Cauchy N, the seven energy rules: k nudged iterations; continuous: k
iterations at each point of the oscillating nudge) gives a gradient g_rule(k); truncated BP through the
last k iterations of the free dynamics at u* gives

    g_TBP(k) = sum_{t<k} (dPhi/dtheta)^T (J^T)^t dL/du,    J = dPhi/du (u*).

GDU: for a model whose J is symmetric (an energy's Hessian, in the right coordinates)
and beta -> 0, the EP trajectory u_beta(t) - u* ~ -beta sum_{s<t} J^s dL/du follows the
same Neumann series, so g_EP(k) ~ g_TBP(k) at every k, not only at equilibrium; both tend
to RBP's gradient as k grows. The check reports, per rule and k, the cosine and the
relative distance of g_rule(k) to g_TBP(k) and to RBP's gradient, and the per-layer
cosine of the neuronal error vectors to TBP's (on all units, and on the units whose
activation is not saturated at u*).

Every rule is cut with `Estimator.truncated(k)` and restarted from the same free state
(init_state = u*, no further free iterations), so its value at k = K equals the rule's own
estimate with K nudged steps from that free state.
"""
import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from holoeb import dynamics
from holoeb.diagnostics import active_layer_cosines, layer_cosines, tree_cosine, tree_relative_distance
from holoeb.errors import ConfigError
from holoeb.estimators import make_estimator
from holoeb.estimators.base import assemble_grads, rbp_delta
from holoeb.linear_solve import SolveConfig
from holoeb.solvers import Relaxation


def frozen_free(estimator):
    """``estimator`` with a free phase of 0 iterations (of its own schedule): started from a
    given free state it keeps that state."""
    return dataclasses.replace(estimator, free=estimator.free.exactly(0))


def free_fixed_point(model, params, x, free):
    """u* and its per-example residual from the free ``Relaxation``."""
    sol, _ = free.run_model(model, params["net"], x)
    return sol.state, sol.residual


def time_resolved_check(model, params, batch, rules, K, free=Relaxation(150), solve_tol=1e-8, return_grads=False):
    """The GDU check on one batch. ``rules``: {label: Estimator} (each must implement
    ``truncated``); ``K``: the largest k; ``free``: the free relaxation that gives u*.

    Returns a dict: k (1..K), free_residual (max), and per label
      cosine_tbp / rel_tbp: cosine and ||g - g_TBP(k)|| / ||g_TBP(k)|| of the parameter
        gradients (net parameters), per k;
      cosine_rbp / rel_rbp: the same against RBP's gradient (the k -> infinity limit);
      error_cosine_tbp: per-layer batch-mean cosine of the error vectors to TBP's, (K, L);
      error_cosine_tbp_active: the same on the units active at u* (``model.active_units``;
        TBP's error is nonzero on saturated units, a nudge-based one is not), (K, L);
    plus "tbp": TBP's own cosine_rbp / rel_rbp per k. With ``return_grads`` each record also
    holds "grads", the K gradient pytrees (not JSON-serialisable)."""
    x, y = batch
    batch = dynamics.Batch(x, y)
    u_star, res = free_fixed_point(model, params, x, free)
    u_star = tuple(jax.lax.stop_gradient(v) for v in u_star)
    delta, _ = rbp_delta(model, params, batch, u_star, SolveConfig(solve_tol, 20, 50))
    g_rbp = assemble_grads(model, params, batch, u_star, delta)["net"]

    tbp = make_estimator("tbp", free=free.exactly(0))
    runs = {label: frozen_free(est) for label, est in rules.items()}
    for label, est in runs.items():
        est.check_model(model)
        est.truncated(1)  # raises ConfigError for an estimator without a time axis

    def call(est):
        return jax.jit(lambda p, b, u0: est(model, p, b, None, u0))(params, batch, u_star)

    out = {"k": list(range(1, K + 1)), "free_residual": float(jnp.max(res)),
           "tbp": {"cosine_rbp": [], "rel_rbp": []}}
    keys = ("cosine_tbp", "rel_tbp", "cosine_rbp", "rel_rbp", "error_cosine_tbp", "error_cosine_tbp_active") + (("grads",) if return_grads else ())
    for label in list(runs) + ["tbp"]:
        out[label] = {key: [] for key in keys if label != "tbp" or key in ("cosine_rbp", "rel_rbp", "grads")}
    for k in range(1, K + 1):
        t = call(tbp.truncated(k))
        g_t = t.grads["net"]
        out["tbp"]["cosine_rbp"].append(float(tree_cosine(g_t, g_rbp)))
        out["tbp"]["rel_rbp"].append(float(tree_relative_distance(g_t, g_rbp)))
        if return_grads:
            out["tbp"]["grads"].append(t.grads)
        for label, est in runs.items():
            r = call(est.truncated(k))
            g = r.grads["net"]
            rec = out[label]
            rec["cosine_tbp"].append(float(tree_cosine(g, g_t)))
            rec["rel_tbp"].append(float(tree_relative_distance(g, g_t)))
            rec["cosine_rbp"].append(float(tree_cosine(g, g_rbp)))
            rec["rel_rbp"].append(float(tree_relative_distance(g, g_rbp)))
            rec["error_cosine_tbp"].append(np.asarray(layer_cosines(r.error, t.error)).tolist())
            rec["error_cosine_tbp_active"].append(
                np.asarray(active_layer_cosines(model, u_star, r.error, t.error)).tolist())
            if return_grads:
                rec["grads"].append(r.grads)
    return out


def default_rules(model, beta=0.05, N=6):
    """The EP family that runs on ``model``: real-nudge EP, Cauchy N and continuous on
    holomorphic models; the seven energy rules on energy models (EP and TBP-style baselines
    need nothing else)."""
    from holoeb.models.base import EnergyModel

    rules = {"ep": make_estimator("ep", beta=beta)}
    if model.holomorphic:
        rules[f"cauchy-N{N}"] = make_estimator("cauchy", beta=beta, N=N)
        rules["continuous"] = make_estimator("continuous", beta=beta, N=4)
    if isinstance(model, EnergyModel):
        for name in ("p-ep", "n-ep", "c-ep", "cl", "p-cpl", "n-cpl", "c-cpl"):
            rules[name] = make_estimator(name) if name == "cl" else make_estimator(name, beta=beta)
    return rules


def plot_time_resolved(result, path, title=""):
    """Cosine and relative distance to TBP(k) per rule vs k, and TBP's own approach to RBP."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = result["k"]
    labels = [k for k in result if isinstance(result[k], dict) and "cosine_tbp" in result[k]]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, label in enumerate(labels):
        rec = result[label]
        ax[0].plot(ks, rec["cosine_tbp"], "o-", ms=3, label=label, color=f"C{i % 10}")
        ax[1].semilogy(ks, rec["rel_tbp"], "o-", ms=3, label=label, color=f"C{i % 10}")
        ax[2].semilogy(ks, rec["rel_rbp"], "o-", ms=3, label=label, color=f"C{i % 10}")
    ax[2].semilogy(ks, result["tbp"]["rel_rbp"], "k--", label="TBP(k)")
    ax[0].set(xlabel="k (nudged iterations)", ylabel="cosine to TBP(k)", title="direction")
    ax[1].set(xlabel="k", ylabel="||g(k) - g_TBP(k)|| / ||g_TBP(k)||", title="distance to TBP(k)")
    ax[2].set(xlabel="k", ylabel="||g(k) - g_RBP|| / ||g_RBP||", title="distance to RBP")
    ax[0].legend(fontsize=7)
    fig.suptitle(title + f"  (free residual {result['free_residual']:.1e})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_rule(spec, beta):
    """'name' or 'name:key=value,key=value' -> (label, Estimator); beta defaults to ``beta``
    where the estimator takes one (CL has none). The label is the name followed by the given
    settings ('cauchy:N=2,beta=0.1' -> 'cauchy-N2-beta0.1'); a defaulted beta is left out."""
    from holoeb.config import parse_value
    from holoeb.estimators import estimator_fields

    name, _, rest = spec.partition(":")
    hp = {}
    for item in filter(None, rest.split(",")):
        if "=" not in item:
            raise ConfigError(f"rule spec {spec!r}: expected name:key=value,..., got {item!r}")
        k, v = item.split("=", 1)
        hp[k.strip()] = parse_value(v.strip())
    label = name + "".join(f"-{k}{v}" for k, v in hp.items())
    if name not in ("cl",) and "beta" in estimator_fields(name) and "beta" not in hp:
        hp["beta"] = beta
    return label, make_estimator(name, **hp)


def parse_rules(specs, beta):
    """{label: Estimator} for a list of rule specs (`parse_rule`); two specs giving the same
    label (the same rule twice) are refused rather than one silently replacing the other."""
    rules = {}
    for spec in specs:
        label, est = parse_rule(spec, beta)
        if label in rules:
            raise ConfigError(f"rule {spec!r} is given twice (label {label!r}): give each rule once")
        rules[label] = est
    return rules


def run_time_resolved_experiment(out, *, config=None, params=None, rules=None, beta=0.05, N=6, K=20, T_free=300,
                                 batch_size=32, data_dir=None, seed=0, log=print):
    """`time_resolved_check` on the first ``batch_size`` test images of a model: a run directory's trained
    parameters (``params``: its config.json and checkpoint) or a training config's model at initialisation
    (``config``, a JSON path; None: the default config) with init seed ``seed``. ``rules``: specs
    (`parse_rules`, nudge ``beta`` where a spec gives none; default `default_rules` with Cauchy N = ``N``).
    Writes <out>/gdu.json (the check plus its settings) and <out>/gdu.png; returns the result."""
    from holoeb.config import load_config
    from holoeb.data.registry import load_dataset
    from holoeb.models import make_model
    from holoeb.params_io import load_run

    if K < 1 or T_free < 1 or batch_size < 1:
        raise ConfigError(f"--K, --T-free and --batch-size must be >= 1, got {K}, {T_free}, {batch_size}")
    rules = parse_rules(rules, beta) if rules else None  # bad specs fail before any loading
    if params:
        cfg, model, p = load_run(params)
    else:
        cfg = load_config(config)
        model = make_model(cfg.model.name, **cfg.model.kwargs)
        p = model.init(jax.random.PRNGKey(seed))
    ds = load_dataset(cfg.data.dataset, "test", model.input_shape, data_dir or cfg.data.data_dir, batch_size,
                      cfg.data.normalize)
    x, y = ds.take(batch_size)
    rules = rules or default_rules(model, beta, N)
    t0 = time.time()
    res = time_resolved_check(model, p, (jnp.asarray(x), jnp.asarray(y)), rules, K, Relaxation(T_free, schedule=None))
    res["settings"] = dict(model={"name": cfg.model.name, **cfg.model.kwargs}, params=params or f"init seed {seed}",
                           beta=beta, K=K, T_free=T_free, batch_size=batch_size,
                           rules={k: repr(v) for k, v in rules.items()}, time_s=time.time() - t0)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "gdu.json"), "w") as f:
        json.dump(res, f, indent=1)
    title = f"{cfg.model.name} ({'trained: ' + params if params else 'init'}), batch {batch_size}"
    plot_time_resolved(res, os.path.join(out, "gdu.png"), title)
    log(f"free residual {res['free_residual']:.2e}; rel. distance to TBP(k) at k = 1, K/2, K "
        f"and to RBP at K; per-layer error cosine to TBP(K) on active units:")
    for label in rules:
        r = res[label]["rel_tbp"]
        act = "/".join(f"{c:.3f}" for c in res[label]["error_cosine_tbp_active"][-1])
        log(f"  {label:14s} {r[0]:.3g}  {r[len(r) // 2]:.3g}  {r[-1]:.3g}   | RBP {res[label]['rel_rbp'][-1]:.3g}"
            f"   | error cos {act}")
    log(f"  {'tbp':14s} to RBP at k = 1, K: {res['tbp']['rel_rbp'][0]:.3g}  {res['tbp']['rel_rbp'][-1]:.3g}")
    log(f"wrote {out}/gdu.json and gdu.png ({time.time() - t0:.0f} s)")
    return res
