"""Starting points of the interior-point method (:mod:`._ipm`): the iterate type, the cold
start computed on the loop's first trip, and a warm start moved into the interior."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class _State(NamedTuple):
    x: jax.Array  # (n,)
    z: jax.Array  # (m,)
    s: jax.Array  # (m,), identically 0 on the equality rows
    tau: jax.Array  # ()
    kappa: jax.Array  # ()


def _initial_point(x, z, p: int):
    """Proximal least-squares start from ``(x, z)``, the solution of the constant system with
    W_I = I and a unit prox term (column 0 of the first loop trip's two-column solve, see
    :func:`._ipm._iterate`): ``min ½xᵀPx + ½‖x‖² + qᵀx + ½‖A_I x − b_I‖²  s.t. A_E x = b_E``
    (approximately: one solve with the regularized M, no refinement, as the start need not
    be exact); ``s_I = b_I − A_I x``, ``z_I = −s_I``, both shifted into the interior
    (CVXOPT/Clarabel's rule, min entry ≥ 1); τ = κ = 1. The prox term keeps x bounded for LPs
    (Clarabel/CVXOPT use P alone)."""
    dtype = x.dtype
    s_I = -z[p:]
    z_I = z[p:]
    s_I = s_I + jnp.maximum(0.0, 1.0 - jnp.min(s_I, initial=1.0))
    z_I = z_I + jnp.maximum(0.0, 1.0 - jnp.min(z_I, initial=1.0))
    z = jnp.concatenate([z[:p], z_I])
    s = jnp.concatenate([jnp.zeros((p,), dtype), s_I])
    one = jnp.ones((), dtype)
    return _State(x=x, z=z, s=s, tau=one, kappa=one)


def _warm_point(warm, p: int, margin):
    """A warm start ``(x̂, ẑ, ŝ)`` (equilibrated units) moved into the interior: every
    inequality slack and dual at least ``margin`` (an interior-point method cannot start on the
    boundary, where a previous optimum lies); τ = κ = 1."""
    x, z, s = warm
    dtype = x.dtype
    s_I = jnp.maximum(s[p:], margin)
    z_I = jnp.maximum(z[p:], margin)
    one = jnp.ones((), dtype)
    return _State(
        x=x,
        z=jnp.concatenate([z[:p], z_I]),
        s=jnp.concatenate([jnp.zeros((p,), dtype), s_I]),
        tau=one,
        kappa=one,
    )
