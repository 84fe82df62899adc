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
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from ._backends._base import HostBackend, HostSolution, NO_SOLUTION, relative_kkt_residual
from ._errors import SolverError, Status
from ._implicit import custom_root
from ._linear_solve import materialize, solve_bicgstab, solve_gmres, solve_normal_cg
from ._cones import ProductCone
from ._program import A_matvec, A_rmatvec, P_matvec, ProgramData, ProgramStructure
from ._reduce import (
    DenseProgram,
    Elimination,
    blocks,
    expand,
    reduce_program,
    restrict,
)

# Dense LU for the implicit system up to this many unknowns (n + m); an (n+m)² float64 matrix
# of 3000² is 72 MB and factors in well under a second on one core.
DENSE_LIMIT = 3000


def conic_residual(structure: ProgramStructure, cone):
    """``F((x, v), data)`` of the module docstring for one (unbatched) instance, with P and A
    applied through their sparsity patterns (the large-problem path, with Krylov solves)."""

    def F(z, data: ProgramData):
        x, v = z
        y = cone.project_dual(v)
        dual_residual = P_matvec(structure, data, x) + data.q + A_rmatvec(structure, data, y)
        primal_residual = A_matvec(structure, data, x) + y - v - data.b
        return dual_residual, primal_residual

    return F


def dense_conic_residual(cone):
    """``F((x, v), program)`` for a :class:`DenseProgram` (the dense path).

    Dense products matter for *materializing* ∂F/∂z with ``jacfwd``: pushing n + m tangents
    through sparse gather/scatter products creates (n + m) × nnz intermediates (gigabytes at
    n ≈ 200), through dense products it is one matrix-matrix product. Extra arguments (the
    original sparse data, passed along for the forward solver) do not enter F.
    """

    def F(z, program: DenseProgram, *unused):
        del unused
        x, v = z
        y = cone.project_dual(v)
        dual_residual = program.P @ x + program.q + program.A.T @ y
        primal_residual = program.A @ x + y - v - program.b
        return dual_residual, primal_residual

    return F


def _solve_with_fallback(J, b):
    """``J x = b`` by LU; damped least squares when J is (numerically) singular."""
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


# On CPU a batch of dense solves runs as a loop of unbatched LAPACK calls. Two reasons:
# (1) jaxlib 0.10's *batched* CPU LAPACK kernels split the batch over XLA's intra-op thread
# pool and block until the pieces finish; when two of them run at once (e.g. the LU and the
# Cholesky of the two branches below, which vmap turns into a select) they can occupy every
# pool thread and wait on each other forever -- a deadlock we hit on a 2-core machine in
# batched gradients (gdb: both XLA threads in jax::ParallelBatchMap -> BlockingCounter::Wait).
# (2) Unbatched, the ``cond`` stays a real branch, so the fallback only runs where needed.
# On accelerators the batched kernels are the right choice.
_solve_each_with_fallback = jax.custom_batching.sequential_vmap(_solve_with_fallback)
_lu_solve_each = jax.custom_batching.sequential_vmap(jnp.linalg.solve)


def _on_cpu() -> bool:
    return jax.default_backend() == "cpu"


def robust_dense_solve(matvec, b):
    """LU solve, falling back to a damped least-squares solve when J is (numerically) singular.

    Singular J arises at degenerate solutions (see module docstring). LU then produces inf/NaN
    or a huge, meaningless vector; the fallback solves ``(JᵀJ + δI) x = Jᵀb`` by Cholesky
    (δ = √eps·‖J‖²), which is finite and, for a consistent system, close to the minimum-norm
    solution. We avoid an SVD-based ``lstsq`` on purpose: under ``vmap`` on accelerators the
    ``cond`` becomes a ``select`` that evaluates both branches, and a batched SVD costs many LUs.
    """
    J = materialize(matvec, b)
    if _on_cpu():
        return _solve_each_with_fallback(J, b)
    return _solve_with_fallback(J, b)


