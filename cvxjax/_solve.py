"""Solve the canonical program and differentiate its solution implicitly.

The unknowns are ``z = (x, v)`` with ``v = y − s`` (Busseti, Moursi & Boyd's "residual map"
parametrization, extended to a quadratic objective). Moreau's decomposition recovers the dual
and the slack from v: ``y = Π_{K*}(v)`` and ``s = Π_{K*}(v) − v = Π_K(−v)``, so y ∈ K*, s ∈ K
and sᵀy = 0 hold *by construction*, and optimality reduces to the square system

    F(x, v; P, q, A, b) = [ P x + q + Aᵀ Π_{K*}(v) ]   (dual feasibility / stationarity)
                          [ A x + Π_{K*}(v) − v − b ]   (primal feasibility: Ax + s = b)

of n + m equations in n + m unknowns. Its Jacobian in z is

    J = [ P   AᵀD   ]      with D = DΠ_{K*}(v),
        [ A   D − I ]

nonsingular at a strictly complementary solution with unique primal and dual solutions. At
degenerate points (weakly active constraints, LP vertices with non-unique duals) D is a
generalized (Clarke) derivative of the projection and J may be singular; we then return the
minimum-norm least-squares solution of the linear system (see :func:`robust_dense_solve`), a
finite element of the set of generalized derivatives, never NaN or inf.
"""

from __future__ import annotations

import concurrent.futures
import functools
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ._backends._base import HostBackend, HostSolution, NO_SOLUTION, relative_kkt_residual
from ._errors import SolverError, Status
from ._implicit import custom_root
from ._linear_solve import materialize, solve_bicgstab
from ._program import (
    A_matvec,
    A_rmatvec,
    P_matvec,
    ProgramData,
    ProgramStructure,
    dense_A,
    dense_P,
)

# Dense LU for the implicit system up to this many unknowns (n + m); an (n+m)² float64 matrix
# of 3000² is 72 MB and factors in well under a second on one core.
DENSE_LIMIT = 3000


def conic_residual(structure: ProgramStructure, cone, dense: bool = False):
    """Build ``F((x, v), data)`` of the module docstring for one (unbatched) instance.

    With ``dense=True`` P and A are scattered into dense matrices first. The values are the
    same; what changes is the cost of *materializing* ∂F/∂z with ``jacfwd``: pushing n + m
    tangents through the sparse gather/scatter products creates (n + m) × nnz intermediates
    (gigabytes at n ≈ 200), while through dense products it is one matrix-matrix product.
    """

    def F(z, data: ProgramData):
        x, v = z
        y = cone.project_dual(v)
        if dense:
            P, A = dense_P(structure, data), dense_A(structure, data)
            dual_residual = P @ x + data.q + A.T @ y
            primal_residual = A @ x + y - v - data.b
        else:
            dual_residual = P_matvec(structure, data, x) + data.q + A_rmatvec(structure, data, y)
            primal_residual = A_matvec(structure, data, x) + y - v - data.b
        return dual_residual, primal_residual

    return F


def robust_dense_solve(matvec, b):
    """LU solve, falling back to a damped least-squares solve when J is (numerically) singular.

    Singular J arises at degenerate solutions (see module docstring). LU then produces inf/NaN
    or a huge, meaningless vector; the fallback solves ``(JᵀJ + δI) x = Jᵀb`` by Cholesky
    (δ = √eps·‖J‖²), which is finite and, for a consistent system, close to the minimum-norm
    solution. We avoid an SVD-based ``lstsq`` on purpose: under ``vmap`` the ``cond`` becomes a
    ``select`` that evaluates both branches, and a batched SVD costs many LUs.
    """
    J = materialize(matvec, b)
    x = jnp.linalg.solve(J, b)
    scale = jnp.linalg.norm(b) + jnp.finfo(b.dtype).tiny
    residual = jnp.linalg.norm(J @ x - b) / scale
    eps = jnp.finfo(b.dtype).eps
    good = jnp.all(jnp.isfinite(x)) & (residual < 1e4 * eps * b.size)

    def damped():
        JtJ = J.T @ J
        delta = jnp.sqrt(eps) * (jnp.trace(JtJ) / b.size + jnp.finfo(b.dtype).tiny)
        chol = jax.scipy.linalg.cho_factor(JtJ + delta * jnp.eye(b.size, dtype=b.dtype))
        return jax.scipy.linalg.cho_solve(chol, J.T @ b)

    return jax.lax.cond(good, lambda: x, damped)


def implicit_linear_solve(structure: ProgramStructure):
    if structure.n + structure.m <= DENSE_LIMIT:
        return robust_dense_solve
    return solve_bicgstab


