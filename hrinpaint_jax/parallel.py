"""Data-parallel plumbing: the ``pmap`` axis, replication, per-device rngs and multi-host start-up.

Everything that knows about devices and processes lives here; the train loop and the stage tasks
only see ``AXIS`` (the ``pmap`` axis name, also the BatchNorm ``axis_name``, so statistics are
synchronised over all devices of all hosts like the references' SyncBatchNorm).
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

logger = logging.getLogger(__name__)

AXIS = "batch"  # the pmap axis name; BatchNorm layers use it as their axis_name


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    cpu_collectives: str = "gloo",
    timeout_s: int = 300,
) -> bool:
    """``jax.distributed.initialize`` when a multi-host run is asked for.

    Explicit flags win; otherwise the standard variables are read (``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``); with neither, JAX's cluster auto-detection runs only
    under a known scheduler (SLURM, Cloud TPU, ...). A single-process run initialises nothing.
    On CPU the cross-process collectives use ``cpu_collectives`` (gloo). Returns True if initialised.
    """
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    env_count = os.environ.get("JAX_NUM_PROCESSES")
    env_id = os.environ.get("JAX_PROCESS_ID")
    if num_processes is None and env_count:
        num_processes = int(env_count)
    if process_id is None and env_id:
        process_id = int(env_id)
    scheduler = any(k in os.environ for k in ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_ID"))
    if coordinator is None and not scheduler:
        return False
    if coordinator is not None and (num_processes is None or process_id is None):
        raise ValueError("a coordinator address needs --num_processes and --process_id as well")
    if cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=timeout_s,
    )
    logger.info(
        "process %d of %d; %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True


def device_sharding(devices: Sequence | None = None) -> jax.sharding.NamedSharding:
    """The sharding of every ``pmap`` input: leading axis split over ``devices`` (default: this
    process's devices in ``pmap`` order, ``jax.local_devices()``) along a one-axis mesh named
    ``AXIS``. Replicated states and batches share it, so the compiled step sees the same input
    shardings at every step."""
    devices = list(jax.local_devices() if devices is None else devices)
    mesh = jax.sharding.Mesh(np.array(devices), (AXIS,))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))


def replicate(tree: Any, devices: Sequence | None = None) -> Any:
    """Copies a pytree onto every local device (leading axis = local devices), sharded over a mesh
    axis named ``AXIS`` like the batches, so the compiled step sees the same input shardings at
    every step (another axis name makes step 2 recompile).

    ``jax.device_put`` with ``device_sharding`` (the drop-in replacement the JAX docs give for the
    deprecated ``jax.device_put_replicated``; works on JAX 0.10 and 0.11 and does not depend on
    which of those ``flax.jax_utils.replicate`` uses). NumPy leaves are broadcast, not copied, on
    the host; ``jax.Array`` leaves (typed PRNG keys included) are stacked on their device.
    """
    sharding = device_sharding(devices)
    n = len(sharding.mesh.devices)

    def put(x):
        if isinstance(x, jax.Array):
            return jax.device_put(jnp.broadcast_to(x[None], (n, *x.shape)), sharding)
        x = np.asarray(x)
        return jax.device_put(np.broadcast_to(x[None], (n, *x.shape)), sharding)

    return jax.tree.map(put, tree)


def shard_to_devices(tree: Any, devices: Sequence | None = None) -> Any:
    """Puts a host pytree whose leaves are ``[local devices, ...]`` (a batch from
    ``input_pipeline``) on the local devices, one slice each, with ``device_sharding``: the
    replacement of the deprecated ``jax.device_put_sharded``."""
    sharding = device_sharding(devices)
    n = len(sharding.mesh.devices)

    def put(x):
        if np.shape(x)[:1] != (n,):
            raise ValueError(f"leading axis {np.shape(x)[:1]} is not the {n} local devices")
        return jax.device_put(x, sharding)

    return jax.tree.map(put, tree)


def prefetch_to_device(
    batches: Iterator[Any], size: int = 2, devices: Sequence | None = None
) -> Iterator[Any]:
    """``shard_to_devices`` of each host batch, ``size`` batches ahead (the transfers are
    asynchronous, so the next batches upload while the current step runs), like
    ``flax.jax_utils.prefetch_to_device`` without depending on it."""
    queue: collections.deque = collections.deque()

    def enqueue(n):
        for batch in itertools.islice(batches, n):
            queue.append(shard_to_devices(batch, devices))

    enqueue(max(size, 1))
    while queue:
        yield queue.popleft()
        enqueue(1)


def _first_local(x):
    # In a multi-process run, pmap outputs span every process's devices; indexing them would be a
    # cross-process computation, so take this process's first shard instead.
    if isinstance(x, jax.Array):
        return x.addressable_data(0).reshape(x.shape[1:])
    return x[0]


def unreplicate(tree: Any) -> Any:
    """This process's first-device copy of a replicated pytree (no cross-process traffic)."""
    return jax.tree.map(_first_local, tree)


def to_host(tree: Any) -> Any:
    """The first local replica as NumPy (one transfer per leaf)."""
    return jax.tree.map(lambda x: np.asarray(_first_local(x)), tree)


def device_rng(rng: jax.Array, step: jax.Array) -> jax.Array:
    """A key for this step and this device, inside ``pmap``: ``fold_in(fold_in(rng, step), axis_index)``
    (like vit_jax), so devices draw differently and a resumed run redraws the same."""
    return jax.random.fold_in(jax.random.fold_in(rng, step), jax.lax.axis_index(AXIS))


def pmean(tree: Any) -> Any:
    """Mean over every device of every process (inside ``pmap``)."""
    return jax.lax.pmean(tree, AXIS)


def local_examples(tree: Any) -> Any:
    """[local devices * per device, ...] NumPy of a pmapped output's local shards (batch axis merged)."""

    def stack(x):
        if isinstance(x, jax.Array):
            shards = [np.asarray(x.addressable_data(i)) for i in range(len(x.addressable_shards))]
            return np.concatenate([s.reshape(-1, *x.shape[2:]) for s in shards])
        return np.asarray(x).reshape(-1, *np.shape(x)[2:])

    return jax.tree.map(stack, tree)


def replicas_identical(tree: Any, atol: float = 0.0) -> bool:
    """Whether all local replicas of a replicated pytree hold the same values (a check for tests)."""
    leaves = jax.tree.leaves(jax.tree.map(lambda x: np.asarray(x), tree))
    return all(np.allclose(x, x[:1], atol=atol, rtol=0) for x in leaves)


def global_to_local_batch_size(global_batch_size: int) -> tuple[int, int]:
    """(per-process, per-device) batch sizes, checking divisibility."""
    devices = jax.device_count()
    if global_batch_size % devices:
        raise ValueError(
            f"global batch {global_batch_size} is not divisible by {devices} devices "
            f"({jax.process_count()} processes x {jax.local_device_count()})"
        )
    return global_batch_size // jax.process_count(), global_batch_size // devices


def sum_over_processes(x: np.ndarray) -> np.ndarray:
    """Host value summed over processes (e.g. to agree on a stop signal); identity on one process."""
    if jax.process_count() == 1:
        return x
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(jnp.asarray(x))).sum(axis=0)