def robust_krylov_solve(matvec, b):
    """BiCGSTAB; restarted GMRES if that fails; CG on the normal equations if both do.

    BiCGSTAB is the fastest of the three here (3x faster than GMRES on a sparse QP with
    n = 2000: short recurrences, one pair of matvecs per step), but it can break down on the
    indefinite, nonsymmetric J of the conic residual (seen: NaN on a least-squares QP whose
    variables have no quadratic term); GMRES cannot break down on a nonsingular J. At a
    degenerate solution J is singular (e.g. an LP with a whole optimal edge) and both can
    return NaN; CG on ``JᵀJ x = Jᵀb`` started from 0 stays in the row space of J and converges
    to the minimum-norm least-squares solution, the same generalized derivative the dense path
    returns. Unbatched, each fallback runs only when needed; under ``vmap`` on accelerators
    the ``cond`` becomes a ``select`` and all run.
    """
    scale = jnp.linalg.norm(b) + jnp.finfo(b.dtype).tiny

    def accurate(x):
        residual = jnp.linalg.norm(matvec(x) - b) / scale
        return jnp.all(jnp.isfinite(x)) & (residual <= 1e-6)

    x = solve_bicgstab(matvec, b)

    def after_bicgstab():
        x_gmres = solve_gmres(matvec, b)
        return jax.lax.cond(
            accurate(x_gmres), lambda: x_gmres, lambda: solve_normal_cg(matvec, b)
        )

    return jax.lax.cond(accurate(x), lambda: x, after_bicgstab)


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


def dense_relative_kkt_residual(program: DenseProgram, x, y, s):
    """JAX twin of ``relative_kkt_residual`` (same formula) on a dense program."""
    Px, Ax, ATy = program.P @ x, program.A @ x, program.A.T @ y
    inf = lambda v: jnp.max(jnp.abs(v), initial=0.0)
    primal = inf(Ax + s - program.b) / (
        1 + jnp.maximum(jnp.maximum(inf(Ax), inf(s)), inf(program.b))
    )
    dual = inf(Px + program.q + ATy) / (
        1 + jnp.maximum(jnp.maximum(inf(Px), inf(ATy)), inf(program.q))
    )
    xPx = x @ Px
    gap = jnp.abs(xPx + program.q @ x + program.b @ y) / (
        1 + jnp.abs(xPx + program.q @ x) + jnp.abs(program.b @ y + 0.5 * xPx)
    )
    return jnp.maximum(jnp.maximum(primal, dual), gap)


def raise_if_failed(solver_name: str, status: jax.Array) -> None:
    """Raise :class:`SolverError` from inside a traced computation if any status is not 0.

    For solvers that run in JAX (host solvers raise in their own callback). The host callback
    sits under a ``cond`` so that it only runs when something failed: an unconditional
    ``jax.debug.callback`` cost ~0.2 ms per call, more than a small QP solve. (Under an
    enclosing ``vmap`` the cond becomes a select and the callback runs every time; still correct.)
    JAX re-raises the exception as ``JaxRuntimeError`` carrying our message.
    """

    def throw(status):
        status = np.asarray(status)
        if np.any(status != 0):
            raise solver_error(solver_name, status, status.shape)

    jax.lax.cond(
        jnp.any(status != Status.SOLVED),
        lambda: jax.debug.callback(throw, status),
        lambda: None,
    )


def jax_qp_forward(n_zero: int, check_tol: float, settings, float32_check_tol=None):
    """Forward solve with the pure-JAX dense interior-point method (no host round trip).

    Returns ``forward(program, data) -> (x, v, status)`` on the (reduced) dense program;
    ``n_zero`` is its number of equality rows.
    """
    from ._backends.jax_qp import solve_qp

    settings = dict(settings or {})

    def solve(P, q, A, b):
        sol = solve_qp(P, q, A, b, n_zero, **settings)
        return sol.x, sol.y, sol.s, sol.status

    if _on_cpu():
        # On CPU a batch is solved one problem after the other, with unbatched LAPACK calls:
        # the vmapped while_loop would call jaxlib's batched CPU kernels, and two of those
        # running at once can deadlock XLA's intra-op pool (see _solve_each_with_fallback).
        # The price: on an idle 2-core machine the vmapped loop was 1.4x (dense QP n=50) to
        # 2.4x (n=10) faster at batch 32. On accelerators vmap is used.
        solve = jax.custom_batching.sequential_vmap(solve)

    def forward(program: DenseProgram, data: ProgramData):
        del data
        x, y, s, raw_status = solve(program.P, program.q, program.A, program.b)
        status = jnp.asarray(_JAX_QP_STATUS)[raw_status]
        residual = dense_relative_kkt_residual(program, x, y, s)
        finite = jnp.all(jnp.isfinite(x)) & jnp.all(jnp.isfinite(y))
        tol = check_tol
        if float32_check_tol is not None and jnp.finfo(x.dtype).bits < 64:
            tol = float32_check_tol
        accurate = finite & (residual <= tol)
        # Like the host path: a solver that stopped early but is accurate counts as solved,
        # and a claimed solution with a large residual does not.
        status = jnp.where(
            accurate & (status == Status.MAX_ITERATIONS), Status.SOLVED,
            jnp.where(~accurate & (status == Status.SOLVED), Status.INACCURATE, status),
        ).astype(jnp.int32)
        # Failed problems need no masking here: make_solution_map replaces their z.
        return x, y - s, status

    return forward


