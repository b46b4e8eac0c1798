"""Device mesh and host<->device movement: one code path from 1 CPU to many hosts.

The mesh is 1-D over every device of every process, named 'data'. Batches are
sharded along it; parameters, optimizer state and the queue are replicated.
Under a sharded `jit`, a mean over the batch axis is a mean over the *global*
batch, so BatchNorm statistics are synchronised across devices.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def make_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), ('data',))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P('data'))


def to_global(mesh: Mesh, local_batch):
  """Assembles every process's local batch rows into global batch-sharded arrays."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
  )


def to_host(tree):
  """Fetches a (replicated or fully addressable) tree to host numpy arrays."""
  return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


def gather_rows(x: jax.Array) -> np.ndarray:
  """All global rows of a batch-sharded array, on every process."""
  if jax.process_count() == 1:
    return np.asarray(jax.device_get(x))
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.process_allgather(x, tiled=True))
