"""Alignment and symmetry diagnostics (generalized hEP paper, Sec. 3.3-4, Figs. 2-4)."""
import jax
import jax.numpy as jnp


def per_example_cosine(a, b, eps=1e-30):
    """Cosine between two (B, ...) arrays, per example, shape (B,)."""
    a = jnp.real(a).reshape(a.shape[0], -1)
    b = jnp.real(b).reshape(b.shape[0], -1)
    num = jnp.sum(a * b, axis=1)
    den = jnp.linalg.norm(a, axis=1) * jnp.linalg.norm(b, axis=1)
    return num / jnp.maximum(den, eps)


def layer_cosines(error, reference):
    """Batch-mean per-layer cosine between two error vectors (tuples of (B, ...)), shape (L,)."""
    return jnp.stack([jnp.mean(per_example_cosine(e, r)) for e, r in zip(error, reference)])


def flatten_examples(t):
    """Real parts of a tuple of (B, ...) arrays concatenated per example, shape (B, n)."""
    return jnp.concatenate([jnp.real(v).reshape(v.shape[0], -1) for v in t], axis=1)


def overall_cosine(error, reference):
    """Per-example cosine over all layers concatenated, shape (B,)."""
    return per_example_cosine(flatten_examples(error), flatten_examples(reference))


def tree_cosine(a, b, eps=1e-30):
    """Cosine between two pytrees (or arrays) flattened, e.g. two parameter gradients."""
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    num = sum(jnp.vdot(x.ravel(), y.ravel()).real for x, y in zip(la, lb))
    na = jnp.sqrt(sum(jnp.sum(jnp.abs(x) ** 2) for x in la))
    nb = jnp.sqrt(sum(jnp.sum(jnp.abs(y) ** 2) for y in lb))
    return num / jnp.maximum(na * nb, eps)


def weight_angles(model, params):
    """Angle in degrees between forward weights and transposed backward weights,
    {name: angle}; empty for models without reciprocal weights."""
    out = {}
    for name, wf, wbt in model.weight_pairs(params["net"]):
        c = jnp.vdot(wf.ravel(), wbt.ravel()).real / (jnp.linalg.norm(wf) * jnp.linalg.norm(wbt))
        out[name] = jnp.degrees(jnp.arccos(jnp.clip(c, -1.0, 1.0)))
    return out
