"""The solution map ``program ↦ (x, y), Solution``, differentiable in the program.

One path for every solver:

    program ──reduction.apply──▶ reduced ──(the form the solver consumes)──▶ solver.solve
        ──▶ RawSolution ──checked_status (one JAX check)──▶ z₀ = (x, y − s) in reduced units
        ──▶ polish: custom_root(F) (Newton steps on F; the derivative is implicit)
        ──▶ reduction.invert ──▶ (x, y) of the canonical program

The solver runs on ``stop_gradient`` of its input, so it is never differentiated (a host
callback or a ``while_loop`` cannot be); the derivative comes from the implicit function
theorem applied to the conic residual F of the *reduced* program (:mod:`cvxjax._residual`),
whose linear system is solved densely (LU, least-squares fallback) on the dense path and
matrix-free (Krylov) on the sparse path (:mod:`cvxjax._robust_solve`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp

from ._cones import ProductCone
from ._degenerate import flag_degenerate
from ._errors import Status
from ._implicit import custom_root
from ._program import SparseProgram
from ._residual import checked_status, conic_residual, newton_refine, rescue_near_miss
from ._robust_solve import robust_dense_solve, robust_krylov_solve
from ._solvers.fallback import WithFallback


class WarmStart(NamedTuple):
    """What a solver needs to restart: its own primal x (n,), dual y (m,) and slack s (m,) of
    the program it consumed (the presolved dense program for ``solver="JAX"``, the canonical
    program for the host solvers), with any batch axes in front. A pytree, found in
    [`Solution.warm_start`][cvxjax.Solution] and passed back as
    ``layer.solve(..., warm_start=solution)``; it carries no derivative.

    Zeros mean a cold start for every solver ([`CvxpyLayer.cold_start`][cvxjax.CvxpyLayer.cold_start]
    makes them, e.g. as the first carry of a ``lax.scan``), and so does a problem that failed.
    """

    x: jax.Array
    y: jax.Array
    s: jax.Array


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=[
        "status",
        "iterations",
        "primal_residual",
        "dual_residual",
        "gap",
        "warm_start",
        "derivative_residual",
        "used_fallback",
    ],
    meta_fields=["solver"],
)
@dataclasses.dataclass(frozen=True)
class Solution:
    """Per-problem diagnostics returned by [`CvxpyLayer.solve`][cvxjax.CvxpyLayer.solve]
    (a pytree: it passes through ``jit`` and ``vmap``; arrays have the batch shape).

    Attributes:
      status: int32: 0 = solved, else a [`cvxjax.Status`][cvxjax.Status] code.
      iterations: int32: the solver's iteration count.
      primal_residual, dual_residual, gap: the relative KKT residuals of the solver's answer
        (before Newton refinement), the quantities ``check_tol`` bounds; see
        ``cvxjax._residual.Residuals`` for the formulas. NaN or inf where no point was found.
      solver: name of the solver that ran (static).
      warm_start: the solver's answer as a [`cvxjax.WarmStart`][cvxjax.WarmStart], to pass
        to the next call on a nearby problem (``layer.solve(..., warm_start=solution)``);
        zeros where the problem failed.
      derivative_residual: with ``layer.solve(..., diagnose=True)``, one array per
        parameter: the relative residual ``‖J dz − r‖/‖r‖`` of the implicit linear system of
        the derivative along a fixed random direction of that parameter. Near 0: the
        derivative exists and satisfies the linearized optimality conditions; above the
        layer's ``degenerate_tol``: the solution is at a kink and derivatives along that
        parameter are least-squares compromises (``docs/concepts/degenerate-points.md``).
        ``None`` otherwise (the probe costs one more linear solve per parameter).
      used_fallback: with the automatic solver choice on the JAX solver, a bool per problem:
        its answer comes from Clarabel, because the JAX solver's was not accepted (iteration
        limit, inaccurate). ``None`` for a solver without a fallback.
    """

    status: jax.Array
    iterations: jax.Array
    primal_residual: jax.Array
    dual_residual: jax.Array
    gap: jax.Array
    solver: str = ""
    warm_start: Any = None
    derivative_residual: Any = None
    used_fallback: Any = None


def make_solution_map(
    solver,
    workspace,
    reduction,
    *,
    settings,
    check_tol,
    refine_steps=0,
    on_degenerate="warn",
    degenerate_tol=None,
    primal_outputs=None,
):
    """``program ↦ ((x, y), Solution)`` for one unbatched :class:`SparseProgram`.

    Args:
      solver: the :class:`~cvxjax.solvers.AbstractSolver` that runs (already selected).
      workspace: ``solver.init(...)`` for the program form it consumes.
      reduction: :class:`cvxjax._reduce.Elimination` (dense path) or
        :class:`cvxjax._reduce.NoReduction` (sparse path). A dense-form solver needs the
        dense path.
      settings: the solver's options (a dict).
      check_tol: largest accepted relative KKT residual (:func:`checked_status`).
      refine_steps: Newton steps on F applied to the solver's answer (dense materialized J).
      on_degenerate, degenerate_tol: what a derivative whose implicit linear system has no
        solution does (:func:`cvxjax._degenerate.flag_degenerate`).
      primal_outputs: optional linear map from the canonical x to the primal values the
        caller reports; with it a derivative is also flagged where those values are not
        unique (``visible`` of :func:`cvxjax._degenerate.flag_degenerate`).

    Works under ``jit`` and ``vmap``; differentiable in the program's data in forward and
    reverse mode. Failed problems come out as NaN with a nonzero status.
    """
    if solver.data_form == "dense" and reduction.form != "dense":
        raise ValueError(f"solver {solver.name} consumes dense programs: use the dense path.")
    cone = ProductCone(reduction.cones)
    F = conic_residual(cone)
    raw_solve = robust_dense_solve if reduction.form == "dense" else robust_krylov_solve
    fallback = None
    if isinstance(solver, WithFallback):
        fallback = (solver.fallback, workspace.fallback)

    def visible(dz, program, inverse_data):
        """The reported primal values along dz = [dx; dv] (linear; the unknowns of the
        reduced program mapped back through the reduction, and on to the requested
        variables)."""
        del program
        inverse_data = jax.lax.stop_gradient(inverse_data)
        x_size = dz.size - cone.dim
        dx, y = dz[:x_size], jnp.zeros_like(dz[x_size:])
        x_full = lambda x: reduction.invert(inverse_data, x, y)[0]
        return primal_outputs(jax.jvp(x_full, (jnp.zeros_like(dx),), (dx,))[1])

    linear_solve = flag_degenerate(
        raw_solve, on_degenerate, degenerate_tol, None if primal_outputs is None else visible
    )

    # inverse_data rides along as an argument F ignores: the flag's ``visible`` needs it
    # inside the implicit rule, which must not close over the caller's tracers.
    @custom_root(lambda z, program, inverse_data: F(z, program), solve=linear_solve)
    def polish(z0, program, inverse_data):
        return newton_refine(F, z0, (program,), refine_steps) if refine_steps else z0

    def solution_map(program: SparseProgram, warm_start: WarmStart | None = None, probes=None):
        """``probes``: tangents of ``program`` (a tuple of :class:`SparseProgram`) along which
        to measure the implicit system's residual (``Solution.derivative_residual``)."""
        reduced, inverse_data = reduction.apply(program)
        consumed = jax.lax.stop_gradient(reduced if solver.data_form == "dense" else program)
        if warm_start is not None:
            # A start carries no derivative; a non-finite one (a failed problem) starts cold.
            warm_start = jax.lax.stop_gradient(WarmStart(*warm_start))
            finite = _all_finite(warm_start)
            warm_start = WarmStart(*(jnp.where(finite, a, 0.0) for a in warm_start))
        raw = solver.solve(workspace, consumed, settings, warm_start)
        status, residuals = checked_status(consumed, raw.x, raw.y, raw.s, raw.status, check_tol)
        x, y, s = (
            (raw.x, raw.y, raw.s)
            if solver.data_form == "dense"
            else (reduction.restrict(raw.x, raw.y, raw.s))
        )
        point = (x, y, s, status, residuals)
        used_fallback = None
        if fallback is not None:
            # With a fallback a near miss is solved again by it instead: the rescue's cond
            # measured 6-10 % of a small JAX QP's solve (benchmarks/README.md).
            point, used_fallback = _fall_back(fallback, program, reduction, point, check_tol)
        elif reduction.form == "dense" and reduction.shape.n + reduction.shape.m <= _RESCUE_SIZE:
            # Small programs only: the cond hands the dense program to its branch, and on
            # a sparse QP with n = 500 (presolved n + m = 1125) that cost 4 ms of a 12 ms
            # solve even when the branch was not taken.
            stopped = jax.lax.stop_gradient(reduced)
            point = rescue_near_miss(F, cone, stopped, *point, check_tol, raw_solve)
        x, y, s, status, residuals = point
        z0 = _zero_if_failed((x, y - s), status)
        x, v = polish(z0, reduced, inverse_data)
        outputs = reduction.invert(inverse_data, x, cone.project_dual(v))
        info = Solution(
            status=status,
            iterations=raw.iterations,
            primal_residual=residuals.primal,
            dual_residual=residuals.dual,
            gap=residuals.gap,
            solver=solver.name,
            warm_start=_restart_point(raw, status),
            used_fallback=used_fallback,
            derivative_residual=None
            if probes is None
            else tuple(
                _probe_residual(F, raw_solve, jax.lax.stop_gradient((x, v)), reduction, program, t)
                for t in probes
            ),
        )
        return _nan_if_failed(outputs, status), info

    return solution_map


