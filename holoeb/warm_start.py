"""Where each training batch's free phase starts (training.warm_start).

  "none"     zero (the model's init_state), every batch;
  "last"     where the previous batch left the network (the comparative study's released code: its
             trainer keeps the state between batches), zero at each epoch's first batch;
  "free"     the previous batch's free state, zero at each epoch's first batch;
  "example"  each training example's own free state from the last time it was seen (zero the first
             time; kept on the host across epochs, one array per layer over the training split).

`WarmStart` holds that state for the training loop: it feeds the step (holoeb.train_step with the
same warm_start) its start, keeps what the step returns, and gives the checkpoint its entries."""
import jax
import jax.numpy as jnp
import numpy as np

from holoeb import parallel


class WarmStart:
    """The warm-start state of one run: ``carry`` (the batch state of "last" / "free", on the devices) or
    ``bank`` (every example's state, "example", on the host); nothing for "none"."""

    def __init__(self, mode, model, batch_size, num_examples, mesh):
        self.mode, self.model, self.batch_size, self.mesh = mode, model, batch_size, mesh
        self.carry = self._zero() if mode != "none" else None
        self.bank = (tuple(np.zeros((num_examples,) + v.shape[1:], np.asarray(v).dtype) for v in self.carry)
                     if mode == "example" else None)
        self._pending = []  # "example": (example indices, free states still on the device)

    @property
    def carries_state(self):
        """Whether the step takes a start state and returns one (every mode but "none")."""
        return self.mode != "none"

    @property
    def per_example(self):
        """Whether batches come with their examples' indices (mode "example")."""
        return self.mode == "example"

    def _zero(self):
        u0 = self.model.init_state(jnp.zeros((self.batch_size,) + tuple(self.model.input_shape), jnp.float32))
        return tuple(parallel.shard_array(np.asarray(v), self.mesh) for v in u0)

    def new_epoch(self, first_step):
        """An epoch starts (at ``first_step``; > 0 when a run resumes inside it): "last" / "free" restart
        from zero unless the epoch is being resumed (then the checkpoint's carry continues)."""
        if self.mode in ("last", "free") and first_step == 0:
            self.carry = self._zero()

    def shard(self, item):
        """A prepared batch (with its indices for "example") put on the devices."""
        if self.per_example:
            batch, idx = item
            return parallel.shard_batch(batch, self.mesh), idx
        return parallel.shard_batch(item, self.mesh)

    def step(self, step, params, opt_state, item, rng):
        """Run one (sharded) training step from this state: (params, opt_state, metrics)."""
        if self.per_example:
            batch, idx = item
            start = tuple(parallel.shard_array(v[idx], self.mesh) for v in self.bank)
            params, opt_state, metrics, left = step(params, opt_state, batch, rng, start)
            self._pending.append((idx, left))
        elif self.carries_state:
            params, opt_state, metrics, self.carry = step(params, opt_state, item, rng, self.carry)
        else:
            params, opt_state, metrics = step(params, opt_state, item, rng)
        return params, opt_state, metrics

    def flush(self):
        """"example": write the pending steps' free states into the bank in one transfer (each example
        occurs once per epoch, so no step reads a pending one)."""
        if not self._pending:
            return
        states = jax.device_get([u for _, u in self._pending])
        for (idx, _), u in zip(self._pending, states):
            for dst, v in zip(self.bank, u):
                dst[idx] = v
        self._pending.clear()

    def checkpoint_entries(self):
        """What a checkpoint holds of this state (and the template a restore fills)."""
        if self.per_example:
            return {"bank": self.bank}
        return {"carry": self.carry} if self.carries_state else {}

    def restore(self, state):
        """Take the state back from a restored checkpoint (the entries of `checkpoint_entries`)."""
        if self.per_example:
            self.bank = tuple(np.array(v) for v in state["bank"])
        elif self.carries_state:
            self.carry = tuple(parallel.shard_array(np.asarray(v), self.mesh) for v in state["carry"])