class HostBatchSolver:
    """Runs a host backend on a whole batch inside one ``jax.pure_callback``.

    Called with arrays that may carry any number of leading batch axes (from the layer's own
    batch and from enclosing ``vmap``s, broadcast by ``vmap_method="broadcast_all"``); it
    flattens them, solves each problem, checks each solution's KKT residual and returns
    ``x``, ``v = y − s`` and an int32 status per problem.
    """

    def __init__(self, backend: HostBackend, check_tol: float, max_workers: int = 1):
        self.backend = backend
        self.check_tol = check_tol
        self.max_workers = max_workers

    def _solve_one(self, P, q, A, b, settings) -> tuple[HostSolution, Status]:
        sol = self.backend.solve(P, q, A, b, settings)
        status = sol.status
        if status not in NO_SOLUTION:
            residual = relative_kkt_residual(self.backend.prepared, P, q, A, b, sol)
            if residual <= self.check_tol:
                status = Status.SOLVED
            elif status == Status.SOLVED:
                status = Status.INACCURATE
        return sol, status

    def __call__(self, P, q, A, b, *, settings, raise_errors, out_dtype):
        lead = q.shape[:-1]
        n, m = self.backend.structure.n, self.backend.structure.m
        batch = int(np.prod(lead, dtype=np.int64))
        P = np.asarray(P, np.float64).reshape(batch, P.shape[-1])
        q = np.asarray(q, np.float64).reshape(batch, n)
        A = np.asarray(A, np.float64).reshape(batch, A.shape[-1])
        b = np.asarray(b, np.float64).reshape(batch, m)
        args = [(P[i], q[i], A[i], b[i], settings) for i in range(batch)]
        if self.max_workers > 1 and batch > 1:
            with concurrent.futures.ThreadPoolExecutor(self.max_workers) as pool:
                results = list(pool.map(lambda a: self._solve_one(*a), args))
        else:
            results = [self._solve_one(*a) for a in args]
        x = np.full((batch, n), np.nan)
        v = np.full((batch, m), np.nan)
        status = np.zeros(batch, np.int32)
        for i, (sol, st) in enumerate(results):
            status[i] = int(st)
            if st == Status.SOLVED:
                x[i], v[i] = sol.x, sol.y - sol.s
        failed = np.flatnonzero(status)
        if raise_errors and failed.size:
            raise solver_error(self.backend.name, status, lead)
        return (
            x.reshape(lead + (n,)).astype(out_dtype),
            v.reshape(lead + (m,)).astype(out_dtype),
            status.reshape(lead),
        )


def solver_error(solver_name: str, status: np.ndarray, batch_shape=()) -> SolverError:
    """A :class:`SolverError` describing the first failed problem of a status array."""
    status = np.asarray(status).reshape(-1)
    failed = np.flatnonzero(status)
    first = int(failed[0])
    code = Status(int(status[first]))
    where = ""
    index = None
    if batch_shape:
        index = np.unravel_index(first, batch_shape)
        index = index[0] if len(index) == 1 else index
        where = f" for batch element {index} ({failed.size} of {status.size} problems failed)"
    return SolverError(
        f"cvxjax.SolverError: {solver_name} failed{where}: {code.name}: {code.describe()}.",
        status=code,
        index=index,
        solver=solver_name,
    )


def host_forward(structure: ProgramStructure, host: HostBatchSolver, settings, raise_errors):
    """Forward solve on the host: ``data ↦ (x, v, status)`` through one ``pure_callback``."""
    settings = dict(settings or {})

    def forward(data: ProgramData):
        dtype = data.q.dtype
        shapes = (
            jax.ShapeDtypeStruct((structure.n,), dtype),
            jax.ShapeDtypeStruct((structure.m,), dtype),
            jax.ShapeDtypeStruct((), jnp.int32),
        )
        callback = functools.partial(
            host, settings=settings, raise_errors=raise_errors, out_dtype=np.dtype(dtype)
        )
        # broadcast_all: under vmap the callback receives the whole batch at once (leading
        # axes), so a batch costs one host round trip, not one per element.
        return jax.pure_callback(
            callback, shapes, data.P, data.q, data.A, data.b, vmap_method="broadcast_all"
        )

    return forward


# Status codes of jax_qp.solve_qp -> ours.
_JAX_QP_STATUS = np.array(
    [Status.SOLVED, Status.MAX_ITERATIONS, Status.PRIMAL_INFEASIBLE, Status.DUAL_INFEASIBLE,
     Status.NUMERICAL_ERROR], dtype=np.int32,
)


