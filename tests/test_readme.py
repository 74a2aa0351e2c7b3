"""The README's Python snippets run as written (one namespace, in order), and what they
compute is right: the custom model's Cauchy estimate matches RBP's gradient (a
reciprocal ring with symmetric coupling: d_beta sigma(u*) = delta), and the flax
version of the same ring gives the same true gradient as the hand-written one."""
import os
import re

import jax
import numpy as np

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def _snippets():
    text = open(README).read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _check_training_step(ns):
    """The one-page snippet's training step on the symmetric MLP (W_b = W_f^T) applies, through SGD,
    exactly the (deterministic) Cauchy estimate plus lam times the homeostatic gradient at the step's
    Hutchinson samples (its rng's second half). J is symmetric, so every sample's
    ||J eps||^2 - eps^T J^2 eps is 0 (L_homeo = 0); its gradient is not, per sample, only in expectation."""
    from holoeb import homeostasis

    flat = lambda t: {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(t)[0]}
    model, params, x = ns["model"], ns["params"], ns["x"]
    _, hg = homeostasis.homeostatic_grad(model, params, x, ns["res"].free_state, jax.random.split(jax.random.PRNGKey(3))[1])
    old, new, g, h = flat(params), flat(ns["new_params"]), flat(ns["res"].grads), flat(hg)
    assert set(old) == set(new) == set(g) == set(h)
    assert bool(ns["metrics"]["applied"]) and abs(float(ns["metrics"]["homeo_loss"])) < 1e-6
    assert max(float(np.abs(np.asarray(v)).max()) for v in h.values()) > 1e-5  # the check below sees the homeostatic term
    for k in old:
        np.testing.assert_allclose(np.asarray(new[k]), np.asarray(old[k] - 0.1 * (g[k] + 1.0 * h[k])), rtol=1e-5, atol=1e-6)


def test_readme_snippets_run_and_agree():
    blocks = _snippets()
    assert len(blocks) >= 3, "the README's one-page library section has three Python snippets"
    ns = {}
    for i, code in enumerate(blocks):
        exec(compile(code, README, "exec"), ns)  # noqa: S102
        if i == 0:
            _check_training_step(ns)
    res = ns["res"]
    # the custom model: N = 4 Cauchy estimate ~ RBP (bias O(|beta|^4), symmetric coupling)
    flat = lambda t: np.concatenate([np.ravel(np.asarray(v)) for v in jax.tree_util.tree_leaves(t)])
    a, b = flat(ns["g_c4"]["net"]), flat(ns["g_rbp"]["net"])
    assert np.linalg.norm(a - b) <= 1e-3 * np.linalg.norm(b)
    # the flax ring with the same weights gives the same true gradient as the hand-written ring
    by_name = lambda tree: {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
    fnet = by_name(ns["fp"]["net"])
    kernel = next(v for k, v in fnet.items() if "kernel" in k)
    V = next(v for k, v in fnet.items() if k.endswith("['V']"))
    same = {"net": {"W": kernel, "V": V}, "readout": ns["fp"]["readout"]}
    ref = ns["make_estimator"]("true", T_free=200)(ns["ring"], same, (ns["xb"], ns["yb"]), None)
    flax_V = next(v for k, v in by_name(res.grads["net"]).items() if k.endswith("['V']"))
    np.testing.assert_allclose(np.asarray(ref.grads["net"]["V"]), np.asarray(flax_V), rtol=1e-4, atol=1e-6)
    assert float(ref.loss) == float(res.loss) or abs(float(ref.loss) - float(res.loss)) < 1e-5
