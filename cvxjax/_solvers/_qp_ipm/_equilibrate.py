"""Ruiz equilibration of the QP data for the interior-point solver.

**Equilibration.** The data is first scaled with a few Ruiz iterations (columns by d, rows by e,
the objective by c; all bounded in [1e-4, 1e4]) so that the static regularization
(:mod:`._kkt`) and the infeasibility thresholds (:mod:`._ipm`) are meaningful for badly scaled
input. Termination is tested in the original units.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

# Ruiz equilibration: each sweep takes the square root of the remaining imbalance, so a few
# sweeps get the row/column ∞-norms within a small factor of 1 (the solver only needs O(1)
# scaling for its regularization and thresholds; each sweep reads P and A, which in a vmapped
# batch costs about as much as a tenth of an iteration). The bounds stop empty or tiny
# rows/columns from being blown up.
_RUIZ_ITERS = 6
_SCALE_MIN, _SCALE_MAX = 1e-4, 1e4


def _norm_inf(v):
    return jnp.max(jnp.abs(v), initial=0.0)


def _equilibrate(P, q, A, b):
    """Ruiz equilibration of the KKT matrix [[P, Aᵀ], [A, 0]] plus an objective scaling.

    Returns (col (n,), row (m,), c ()) such that the scaled problem has ``P̂ = c·DPD``,
    ``q̂ = c·Dq``, ``Â = EAD``, ``b̂ = Eb`` (D = diag(col), E = diag(row)); its solution maps back
    by ``x = D x̂``, ``s = E⁻¹ ŝ``, ``y = E ŷ / c``. Every row/column scaling is per entry since
    the zero and nonnegative cones are separable (a positive row scaling keeps the cone).
    """
    n, m = P.shape[0], A.shape[0]
    dtype = P.dtype

    def inv_sqrt(norms):
        # Rows/columns that are entirely zero are left alone.
        return jnp.where(norms > 0, 1.0 / jnp.sqrt(jnp.where(norms > 0, norms, 1.0)), 1.0)

    def sweep(_, carry):
        col, row = carry
        Ps = P * col[:, None] * col[None, :]
        As = A * row[:, None] * col[None, :]
        col_norm = jnp.maximum(
            jnp.max(jnp.abs(Ps), axis=0, initial=0.0), jnp.max(jnp.abs(As), axis=0, initial=0.0)
        )
        row_norm = jnp.max(jnp.abs(As), axis=1, initial=0.0)
        col = jnp.clip(col * inv_sqrt(col_norm), _SCALE_MIN, _SCALE_MAX)
        row = jnp.clip(row * inv_sqrt(row_norm), _SCALE_MIN, _SCALE_MAX)
        return col, row

    col, row = lax.fori_loop(0, _RUIZ_ITERS, sweep, (jnp.ones(n, dtype), jnp.ones(m, dtype)))
    # Objective scaling: bring the larger of (mean column norm of P̂, ‖q̂‖∞) to 1 so that the
    # dual residual and the gap are of the same magnitude as the primal quantities.
    Ps = P * col[:, None] * col[None, :]
    p_scale = jnp.mean(jnp.max(jnp.abs(Ps), axis=0, initial=0.0)) if n else jnp.zeros((), dtype)
    obj = jnp.maximum(p_scale, _norm_inf(q * col))
    c = jnp.where(obj > 0, 1.0 / jnp.where(obj > 0, obj, 1.0), 1.0)
    c = jnp.clip(c, _SCALE_MIN, _SCALE_MAX)
    return col, row, c
