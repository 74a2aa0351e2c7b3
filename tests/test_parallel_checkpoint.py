"""Data parallelism (2 host CPU devices in a subprocess), half-precision free phase,
top-5 evaluation, and orbax checkpoint / kill-and-resume."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from holoeb import dynamics
from holoeb.config import load_config
from holoeb.data.registry import register_dataset
from holoeb.estimators import make_estimator
from holoeb.models import make_model
from holoeb.precision import with_free_dtype
from holoeb.training import TrainingInterrupted, train
from holoeb.evaluation import evaluate_dataset, make_eval_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blobs(num_classes, n=96, side=4, seed=0):
    """Learnable synthetic images: a class-dependent pattern plus noise, uint8."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(40, 215, (num_classes, side, side))

    def loader(split, data_dir):
        r = np.random.default_rng({"train": 1, "test": 2}[split])
        y = np.arange(n) % num_classes
        x = centers[y] + r.normal(0, 25, (n, side, side))
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int32)

    return loader


def _cfg(**over):
    base = {
        "model": {"name": "mlp", "in_features": 16, "hidden": [8], "num_classes": 12, "asymmetry": 1.0},
        "estimator": {"name": "cauchy", "N": 2, "beta": 0.5, "T_free": 20, "T_nudge": 10},
        "optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "cosine",
                      "lr_scales": {"wf2": 2.0, "readout": 0.5}},
        "data.dataset": "blobs12", "training.epochs": 2, "training.batch_size": 24, "training.eval_batch_size": 40,
        "training.checkpoint_every": 2, "training.warm_start": "free", "homeostasis.lambda": 0.5, "diagnostics.batch_size": 16, "diagnostics.num_samples": 4,
    }
    base.update(over)
    return load_config(None, base)


def _strip_times(hist):
    return [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in hist]


def kill_and_resume_scenario(tmp):
    """Uninterrupted run vs a run stopped after 7 steps and resumed from its last checkpoint.

    96/24 = 4 steps per epoch, checkpoints every 2 steps: the kill at global step 7 loses
    step 7, the resume restarts from the mid-epoch checkpoint of global step 6 (epoch 2, step 2).
    With training.warm_start the carried free state is part of the checkpoint (the resumed
    step 7 starts from step 6's free state, as in the uninterrupted run)."""
    from holoeb.checkpoint import Checkpointer

    register_dataset("blobs12", _blobs(12), num_classes=12)
    quiet = lambda *a: None
    full = train(_cfg(), os.path.join(tmp, "full"), progress=False, log=quiet)
    run = os.path.join(tmp, "killed")
    try:
        train(_cfg(), run, progress=False, log=quiet, stop_after_steps=7)
        raise AssertionError("not interrupted")
    except TrainingInterrupted:
        pass
    ck = Checkpointer(os.path.join(run, "checkpoints"))
    assert ck.latest_step() == 6, ck.latest_step()
    ck.close()
    logs = []
    resumed = train(_cfg(), run, progress=False, log=logs.append)
    assert any("resuming" in line and "epoch 2, step 2" in line for line in logs), logs
    assert _strip_times(resumed) == _strip_times(full), (resumed, full)
    on_disk = json.load(open(os.path.join(run, "metrics.json")))["history"]
    assert _strip_times(on_disk) == _strip_times(full)
    assert 0 <= full[-1]["val_top5_error"] <= full[-1]["val_error"]  # 12 classes: top-5 reported
    try:
        train(_cfg(**{"optimizer.learning_rate": 0.1}), run, progress=False, log=quiet)
        raise AssertionError("config change not detected")
    except ValueError as e:
        assert "different config" in str(e)
    print("OK")


def test_kill_and_resume_reproduces_uninterrupted_run(tmp_path):
    """Run in a subprocess with a persistent compilation cache so the three runs compile once."""
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "xla_cache"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1", JAX_PLATFORMS="cpu")
    code = f"import sys; sys.path.insert(0, {os.path.join(ROOT, 'tests')!r}); import test_parallel_checkpoint as t; " \
           f"t.kill_and_resume_scenario({str(tmp_path)!r})"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr[-5000:]


def test_evaluation_does_not_depend_on_the_batch_size():
    """Every example relaxes on its own (no batch coupling in the DCHN's dynamics), so a run's validation
    numbers do not depend on training.eval_batch_size, and run-config comparison leaves it out."""
    from holoeb.data.pipeline import Dataset
    from holoeb.run_directory import comparable_config

    m = make_model("dchn", in_channels=1, image_size=16, channels=(3, 4, 4, 4), num_classes=5, gains=0.5)
    p = m.init(jax.random.PRNGKey(3))
    rng = np.random.default_rng(0)
    ds = Dataset(rng.uniform(0, 1, (45, 16, 16, 1)).astype(np.float32), (np.arange(45) % 5).astype(np.int32))
    ev = jax.jit(make_eval_step(m, 12, per_example_residual=True))
    outs = [evaluate_dataset(ev, p, ds, bs, tol=1e-4) for bs in (45, 16, 7)]
    for o in outs[1:]:
        assert o["error"] == outs[0]["error"] and o["unconverged"] == outs[0]["unconverged"]
        for k in ("loss", "residual", "residual_median"):
            np.testing.assert_allclose(o[k], outs[0][k], rtol=1e-5, err_msg=k)
    a = _cfg().to_dict()
    b = _cfg(**{"training.eval_batch_size": 7}).to_dict()
    assert comparable_config(a) == comparable_config(b)
    assert comparable_config(_cfg(**{"training.batch_size": 12}).to_dict()) != comparable_config(a)


