"""`CvxpyLayer`: a parametrized CVXPY problem as a differentiable JAX function."""

from __future__ import annotations

import os
import threading
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np

from ._backends._base import PreparedStructure
from ._backends.clarabel import ClarabelBackend
from ._backends.osqp import OsqpBackend
from ._backends.scs import ScsBackend
from ._canonicalize import canonicalize
from ._errors import Status
from ._reduce import elimination_for
from ._solve import (
    DENSE_LIMIT,
    HostBatchSolver,
    default_refine_steps,
    host_forward,
    jax_qp_forward,
    make_solution_map,
    raise_if_failed,
    restricted,
    solver_error,
)

# Automatic choice (solver=None): the pure-JAX solver for QPs whose reduced dense program is at
# most this large; its cost per iteration grows like n³, a sparse host solver's like nnz(L).
AUTO_JAX_MAX_VARIABLES = 300
AUTO_JAX_MAX_CONSTRAINTS = 600
DEFAULT_CHECK_TOL = 1e-6

HOST_BACKENDS = {b.name: b for b in (ClarabelBackend, ScsBackend, OsqpBackend)}
# "JAX": the pure-JAX dense interior-point QP solver (jit/vmap native, no host round trip).
SUPPORTED_CONES = {
    **{name: b.supported_cones for name, b in HOST_BACKENDS.items()},
    "JAX": frozenset({"zero", "nonneg"}),
}

_CONE_NAMES = {
    "zero": "zero cone (equality constraints)",
    "nonneg": "nonnegative cone (inequality constraints)",
    "soc": "second-order cone",
    "psd": "positive semidefinite cone",
    "exp": "exponential cone",
    "pow": "power cone",
}


class LayerInfo(NamedTuple):
    """Per-problem diagnostics returned by [`CvxpyLayer.solve`][cvxjax.CvxpyLayer.solve].

    Attributes:
      status: int32 array (batch shape): 0 = solved, else a [`cvxjax.Status`][cvxjax.Status] code.
    """

    status: jax.Array


def _default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


