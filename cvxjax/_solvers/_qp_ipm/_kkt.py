"""The KKT kernel of the interior-point solver: factorization and solves of the Newton system.

Every Newton step of :mod:`._ipm` solves systems with the quasi-definite KKT matrix

    K = [[P, Aᵀ], [A, −W]],     W = diag(0 on equality rows, s/z on inequality rows),

in the equilibrated variables (:mod:`._equilibrate`), with the rows ordered as equalities
(``A_E``, the first ``p``) then inequalities (``A_I``).

**Linear algebra (dense, reduced).** K is never formed. We factor the *regularized* matrix

    M = [[P + δI, A_Eᵀ, A_Iᵀ], [A_E, −δ_E I, 0], [A_I, 0, −(W_I + δI)]]

by eliminating the inequality duals (``Δz_I = D (A_I Δx − r_I)`` with ``D = (W_I + δ)⁻¹``,
which δ caps at 1/δ) and taking a Schur complement for the equality duals:

    H̃ = P + δI + A_Iᵀ D A_I + ρ A_Eᵀ A_E = L Lᵀ,        F = γ A_E H̃⁻¹ A_Eᵀ + δ_E I = L_F L_Fᵀ,

``γ = 1 − ρδ_E``. Adding ``ρ A_Eᵀ × (equality rows)`` to the x-rows (the ``ρ A_EᵀA_E`` term, an
exact row operation on M, compensated in the right-hand side) is what makes H̃ positive definite
for LPs and rank-deficient P: ``H̃ ≻ 0`` whenever the KKT matrix is nonsingular, and the
δ-regularizations handle redundant equalities (F ⪰ δ_E I) and genuinely singular K. The static
regularization δ ≈ √eps (relative to the equilibrated data) is what keeps the Cholesky pivots
positive: the rounding error of the pivots is ≈ eps·max D ≤ eps/δ ≤ δ. Each solve with M is
followed by iterative refinement against the *unregularized* K (residuals computed with the true
``W = s/z``), which removes the O(δ) bias (the usual scheme of Clarabel / OSQP / QDLDL).

Cost per iteration: ``m_I n²`` to form ``A_Iᵀ D A_I``, ``n³/3`` for the Cholesky factor of H̃,
``n² p + p³/3`` for the Schur complement when there are equalities, and O(n² + mn) per solve.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import solve_triangular

# Weight of the augmentation ρ A_EᵀA_E. The data are equilibrated (rows of A have ∞-norm ≈ 1),
# so ρ = 1 makes the augmentation comparable to the rest of H̃ without swamping it.
_RHO = 1.0


class _Data(NamedTuple):
    """Equilibrated problem data (one instance)."""

    P: jax.Array  # (n, n)
    q: jax.Array  # (n,)
    A: jax.Array  # (m, n)
    b: jax.Array  # (m,)
    AtA_E: jax.Array  # (n, n) ρ Â_EᵀÂ_E, constant over the iterations


def _regularization(dtype):
    """Static regularizations (δ, δ_E) of M, in equilibrated units."""
    eps = float(jnp.finfo(dtype).eps)
    # δ ≈ √eps: the smallest value for which the Cholesky pivots of H̃ (whose largest entries
    # are ≈ max D ≤ 1/δ) stay above their rounding error eps/δ. float64: 1.5e-8 (Clarabel uses
    # 1e-8); float32: 3.5e-4, with iterative refinement recovering the unregularized direction.
    delta = math.sqrt(eps)
    # The equality block only enters F = γ A_E H̃⁻¹ A_Eᵀ + δ_E I, whose other eigenvalues are at
    # most 1/ρ, so δ_E can be smaller than δ. That matters for inconsistent equalities: the
    # regularized problem is then "feasible" with duals ≈ 1/δ_E, and the iterates stall at a
    # Farkas residual ≈ δ_E instead of converging to the certificate, which must still pass
    # the √eps infeasibility test. But cond(F) ≈ 1/δ_E amplifies rounding errors in the solves:
    # eps^(3/4) already costs float32 extra iterations; eps^(2/3) (3.7e-11 / 2.4e-5) is the
    # compromise.
    delta_eq = eps ** (2.0 / 3.0)
    return delta, delta_eq


def _factor(data: _Data, p: int, w_I, reg, prox):
    """Factor M (module docstring) for the inequality block W_I = w_I; ``prox`` is the
    (1,1)-block shift (δ in the iterations; 1 for the proximal initial point).

    Returns ``(L, LE, LF, d)``: the lower Cholesky factor L (n, n) of H̃, ``LE = L⁻¹ A_Eᵀ``
    (n, p), the lower Cholesky factor LF (p, p) of F, and ``d = D = 1 / (w_I + δ)`` (ℓ,)."""
    A_E, A_I = data.A[:p], data.A[p:]
    n = data.P.shape[0]
    delta, delta_eq = reg
    d = 1.0 / (w_I + delta)
    H = data.P + data.AtA_E + (A_I.T * d) @ A_I + prox * jnp.eye(n, dtype=data.P.dtype)
    L = lax.linalg.cholesky(H, symmetrize_input=False)
    if p:
        LE = solve_triangular(L, A_E.T, lower=True)
        F = (1.0 - _RHO * delta_eq) * (LE.T @ LE) + delta_eq * jnp.eye(p, dtype=H.dtype)
        LF = lax.linalg.cholesky(F, symmetrize_input=False)
    else:
        LE = jnp.zeros((n, 0), H.dtype)
        LF = jnp.zeros((0, 0), H.dtype)
    return L, LE, LF, d


def _solve_reg(data: _Data, p: int, fac, reg, r1, r2):
    """Solve M [u; v] = [r1; r2] exactly with the factors; r1 (n, k), r2 (m, k)."""
    L, LE, LF, d = fac
    A_E, A_I = data.A[:p], data.A[p:]
    r2E, r2I = r2[:p], r2[p:]
    # x-rows after eliminating v_I = D(A_I u − r2_I) and adding ρ A_Eᵀ × (equality rows).
    t = r1 + A_I.T @ (d[:, None] * r2I) + _RHO * (A_E.T @ r2E)
    t = solve_triangular(L, t, lower=True)
    if p:
        # F v_E = A_E H̃⁻¹ r̃1 − r2_E, then H̃ u = r̃1 − γ A_Eᵀ v_E.
        vE = solve_triangular(LF, LE.T @ t - r2E, lower=True)
        vE = solve_triangular(LF, vE, lower=True, trans=1)
        t = t - (1.0 - _RHO * reg[1]) * (LE @ vE)
    else:
        vE = r2E
    u = solve_triangular(L, t, lower=True, trans=1)
    vI = d[:, None] * (A_I @ u - r2I)
    return u, jnp.concatenate([vE, vI], axis=0)


def _refine(data: _Data, p: int, fac, reg, w_I, u, v, r1, r2, refine: int):
    """``refine`` steps of iterative refinement of an approximate solution (u, v) of
    K [u; v] = [r1; r2]. Each step costs two matvecs with A, one with P and a solve with M; the
    error contracts by ≈ ‖I − M⁻¹K‖, which is O(δ) away from the singular directions of K.
    The residual is recomputed with K rather than taken as the known difference [δu; −Δv]
    between M and K: that would undo only the regularization, not the rounding error of the
    ill-conditioned solve with M (≈ eps/δ relative), and float32 solves then often stall."""
    w = jnp.concatenate([jnp.zeros((p,), w_I.dtype), w_I])[:, None]
    for _ in range(refine):
        e1 = r1 - (data.P @ u + data.A.T @ v)
        e2 = r2 - (data.A @ u - w * v)
        du, dv = _solve_reg(data, p, fac, reg, e1, e2)
        u, v = u + du, v + dv
    return u, v