def test_top5_and_masked_evaluation_against_numpy():
    m = make_model("mlp", in_features=16, hidden=(8,), num_classes=12)
    p = m.init(jax.random.PRNGKey(0))
    from holoeb.data.pipeline import Dataset
    from holoeb.solvers import relax

    x, y = _blobs(12)("test", None)
    ds = Dataset(x.reshape(96, 16).astype(np.float32) / 255.0, y)
    ev = jax.jit(make_eval_step(m, 20))
    out = evaluate_dataset(ev, p, ds, 40)  # 96 = 40 + 40 + 16: a ragged last batch
    drive = m.drive(p["net"], jnp.asarray(ds.x))
    u = relax(lambda v: m.phi(p["net"], v, drive), m.init_state(jnp.asarray(ds.x)), 20).state
    sc = np.asarray(m.predict(p, u))
    top5 = np.argsort(-sc, axis=1)[:, :5]
    np.testing.assert_allclose(out["top5_error"], 100 * (1 - np.mean(np.any(top5 == ds.y[:, None], 1))), atol=1e-9)
    np.testing.assert_allclose(out["error"], 100 * (1 - np.mean(sc.argmax(1) == ds.y)), atol=1e-9)
    # a padded row with mask 0 changes nothing
    xb, mask = np.concatenate([ds.x[:3], ds.x[:1]]), np.array([1.0, 1.0, 1.0, 0.0], np.float32)
    yb = np.concatenate([ds.y[:3], ds.y[:1]])
    a = ev(p, dynamics.Batch(jnp.asarray(xb), jnp.asarray(yb)), jnp.asarray(mask))
    b = ev(p, dynamics.Batch(jnp.asarray(ds.x[:3]), jnp.asarray(ds.y[:3])))
    for u_, v_ in zip(a, b):
        np.testing.assert_allclose(u_, v_, rtol=1e-6)


def test_half_precision_free_phase():
    """The bfloat16 free phase is really low precision (residual >> float32's without refinement) and
    the float32 refinement restores a full-precision fixed point; the wrapped estimator keeps its
    hyper-parameters and runs."""
    m = make_model("asym_conv", in_shape=(8, 8, 2), channels=(4, 6), num_classes=3)
    params = m.init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 2))
    est = make_estimator("ep", beta=0.2, T_free=60, T_nudge=5)
    raw_est, fix_est = with_free_dtype(est, "bfloat16", 0), with_free_dtype(est, "bfloat16", 20)
    assert fix_est.beta == 0.2 and fix_est.T_free == 60 and fix_est.free_refine_steps == 20 and fix_est.name == "ep"

    @jax.jit
    def phases(p):
        return est.free_phase(m, p, x)[0], raw_est.free_phase(m, p, x)[0], fix_est(m, p, dynamics.Batch(x, jnp.array([0, 1, 2, 0])), jax.random.PRNGKey(0))

    ref, raw, res = phases(params)
    assert all(v.dtype == jnp.float32 for v in res.free_state)
    assert float(jnp.max(raw.residual)) > 100 * float(jnp.max(ref.residual))
    assert float(jnp.max(res.residual)) < 1e-5
    for a, b in zip(res.free_state, ref.state):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(res.grads))
    assert with_free_dtype(est, "float16", 10).free_dtype == "float16"
    with pytest.raises(ValueError, match="free_dtype"):
        with_free_dtype(est, "int8")


TWO_DEVICES = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax
    jax.config.update("jax_enable_x64", True)
    assert jax.device_count() == 2, jax.devices()
    from holoeb import dynamics, parallel
    from holoeb.estimators import make_estimator
    from holoeb.models import make_model
    from holoeb.train_step import make_train_step

    def check(model, est, lam, B):
        params = model.init(jax.random.PRNGKey(0))
        x = jax.random.normal(jax.random.PRNGKey(1), (B,) + tuple(model.input_shape), jnp.float64)
        batch = dynamics.Batch(np.asarray(x), np.arange(B) % model.num_classes)
        tx = optax.sgd(0.1, momentum=0.9)
        fn = make_train_step(model, est, tx, lam, 5)
        rng = jax.random.PRNGKey(3)
        one = jax.jit(fn)(params, tx.init(params), dynamics.Batch(*map(jnp.asarray, batch)), rng)
        mesh = parallel.make_mesh()
        sb = parallel.shard_batch(batch, mesh)
        assert [s.data.shape[0] for s in sb.x.addressable_shards] == [B // 2, B // 2]
        p2, o2, k2 = parallel.replicate((params, tx.init(params), rng), mesh)
        two = parallel.shard_step(fn, mesh)(p2, o2, sb, k2)
        assert all(len(v.sharding.device_set) == 2 for v in jax.tree_util.tree_leaves(two[0]))
        d = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree_util.tree_leaves(one[:2]), jax.tree_util.tree_leaves(two[:2])))
        moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree_util.tree_leaves(one[0]), jax.tree_util.tree_leaves(params)))
        print(type(model).__name__, est.name, "max |1 dev - 2 dev| =", d, "update size", moved)
        assert moved > 1e-4 and d < 1e-10 * max(1.0, moved), (d, moved)

    check(make_model("asym_conv", in_shape=(8, 8, 2), channels=(3, 4), num_classes=3, dtype="float64"),
          make_estimator("cauchy", N=2, beta=0.3, T_free=30, T_nudge=10), 1.0, 4)
    print("OK")
    """
)


def test_two_device_data_parallel_step_equals_one_device():
    # two host devices, keeping the suite's XLA flags (conftest's compile-time optimisation level)
    flags = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", TWO_DEVICES], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr
