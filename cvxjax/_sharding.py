"""Batches sharded over a device mesh: each device solves its own shard.

Without this, XLA's SPMD partitioner cannot split a host callback (``pure_callback``) or the
sequential loop the CPU path runs a batch of dense solves in: it gathers the whole batch
onto one device, solves it there and scatters the answers back ("involuntary full
rematerialization"), so extra devices add nothing. ``shard_map`` makes the batch axis
manual instead: the solution map runs once per device on that device's slice of the batch
(its host callback, on a multi-host mesh, in the process that owns the device), and the
answers stay where they were computed. Parameters without a batch dimension are replicated;
their cotangents are summed over the mesh by ``shard_map``'s transpose.

The mesh is, in order: the layer's ``mesh=`` argument, the mesh set with ``jax.set_mesh``,
or the ``NamedSharding`` of a batched input (an eager array, or a traced value whose type
carries an explicit sharding). The batch dimension is split over the mesh axes that input
names for it, or over every mesh axis when the mesh comes from elsewhere.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec


def batch_mesh(mesh, arrays: Sequence, batch_axes: Sequence[Optional[int]]):
    """``(mesh, axis_names)`` to split the batch over, or ``None`` for a single device.

    ``axis_names`` is a tuple of mesh axis names whose devices share the batch dimension.
    A mesh of one device is kept: under explicit sharding the batch dimension's type names a
    mesh axis, and only a ``shard_map`` (cheap on one device) makes that axis manual for the
    solution map inside.
    """
    batched = [a for a, axis in zip(arrays, batch_axes) if axis is not None]
    if not batched:
        return None
    names = None
    if mesh is None:
        mesh, names = _mesh_of_inputs(batched)
    if mesh is None:
        ambient = jax.sharding.get_abstract_mesh()
        mesh = None if ambient.empty else ambient
    if mesh is None:
        return None
    if names is None:
        names = tuple(mesh.axis_names)
    return mesh, names


def _mesh_of_inputs(batched):
    """The mesh and the axis names of the first batched input sharded along its batch
    dimension (dimension 0), if any."""
    for array in batched:
        sharding = _sharding_of(array)
        if not isinstance(sharding, NamedSharding) or not len(sharding.spec):
            continue
        first = sharding.spec[0]
        if first is None:
            continue
        names = first if isinstance(first, tuple) else (first,)
        return sharding.mesh, tuple(names)
    return None, None


def _sharding_of(array):
    if isinstance(array, jax.core.Tracer):
        # Only a type with explicit sharding (``jax.sharding.AxisType.Explicit``) says how a
        # traced value is laid out; under automatic sharding nothing is known at trace time.
        try:
            return jax.typeof(array).sharding
        except (AttributeError, TypeError):
            return None
    return getattr(array, "sharding", None)


def shard_batch(solve_all, mesh, axis_names, batch_axes: Sequence[Optional[int]], on_shard=None):
    """``solve_all`` (a vmapped function of the parameter values returning a pytree of
    batched outputs) run per device under ``shard_map``.

    ``on_shard(result, offset)``, if given, runs on each device with its shard's result and
    the batch index of its first element (the layer's error check: checking per shard
    gathers nothing across devices).

    A batch whose size is not a multiple of the number of devices along ``axis_names`` is
    padded by repeating its last problem, and the padding is cut off the outputs (its
    cotangent is zero, so gradients are unchanged).
    """
    devices = math.prod(mesh.shape[name] for name in axis_names)
    spec = PartitionSpec(axis_names)
    in_specs = tuple(PartitionSpec() if axis is None else spec for axis in batch_axes)

    # check_vma=False: the host callback's outputs carry no varying-manual-axes annotation,
    # and every output of the solution map is per batch element (nothing is replicated).
    def per_shard(*values):
        result = solve_all(*values)
        if on_shard is not None:
            local = next(v.shape[0] for v, axis in zip(values, batch_axes) if axis is not None)
            on_shard(result, jax.lax.axis_index(axis_names) * local)
        return result

    mapped = jax.shard_map(per_shard, mesh=mesh, in_specs=in_specs, out_specs=spec, check_vma=False)

    def sharded(*values):
        size = next(v.shape[0] for v, axis in zip(values, batch_axes) if axis is not None)
        pad = -size % devices
        if pad:
            values = tuple(
                v if axis is None else jnp.concatenate([v, jnp.repeat(v[-1:], pad, axis=0)])
                for v, axis in zip(values, batch_axes)
            )
        outputs = mapped(*values)
        return jax.tree.map(lambda a: a[:size], outputs) if pad else outputs

    return sharded
