"""The optimality residual F of the canonical program, and the check of a solver's answer.

Both are written once, on the program as an operator (:class:`~cvxjax._program.SparseProgram`
or :class:`~cvxjax._program.DenseProgram`: ``P@x``, ``A@x``, ``Aᵀ@y``), so every solver and
both storage forms share them.

**Residual map.** The unknowns are ``z = (x, v)`` with ``v = y − s`` (Busseti, Moursi & Boyd's
"residual map" parametrization, extended to a quadratic objective). Moreau's decomposition
recovers the dual and the slack from v: ``y = Π_{K*}(v)`` and ``s = Π_{K*}(v) − v = Π_K(−v)``,
so y ∈ K*, s ∈ K and sᵀy = 0 hold *by construction*, and optimality reduces to the square system

    F(x, v; P, q, A, b) = [ P x + q + Aᵀ Π_{K*}(v) ]   (dual feasibility / stationarity)
                          [ A x + Π_{K*}(v) − v − b ]   (primal feasibility: Ax + s = b)

of n + m equations in n + m unknowns. Its Jacobian in z is

    J = [ P   AᵀD   ]      with D = DΠ_{K*}(v),
        [ A   D − I ]

nonsingular at a strictly complementary solution with unique primal and dual solutions. At
degenerate points (weakly active constraints, LP vertices with non-unique duals) D is a
generalized (Clarke) derivative of the projection and J may be singular; the solution map
then solves the linear system in the least-squares sense (:mod:`cvxjax._robust_solve`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ._errors import Status
from ._robust_solve import dense_lu_solve


def conic_residual(cone):
    """``F((x, v), program)`` of the module docstring for one (unbatched) instance; ``cone``
    is the :class:`~cvxjax._cones.ProductCone` of ``program.cones``."""

    def F(z, program):
        x, v = z
        y = cone.project_dual(v)
        dual_residual = program.P_matvec(x) + program.q + program.A_rmatvec(y)
        primal_residual = program.A_matvec(x) + y - v - program.b
        return dual_residual, primal_residual

    return F


class Residuals(NamedTuple):
    """Relative KKT residuals of a candidate solution (scalars, or arrays under ``vmap``).

    Attributes:
      primal: ``‖Ax + s − b‖∞ / (1 + max(‖Ax‖∞, ‖s‖∞, ‖b‖∞))``.
      dual: ``‖Px + q + Aᵀy‖∞ / (1 + max(‖Px‖∞, ‖Aᵀy‖∞, ‖q‖∞))``.
      gap: ``|xᵀPx + qᵀx + bᵀy| / (1 + |xᵀPx + qᵀx| + |bᵀy + ½xᵀPx|)``, the duality gap with the
        quadratic term split as in the Wolfe dual.
    """

    primal: jax.Array
    dual: jax.Array
    gap: jax.Array

    def worst(self) -> jax.Array:
        return jnp.maximum(jnp.maximum(self.primal, self.dual), self.gap)


def kkt_residuals(program, x, y, s) -> Residuals:
    """SCS-style relative residuals (see :class:`Residuals`) of ``(x, y, s)`` for ``program``.

    Cone membership of y and s is not measured: it is the solver's guarantee and is restored
    exactly anyway when the solution map projects ``v = y − s``. Non-finite input gives
    non-finite residuals.
    """
    Px, Ax, ATy = program.P_matvec(x), program.A_matvec(x), program.A_rmatvec(y)
    q, b = program.q, program.b

    def inf(v):
        return jnp.max(jnp.abs(v), initial=0.0)

    primal = inf(Ax + s - b) / (1 + jnp.maximum(jnp.maximum(inf(Ax), inf(s)), inf(b)))
    dual = inf(Px + q + ATy) / (1 + jnp.maximum(jnp.maximum(inf(Px), inf(ATy)), inf(q)))
    xPx = x @ Px
    gap = jnp.abs(xPx + q @ x + b @ y) / (1 + jnp.abs(xPx + q @ x) + jnp.abs(b @ y + 0.5 * xPx))
    return Residuals(primal, dual, gap)


# Statuses after which a solver has no point to offer (it returns NaN or a certificate).
_NO_SOLUTION = (Status.PRIMAL_INFEASIBLE, Status.DUAL_INFEASIBLE, Status.NUMERICAL_ERROR)


def checked_status(program, x, y, s, solver_status, tol):
    """The status of a solver's answer after checking it: ``(status int32, Residuals)``.

    The one rule for every solver: a certificate or a numerical failure is kept; otherwise the
    residuals decide. A point within ``tol`` counts as solved even if the solver stopped at its
    iteration limit or called it inaccurate, and a claimed solution above ``tol`` is
    ``INACCURATE``: derivatives of a loose solution would be wrong by as much (Blondel et al.,
    Thm. 1).
    """
    residuals = kkt_residuals(program, x, y, s)
    finite = jnp.all(jnp.isfinite(x)) & jnp.all(jnp.isfinite(y)) & jnp.all(jnp.isfinite(s))
    accurate = finite & (residuals.worst() <= tol)
    no_solution = jnp.isin(solver_status, jnp.asarray(_NO_SOLUTION, jnp.int32))
    status = jnp.where(
        no_solution,
        solver_status,
        jnp.where(
            accurate,
            Status.SOLVED,
            jnp.where(solver_status == Status.SOLVED, Status.INACCURATE, solver_status),
        ),
    )
    return status.astype(jnp.int32), residuals


def newton_refine(F, z, args, steps: int, solve=None):
    """Semismooth Newton steps ``z ← z − J(z)⁻¹ F(z)`` on the residual, kept only if they help.

    Interior-point solvers stop at ~1e-8 relative accuracy, and on exponential, power and PSD
    cones often nearer 1e-6; the Jacobian error is proportional to that (Blondel et al.,
    Thm. 1). Near a nondegenerate solution F is semismooth with a nonsingular J, so Newton
    converges quadratically: one step takes a 1e-6 solution to ~1e-12. A step that does not
    reduce ‖F‖ (e.g. at a degenerate point, or with NaNs from a failed solve) is discarded.

    ``solve(matvec, r)``: the linear solve of a step (default: J materialized, LU); the
    rescue of near misses passes the layer's robust solve (minimum-norm where J is singular,
    Krylov on the sparse path).
    """
    z_flat, unravel = ravel_pytree(z)

    def F_flat(w):
        return ravel_pytree(F(unravel(w), *args))[0]

    def step(_, w):
        r = F_flat(w)
        if solve is None:
            dw = dense_lu_solve(jax.jacfwd(F_flat)(w), r)
        else:
            dw = solve(lambda d: jax.jvp(F_flat, (w,), (d,))[1], r)
        w_new = w - dw
        better = jnp.all(jnp.isfinite(w_new)) & (
            jnp.linalg.norm(F_flat(w_new)) < jnp.linalg.norm(r)
        )
        return jnp.where(better, w_new, w)

    return unravel(jax.lax.fori_loop(0, steps, step, z_flat))


# A claimed or stalled solution this close to the check (residual at most RESCUE_FACTOR times
# check_tol) gets RESCUE_STEPS Newton steps on F before it is declared a failure: near a
# solution Newton converges quadratically, so two steps take a 1e-5 residual far below 1e-6,
# while a solver that stopped far away (or at a certificate) is not second-guessed.
RESCUE_FACTOR = 100.0
RESCUE_STEPS = 2


def rescue_near_miss(F, cone, program, x, y, s, status, residuals, tol, solve):
    """``(x, y, s, status, residuals)`` after refining a near miss of the residual check.

    A point whose checked ``status`` is ``INACCURATE`` or ``MAX_ITERATIONS`` with
    ``residuals.worst() ≤ RESCUE_FACTOR·tol`` gets :data:`RESCUE_STEPS` Newton steps on F
    (:func:`newton_refine` with the linear ``solve``); if the refined point passes the check
    it replaces the solver's answer and the status becomes ``SOLVED``. Everything else is
    returned unchanged. ``program`` and the point are those F is written on (the reduced
    program on the dense path). The refinement sits under a ``cond``, so it costs nothing
    unless a point needs it; on CPU it stays a real branch under ``vmap`` too (one problem of a
    batch at a time, as the dense solves already are).
    """

    def one(program, x, y, s, status, residuals):
        near = jnp.isin(status, jnp.asarray((Status.INACCURATE, Status.MAX_ITERATIONS)))
        near &= residuals.worst() <= RESCUE_FACTOR * tol  # False for NaN
        kept = (x, y, s, status, residuals)

        def refine():
            xr, vr = newton_refine(F, (x, y - s), (program,), RESCUE_STEPS, solve)
            yr = cone.project_dual(vr)
            sr = yr - vr
            refined = kkt_residuals(program, xr, yr, sr)
            ok = refined.worst() <= tol
            new = (xr, yr, sr, jnp.asarray(Status.SOLVED, status.dtype), refined)
            return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, kept)

        return jax.lax.cond(near, refine, lambda: kept)

    if jax.default_backend() == "cpu":
        one = jax.custom_batching.sequential_vmap(one)
    return one(program, x, y, s, status, residuals)