def _probe_residual(F, linear_solve, z, reduction, program, tangent):
    """``‖J dz − r‖/‖r‖`` for the forward implicit system ``J dz = r = −∂F/∂program·tangent``
    at the root z of the reduced program (what the derivative along ``tangent`` solves)."""
    program = jax.lax.stop_gradient(program)
    _, d_reduced = jax.jvp(lambda p: reduction.apply(p)[0], (program,), (tangent,))
    reduced = reduction.apply(program)[0]
    z_flat, unravel = jax.flatten_util.ravel_pytree(z)
    _, r = jax.jvp(lambda p: jax.flatten_util.ravel_pytree(F(z, p))[0], (reduced,), (d_reduced,))
    r = -r

    def matvec(dz):
        return jax.jvp(
            lambda w: jax.flatten_util.ravel_pytree(F(unravel(w), reduced))[0], (z_flat,), (dz,)
        )[1]

    dz = linear_solve(matvec, r)
    return jnp.linalg.norm(matvec(dz) - r) / (jnp.linalg.norm(r) + jnp.finfo(r.dtype).tiny)


def _fall_back(fallback, program, reduction, point, check_tol):
    """The answer of the host ``fallback`` solver for a problem whose ``point`` (reduced
    form, with its checked status) is not accepted; ``point`` unchanged for the others.
    Returns ``(point, used_fallback)``. The host solver runs only where it is needed: an
    unbatched call skips it under a ``cond``, a batch passes it a mask."""
    solver, workspace = fallback
    need = ~jnp.isin(point[3], jnp.asarray(_ACCEPTED_OR_CERTIFIED, jnp.int32))
    program = jax.lax.stop_gradient(program)
    settings = solver.check_settings(None, program.structure.cones)

    def host():
        raw = solver.solve(workspace, program, settings, None, active=need)
        status, residuals = checked_status(program, raw.x, raw.y, raw.s, raw.status, check_tol)
        return (*reduction.restrict(raw.x, raw.y, raw.s), status, residuals)

    # Everything about the fallback sits in the branch: a call that does not need it pays
    # for one predicate (under vmap the cond becomes a select, and the host callback gets
    # the mask instead).
    point = jax.lax.cond(need, host, lambda: point)
    return point, need


# Largest presolved n + m whose near misses get Newton steps (rescue_near_miss).
_RESCUE_SIZE = 400

_ACCEPTED_OR_CERTIFIED = (Status.SOLVED, Status.PRIMAL_INFEASIBLE, Status.DUAL_INFEASIBLE)


def _restart_point(raw, status):
    """The solver's own (x, y, s) as the next start: kept for a solution, and also for an
    inaccurate one or one at the iteration limit (still a good start); zeros (a cold start)
    after a certificate or a numerical failure, where there is no point."""
    point = (raw.x, raw.y, raw.s)
    usable = _all_finite(point) & ~jnp.isin(status, jnp.asarray(_NO_POINT, jnp.int32))
    return WarmStart(*(jnp.where(usable, a, 0.0) for a in point))


_NO_POINT = (Status.PRIMAL_INFEASIBLE, Status.DUAL_INFEASIBLE, Status.NUMERICAL_ERROR)


def _all_finite(arrays):
    return functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(a)) for a in arrays])


def _zero_if_failed(z, status):
    """Inside the implicit rule a failed problem is carried as z = 0, not NaN: its linear
    system then stays finite, so with a zero cotangent (a loss that masks it out) it adds
    exactly zero -- not 0·NaN = NaN -- to the gradient of parameters shared across the batch.
    The NaN the caller sees is put back outside the rule (:func:`_nan_if_failed`)."""
    return jax.tree.map(lambda a: jnp.where(status == Status.SOLVED, a, 0.0), z)


def _nan_if_failed(z, status):
    return jax.tree.map(lambda a: jnp.where(status == Status.SOLVED, a, jnp.nan), z)
