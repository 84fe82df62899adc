"""`CvxpyLayer`: a parametrized CVXPY problem as a differentiable JAX function.

The layer is thin: it validates and batches the parameter values
(:mod:`cvxjax._parameter_values`), picks the dtype, chooses the solver for the call
(``solver.select``), and caches one compiled function per calling convention. Everything
between the parameters and the outputs is the solution map of :mod:`cvxjax._solution_map`; the
one error path is :func:`cvxjax._errors.raise_if_failed`.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping, Optional, Sequence

import cvxpy as cp
import jax
import jax.numpy as jnp

from ._canonicalize import canonicalize, canonicalize_geometric
from ._degenerate import POLICIES as DEGENERATE_POLICIES
from ._errors import raise_if_failed
from ._parameter_values import check_values, check_warm_start
from ._program import SparseProgram
from ._reduce import NoReduction, elimination_for
from ._sharding import batch_mesh, shard_batch
from ._solution_map import Solution, WarmStart, make_solution_map
from ._solvers._base import freeze
from ._solvers._registry import check_cones, resolve
from ._solvers.fallback import FallbackWorkspace, WithFallback

# Dense path (presolve + dense LU for the implicit system) up to this many unknowns n + m.
DEFAULT_DENSE_LIMIT = 3000

# The diagnostics of ``CvxpyLayer.solve`` (the name of earlier versions).
LayerInfo = Solution


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
      solver: ``None`` (choose automatically, [`cvxjax.solvers.Auto`][cvxjax.solvers.Auto]:
        for QPs whose reduced dense form has at most 300 variables and 600 rows, called
        with float64 values and no ``solver_args``, the pure-JAX solver; otherwise Clarabel,
        an accurate interior-point method that handles every cone; [`solver_for`][cvxjax.CvxpyLayer.solver_for] tells
        which), ``"CLARABEL"``, ``"SCS"``, ``"OSQP"`` (QPs only) — these run on the host
        through ``jax.pure_callback`` — or ``"JAX"``, a pure-JAX dense interior-point method
        for QPs (no host round trip; runs on GPU/TPU); or a solver instance from
        [`cvxjax.solvers`][cvxjax.solvers] (e.g. ``solvers.Auto(max_jax_variables=100)``,
        ``solvers.Clarabel.with_settings(max_iter=100)``).
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
        float32 calls (a float32 solution alone is rounded to ≈ 1e-7 relative, and products
        with A and P add n such roundings).
      max_workers: host threads for solving a batch (default: up to 2).
      refine: number of semismooth Newton steps on the optimality residual applied to the
        solver's output (in JAX, dense). Default: 1 for problems with second-order, PSD,
        exponential or power cones (where interior-point accuracy is limited), 0 for QPs and
        on the sparse path.
      dense_limit: problems with n + m ≤ ``dense_limit`` (canonical variables plus rows) take
        the dense path: the presolve of ``cvxjax._reduce`` and dense LU for the implicit
        system (an (n+m)² float64 matrix of 3000² is 72 MB and factors in well under a second
        on one core); larger ones the sparse path (Krylov solves on the sparsity pattern).
        A dense-form solver (``"JAX"``) always takes the dense path.
      mesh: a ``jax.sharding.Mesh`` whose devices share a batch: each device solves its own
        slice of the batch (``shard_map``; see ``docs/concepts/sharding.md``). Default: the
        mesh set with ``jax.set_mesh``, or the ``NamedSharding`` of a batched parameter value
        (eager arrays, or explicitly sharded types under ``jit``); one device otherwise.

      on_degenerate: what a derivative does where it does not exist: where the linearized
        optimality conditions (the implicit system ``J dz = r``, or ``Jᵀu = z̄`` in reverse
        mode) have no solution to ``degenerate_tol``, i.e. the solution sits at a kink of the
        solution map. ``"warn"`` (default; ``"nan"`` with ``on_failure="nan"``, so that
        that mode's compiled program has no host callback) returns the least-squares
        derivative with a
        [`cvxjax.DegenerateDerivativeWarning`][cvxjax.DegenerateDerivativeWarning];
        ``"raise"`` raises [`cvxjax.DegenerateDerivativeError`][cvxjax.DegenerateDerivativeError];
        ``"nan"`` makes that problem's derivative NaN; ``"ignore"`` returns it silently. A
        singular but consistent system (non-unique duals, CVXPY's auxiliary variables) is
        not degenerate in this sense: its minimum-norm solution is exact. See
        ``docs/concepts/degenerate-points.md``.
      degenerate_tol: largest accepted relative residual of that solve (default 1e-6; 1e-3
        in float32).

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
        solver=None,
        solver_args: Optional[Mapping[str, Any]] = None,
        on_failure: str = "raise",
        check_tol: Optional[float] = None,
        max_workers: Optional[int] = None,
        refine: Optional[int] = None,
        dense_limit: int = DEFAULT_DENSE_LIMIT,
        mesh: Optional[jax.sharding.Mesh] = None,
        gp: bool = False,
        verbose: bool = False,
        canon_backend: Optional[str] = None,
        on_degenerate: Optional[str] = None,
        degenerate_tol: Optional[float] = None,
    ):
        if on_degenerate is None:
            on_degenerate = "nan" if on_failure == "nan" else "warn"
        if on_failure not in ("raise", "nan"):
            raise ValueError(f"on_failure must be 'raise' or 'nan', got {on_failure!r}.")
        if on_degenerate not in DEGENERATE_POLICIES:
            raise ValueError(
                f"on_degenerate must be one of {DEGENERATE_POLICIES}, got {on_degenerate!r}."
            )
        self.on_degenerate = on_degenerate
        self.degenerate_tol = None if degenerate_tol is None else float(degenerate_tol)
        self.problem = problem
        self.parameters = tuple(parameters)
        self.variables = tuple(variables)
        self.gp = bool(gp)
        compile_problem = canonicalize_geometric if self.gp else canonicalize
        self.canonical = compile_problem(
            problem, self.parameters, self.variables, canon_backend=canon_backend
        )
        structure = self.canonical.structure
        self.solver = resolve(solver, max_workers)
        check_cones(self.solver, structure.cones)
        self.solver_args = dict(solver_args or {})
        if verbose:
            self.solver_args.setdefault("verbose", True)
        self.on_failure = on_failure
        self.check_tol = None if check_tol is None else float(check_tol)
        dense = self.solver.data_form == "dense" or structure.n + structure.m <= dense_limit
        # Dense path: eliminate the variables that equality rows define (cvxjax._reduce)
        # before solving and differentiating.
        self._reduction = elimination_for(self.canonical) if dense else NoReduction(structure)
        self.refine_steps = None if refine is None else int(refine)
        self.mesh = mesh
        self._workspaces = {}
        self._cache = {}
        self._lock = threading.Lock()
        # Unknown or misspelled options fail here, not at the first call.
        default_dtype = jnp.result_type(float)
        self._options(self._select(default_dtype, self.solver_args), self.solver_args)

    @property
    def _elimination(self):
        """The presolve of the dense path, or ``None`` on the sparse path."""
        return None if self._reduction.form == "sparse" else self._reduction

    # ----------------------------------------------------------------------------------------
    def _validate(self, values):
        # A geometric program sees log θ for its positive parameters.
        positive = self.canonical.log_parameters if self.gp else (False,) * len(values)
        return check_values(self.parameters, values, positive)

    # ----------------------------------------------------------------------------------------
    def solve(
        self,
        *values,
        solver_args: Optional[Mapping[str, Any]] = None,
        warm_start: Optional[Any] = None,
        diagnose: bool = False,
    ):
        """Like ``__call__`` but returns ``(outputs, Solution)``: a
        [`cvxjax.Solution`][cvxjax.Solution] with per-problem status, iterations and
        residuals, the solver that ran, and the point to restart from.

        With ``on_failure="nan"`` this is how a training loop learns which batch elements
        failed; with ``"raise"`` the statuses are all 0 when it returns.

        ``warm_start``: the ``Solution`` of an earlier call (or its ``warm_start``, a
        [`cvxjax.WarmStart`][cvxjax.WarmStart]) to start the solver from; functional, so it
        works under ``jit``, ``vmap`` and as a ``lax.scan`` carry. Outputs and derivatives
        are those of a cold start (to the solver's tolerance); only the iteration count
        changes. OSQP, SCS and the JAX solver's ADMM start from the point as it is, the JAX
        interior-point method (QPs) from the point moved into the interior.

        ``diagnose=True``: also measure, per parameter, whether the derivative exists at
        this solution (``Solution.derivative_residual``; one more implicit linear solve per
        parameter, in the forward pass). Not needed for the flag itself: every derivative
        checks its own linear solve (``on_degenerate``).
        """
        arrays, batch_axes, batch_size = self._validate(values)
        dtype = jnp.result_type(*arrays)
        arrays = [a.astype(dtype) for a in arrays]
        traced = any(isinstance(a, jax.core.Tracer) for a in arrays)
        settings = {**self.solver_args, **(solver_args or {})}
        solver = self._select(dtype, settings)
        options = self._options(solver, settings)  # eager: a bad option raises before tracing
        if jnp.dtype(dtype).name not in solver.dtypes:
            raise ValueError(
                f"Solver {solver.name} takes parameter values of dtype "
                f"{', '.join(sorted(solver.dtypes))}, got {jnp.dtype(dtype).name}."
            )
        # Eager calls raise after the compiled call returns; under the user's trace the
        # compiled program itself must raise (raise_if_failed handles both).
        raise_inside = self.on_failure == "raise" and traced
        warm, warm_axis = self._warm_start(warm_start, solver, batch_size, dtype)
        # A warm-started call is not sharded over the mesh (its start would need the same
        # sharding); it runs as an ordinary vmapped batch.
        sharding = None if warm is not None else batch_mesh(self.mesh, arrays, batch_axes)
        run = self._compiled(
            solver,
            tuple(batch_axes),
            freeze(options),
            raise_inside,
            dtype,
            None if diagnose else sharding,
            warm_axis,
            bool(diagnose),
        )
        outputs, info = run(*arrays) if warm is None else run(*arrays, warm)
        if self.on_failure == "raise" and not traced:
            raise_if_failed(solver.name, info.status)
        return tuple(outputs), info

    def __call__(self, *values, solver_args: Optional[Mapping[str, Any]] = None):
        """Solve for the given parameter values; returns a tuple, one array per output."""
        return self.solve(*values, solver_args=solver_args)[0]

    def cold_start(self, dtype=None, batch_size: Optional[int] = None) -> WarmStart:
        """A [`cvxjax.WarmStart`][cvxjax.WarmStart] of zeros, which every solver takes as a
        cold start: the first carry of a ``lax.scan`` that passes ``solution.warm_start``
        from step to step. Its shapes are those of the solver a call with values of this
        ``dtype`` (default: JAX's default float) runs, with a leading ``batch_size`` axis
        if given."""
        dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
        solver = self._select(dtype, dict(self.solver_args))
        n, m = self._warm_shape(solver)
        lead = () if batch_size is None else (int(batch_size),)
        return WarmStart(*(jnp.zeros(lead + (k,), dtype) for k in (n, m, m)))

    def _warm_shape(self, solver):
        """(n, m) of the program ``solver`` consumes (dense: presolved; else canonical)."""
        shape = self._reduction.shape if solver.data_form == "dense" else self.canonical.structure
        return shape.n, shape.m

    def _warm_start(self, warm_start, solver, batch_size, dtype):
        """The checked start and its vmap axis (:func:`check_warm_start`)."""
        n, m = self._warm_shape(solver)
        return check_warm_start(warm_start, solver.name, n, m, batch_size, dtype)

    def solver_for(self, dtype) -> str:
        """The name of the solver a call with parameter values of this dtype (and the layer's
        ``solver_args``) runs; with ``solver=None`` it depends on the dtype."""
        return self._select(jnp.dtype(dtype), dict(self.solver_args)).name

    def _select(self, dtype, settings):
        dense_shape = None if self._elimination is None else self._reduction.shape
        return self.solver.select(self.canonical.structure, dense_shape, dtype, settings)

    def _options(self, solver, settings) -> dict:
        """The solver's options for a call: its own settings merged with ``settings``,
        validated and translated to its own names (cvxjax._solvers._settings)."""
        return solver.check_settings(settings, self.canonical.structure.cones)

    def _refine_steps(self, solver) -> int:
        """``refine``, or by default one Newton step where interior-point accuracy is limited
        (second-order, PSD, exponential, power cones); none for QPs (polished OSQP and
        Clarabel reach ~1e-10), for solvers that polish their answers themselves, and on the
        sparse path (a dense factorization would dominate)."""
        if self.refine_steps is not None:
            return self.refine_steps
        cones = self.canonical.structure.cones
        return int(self._elimination is not None and not cones.is_qp and not solver.polishes)

    def _primal_outputs(self, x):
        """The requested outputs at ``(x, y = 0)``, flat: the variables' values (the duals
        come out zero), the part of the solution whose uniqueness the degenerate-derivative
        flag checks."""
        y = jnp.zeros(self.canonical.structure.m, x.dtype)
        return jnp.concatenate([o.ravel() for o in self.canonical.recover(x, y)])

    def _workspace(self, solver):
        """``solver.init`` once per solver the layer runs (cached)."""
        if isinstance(solver, WithFallback):
            return FallbackWorkspace(
                self._workspace(solver.primary), self._workspace(solver.fallback)
            )
        with self._lock:
            if solver not in self._workspaces:
                form = self._reduction.shape if solver.data_form == "dense" else None
                self._workspaces[solver] = solver.init(form or self.canonical.structure)
            return self._workspaces[solver]

    def _compiled(
        self,
        solver,
        batch_axes,
        settings,
        raise_inside,
        dtype,
        sharding=None,
        warm_axis="absent",
        diagnose=False,
    ):
        """The jitted solve for one calling convention, built once and cached.

        Caching matters for eager calls: without it every call would re-trace the residual,
        the cone projections and the implicit rule. Inside a user's ``jit`` or ``grad`` the
        nested ``jax.jit`` is simply inlined/transformed.
        """
        check_tol = self.check_tol
        if check_tol is None:
            check_tol = solver.default_check_tol(dtype)
        key = (solver, batch_axes, settings, raise_inside, check_tol, sharding, warm_axis, diagnose)
        with self._lock:
            run = self._cache.get(key)
        if run is not None:
            return run
        solution_map = make_solution_map(
            solver,
            self._workspace(solver),
            self._reduction,
            settings=dict(settings),  # already merged and checked (_options)
            check_tol=check_tol,
            refine_steps=self._refine_steps(solver),
            on_degenerate=self.on_degenerate,
            degenerate_tol=self.degenerate_tol,
            primal_outputs=self._primal_outputs,
        )
        canonical = self.canonical

        warm_given = warm_axis != "absent"

        def solve_one(*vals):
            # With a warm start it comes last (a WarmStart pytree).
            vals, warm = (vals[:-1], vals[-1]) if warm_given else (vals, None)
            program = SparseProgram(canonical.structure, canonical.data(*vals))
            probes = _probe_directions(canonical, vals) if diagnose else None
            (x, y), info = solution_map(program, warm, probes)
            return tuple(canonical.recover(x, y)), info

        if all(axis is None for axis in batch_axes):
            solve_all = solve_one
        else:
            in_axes = list(batch_axes) + ([warm_axis] if warm_given else [])
            solve_all = jax.vmap(solve_one, in_axes=in_axes)
            if sharding is not None:
                check = None
                if raise_inside:
                    check = lambda result, offset: raise_if_failed(
                        solver.name, result[1].status, offset
                    )
                solve_all = shard_batch(solve_all, *sharding, batch_axes, check)

        def checked(*vals):
            outputs, info = solve_all(*vals)
            if raise_inside and sharding is None:
                raise_if_failed(solver.name, info.status)
            return outputs, info

        run = jax.jit(checked)
        with self._lock:
            self._cache[key] = run
        return run


def _probe_directions(canonical, vals):
    """For each parameter, the program tangent along a fixed random unit direction of it
    (the probes of ``Solution.derivative_residual``); seeded, so a call is reproducible."""
    probes = []
    for k, value in enumerate(vals):
        direction = jax.random.normal(jax.random.key(k), jnp.shape(value), jnp.result_type(value))
        direction = direction / (jnp.linalg.norm(direction) + jnp.finfo(direction.dtype).tiny)
        tangents = [jnp.zeros_like(v) for v in vals]
        tangents[k] = direction
        _, d_data = jax.jvp(canonical.data, tuple(vals), tuple(tangents))
        probes.append(SparseProgram(canonical.structure, d_data))
    return tuple(probes)
