"""Checkpoint / resume with orbax-checkpoint (optional extra ``holoeb[checkpoint]``).

A checkpoint holds everything a killed run needs to continue bit-for-bit:
- ``state``: parameters, optimizer state and the jax rng key (arrays, saved with
  orbax's StandardSave, restored with the shardings of a template so a
  data-parallel run restores replicated arrays);
- ``meta`` (JSON): epoch, step inside the epoch, global step, the numpy data-order
  generator's state at the start of the epoch (the shuffle is redrawn and the
  finished batches skipped), the running metric sums of the epoch, and the
  per-epoch history so far.
Saves are atomic (orbax writes a temporary directory and renames it), so a kill
during a save leaves the previous checkpoint intact; ``max_to_keep`` bounds disk use.
"""
import os

import jax

from holoeb.errors import ConfigError


def _ocp():
    try:
        import orbax.checkpoint as ocp
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("checkpointing needs orbax-checkpoint: pip install 'holoeb[checkpoint]' "
                          "(or set training.checkpoint=false)") from e
    return ocp


class Checkpointer:
    def __init__(self, directory, max_to_keep=2):
        ocp = _ocp()
        self._ocp = ocp
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            item_names=("state", "meta"),
        )

    def latest_step(self):
        return self.manager.latest_step()

    def save(self, step, state, meta):
        """Blocking save of (state pytree, JSON-able meta) under the integer ``step``."""
        a = self._ocp.args
        self.manager.save(int(step), args=a.Composite(state=a.StandardSave(state), meta=a.JsonSave(meta)), force=True)
        self.manager.wait_until_finished()

    def restore(self, template, step=None):
        """(state, meta) of ``step`` (default: latest); ``template`` gives structure, dtypes and
        shardings (None: the saved structure, as host arrays and plain containers)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        a = self._ocp.args
        abstract = None if template is None else jax.tree_util.tree_map(self._ocp.utils.to_shape_dtype_struct, template)
        out = self.manager.restore(step, args=a.Composite(state=a.StandardRestore(abstract), meta=a.JsonRestore()))
        return out.state, out.meta

    def restore_latest_intact(self, template, warn=print):
        """(step, state, meta) of the newest checkpoint that restores, newest first: a damaged
        one (e.g. a file truncated by a full disk) is skipped with a warning through ``warn``,
        and deleted once an older one restores (the run then saves that step again)."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        damaged = []
        for step in steps:
            try:
                state, meta = self.restore(template, step)
            except Exception as e:  # noqa: BLE001  (orbax / tensorstore raise many kinds)
                warn(f"warning: checkpoint {step} in {self.directory} does not restore "
                     f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); trying an older one")
                damaged.append(step)
                continue
            for bad in damaged:
                self.manager.delete(bad)
            return step, state, meta
        raise ConfigError(f"no checkpoint in {self.directory} restores (tried steps {steps}); "
                          "start over with --set training.resume=false")

    def close(self):
        self.manager.close()


def load_params(run_dir, step=None):
    """Parameters {"net": ..., "readout": ...} of a training run's latest (or given) checkpoint
    in ``run_dir/checkpoints``."""
    directory = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{run_dir!r} has no checkpoints/ directory (was it trained with training.checkpoint=false?)")
    ckpt = Checkpointer(directory)
    try:
        state, _ = ckpt.restore(None, step)
    finally:
        ckpt.close()
    return jax.tree_util.tree_map(jax.numpy.asarray, state["params"])
