"""A pure-JAX primal-dual interior-point solver for dense convex QPs.

Problem (the canonical form of :mod:`cvxjax._program` with ``K = {0}^p × R₊^ℓ``)::

    minimize    ½ xᵀ P x + qᵀ x
    subject to  A x + s = b,   s ∈ K            (rows 0..p-1: s = 0, i.e. equalities;
                                                 rows p..m-1: s ≥ 0, i.e. A x ≤ b)

    dual:       P x + q + Aᵀ y = 0,   y ∈ K* = R^p × R₊^ℓ,   sᵀ y = 0.

Everything is dense and runs inside ``jax.jit`` / ``jax.vmap``: the iteration is a
``lax.while_loop`` whose carry holds a status code, so under ``vmap`` every problem of the batch
stops changing (JAX selects the old carry for lanes whose condition is false) as soon as it has
terminated, while the loop runs until the slowest one is done. (On CPU, ``lax.map`` over a batch
is often faster than ``vmap``: each problem stops at its own iteration count and its matrices
stay in cache, whereas batched triangular solves and matvecs stream the whole batch from
memory; on GPU ``vmap`` is the right choice.)

Algorithm
---------
**Homogeneous embedding.** Following Clarabel (Goulart & Chen, 2024), we solve the homogeneous
embedding of the QP in the variables ``(x, z, s, τ, κ)`` (``z`` is the dual ``y``)::

    P x + Aᵀ z + q τ                = 0
    A x + s − b τ                   = 0
    qᵀ x + bᵀ z + κ + xᵀ P x / τ    = 0,        (s, z) ∈ K × K*,  τ, κ ≥ 0.

A solution with τ > 0 gives the QP's solution ``(x, y, s) = (x, z, s)/τ`` (the third row is then
``−κ = −sᵀz/τ² = 0``); one with τ = 0 < κ gives ``qᵀx + bᵀz < 0`` with ``Px = 0, Ax + s = 0,
Aᵀz = 0``, i.e. a certificate that the primal (``bᵀz < 0``) or the dual (``qᵀx < 0``) is
infeasible. So infeasibility is detected from bounded iterates, without any special phase, and
the method needs no feasible starting point.

**Newton step.** Linearizing the embedding with the complementarity conditions ``s∘z = σμ``
(inequality rows only; equality rows have ``s ≡ 0``) and ``τκ = σμ`` and eliminating
``Δs = −(d_s + s∘Δz)/z`` and ``Δκ = −(d_κ + κΔτ)/τ`` leaves the quasi-definite KKT system

    K [Δx; Δz] = [−d_x − qΔτ;  −d_z + d_s/z + bΔτ],     K = [[P, Aᵀ], [A, −W]],

with ``W = diag(0 on equality rows, s/z on inequality rows)``. It is linear in Δτ, so with
``K [x₁; z₁] = [−q; b]`` and ``K [x₂; z₂] = [−d_x; −d_z + d_s/z]`` we get
``(Δx, Δz) = (x₂, z₂) + Δτ (x₁, z₁)`` and Δτ from the scalar τ-row. Substituting the definition of
``(x₁, z₁)`` shows that the coefficient of Δτ is

    −[ (x₁ − ξ)ᵀ P (x₁ − ξ) + z₁ᵀ W z₁ + κ/τ ] < 0,       ξ = x/τ,

so the scalar equation is always solvable. One factorization of K serves three solves: the
constant right-hand side ``[−q; b]`` together with Mehrotra's affine predictor (one two-column
solve), then the corrector (centering σ = (μ_aff/μ)³ plus the second-order term Δs_aff∘Δz_aff,
and Δτ_aff Δκ_aff for the τκ pair), whose final direction is iteratively refined. The step is
0.99 of the distance to the boundary of ``s, z ≥ 0, τ, κ ≥ 0``. The embedding is homogeneous,
so after each step the iterate is rescaled to unit max-norm (this changes nothing but keeps
diverging certificate directions from overflowing).

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

**Equilibration.** The data is first scaled with a few Ruiz iterations (columns by d, rows by e,
the objective by c; all bounded in [1e-4, 1e4]) so that the static regularization and the
infeasibility thresholds are meaningful for badly scaled input. Termination is tested in the
original units.

**Termination** (``tol`` relative; ``ξ = x/τ``, ``ζ = z/τ``, ``σ = s/τ`` in original units):

* solved:  ``‖Aξ + σ − b‖∞ ≤ tol·(1 + max(‖b‖∞, ‖Aξ‖∞, ‖σ‖∞))``,
  ``‖Pξ + q + Aᵀζ‖∞ ≤ tol·(1 + max(‖q‖∞, ‖Pξ‖∞, ‖Aᵀζ‖∞))`` and
  ``|f_p − f_d| ≤ tol·max(1, min(|f_p|, |f_d|))`` with ``f_p = ½ξᵀPξ + qᵀξ`` and
  ``f_d = −½ξᵀPξ − bᵀζ``;
* primal infeasible:  ``bᵀz < 0`` and ``‖Aᵀz‖∞ ≤ tol_inf·|bᵀz|``;
* dual infeasible (unbounded):  ``qᵀx < 0`` and ``max(‖Px‖∞, ‖Ax + s‖∞) ≤ tol_inf·|qᵀx|``
  (``s ≥ 0`` on inequality rows and ``s = 0`` on equality rows, so this bounds ``A_E x`` and
  the positive part of ``A_I x``);
* numerical error: the new iterate is not finite (the last finite iterate is returned);
* max iterations: none of the above after ``max_iter`` iterations (the last iterate is
  returned).

The certificate tests are applied to the (unit-norm) iterate itself in equilibrated units, with
``tol_inf = max(tol, δ)`` (δ ≈ √eps, see below): they involve cancellations (``Aᵀz ≈ 0`` from
``z`` that the regularized solves can make ≈ 1/δ larger than the data) that cannot be resolved
more finely. In the HSDE the iterates of an infeasible problem converge to such a certificate
with τ → 0 instead of diverging, which is what makes this test reliable.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import solve_triangular

SOLVED = 0
MAX_ITER = 1
PRIMAL_INFEASIBLE = 2
DUAL_INFEASIBLE = 3
NUMERICAL_ERROR = 4
_RUNNING = -1

# Ruiz equilibration: each sweep takes the square root of the remaining imbalance, so a few
# sweeps get the row/column ∞-norms within a small factor of 1 (the solver only needs O(1)
# scaling for its regularization and thresholds; each sweep reads P and A, which in a vmapped
# batch costs about as much as a tenth of an iteration). The bounds stop empty or tiny
# rows/columns from being blown up.
_RUIZ_ITERS = 6
_SCALE_MIN, _SCALE_MAX = 1e-4, 1e4
# Fraction of the distance to the boundary of the cone taken by a step (keeps iterates interior).
_STEP_FRACTION = 0.99
# Weight of the augmentation ρ A_EᵀA_E. The data are equilibrated (rows of A have ∞-norm ≈ 1),
# so ρ = 1 makes the augmentation comparable to the rest of H̃ without swamping it.
_RHO = 1.0
# Weight of the proximal term ½‖x‖² of the least-squares starting point (equilibrated units).
_INIT_PROX = 1.0


class KKTFactor(NamedTuple):
    """Factorization of the regularized, equilibrated KKT matrix at the final iterate.

    It factors (in the equilibrated variables, see :func:`kkt_solve` for the original ones)::

        M = [[P̂ + δI, Âᵀ], [Â, −(Ŵ + Δ)]],   Ŵ = diag(0 on equality rows, ŝ/ẑ on inequality rows),
                                              Δ = diag(δ_E on equality rows, δ on inequality rows)

    as ``H̃ = P̂ + δI + Â_Iᵀ D Â_I + ρ Â_EᵀÂ_E = L Lᵀ`` (``D = (Ŵ_I + δ)⁻¹``) and
    ``F = γ Â_E H̃⁻¹ Â_Eᵀ + δ_E I = L_F L_Fᵀ`` (γ = 1 − ρδ_E). With the refinement of
    :func:`kkt_solve` it solves the Newton (= implicit-differentiation) system of the KKT
    conditions at the solution, ``[[P, Aᵀ], [A, −W]]`` with ``W = diag(0, s/y)`` in original
    units.

    Attributes:
      L: (n, n) lower Cholesky factor of H̃.
      LE: (n, p) ``L⁻¹ Â_Eᵀ`` (p = number of equality rows).
      LF: (p, p) lower Cholesky factor of F.
      d: (ℓ,) ``D``, the capped inequality scaling ``1 / (ŝ/ẑ + δ)``.
      w: (ℓ,) ``Ŵ_I = ŝ/ẑ``, the unregularized inequality block (for refinement).
      col_scale: (n,) equilibration of the variables: ``x = col_scale · x̂``.
      row_scale: (m,) equilibration of the rows: ``Â = diag(row_scale) A diag(col_scale)``.
      cost_scale: () objective scaling c: ``P̂ = c·diag(col) P diag(col)``, ``q̂ = c·col·q``.
      reg: () the static regularization δ of the x-block and the inequality block.
      reg_eq: () the static regularization δ_E of the equality block.
    """

    L: jax.Array
    LE: jax.Array
    LF: jax.Array
    d: jax.Array
    w: jax.Array
    col_scale: jax.Array
    row_scale: jax.Array
    cost_scale: jax.Array
    reg: jax.Array
    reg_eq: jax.Array


class QPSolution(NamedTuple):
    """Result of :func:`solve_qp`.

    Attributes:
      x: (n,) primal solution.
      y: (m,) dual solution; free on equality rows, ≥ 0 on inequality rows.
      s: (m,) slack ``b − Ax``; 0 on equality rows, ≥ 0 on inequality rows.
      status: int32 scalar: 0 solved, 1 max iterations (returned iterate inaccurate), 2 primal
        infeasible, 3 dual infeasible (unbounded), 4 numerical error (last finite iterate).
        For status 2, ``y`` is a Farkas certificate normalized to ``bᵀy = −1``
        (``Aᵀy ≈ 0``, ``y_I ≥ 0``) and ``x = s = 0``. For status 3, ``x`` is a direction of
        unboundedness normalized to ``qᵀx = −1`` (``Px ≈ 0``, ``A_E x ≈ 0``, ``A_I x ≲ 0``),
        ``s = max(−Ax, 0)`` on the inequality rows (0 on the equality rows) and ``y = 0``.
      iterations: int32 scalar: number of interior-point iterations taken.
      kkt_factor: :class:`KKTFactor` of the KKT matrix at the returned iterate (computed after
        the loop; under ``jit`` it costs nothing if unused, XLA removes it).
    """

    x: jax.Array
    y: jax.Array
    s: jax.Array
    status: jax.Array
    iterations: jax.Array
    kkt_factor: KKTFactor


class _Data(NamedTuple):
    """Equilibrated problem data (one instance)."""

    P: jax.Array  # (n, n)
    q: jax.Array  # (n,)
    A: jax.Array  # (m, n)
    b: jax.Array  # (m,)
    AtA_E: jax.Array  # (n, n) ρ Â_EᵀÂ_E, constant over the iterations


class _State(NamedTuple):
    x: jax.Array  # (n,)
    z: jax.Array  # (m,)
    s: jax.Array  # (m,), identically 0 on the equality rows
    tau: jax.Array  # ()
    kappa: jax.Array  # ()


def _norm_inf(v):
    return jnp.max(jnp.abs(v), initial=0.0)


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
        col_norm = jnp.maximum(jnp.max(jnp.abs(Ps), axis=0, initial=0.0),
                               jnp.max(jnp.abs(As), axis=0, initial=0.0))
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


def _factor(data: _Data, p: int, w_I, reg, prox):
    """Factor M (see :class:`KKTFactor`) for the inequality block W_I = w_I; ``prox`` is the
    (1,1)-block shift (δ in the iterations; 1 for the proximal initial point)."""
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


def _solve(data: _Data, p: int, fac, reg, w_I, r1, r2, refine: int):
    """Solve the unregularized K [u; v] = [r1; r2] (K = [[P, Aᵀ], [A, −W]]) by a solve with M
    followed by ``refine`` steps of iterative refinement (residuals of K, corrections by M)."""
    u, v = _solve_reg(data, p, fac, reg, r1, r2)
    return _refine(data, p, fac, reg, w_I, u, v, r1, r2, refine)


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


def _max_step(v, dv):
    """Largest α ∈ (0, ∞] with v + α dv ≥ 0 (v > 0)."""
    ratios = jnp.where(dv < 0, -v / jnp.where(dv < 0, dv, -1.0), jnp.inf)
    return jnp.min(ratios, initial=jnp.inf)


class _Residuals(NamedTuple):
    rx: jax.Array  # P x + Aᵀ z + q τ
    rz: jax.Array  # A x + s − b τ
    rtau: jax.Array  # qᵀx + bᵀz + κ + xᵀPx/τ
    Px: jax.Array
    Ax: jax.Array
    Atz: jax.Array
    xPx: jax.Array
    qx: jax.Array
    bz: jax.Array


def _residuals(data: _Data, st: _State) -> _Residuals:
    Px = data.P @ st.x
    Ax = data.A @ st.x
    Atz = data.A.T @ st.z
    # P is PSD, but a computed xᵀPx along a (near-)null direction of P can be a negative
    # rounding error; in the τ-row it is divided by τ → 0 (infeasible problems), where a negative
    # value would let qᵀx > 0 balance it and steer x to a certificate of the wrong sign.
    xPx = jnp.maximum(st.x @ Px, 0.0)
    qx = data.q @ st.x
    bz = data.b @ st.z
    return _Residuals(
        rx=Px + Atz + data.q * st.tau,
        rz=Ax + st.s - data.b * st.tau,
        rtau=qx + bz + st.kappa + xPx / st.tau,
        Px=Px, Ax=Ax, Atz=Atz, xPx=xPx, qx=qx, bz=bz,
    )


def _status(data: _Data, st: _State, r: _Residuals, scal, norms, tol, tol_inf):
    """Termination test of the current iterate (see the module docstring).

    Returns (status int32, finite bool): ``finite`` is False if the iterate or its residuals
    contain inf/NaN (every entry enters one of the norms below, which propagate them)."""
    col, row, c = scal
    q_norm, b_norm = norms
    tau = st.tau
    # All ∞-norms in two reductions (one over m-vectors, one over n-vectors): every reduction
    # is a separate kernel (two on CPU), which costs both run time and compile time.
    # Original units: x = col·x̂, s = ŝ/row, y = row·ẑ/c; residual rows scale likewise.
    nm = jnp.max(jnp.abs(jnp.stack([r.rz / row, r.Ax / row, st.s / row, r.Ax + st.s, st.z])),
                 axis=1, initial=0.0)
    nn = jnp.max(jnp.abs(jnp.stack([r.rx / col, r.Px / col, r.Atz / col, r.Atz, r.Px, st.x])),
                 axis=1, initial=0.0)
    pres = nm[0] / tau
    dres = nn[0] / (c * tau)
    pnorm = jnp.maximum(b_norm, jnp.maximum(nm[1], nm[2]) / tau)
    dnorm = jnp.maximum(q_norm, jnp.maximum(nn[1], nn[2]) / (c * tau))
    f_p = (0.5 * r.xPx / tau**2 + r.qx / tau) / c
    f_d = (-0.5 * r.xPx / tau**2 - r.bz / tau) / c
    solved = (
        (pres <= tol * (1.0 + pnorm))
        & (dres <= tol * (1.0 + dnorm))
        & (jnp.abs(f_p - f_d) <= tol * jnp.maximum(1.0, jnp.minimum(jnp.abs(f_p), jnp.abs(f_d))))
    )
    # Certificates are checked on the (unit max-norm) homogeneous iterate itself, not on x/τ,
    # in equilibrated units (where the data are O(1), so that an absolute threshold makes sense).
    tiny = jnp.finfo(tau.dtype).tiny
    primal_inf = (r.bz < -tiny) & (nn[3] <= tol_inf * (-r.bz))
    dual_inf = (r.qx < -tiny) & (jnp.maximum(nn[4], nm[3]) <= tol_inf * (-r.qx))
    status = jnp.where(
        solved, SOLVED,
        jnp.where(primal_inf, PRIMAL_INFEASIBLE, jnp.where(dual_inf, DUAL_INFEASIBLE, _RUNNING)),
    )
    finite = jnp.isfinite(jnp.sum(nm) + jnp.sum(nn) + r.rtau + tau + st.kappa)
    return status.astype(jnp.int32), finite


def _initial_point(data: _Data, p: int, reg):
    """Proximal least-squares start: with W_I = I and a unit prox term, solve (approximately:
    one solve with the regularized M, no refinement, as the start need not be exact)
    ``min ½xᵀPx + ½‖x‖² + qᵀx + ½‖A_I x − b_I‖²  s.t. A_E x = b_E``, set ``s_I = b_I − A_I x``,
    ``z_I = −s_I``, then shift both into the interior (CVXOPT/Clarabel's rule, min entry ≥ 1);
    τ = κ = 1. The prox term keeps x bounded for LPs (Clarabel/CVXOPT use P alone)."""
    m = data.A.shape[0]
    dtype = data.P.dtype
    w_I = jnp.ones((m - p,), dtype)
    fac = _factor(data, p, w_I, reg, _INIT_PROX)
    u, v = _solve_reg(data, p, fac, reg, -data.q[:, None], data.b[:, None])
    x, z = u[:, 0], v[:, 0]
    s_I = -z[p:]
    z_I = z[p:]
    s_I = s_I + jnp.maximum(0.0, 1.0 - jnp.min(s_I, initial=1.0))
    z_I = z_I + jnp.maximum(0.0, 1.0 - jnp.min(z_I, initial=1.0))
    z = jnp.concatenate([z[:p], z_I])
    s = jnp.concatenate([jnp.zeros((p,), dtype), s_I])
    one = jnp.ones((), dtype)
    return _State(x=x, z=z, s=s, tau=one, kappa=one)


def _iterate(data: _Data, p: int, st: _State, r: _Residuals, reg, refine):
    """One Mehrotra predictor-corrector step on the homogeneous embedding."""
    ell = data.A.shape[0] - p
    s_I, z_I = st.s[p:], st.z[p:]
    tau, kappa = st.tau, st.kappa
    mu = (s_I @ z_I + tau * kappa) / (ell + 1)
    w_I = s_I / z_I
    fac = _factor(data, p, w_I, reg, reg[0])
    Pxi = r.Px / tau

    def rhs_z(d_z, d_s):
        # −d_z + d_s/z on the inequality rows, −d_z on the equality rows.
        return -d_z + jnp.concatenate([jnp.zeros((p,), d_z.dtype), d_s / z_I])

    # Solve the constant system and the affine (predictor) system together (two columns). These
    # are not refined: the predictor only sets σ and the second-order term, and (x₁, z₁) only
    # enters through Δτ; the final direction is refined against K below instead.
    d_s_aff = s_I * z_I
    R1 = jnp.stack([-data.q, -r.rx], axis=1)
    R2 = jnp.stack([data.b, rhs_z(r.rz, d_s_aff)], axis=1)
    U, V = _solve_reg(data, p, fac, reg, R1, R2)
    x1, z1 = U[:, 0], V[:, 0]
    # Coefficient of Δτ in the τ-row, in the provably negative form (module docstring), with
    # (x₁ − ξ)ᵀP(x₁ − ξ) = x₁ᵀPx₁ − 2ξᵀPx₁ + ξᵀPξ. x₁ solves M exactly, so its two block rows
    # (P + δI)x₁ + Aᵀz₁ = −q and Ax₁ − (W + Δ)z₁ = b give x₁ᵀPx₁ and Px₁ without a matvec:
    #   x₁ᵀPx₁ = −qᵀx₁ − bᵀz₁ − z₁ᵀ(W + Δ)z₁ − δ‖x₁‖².
    delta, delta_eq = reg
    wz1 = jnp.concatenate([delta_eq * z1[:p], (w_I + delta) * z1[p:]])
    x1Px1 = -(data.q @ x1) - data.b @ z1 - z1 @ wz1 - delta * (x1 @ x1)
    dx1Pdx1 = x1Px1 - 2.0 * (Pxi @ x1) + r.xPx / tau**2
    denom = -(jnp.maximum(dx1Pdx1, 0.0) + z1[p:] @ (w_I * z1[p:]) + kappa / tau)
    g = data.q + 2.0 * Pxi

    def direction(x2, z2, d_tau, d_s, d_kappa, refine_rhs=None):
        dtau = (-d_tau + d_kappa / tau - g @ x2 - data.b @ z2) / denom
        dx = x2 + dtau * x1
        dz = z2 + dtau * z1
        if refine_rhs is not None:
            # (Δx, Δz) solves K [Δx; Δz] = [r₁ − qΔτ; r₂ + bΔτ] for the Δτ just found: refine
            # that one combined system rather than each of the three solves.
            r1, r2 = refine_rhs
            dx, dz = _refine(data, p, fac, reg, w_I, dx[:, None], dz[:, None],
                             (r1 - data.q * dtau)[:, None], (r2 + data.b * dtau)[:, None],
                             refine)
            dx, dz = dx[:, 0], dz[:, 0]
        ds_I = -(d_s + s_I * dz[p:]) / z_I
        dkappa = -(d_kappa + kappa * dtau) / tau
        return dx, dz, ds_I, dtau, dkappa

    def max_step(dz, ds_I, dtau, dkappa):
        return _max_step(jnp.concatenate([s_I, z_I, tau[None], kappa[None]]),
                         jnp.concatenate([ds_I, dz[p:], dtau[None], dkappa[None]]))

    # Predictor: target complementarity 0.
    _, dz_a, ds_a, dtau_a, dkappa_a = direction(U[:, 1], V[:, 1], r.rtau, d_s_aff, tau * kappa)
    alpha_a = jnp.minimum(1.0, max_step(dz_a, ds_a, dtau_a, dkappa_a))
    mu_a = ((s_I + alpha_a * ds_a) @ (z_I + alpha_a * dz_a[p:])
            + (tau + alpha_a * dtau_a) * (kappa + alpha_a * dkappa_a)) / (ell + 1)
    sigma = jnp.clip(mu_a / mu, 0.0, 1.0) ** 3

    # Corrector: centering σμ and Mehrotra's second-order term; residuals reduced by (1 − σ).
    d_s = s_I * z_I + ds_a * dz_a[p:] - sigma * mu
    d_kappa = tau * kappa + dtau_a * dkappa_a - sigma * mu
    r1 = -(1.0 - sigma) * r.rx
    r2 = rhs_z((1.0 - sigma) * r.rz, d_s)
    u, v = _solve_reg(data, p, fac, reg, r1[:, None], r2[:, None])
    dx, dz, ds_I, dtau, dkappa = direction(u[:, 0], v[:, 0], (1.0 - sigma) * r.rtau, d_s,
                                           d_kappa, refine_rhs=(r1, r2))
    alpha = jnp.minimum(1.0, _STEP_FRACTION * max_step(dz, ds_I, dtau, dkappa))
    new = _State(
        x=st.x + alpha * dx,
        z=st.z + alpha * dz,
        s=jnp.concatenate([st.s[:p], s_I + alpha * ds_I]),
        tau=tau + alpha * dtau,
        kappa=kappa + alpha * dkappa,
    )
    # The embedding is homogeneous: scaling the iterate by λ > 0 scales the residuals by λ, μ by
    # λ², leaves W = s/z unchanged and scales the next Newton direction by λ, so the iteration is
    # scale-equivariant. Renormalizing to max-entry 1 therefore changes nothing except that the
    # iterates cannot overflow when they diverge along an infeasibility certificate (the
    # regularized K⁻¹ amplifies such directions by up to 1/δ per iteration).
    lam = _norm_inf(jnp.concatenate([new.x, new.z, new.s, new.tau[None], new.kappa[None]]))
    return jax.tree_util.tree_map(lambda a: a / lam, new)


def solve_qp(P, q, A, b, n_zero: int, *, tol=None, max_iter: int = 50,
             refine: int | None = None) -> QPSolution:
    """Solve a dense convex QP with equality and inequality constraints.

    ``minimize ½xᵀPx + qᵀx  s.t.  A[:n_zero] x = b[:n_zero],  A[n_zero:] x ≤ b[n_zero:]``,
    i.e. ``Ax + s = b`` with ``s ∈ {0}^n_zero × R₊^(m − n_zero)``. Pure JAX: works under
    ``jit``, ``vmap`` (any batch of instances of the same shapes) and on any backend.

    Args:
      P: (n, n) symmetric positive semidefinite (only ½(P + Pᵀ) matters; P = 0 for LPs).
      q: (n,) linear objective.
      A: (m, n) constraint matrix; the first ``n_zero`` rows are equalities.
      b: (m,) right-hand side.
      n_zero: static number of equality rows (0 ≤ n_zero ≤ m).
      tol: relative tolerance on the primal residual, dual residual and duality gap (see the
        module docstring); default 1e-8 in float64, 1e-5 in float32. May be a traced scalar.
        Infeasibility certificates use ``max(tol, √eps)``.
      max_iter: static maximum number of interior-point iterations.
      refine: static number of iterative-refinement steps applied to each search direction;
        default 1 in float64, 2 in float32.

    Returns:
      :class:`QPSolution` (x (n,), y (m,), s (m,), status, iterations, kkt_factor). The dtype is
      the common floating dtype of the inputs.
    """
    P, q, A, b = (jnp.asarray(v) for v in (P, q, A, b))
    dtype = jnp.result_type(P, q, A, b)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    dtype = jnp.promote_types(dtype, jnp.float32)
    P, q, A, b = (jnp.asarray(v, dtype) for v in (P, q, A, b))
    n, m = q.shape[0], b.shape[0]
    if P.shape != (n, n) or A.shape != (m, n):
        raise ValueError(f"inconsistent shapes P {P.shape}, q {q.shape}, A {A.shape}, b {b.shape}")
    p = int(n_zero)
    if not 0 <= p <= m:
        raise ValueError(f"n_zero={n_zero} must be in [0, m={m}]")
    if tol is None:
        tol = 1e-8 if jnp.finfo(dtype).bits >= 64 else 1e-5
    if refine is None:
        # float32's δ ≈ 3.5e-4 is far from the unregularized K: one refinement step is not always
        # enough to reach tol (without any, float32 solves often stall).
        refine = 1 if jnp.finfo(dtype).bits >= 64 else 2
    reg = _regularization(dtype)
    tol = jnp.asarray(tol, dtype)
    # Certificates are ratios of quantities that suffer cancellation (Aᵀz ≈ 0 from z of size up
    # to 1/δ), so they cannot be verified below ≈ √eps: float32 needs the looser threshold.
    tol_inf = jnp.maximum(tol, reg[0])

    P = 0.5 * (P + P.T)
    col, row, c = _equilibrate(P, q, A, b)
    Ps = c * (P * col[:, None] * col[None, :])
    As = A * row[:, None] * col[None, :]
    A_E = As[:p]
    data = _Data(P=Ps, q=c * col * q, A=As, b=row * b, AtA_E=_RHO * (A_E.T @ A_E))
    scal = (col, row, c)
    norms = (_norm_inf(q), _norm_inf(b))

    st0 = _initial_point(data, p, reg)
    r0 = _residuals(data, st0)
    # (The starting point is not tested for termination: it never is optimal, and testing it
    # would cost a second copy of the termination code in the compiled program.)
    status0 = jnp.int32(_RUNNING)

    def cond(carry):
        _, _, _, k, status = carry
        return (status == _RUNNING) & (k < max_iter)

    # On a non-finite step the loop stops with NUMERICAL_ERROR and the previous iterate is
    # returned: the carry keeps it (st_prev) rather than selecting per leaf in every iteration.
    def body(carry):
        _, st, r, k, _ = carry
        new = _iterate(data, p, st, r, reg, refine)
        r_new = _residuals(data, new)
        status, finite = _status(data, new, r_new, scal, norms, tol, tol_inf)
        status = jnp.where(finite, status, NUMERICAL_ERROR).astype(jnp.int32)
        return st, new, r_new, k + 1, status

    st_prev, st, r, iters, status = lax.while_loop(
        cond, body, (st0, st0, r0, jnp.int32(0), status0))
    failed = status == NUMERICAL_ERROR
    st = jax.tree_util.tree_map(lambda a, b_: jnp.where(failed, a, b_), st_prev, st)
    status = jnp.where(status == _RUNNING, MAX_ITER, status).astype(jnp.int32)

    # Map back to original units (x = col·x̂/τ, s = ŝ/(row τ), y = row·ẑ/(c τ)).
    x_sol = col * st.x / st.tau
    s_sol = st.s / (row * st.tau)
    y_sol = row * st.z / (c * st.tau)
    # Certificates are the iterate's own directions in original units, normalized so that
    # bᵀy = −1 resp. qᵀx = −1 (qᵀ(col·x̂) = q̂ᵀx̂ / c, bᵀ(row·ẑ) = b̂ᵀẑ).
    y_cert = row * st.z / jnp.where(r.bz < 0, -r.bz, 1.0)
    x_cert = col * st.x / jnp.where(r.qx < 0, -r.qx / c, 1.0)
    zeros_n, zeros_m = jnp.zeros_like(x_sol), jnp.zeros_like(s_sol)
    pinf = status == PRIMAL_INFEASIBLE
    dinf = status == DUAL_INFEASIBLE
    x_out = jnp.where(pinf, zeros_n, jnp.where(dinf, x_cert, x_sol))
    y_out = jnp.where(pinf, y_cert, jnp.where(dinf, zeros_m, y_sol))
    s_cert = jnp.concatenate([jnp.zeros((p,), dtype), jnp.maximum(-(A[p:] @ x_cert), 0.0)])
    s_out = jnp.where(pinf, zeros_m, jnp.where(dinf, s_cert, s_sol))

    w_I = st.s[p:] / st.z[p:]
    L, LE, LF, d = _factor(data, p, w_I, reg, reg[0])
    factor = KKTFactor(L=L, LE=LE, LF=LF, d=d, w=w_I, col_scale=col, row_scale=row,
                       cost_scale=c, reg=jnp.asarray(reg[0], dtype),
                       reg_eq=jnp.asarray(reg[1], dtype))
    return QPSolution(x=x_out, y=y_out, s=s_out, status=status, iterations=iters,
                      kkt_factor=factor)


def kkt_solve(factor: KKTFactor, P, A, n_zero: int, r1, r2, *, refine: int = 2):
    """Solve the KKT (Newton) system at the returned iterate, in original units.

    Solves ``[[P, Aᵀ], [A, −W]] [u; v] = [r1; r2]`` with ``W = diag(0 on the n_zero equality
    rows, s/y on the inequality rows)`` from the returned iterate, using ``factor`` plus
    ``refine`` steps of iterative refinement. This is the linearization of the KKT conditions
    (stationarity, primal feasibility and ``y∘s = 0`` with ``Δs`` eliminated) that implicit
    differentiation needs, so a backward pass can reuse the solver's factorization.

    Derivation of the scaling: with ``u = D û``, ``v = E v̂ / c`` the system becomes the
    equilibrated one ``[[P̂, Âᵀ], [Â, −Ŵ]] [û; v̂] = [c·D r1; E r2]``.

    Args:
      factor: ``QPSolution.kkt_factor``.
      P: (n, n), A: (m, n): the original data passed to :func:`solve_qp`.
      n_zero: number of equality rows (static).
      r1: (n,) or (n, k); r2: (m,) or (m, k).

    Returns:
      (u, v) with the shapes of (r1, r2).
    """
    col, row, c = factor.col_scale, factor.row_scale, factor.cost_scale
    dtype = factor.L.dtype
    P = jnp.asarray(P, dtype)
    A = jnp.asarray(A, dtype)
    P = 0.5 * (P + P.T)
    p = int(n_zero)
    vec = jnp.ndim(r1) == 1
    r1 = jnp.asarray(r1, dtype).reshape(P.shape[0], -1)
    r2 = jnp.asarray(r2, dtype).reshape(A.shape[0], -1)
    As = A * row[:, None] * col[None, :]
    data = _Data(P=c * (P * col[:, None] * col[None, :]), q=jnp.zeros(P.shape[0], dtype),
                 A=As, b=jnp.zeros(A.shape[0], dtype), AtA_E=jnp.zeros_like(P))
    fac = (factor.L, factor.LE, factor.LF, factor.d)
    u, v = _solve(data, p, fac, (factor.reg, factor.reg_eq), factor.w, c * col[:, None] * r1,
                  row[:, None] * r2, refine)
    u = col[:, None] * u
    v = row[:, None] * v / c
    return (u[:, 0], v[:, 0]) if vec else (u, v)
