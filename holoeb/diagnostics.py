"""Alignment and symmetry diagnostics (generalized hEP paper, Sec. 3.3-4, Figs. 2-4)."""
import jax
import jax.numpy as jnp


def _unit_rows(v):
    """Rows of a (B, n) array scaled to unit norm (zero rows stay zero). Each row is first
    divided by its largest magnitude, so neither its squared norm underflows nor overflows."""
    scale = jnp.max(jnp.abs(v), axis=1, keepdims=True)
    v = v / jnp.where(scale > 0, scale, 1.0)
    n = jnp.linalg.norm(v, axis=1, keepdims=True)
    return v / jnp.where(n > 0, n, 1.0)


def per_example_cosine(a, b):
    """Cosine between two (B, ...) arrays, per example, shape (B,): the dot product of the
    unit vectors, clipped to [-1, 1]; 0 where either vector is zero."""
    a = _unit_rows(jnp.real(a).reshape(a.shape[0], -1))
    b = _unit_rows(jnp.real(b).reshape(b.shape[0], -1))
    return jnp.clip(jnp.sum(a * b, axis=1), -1.0, 1.0)


def layer_cosines(error, reference):
    """Batch-mean per-layer cosine between two error vectors (tuples of (B, ...)), shape (L,)."""
    return jnp.stack([jnp.mean(per_example_cosine(e, r)) for e, r in zip(error, reference)])


def active_layer_cosines(model, u, error, reference):
    """Batch-mean per-layer cosine on the units active at the state u (``model.active_units``),
    shape (L,): saturated units, where a nudge-based error vector is zero by construction while
    RBP's delta is not (-d sigma(u*)/d beta = D delta, D = sigma'), are left out of both vectors.
    A layer's mean is over the examples with at least one active unit there (0 if none has)."""
    out = []
    for m, e, r in zip(model.active_units(u), error, reference):
        c = per_example_cosine(m * e, m * r)
        has = jnp.any(m.reshape(m.shape[0], -1) > 0, axis=1)
        out.append(jnp.sum(jnp.where(has, c, 0.0)) / jnp.maximum(jnp.sum(has), 1))
    return jnp.stack(out)


def clamped_fractions(model, u):
    """Per layer, the fraction of units (over the batch) at the activation's lower and at its upper
    bound at the state u (``model.clamped_units``): two arrays of shape (L,). A clamped unit passes no
    error backward (sigma' = 0 there); what it passes forward depends on which bound it sits at for each
    example (``frozen_fractions``)."""
    masks = model.clamped_units(u)
    return (jnp.stack([jnp.mean(lo) for lo, _ in masks]), jnp.stack([jnp.mean(hi) for _, hi in masks]))


def frozen_fractions(model, u):
    """Per layer, the fraction of units that sit at the same bound (lower or upper) for every example of
    the batch at the state u, shape (L,). Such a unit passes the same value forward whatever the input and
    no error backward: a hidden layer with a frozen fraction near 1 disconnects the layers above it from
    the input, and the layers below it from the loss (no rule, exact or not, then trains them). At most
    lower + upper of ``clamped_fractions``, equal to it for a batch of one example."""
    out = []
    for lo, hi in model.clamped_units(u):
        lo = lo.reshape(lo.shape[0], -1) > 0
        hi = hi.reshape(hi.shape[0], -1) > 0
        out.append(jnp.mean(jnp.all(lo, axis=0) | jnp.all(hi, axis=0)))
    return jnp.stack(out)


def flatten_examples(t):
    """Real parts of a tuple of (B, ...) arrays concatenated per example, shape (B, n)."""
    return jnp.concatenate([jnp.real(v).reshape(v.shape[0], -1) for v in t], axis=1)


def overall_cosine(error, reference):
    """Per-example cosine over all layers concatenated, shape (B,)."""
    return per_example_cosine(flatten_examples(error), flatten_examples(reference))


def tree_cosine(a, b):
    """Cosine Re<a, b> / (|a| |b|) between two pytrees (or arrays) flattened, e.g. two parameter
    gradients; in [-1, 1] whatever the magnitudes, 0 if either is zero."""
    flat = lambda t: jnp.concatenate([jnp.concatenate([jnp.real(x).ravel(), jnp.imag(x).ravel()])
                                      for x in jax.tree_util.tree_leaves(t)])[None]
    return per_example_cosine(flat(a), flat(b))[0]


def tree_relative_distance(a, b):
    """||a - b|| / ||b|| over two pytrees of the same structure (complex leaves by modulus)."""
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    num = sum(jnp.sum(jnp.abs(x - y) ** 2) for x, y in zip(la, lb))
    den = sum(jnp.sum(jnp.abs(y) ** 2) for y in lb)
    return jnp.sqrt(num / den)


def weight_angles(model, params):
    """Angle in degrees between forward weights and transposed backward weights,
    {name: angle}; empty for models without reciprocal weights."""
    out = {}
    for name, wf, wbt in model.weight_pairs(params["net"]):
        out[name] = jnp.degrees(jnp.arccos(tree_cosine(wf, wbt)))
    return out
