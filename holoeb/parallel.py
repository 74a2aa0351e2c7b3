"""Data parallelism with jax.sharding (generalized hEP paper, App. D.4: "each run was
parallelized over 4 or 8 GPUs by splitting the batch").

One mesh axis "data" over the devices. The batch is split along its first axis;
parameters, optimizer state and rng keys are replicated. The training step is the
*same* jitted function as on one device: XLA's SPMD partitioner turns the batch
means inside the estimators (gradient assembly, GMRES inner products, the
homeostatic loss) into all-reduces, so the update equals the single-device update
up to floating-point summation order.

Several hosts. The same code path runs under ``jax.distributed``: call
``jax.distributed.initialize()`` (or set ``training.distributed: true``) before
anything touches a device; ``jax.devices()`` is then the global device list and
the mesh spans all hosts. Every host loads the same dataset and draws the same
shuffles (same seed), and contributes its own contiguous slice of each global
batch (``jax.make_array_from_process_local_data``). Launch one process per host,
e.g. on a SLURM cluster

    srun --nodes=2 --ntasks-per-node=1 holoeb train --config experiments/cifar10_conv.json \
        --set training.distributed=true --out runs/c10

or by hand (no scheduler), on each of N hosts:

    JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=N JAX_PROCESS_ID=<i> \
        holoeb train --config ... --set training.distributed=true

(``jax.distributed.initialize`` reads those from the environment or the cluster).
Only process 0 writes metrics and plots; all processes take part in checkpoints.
On one host the CPU backend can be split into several devices for testing with
XLA_FLAGS=--xla_force_host_platform_device_count=2 (set before JAX starts).
"""
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from holoeb.dynamics import Batch

AXIS = "data"


def initialize_distributed():
    """jax.distributed.initialize() once (cluster auto-detection or JAX_* environment variables)."""
    if not getattr(initialize_distributed, "_done", False):
        jax.distributed.initialize()
        initialize_distributed._done = True


def make_mesh(num_devices=None):
    """A 1-D mesh over all (global) devices, or the first ``num_devices`` on one host."""
    devices = jax.devices()
    if num_devices is not None:
        num_devices = int(num_devices)
        if jax.process_count() > 1:
            raise ValueError("training.devices must be left unset in a multi-process run (the mesh spans all hosts)")
        if not 1 <= num_devices <= len(devices):
            raise ValueError(f"training.devices={num_devices}, but {len(devices)} device(s) are available: {devices}")
        devices = devices[:num_devices]
    return Mesh(np.array(devices), (AXIS,))


def batch_sharding(mesh):
    return NamedSharding(mesh, PartitionSpec(AXIS))


def replicated_sharding(mesh):
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size, mesh, what="batch size"):
    if batch_size % mesh.size:
        raise ValueError(f"{what} {batch_size} is not divisible by the number of devices {mesh.size}; "
                         f"choose a multiple of {mesh.size} or set training.devices")


def shard_array(a, mesh):
    """A host array holding the *global* batch (identical on every host) -> a global jax.Array
    split along axis 0 over the mesh; each process supplies only its own slice."""
    a = np.asarray(a)
    check_batch_size(a.shape[0], mesh)
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(a, sharding)
    n = a.shape[0] // jax.process_count()
    i = jax.process_index()
    return jax.make_array_from_process_local_data(sharding, a[i * n : (i + 1) * n], a.shape)


def shard_batch(batch, mesh):
    return Batch(*(shard_array(v, mesh) for v in batch))


def replicate(tree, mesh):
    """Place a pytree (identical on every host) replicated over the mesh."""
    return jax.device_put(tree, replicated_sharding(mesh))


def pad_to_multiple(x, multiple):
    """(x padded along axis 0 by repeating its last row, mask of real rows)."""
    n = x.shape[0]
    pad = (-n) % multiple
    mask = np.ones((n + pad,), np.float32)
    if pad:
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)], axis=0)
        mask[n:] = 0.0
    return x, mask


def shard_step(step, mesh, carry=False, donate=False):
    """jit ``step(params, opt_state, batch, rng)`` with the batch split over the mesh and
    everything else (inputs and outputs) replicated. With ``carry``, the step is
    ``step(params, opt_state, batch, rng, state) -> (params, opt_state, metrics, state)``
    and the carried per-example state is split over the mesh like the batch. With ``donate``
    the parameters, optimizer state and carry passed in are donated (their buffers are
    reused for the outputs: the caller must not use them after the call)."""
    rep, bat = replicated_sharding(mesh), batch_sharding(mesh)
    if carry:
        return jax.jit(step, in_shardings=(rep, rep, bat, rep, bat), out_shardings=(rep, rep, rep, bat),
                       donate_argnums=(0, 1, 4) if donate else ())
    return jax.jit(step, in_shardings=(rep, rep, bat, rep), out_shardings=(rep, rep, rep),
                   donate_argnums=(0, 1) if donate else ())
