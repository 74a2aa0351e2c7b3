import gc
import os

# The suite is compile-bound (hundreds of small jitted programs, each run a few times): LLVM at
# optimisation level 0 compiles them ~40% faster on this CPU and the numerics the tests assert do
# not depend on it. Subprocesses started by the tests inherit the flag; a user's XLA_FLAGS that
# already sets the level wins.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import holoeb  # noqa: F401
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from holoeb import dynamics, make_model


def tree_rel(a, b):
    """||a - b|| / ||b|| over all leaves of two pytrees."""
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    num = sum(float(jnp.sum(jnp.abs(x - y) ** 2)) for x, y in zip(la, lb))
    den = sum(float(jnp.sum(jnp.abs(y) ** 2)) for y in lb)
    return float(np.sqrt(num / den))


def small_problem(asymmetry=0.0, model="mlp", batch=3, seed=0, dtype="float64", **kw):
    """A small random net (12 -> 9 -> 7 -> 5) with a random batch, in float64."""
    kwargs = dict(in_features=12, hidden=(9, 7), num_classes=5, dtype=dtype, **kw)
    if model == "mlp":
        kwargs["asymmetry"] = asymmetry
    m = make_model(model, **kwargs)
    p = m.init(jax.random.PRNGKey(seed))
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (batch, 12), jnp.dtype(dtype))
    y = jnp.arange(batch, dtype=jnp.int32) % 5
    return m, p, dynamics.Batch(x, y)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop every compiled program after each test file. Each XLA:CPU executable keeps several
    memory mappings; one process running the whole suite reached Linux's default limit of 65,530
    mappings (vm.max_map_count) and segfaulted inside the compiler, so a process must not keep
    all of them (measured: test_energy_rules.py alone leaves 4,300 mappings, 700 after this)."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield
