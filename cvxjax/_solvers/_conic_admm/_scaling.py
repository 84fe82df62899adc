"""Ruiz equilibration that respects the cones.

A positive row scaling ``E`` maps the constraint ``Ax + s = b, s ∈ K`` to ``(EA)x + Es = Eb``,
and ``Es ∈ K`` only if E is constant on every block of a non-separable cone (a second-order,
PSD, exponential or power cone is a cone, so a common positive factor keeps it; a different
factor per component does not). Zero and nonnegative rows are separable and are scaled one by
one. So the row norms are replaced by their maximum over each block before each sweep.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..._program import ConeDims

_RUIZ_ITERS = 10
_SCALE_MIN, _SCALE_MAX = 1e-4, 1e4


def row_blocks(cones: ConeDims) -> np.ndarray:
    """(m,) block index of each row: one per zero/nonnegative row, one per other cone."""
    separable = cones.zero + cones.nonneg
    sizes = list(cones.soc) + [k * (k + 1) // 2 for k in cones.psd]
    sizes += [3] * (cones.exp + len(cones.pow))
    ids = list(range(separable))
    for block, size in enumerate(sizes):
        ids += [separable + block] * size
    return np.asarray(ids, np.int32)


def equilibrate(P, q, A, b, blocks: np.ndarray):
    """Scalings ``(col (n,), row (m,), c ())``: ``P̂ = c·DPD``, ``q̂ = c·Dq``, ``Â = EAD``,
    ``b̂ = Eb`` with D = diag(col), E = diag(row) constant on each cone block; the solution
    maps back by ``x = D x̂``, ``s = E⁻¹ ŝ``, ``y = E ŷ / c``."""
    n, m = P.shape[0], A.shape[0]
    dtype = P.dtype
    n_blocks = int(blocks.max()) + 1 if m else 0

    def inv_sqrt(norms):
        return jnp.where(norms > 0, 1.0 / jnp.sqrt(jnp.where(norms > 0, norms, 1.0)), 1.0)

    def sweep(_, carry):
        col, row = carry
        Ps = P * col[:, None] * col[None, :]
        As = A * row[:, None] * col[None, :]
        col_norm = jnp.maximum(
            jnp.max(jnp.abs(Ps), axis=0, initial=0.0), jnp.max(jnp.abs(As), axis=0, initial=0.0)
        )
        row_norm = jnp.max(jnp.abs(As), axis=1, initial=0.0)
        row_norm = jax.ops.segment_max(row_norm, blocks, num_segments=n_blocks)[blocks]
        col = jnp.clip(col * inv_sqrt(col_norm), _SCALE_MIN, _SCALE_MAX)
        row = jnp.clip(row * inv_sqrt(row_norm), _SCALE_MIN, _SCALE_MAX)
        return col, row

    col, row = lax.fori_loop(0, _RUIZ_ITERS, sweep, (jnp.ones(n, dtype), jnp.ones(m, dtype)))
    # Objective scaling: the larger of (mean column norm of P̂, ‖q̂‖∞) to 1.
    Ps = P * col[:, None] * col[None, :]
    p_scale = jnp.mean(jnp.max(jnp.abs(Ps), axis=0, initial=0.0)) if n else jnp.zeros((), dtype)
    obj = jnp.maximum(p_scale, jnp.max(jnp.abs(q * col), initial=0.0))
    c = jnp.where(obj > 0, 1.0 / jnp.where(obj > 0, obj, 1.0), 1.0)
    return col, row, jnp.clip(c, _SCALE_MIN, _SCALE_MAX)