def newton_refine(F, z, args, steps: int):
    """Semismooth Newton steps ``z ← z − J(z)⁻¹ F(z)`` on the residual, kept only if they help.

    Interior-point solvers stop at ~1e-8 relative accuracy, and on exponential, power and PSD
    cones often nearer 1e-6; the Jacobian error is proportional to that (Blondel et al.,
    Thm. 1). Near a nondegenerate solution F is semismooth with a nonsingular J, so Newton
    converges quadratically: one step takes a 1e-6 solution to ~1e-12. A step that does not
    reduce ‖F‖ (e.g. at a degenerate point, or with NaNs from a failed solve) is discarded.
    """
    from jax.flatten_util import ravel_pytree

    z_flat, unravel = ravel_pytree(z)
    F_flat = lambda w: ravel_pytree(F(unravel(w), *args))[0]

    def step(_, w):
        r = F_flat(w)
        J = jax.jacfwd(F_flat)(w)
        w_new = w - (_lu_solve_each if _on_cpu() else jnp.linalg.solve)(J, r)
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


def make_solution_map(structure: ProgramStructure, forward, elim: Optional[Elimination],
                      refine_steps: int = 0):
    """``data ↦ ((x, y), status)`` for one instance, differentiable in ``data``.

    ``forward`` is any solver (host callback or pure JAX); it is never differentiated. The
    derivative is implicit, from the conic residual F, and ``refine_steps`` Newton steps on F
    polish the solver's output (:func:`newton_refine`). Works under ``jit`` and ``vmap``.

    Dense path (``elim`` given): the variables that equality rows define are eliminated first
    (:mod:`cvxjax._reduce`), F and its Jacobian live on the smaller dense program, and the
    solution is expanded back. ``forward(program, data) -> (x, v, status)`` then returns the
    *reduced* solution; it gets the reduced :class:`DenseProgram` (for the pure-JAX solver)
    and the original sparse data (for host solvers, see :func:`restricted`).

    Sparse path: ``forward(data) -> (x, v, status)`` on the original program; F is applied
    through the sparsity patterns and its linear systems are solved matrix-free by
    :func:`robust_krylov_solve`.
    """
    if elim is None:
        cone = ProductCone(structure.cones)
        F = conic_residual(structure, cone)

        @custom_root(F, solve=robust_krylov_solve, has_aux=True)
        def solve_sparse(init, data: ProgramData):
            del init
            x, v, status = forward(data)
            z = _zero_if_failed((x, v), status)
            if refine_steps:
                z = newton_refine(F, z, (data,), refine_steps)
            return z, status

        def run_sparse(data: ProgramData):
            (x, v), status = solve_sparse(None, data)
            return _nan_if_failed((x, cone.project_dual(v)), status), status

        return run_sparse

    cone = ProductCone(elim.cones)
    F = dense_conic_residual(cone)

    @custom_root(F, solve=robust_dense_solve, has_aux=True)
    def solve_dense(init, program: DenseProgram, data: ProgramData):
        del init
        x, v, status = forward(program, data)
        z = _zero_if_failed((x, v), status)
        if refine_steps:
            z = newton_refine(F, z, (program, data), refine_steps)
        return z, status

    def run_dense(data: ProgramData):
        blk = blocks(elim, data)
        program = reduce_program(blk)
        (x, v), status = solve_dense(None, program, data)
        return _nan_if_failed(expand(elim, blk, x, cone.project_dual(v)), status), status

    return run_dense


def _zero_if_failed(z, status):
    """Inside the implicit rule a failed problem is carried as z = 0, not NaN: its linear
    system then stays finite, so with a zero cotangent (a loss that masks it out) it adds
    exactly zero -- not 0·NaN = NaN -- to the gradient of parameters shared across the batch.
    The NaN the caller sees is put back outside the rule (:func:`_nan_if_failed`)."""
    return jax.tree.map(lambda a: jnp.where(status == Status.SOLVED, a, 0.0), z)


def _nan_if_failed(z, status):
    return jax.tree.map(lambda a: jnp.where(status == Status.SOLVED, a, jnp.nan), z)


def restricted(elim: Elimination, forward):
    """Adapt a forward solver of the original program to the dense path's convention."""

    def forward_restricted(program: DenseProgram, data: ProgramData):
        del program
        x, v, status = forward(data)
        return (*restrict(elim, x, v), status)

    return forward_restricted
