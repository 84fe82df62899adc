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
import jax.numpy as jnp

from ._cones import ProductCone
from ._errors import Status
from ._implicit import custom_root
from ._program import SparseProgram
from ._residual import checked_status, conic_residual, newton_refine
from ._robust_solve import robust_dense_solve, robust_krylov_solve


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
    data_fields=["status", "iterations", "primal_residual", "dual_residual", "gap", "warm_start"],
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
    """

    status: jax.Array
    iterations: jax.Array
    primal_residual: jax.Array
    dual_residual: jax.Array
    gap: jax.Array
    solver: str = ""
    warm_start: Any = None


def make_solution_map(solver, workspace, reduction, *, settings, check_tol, refine_steps=0):
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

    Works under ``jit`` and ``vmap``; differentiable in the program's data in forward and
    reverse mode. Failed problems come out as NaN with a nonzero status.
    """
    if solver.data_form == "dense" and reduction.form != "dense":
        raise ValueError(f"solver {solver.name} consumes dense programs: use the dense path.")
    cone = ProductCone(reduction.cones)
    F = conic_residual(cone)
    linear_solve = robust_dense_solve if reduction.form == "dense" else robust_krylov_solve

    @custom_root(F, solve=linear_solve)
    def polish(z0, program):
        return newton_refine(F, z0, (program,), refine_steps) if refine_steps else z0

    def solution_map(program: SparseProgram, warm_start: WarmStart | None = None):
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
        z0 = _zero_if_failed((x, y - s), status)
        x, v = polish(z0, reduced)
        outputs = reduction.invert(inverse_data, x, cone.project_dual(v))
        info = Solution(
            status=status,
            iterations=raw.iterations,
            primal_residual=residuals.primal,
            dual_residual=residuals.dual,
            gap=residuals.gap,
            solver=solver.name,
            warm_start=_restart_point(raw, status),
        )
        return _nan_if_failed(outputs, status), info

    return solution_map


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
