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
from ._program import A_matvec, A_rmatvec, P_matvec, ProgramData, ProgramStructure

# Dense LU for the implicit system up to this many unknowns (n + m); an (n+m)² float64 matrix
# of 3000² is 72 MB and factors in well under a second on one core.
DENSE_LIMIT = 3000


def conic_residual(structure: ProgramStructure, cone):
    """Build ``F((x, v), data)`` of the module docstring for one (unbatched) instance."""

    def F(z, data: ProgramData):
        x, v = z
        y = cone.project_dual(v)
        dual_residual = P_matvec(structure, data, x) + data.q + A_rmatvec(structure, data, y)
        primal_residual = A_matvec(structure, data, x) + y - v - data.b
        return dual_residual, primal_residual

    return F


def robust_dense_solve(matvec, b):
    """LU solve, falling back to minimum-norm least squares when J is (numerically) singular.

    Singular J arises at degenerate solutions (see module docstring). LU then produces inf/NaN
    or a huge, meaningless vector; the fallback (SVD-based ``lstsq``) gives the minimum-norm
    solution instead. The check is on the relative residual of the LU solution.
    """
    J = materialize(matvec, b)
    x = jnp.linalg.solve(J, b)
    scale = jnp.linalg.norm(b) + jnp.finfo(b.dtype).tiny
    residual = jnp.linalg.norm(J @ x - b) / scale
    eps = jnp.finfo(b.dtype).eps
    good = jnp.all(jnp.isfinite(x)) & (residual < 1e4 * eps * b.size)
    return jax.lax.cond(good, lambda: x, lambda: jnp.linalg.lstsq(J, b)[0])


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
        P = np.asarray(P, np.float64).reshape(-1, P.shape[-1])
        q = np.asarray(q, np.float64).reshape(-1, n)
        A = np.asarray(A, np.float64).reshape(-1, A.shape[-1])
        b = np.asarray(b, np.float64).reshape(-1, m)
        batch = q.shape[0]
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


def make_implicit_solver(
    structure: ProgramStructure,
    cone,
    host: HostBatchSolver,
    settings: Optional[Mapping[str, Any]],
    raise_errors: bool,
):
    """``data ↦ ((x, v), status)`` for one instance, differentiable in ``data``.

    Forward: the host backend through ``jax.pure_callback``. Derivative: implicit, from
    :func:`conic_residual`. Works under ``jit`` and ``vmap`` (a batch reaches the host as one
    call).
    """
    settings = dict(settings or {})
    F = conic_residual(structure, cone)

    @custom_root(F, solve=implicit_linear_solve(structure), has_aux=True)
    def solve(init, data: ProgramData):
        del init
        dtype = data.q.dtype
        shapes = (
            jax.ShapeDtypeStruct((structure.n,), dtype),
            jax.ShapeDtypeStruct((structure.m,), dtype),
            jax.ShapeDtypeStruct((), jnp.int32),
        )
        callback = functools.partial(
            host, settings=settings, raise_errors=raise_errors, out_dtype=np.dtype(dtype)
        )
        x, v, status = jax.pure_callback(
            callback, shapes, data.P, data.q, data.A, data.b, vmap_method="broadcast_all"
        )
        return (x, v), status

    return lambda data: solve(None, data)
