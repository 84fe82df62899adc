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

The Newton systems are solved by the KKT kernel of :mod:`._kkt` (regularized reduced Cholesky
factorization plus iterative refinement against K), on data scaled by :mod:`._equilibrate`; the
termination tests (solved, primal/dual infeasible, numerical error, max iterations) are
documented in :mod:`._termination`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._equilibrate import _equilibrate, _norm_inf
from ._kkt import _RHO, _Data, _factor, _refine, _regularization, _solve_reg
from ._start import _initial_point, _State, _warm_point
from ._termination import (
    _RUNNING,
    DUAL_INFEASIBLE,
    MAX_ITER,
    NUMERICAL_ERROR,
    PRIMAL_INFEASIBLE,
    _Residuals,
    _residuals,
    _status,
)

# Fraction of the distance to the boundary of the cone taken by a step (keeps iterates interior).
_STEP_FRACTION = 0.99
# Weight of the proximal term ½‖x‖² of the least-squares starting point (equilibrated units).
_INIT_PROX = 1.0


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
    """

    x: jax.Array
    y: jax.Array
    s: jax.Array
    status: jax.Array
    iterations: jax.Array


def _zero_residuals(n, m, dtype) -> _Residuals:
    vec_n, vec_m, scalar = jnp.zeros((n,), dtype), jnp.zeros((m,), dtype), jnp.zeros((), dtype)
    return _Residuals(vec_n, vec_m, scalar, vec_n, vec_m, vec_n, scalar, scalar, scalar)


def _max_step(v, dv):
    """Largest α ∈ (0, ∞] with v + α dv ≥ 0 (v > 0)."""
    ratios = jnp.where(dv < 0, -v / jnp.where(dv < 0, dv, -1.0), jnp.inf)
    return jnp.min(ratios, initial=jnp.inf)


def _iterate(data: _Data, p: int, st: _State, r: _Residuals, reg, refine, first, warm):
    """One Mehrotra predictor-corrector step on the homogeneous embedding.

    On the first loop trip (``first``, a traced bool) it returns the starting point instead:
    that trip factors M with W_I = I and the unit prox term, whose constant-system solution
    (column 0 of the two-column solve below) is the proximal least-squares start of
    :func:`_initial_point`; or, with ``warm = (point, use)``, the warm point where ``use``.
    Computing the start with the loop's own factorization and solve means the compiled
    program holds one copy of that code instead of two (a third of the compile time of the
    solver went to the copy outside the loop)."""
    ell = data.A.shape[0] - p
    s_I, z_I = st.s[p:], st.z[p:]
    tau, kappa = st.tau, st.kappa
    mu = (s_I @ z_I + tau * kappa) / (ell + 1)
    w_I = jnp.where(first, 1.0, s_I / z_I)
    fac = _factor(data, p, w_I, reg, jnp.where(first, _INIT_PROX, reg[0]))
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
            dx, dz = _refine(
                data,
                p,
                fac,
                reg,
                w_I,
                dx[:, None],
                dz[:, None],
                (r1 - data.q * dtau)[:, None],
                (r2 + data.b * dtau)[:, None],
                refine,
            )
            dx, dz = dx[:, 0], dz[:, 0]
        ds_I = -(d_s + s_I * dz[p:]) / z_I
        dkappa = -(d_kappa + kappa * dtau) / tau
        return dx, dz, ds_I, dtau, dkappa

    def max_step(dz, ds_I, dtau, dkappa):
        return _max_step(
            jnp.concatenate([s_I, z_I, tau[None], kappa[None]]),
            jnp.concatenate([ds_I, dz[p:], dtau[None], dkappa[None]]),
        )

    # Predictor: target complementarity 0.
    _, dz_a, ds_a, dtau_a, dkappa_a = direction(U[:, 1], V[:, 1], r.rtau, d_s_aff, tau * kappa)
    alpha_a = jnp.minimum(1.0, max_step(dz_a, ds_a, dtau_a, dkappa_a))
    mu_a = (
        (s_I + alpha_a * ds_a) @ (z_I + alpha_a * dz_a[p:])
        + (tau + alpha_a * dtau_a) * (kappa + alpha_a * dkappa_a)
    ) / (ell + 1)
    sigma = jnp.clip(mu_a / mu, 0.0, 1.0) ** 3

    # Corrector: centering σμ and Mehrotra's second-order term; residuals reduced by (1 − σ).
    d_s = s_I * z_I + ds_a * dz_a[p:] - sigma * mu
    d_kappa = tau * kappa + dtau_a * dkappa_a - sigma * mu
    r1 = -(1.0 - sigma) * r.rx
    r2 = rhs_z((1.0 - sigma) * r.rz, d_s)
    u, v = _solve_reg(data, p, fac, reg, r1[:, None], r2[:, None])
    dx, dz, ds_I, dtau, dkappa = direction(
        u[:, 0], v[:, 0], (1.0 - sigma) * r.rtau, d_s, d_kappa, refine_rhs=(r1, r2)
    )
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
    new = jax.tree_util.tree_map(lambda a: a / lam, new)
    start = _initial_point(U[:, 0], V[:, 0], p)
    if warm is not None:
        point, use = warm
        start = jax.tree_util.tree_map(lambda w, c: jnp.where(use, w, c), point, start)
    return jax.tree_util.tree_map(lambda a, b: jnp.where(first, a, b), start, new)


def solve_qp(
    P,
    q,
    A,
    b,
    n_zero: int,
    *,
    tol=None,
    max_iter: int = 50,
    refine: int | None = None,
    warm_start=None,
    warm_margin=1e-3,
) -> QPSolution:
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
      tol: relative tolerance on the primal residual, dual residual and duality gap (see
        :mod:`._termination`); default 1e-8 in float64, 1e-5 in float32. May be a traced scalar.
        Infeasibility certificates use ``max(tol, √eps)``.
      max_iter: static maximum number of interior-point iterations.
      refine: static number of iterative-refinement steps applied to each search direction;
        default 1 in float64, 2 in float32.
      warm_start: ``(x (n,), y (m,), s (m,))`` in original units, e.g. the solution of a
        nearby problem, or ``None``. The start is that point with every inequality slack and
        dual raised to at least ``warm_margin`` (equilibrated units), τ = κ = 1. An
        interior-point method gains little from it (its iterates must stay away from the
        boundary, where the previous optimum lies): see benchmarks/README.md for the measured
        iteration counts. A warm start whose entries are all zero, or not all finite, means
        a cold start (so a zero-initialized ``lax.scan`` carry starts cold).

    Returns:
      :class:`QPSolution` (x (n,), y (m,), s (m,), status, iterations). The dtype is the common
      floating dtype of the inputs.
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

    # The loop's first trip computes the starting point (see _iterate) from a placeholder
    # iterate on which the step is well defined (W_I = I); its residuals are never read.
    zeros_m = jnp.zeros((m,), dtype)
    placeholder = _State(
        x=jnp.zeros((n,), dtype),
        z=zeros_m.at[p:].set(1.0),
        s=zeros_m.at[p:].set(1.0),
        tau=jnp.ones((), dtype),
        kappa=jnp.ones((), dtype),
    )
    r0 = _zero_residuals(n, m, dtype)
    warm = None
    if warm_start is not None:
        xw, yw, sw = (jnp.asarray(v, dtype) for v in warm_start)
        flat = jnp.concatenate([xw, yw, sw])
        use = jnp.all(jnp.isfinite(flat)) & jnp.any(flat != 0)
        point = (jnp.where(use, xw / col, 0.0), jnp.where(use, yw * c / row, 0.0))
        point += (jnp.where(use, sw * row, 0.0),)
        warm = (_warm_point(point, p, jnp.asarray(warm_margin, dtype)), use)

    def cond(carry):
        _, _, _, k, status = carry
        return (status == _RUNNING) & (k <= max_iter)

    # On a non-finite step the loop stops with NUMERICAL_ERROR and the previous iterate is
    # returned: the carry keeps it (st_prev) rather than selecting per leaf in every iteration.
    def body(carry):
        _, st, r, k, _ = carry
        first = k == 0
        new = _iterate(data, p, st, r, reg, refine, first, warm)
        r_new = _residuals(data, new)
        status, finite = _status(data, new, r_new, scal, norms, tol, tol_inf)
        # The starting point is not tested for termination (it never is optimal).
        status = jnp.where(first, _RUNNING, status)
        status = jnp.where(finite, status, NUMERICAL_ERROR).astype(jnp.int32)
        return st, new, r_new, k + 1, status

    st_prev, st, r, trips, status = lax.while_loop(
        cond, body, (placeholder, placeholder, r0, jnp.int32(0), jnp.int32(_RUNNING))
    )
    iters = jnp.maximum(trips - 1, 0).astype(jnp.int32)
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
    return QPSolution(x=x_out, y=y_out, s=s_out, status=status, iterations=iters)