def jax_relative_kkt_residual(structure: ProgramStructure, data: ProgramData, x, y, s):
    """JAX twin of ``relative_kkt_residual`` (same formula), for the pure-JAX backend."""
    Px = P_matvec(structure, data, x)
    Ax = A_matvec(structure, data, x)
    ATy = A_rmatvec(structure, data, y)
    inf = lambda v: jnp.max(jnp.abs(v), initial=0.0)
    primal = inf(Ax + s - data.b) / (1 + jnp.maximum(jnp.maximum(inf(Ax), inf(s)), inf(data.b)))
    dual = inf(Px + data.q + ATy) / (1 + jnp.maximum(jnp.maximum(inf(Px), inf(ATy)), inf(data.q)))
    xPx = x @ Px
    gap = jnp.abs(xPx + data.q @ x + data.b @ y) / (
        1 + jnp.abs(xPx + data.q @ x) + jnp.abs(data.b @ y + 0.5 * xPx)
    )
    return jnp.maximum(jnp.maximum(primal, dual), gap)


def _raise_if_failed(status):
    status = np.asarray(status)
    if np.any(status != 0):
        raise solver_error("JAX", status, status.shape)


def jax_qp_forward(structure: ProgramStructure, check_tol: float, settings, raise_errors):
    """Forward solve with the pure-JAX dense interior-point method (no host round trip)."""
    from ._backends.jax_qp import solve_qp

    settings = dict(settings or {})

    def forward(data: ProgramData):
        sol = solve_qp(dense_P(structure, data), data.q, dense_A(structure, data), data.b,
                       structure.cones.zero, **settings)
        status = jnp.asarray(_JAX_QP_STATUS)[sol.status]
        residual = jax_relative_kkt_residual(structure, data, sol.x, sol.y, sol.s)
        finite = jnp.all(jnp.isfinite(sol.x)) & jnp.all(jnp.isfinite(sol.y))
        accurate = finite & (residual <= check_tol)
        # Like the host path: a solver that stopped early but is accurate counts as solved,
        # and a claimed solution with a large residual does not.
        status = jnp.where(
            accurate & (status == Status.MAX_ITERATIONS), Status.SOLVED,
            jnp.where(~accurate & (status == Status.SOLVED), Status.INACCURATE, status),
        ).astype(jnp.int32)
        failed = status != Status.SOLVED
        x = jnp.where(failed, jnp.nan, sol.x)
        v = jnp.where(failed, jnp.nan, sol.y - sol.s)
        if raise_errors:
            jax.debug.callback(_raise_if_failed, status)
        return x, v, status

    return forward


def newton_refine(F, z, data, steps: int):
    """Semismooth Newton steps ``z ← z − J(z)⁻¹ F(z)`` on the residual, kept only if they help.

    Interior-point solvers stop at ~1e-8 relative accuracy, and on exponential, power and PSD
    cones often nearer 1e-6; the Jacobian error is proportional to that (Blondel et al.,
    Thm. 1). Near a nondegenerate solution F is semismooth with a nonsingular J, so Newton
    converges quadratically: one step takes a 1e-6 solution to ~1e-12. A step that does not
    reduce ‖F‖ (e.g. at a degenerate point, or with NaNs from a failed solve) is discarded.
    """
    from jax.flatten_util import ravel_pytree

    z_flat, unravel = ravel_pytree(z)
    F_flat = lambda w: ravel_pytree(F(unravel(w), data))[0]

    def step(_, w):
        r = F_flat(w)
        J = jax.jacfwd(F_flat)(w)
        w_new = w - jnp.linalg.solve(J, r)
        better = jnp.all(jnp.isfinite(w_new)) & (
            jnp.linalg.norm(F_flat(w_new)) < jnp.linalg.norm(r)
        )
        return jnp.where(better, w_new, w)

    return unravel(jax.lax.fori_loop(0, steps, step, z_flat))


def default_refine_steps(structure: ProgramStructure) -> int:
    """One Newton step for cones where interior-point accuracy is limited (second-order, PSD,
    exponential, power), none for QPs (polished OSQP and Clarabel already reach ~1e-10), and
    none above the dense limit (a dense factorization per step would dominate)."""
    if structure.cones.is_qp or structure.n + structure.m > DENSE_LIMIT:
        return 0
    return 1


def make_implicit_solver(structure: ProgramStructure, cone, forward, refine_steps: int = 0):
    """``data ↦ ((x, v), status)`` for one instance, differentiable in ``data``.

    ``forward(data) -> (x, v, status)`` is any solver (host callback or pure JAX); it is never
    differentiated. ``refine_steps`` Newton steps on F polish its output (:func:`newton_refine`).
    The derivative is implicit, from :func:`conic_residual`. Works under ``jit`` and ``vmap``.
    """
    F = conic_residual(structure, cone, dense=structure.n + structure.m <= DENSE_LIMIT)

    @custom_root(F, solve=implicit_linear_solve(structure), has_aux=True)
    def solve(init, data: ProgramData):
        del init
        x, v, status = forward(data)
        z = (x, v)
        if refine_steps:
            z = newton_refine(F, z, data, refine_steps)
        return z, status

    return lambda data: solve(None, data)