class CvxpyLayer:
    """A parametrized (DPP) CVXPY problem as a JAX function of its parameters.

    ``layer(*parameter_values)`` returns one array per entry of ``variables``: the optimal
    values of CVXPY variables or of constraint duals (``constraint.dual_variables[0]``). The
    result is differentiable in every parameter with ``jax.grad``, ``jax.vjp``, ``jax.jacrev``,
    ``jax.jvp``, ``jax.jacfwd`` (and ``jax.hessian`` where the solution map is smooth), and
    works under ``jax.jit`` and ``jax.vmap``.

    Args:
      problem: a DPP-compliant ``cvxpy.Problem``.
      parameters: the problem's ``cp.Parameter``s, all of them, in the order their values
        will be passed.
      variables: the outputs: ``cp.Variable``s of the problem and/or dual variables of its
        constraints.
      solver: ``None`` (choose automatically: for QPs whose reduced dense form has at most
        ``AUTO_JAX_MAX_VARIABLES`` variables and ``AUTO_JAX_MAX_CONSTRAINTS`` rows, called
        with float64 values and no ``solver_args``, the pure-JAX solver; otherwise Clarabel,
        an accurate interior-point method that handles every cone; [`solver_for`][cvxjax.CvxpyLayer.solver_for] tells
        which), ``"CLARABEL"``, ``"SCS"``, ``"OSQP"`` (QPs only) — these run on the host
        through ``jax.pure_callback`` — or ``"JAX"``, a pure-JAX dense interior-point method
        for QPs (no host round trip; runs on GPU/TPU).
      solver_args: options passed to the solver (its own names, e.g. ``{"eps_abs": 1e-6}``
        for OSQP/SCS, ``{"tol_feas": 1e-7}`` for Clarabel); may also be given per call.
      on_failure: ``"raise"`` (default) raises [`cvxjax.SolverError`][cvxjax.SolverError] when any problem
        is infeasible, unbounded or not solved accurately; ``"nan"`` returns NaN for the
        failed problems instead (their gradients are NaN too; a loss that masks them out gives
        finite gradients for parameters shared across the batch) so a training loop can skip
        them, with the statuses available from [`solve`][cvxjax.CvxpyLayer.solve].
      check_tol: largest accepted relative KKT residual of a returned solution (primal,
        dual and gap residuals; see ``relative_kkt_residual``). Solutions above it count as
        failures: a loose solution would give wrong derivatives. Default 1e-6, and 1e-4 for
        the pure-JAX solver called in float32 (its own float32 tolerance is 1e-5).
      max_workers: host threads for solving a batch (default: up to 2).
      refine: number of semismooth Newton steps on the optimality residual applied to the
        solver's output (in JAX, dense). Default: 1 for problems with second-order, PSD,
        exponential or power cones (where interior-point accuracy is limited), 0 for QPs.

    Math: CVXPY canonicalizes the problem once into ``min ½xᵀPx + qᵀx s.t. Ax + s = b,
    s ∈ K`` with (P, q, A, b) an affine function of the parameters. The derivative of the
    solution comes from the implicit function theorem applied to the conic optimality
    residual (see ``cvxjax._solve``); at degenerate points (weakly active constraints, LP
    vertices) it is the minimum-norm element of a generalized derivative.

    Batching: any parameter value may carry one leading batch dimension (others are
    broadcast); all batched values must agree on its size. dtype: float32 in, float32 out;
    float64 in, float64 out (the host solve always runs in float64).
    """

    def __init__(
        self,
        problem: cp.Problem,
        parameters: Sequence[cp.Parameter],
        variables: Sequence[Any],
        solver: Optional[str] = None,
        solver_args: Optional[Mapping[str, Any]] = None,
        on_failure: str = "raise",
        check_tol: Optional[float] = None,
        max_workers: Optional[int] = None,
        refine: Optional[int] = None,
    ):
        if on_failure not in ("raise", "nan"):
            raise ValueError(f"on_failure must be 'raise' or 'nan', got {on_failure!r}.")
        self.problem = problem
        self.parameters = tuple(parameters)
        self.variables = tuple(variables)
        self.canonical = canonicalize(problem, self.parameters, self.variables)
        structure = self.canonical.structure
        self.solver = self._choose_solver(solver, structure.cones)
        self.solver_args = dict(solver_args or {})
        self.on_failure = on_failure
        self.check_tol = DEFAULT_CHECK_TOL if check_tol is None else float(check_tol)
        # The pure-JAX solver in float32 stops at a relative tolerance of 1e-5, so its default
        # check is looser there; an explicit check_tol applies everywhere.
        self._jax_float32_check_tol = 1e-4 if check_tol is None else float(check_tol)
        self._cache = {}
        self._cache_lock = threading.Lock()
        self.refine_steps = default_refine_steps(structure) if refine is None else int(refine)
        # Dense path (small problems, and the dense pure-JAX solver): eliminate the variables
        # that equality rows define (cvxjax._reduce) before solving and differentiating.
        dense = self.solver == "JAX" or structure.n + structure.m <= DENSE_LIMIT
        self._elimination = elimination_for(self.canonical) if dense else None
        # solver=None: small dense QPs go to the pure-JAX solver (no host round trip, no
        # per-problem Python; measured faster than Clarabel up to these sizes, see
        # benchmarks/README.md) when the call is in float64; everything else, and float32
        # calls (the JAX solver cannot reach check_tol in float32), to Clarabel.
        self._auto_jax = (
            solver is None
            and not self.solver_args
            and structure.cones.is_qp
            and self._elimination is not None
            and self._elimination.n <= AUTO_JAX_MAX_VARIABLES
            and self._elimination.m <= AUTO_JAX_MAX_CONSTRAINTS
        )
        self._host = None
        if self.solver in HOST_BACKENDS:
            backend = HOST_BACKENDS[self.solver](PreparedStructure.build(structure))
            self._host = HostBatchSolver(
                backend, self.check_tol, _default_workers() if max_workers is None else max_workers
            )

    # ----------------------------------------------------------------------------------------
    @staticmethod
    def _choose_solver(solver, cones) -> str:
        present = set(cones.present())
        if solver is None:
            return "CLARABEL"  # the host solver; small float64 QPs may go to JAX (_auto_jax)
        name = str(solver).upper()
        if name not in SUPPORTED_CONES:
            raise ValueError(
                f"Unknown solver {solver!r}; choose one of {sorted(SUPPORTED_CONES)} or None."
            )
        missing = present - SUPPORTED_CONES[name]
        if missing:
            can = sorted(s for s, supported in SUPPORTED_CONES.items() if present <= supported)
            cones_text = ", ".join(_CONE_NAMES[c] for c in sorted(missing))
            raise ValueError(
                f"Solver {name} cannot handle the {cones_text} in this problem; "
                f"solvers that can: {', '.join(can)}."
            )
        return name

    def _validate(self, values):
        if len(values) != len(self.parameters):
            names = ", ".join(p.name() for p in self.parameters)
            raise ValueError(
                f"Expected {len(self.parameters)} parameter values ({names}), got {len(values)}."
            )
        arrays, batch_axes, batch_size = [], [], None
        for param, value in zip(self.parameters, values):
            array = value if isinstance(value, jax.Array) else jnp.asarray(value)
            if not jnp.issubdtype(array.dtype, jnp.inexact):
                array = array.astype(jnp.result_type(float))
            shape = tuple(param.shape)
            if tuple(array.shape) == shape:
                batch_axes.append(None)
            elif array.ndim == len(shape) + 1 and tuple(array.shape[1:]) == shape:
                if batch_size is not None and array.shape[0] != batch_size:
                    raise ValueError(
                        f"Inconsistent batch sizes: parameter {param.name()!r} has batch size "
                        f"{array.shape[0]}, but an earlier parameter has {batch_size}."
                    )
                batch_size = array.shape[0]
                batch_axes.append(0)
            else:
                raise ValueError(
                    f"Parameter {param.name()!r} expects shape {shape} (or (batch,) + {shape}), "
                    f"got {tuple(array.shape)}."
                )
            self._check_attributes(param, array)
            arrays.append(array)
        return arrays, batch_axes, batch_size

    @staticmethod
    def _check_attributes(param, array):
        """Check value-dependent attributes (symmetry, sign) when the value is concrete."""
        if isinstance(array, jax.core.Tracer):
            return
        value = np.asarray(array)
        attrs = param.attributes
        if attrs.get("symmetric") or attrs.get("PSD") or attrs.get("NSD"):
            if not np.allclose(value, np.swapaxes(value, -1, -2), rtol=1e-6, atol=1e-8):
                raise ValueError(
                    f"Parameter {param.name()!r} is symmetric, but its value is not symmetric."
                )
        if attrs.get("nonneg") and np.any(value < 0):
            raise ValueError(f"Parameter {param.name()!r} is nonneg, but its value has negative entries.")
        if attrs.get("nonpos") and np.any(value > 0):
            raise ValueError(f"Parameter {param.name()!r} is nonpos, but its value has positive entries.")

    # ----------------------------------------------------------------------------------------
    def solve(self, *values, solver_args: Optional[Mapping[str, Any]] = None):
        """Like ``__call__`` but returns ``(outputs, LayerInfo)`` with per-problem statuses.

        With ``on_failure="nan"`` this is how a training loop learns which batch elements
        failed; with ``"raise"`` the statuses are all 0 when it returns.
        """
        arrays, batch_axes, batch_size = self._validate(values)
        dtype = jnp.result_type(*arrays)
        arrays = [a.astype(dtype) for a in arrays]
        traced = any(isinstance(a, jax.core.Tracer) for a in arrays)
        # Outside any JAX transformation we can raise SolverError ourselves, after the call;
        # under a trace the host callback must raise (JAX then wraps the error).
        raise_in_callback = self.on_failure == "raise" and traced
        settings = {**self.solver_args, **(solver_args or {})}
        solver = self.solver_for(dtype)
        run = self._compiled(solver, tuple(batch_axes), settings, raise_in_callback)
        outputs, status = run(*arrays)
        if self.on_failure == "raise" and not traced:
            status_np = np.asarray(status)
            if np.any(status_np != Status.SOLVED):
                shape = () if batch_size is None else (batch_size,)
                raise solver_error(solver, status_np, shape)
        return tuple(outputs), LayerInfo(status=status)

    def solver_for(self, dtype) -> str:
        """The solver a call with parameter values of this dtype runs: ``self.solver``, or
        ``"JAX"`` for small float64 QPs when the layer was built with ``solver=None``."""
        if self._auto_jax and jnp.dtype(dtype) == jnp.float64:
            return "JAX"
        return self.solver

    def _compiled(self, solver, batch_axes, settings, raise_in_callback):
        """The jitted solve for one calling convention, built once and cached.

        Caching matters for eager calls: without it every call would re-trace the residual,
        the cone projections and the implicit rule. Inside a user's ``jit`` or ``grad`` the
        nested ``jax.jit`` is simply inlined/transformed.
        """
        key = (solver, batch_axes, repr(sorted(settings.items())), raise_in_callback)
        with self._cache_lock:
            run = self._cache.get(key)
        if run is not None:
            return run
        structure = self.canonical.structure
        elim = self._elimination
        if solver == "JAX":
            forward = jax_qp_forward(
                elim.cones.zero, self.check_tol, settings, float32_check_tol=self._jax_float32_check_tol
            )
        else:
            forward = host_forward(structure, self._host, settings, raise_in_callback)
            if elim is not None:
                forward = restricted(elim, forward)
        solution_map = make_solution_map(structure, forward, elim, self.refine_steps)

        def solve_one(*vals):
            data = self.canonical.data(*vals)
            (x, y), status = solution_map(data)
            return tuple(self.canonical.recover(x, y)), status

        if all(axis is None for axis in batch_axes):
            solve_all = solve_one
        else:
            solve_all = jax.vmap(solve_one, in_axes=list(batch_axes))

        def checked(*vals):
            outputs, status = solve_all(*vals)
            if solver == "JAX" and raise_in_callback:
                raise_if_failed(solver, status)
            return outputs, status

        run = jax.jit(checked)
        with self._cache_lock:
            self._cache[key] = run
        return run

    def __call__(self, *values, solver_args: Optional[Mapping[str, Any]] = None):
        """Solve for the given parameter values; returns a tuple, one array per output."""
        return self.solve(*values, solver_args=solver_args)[0]
