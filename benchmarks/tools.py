"""Adapters that turn a workload :class:`~workloads.Instance` into timed callables per tool.

Each tool's :meth:`Tool.build` returns a :class:`Built`: ``fwd(*args)`` computing the solution
(blocking until it is ready), optionally ``grad(*args)`` computing ``jax.grad`` of the sum of
the solution with respect to every parameter, and ``solution(out)`` extracting the solution
``x`` from ``fwd``'s output as a numpy array with a leading batch axis.

Tools:

* ``cvxjax`` / ``cvxjax-clarabel`` / ``cvxjax-osqp`` / ``cvxjax-scs`` / ``cvxjax-jax``:
  :class:`cvxjax.CvxpyLayer` with ``solver=None`` (the default) or the named solver, jit-compiled.
* ``cvxpylayers``: ``cvxpylayers.jax.CvxpyLayer`` with default settings (diffcp + SCS). It
  cannot be jit-compiled (it converts traced values to numpy), so it runs eagerly.
* ``cvxpylayers-moreau``: the same layer with ``solver="MOREAU"`` (cvxpylayers 1.2 and the free
  Moreau solver): jit-compiled; reverse mode only.
* ``qpax``: ``qpax.solve_qp_primal`` (primal-dual interior point in JAX, default settings) on the
  dense QP data; ``jax.vmap`` over the batch; jit-compiled.
* ``jaxopt``: ``jaxopt.OSQP`` (ADMM in JAX) on the dense QP data, ``tol=1e-5`` (its default
  1e-3 does not agree with CVXPY to 1e-3); ``jax.vmap`` over the batch; jit-compiled.
* ``osqp`` / ``clarabel``: the bare solvers on CVXPY's canonical data (forward only). They are
  called the way cvxjax's host backends call them and with the same settings, so that the
  ratio cvxjax / bare solver is cvxjax's overhead: one OSQP workspace, set up once and then
  updated with each problem's vectors (and matrices, when they change); a new Clarabel solver
  per problem. The batch is solved sequentially on one thread. Canonicalization (CVXPY's
  ``get_problem_data``) is done once per batch element before timing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from workloads import DENSE_FAMILIES, FAMILIES, QP_FAMILIES, Instance, Spec

# Settings of the bare solvers: the same as cvxjax's host backends use by default
# (cvxjax/_backends/{osqp,clarabel}.py), so that the comparison measures overhead only.
OSQP_SETTINGS = dict(
    eps_abs=1e-8,
    eps_rel=1e-8,
    polishing=True,
    max_iter=100_000,
    verbose=False,
    eps_prim_inf=1e-9,
    eps_dual_inf=1e-9,
)
CLARABEL_SETTINGS = dict(
    verbose=False,
    tol_gap_abs=1e-10,
    tol_gap_rel=1e-10,
    tol_feas=1e-10,
    tol_ktratio=1e-8,
    max_iter=200,
)
JAXOPT_SETTINGS = dict(tol=1e-5)


class Unavailable(Exception):
    """The tool does not offer what is asked (e.g. a solver not in this cvxjax version)."""


@dataclass
class Built:
    """A tool set up for one workload."""

    fwd: Callable
    grad: Optional[Callable]
    solution: Callable[[Any], np.ndarray]
    info: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tool:
    """A tool in the comparison.

    Attributes:
      name: short name used on the command line and in the results.
      kind: ``"cvxjax"``, ``"peer"`` (another differentiable tool) or ``"bare"`` (a solver
        called directly; forward only, the floor).
      jit: whether its calls are jit-compiled (cvxpylayers' JAX layer cannot be).
      families: the workload families it applies to.
      solver: the ``solver=`` argument for the cvxjax variants.
    """

    name: str
    kind: str
    jit: bool
    families: frozenset
    solver: Optional[str] = None

    def applies(self, spec: Spec) -> bool:
        return spec.family in self.families

    @property
    def differentiable(self) -> bool:
        return self.kind != "bare"

    def build(self, inst: Instance) -> Built:
        return _BUILDERS[self.name.split("-")[0]](self, inst)


_ALL = frozenset(FAMILIES)

TOOLS: Dict[str, Tool] = {
    t.name: t
    for t in (
        Tool("cvxjax", "cvxjax", True, _ALL, None),
        Tool("cvxjax-clarabel", "cvxjax", True, _ALL, "CLARABEL"),
        Tool("cvxjax-osqp", "cvxjax", True, QP_FAMILIES, "OSQP"),
        Tool("cvxjax-jax", "cvxjax", True, _ALL, "JAX"),
        Tool("cvxjax-scs", "cvxjax", True, _ALL, "SCS"),
        Tool("cvxpylayers", "peer", False, _ALL),
        Tool("cvxpylayers-moreau", "peer", True, _ALL, "MOREAU"),
        Tool("qpax", "peer", True, DENSE_FAMILIES),
        Tool("jaxopt", "peer", True, DENSE_FAMILIES),
        Tool("osqp", "bare", False, QP_FAMILIES),
        Tool("clarabel", "bare", False, _ALL),
    )
}

#: Tools run by default (cvxjax-scs only on request: SCS is not one of the asked-for solvers).
DEFAULT_TOOLS = [
    "cvxjax",
    "cvxjax-clarabel",
    "cvxjax-osqp",
    "cvxjax-jax",
    "cvxpylayers",
    "cvxpylayers-moreau",
    "qpax",
    "jaxopt",
    "osqp",
    "clarabel",
]


# ---------------------------------------------------------------------------------------------
# JAX tools


def _block(tree):
    import jax

    return jax.block_until_ready(tree)


def _sum_of_solution(fn):
    """``params -> Σ solution`` (all outputs, all batch elements)."""
    import jax.numpy as jnp

    def loss(*params):
        out = fn(*params)
        leaves = out if isinstance(out, (tuple, list)) else (out,)
        return sum(jnp.sum(leaf) for leaf in leaves)

    return loss


class Jitted:
    """A jit-compiled function that can be compiled ahead of time with :meth:`compile`.

    Compiling explicitly separates the compilation time from the first execution, so that the
    first execution can serve as a timing sample.
    """

    def __init__(self, fn):
        import jax

        self._jitted = jax.jit(fn)
        self._compiled = None

    def compile(self, *args) -> None:
        self._compiled = self._jitted.lower(*args).compile()

    def __call__(self, *args):
        return _block((self._compiled or self._jitted)(*args))


def _jax_callables(fn, n_params: int, jit: bool):
    import jax

    grad = jax.grad(_sum_of_solution(fn), argnums=tuple(range(n_params)))
    if jit:
        return Jitted(fn), Jitted(grad)
    return (lambda *a: _block(fn(*a))), (lambda *a: _block(grad(*a)))


def _as_batch(x) -> np.ndarray:
    return np.atleast_2d(np.asarray(x, dtype=np.float64))


def _build_cvxjax(tool: Tool, inst: Instance) -> Built:
    import jax.numpy as jnp

    import cvxjax

    try:
        layer = cvxjax.CvxpyLayer(
            inst.problem, parameters=inst.parameters, variables=[inst.x], solver=tool.solver
        )
    except ValueError as err:
        if tool.solver is not None and "nknown solver" in str(err):
            raise Unavailable(f"solver {tool.solver!r} not offered by this cvxjax: {err}") from err
        raise
    fwd, grad = _jax_callables(lambda *p: layer(*p)[0], len(inst.parameters), True)
    # The solver the calls below actually run (solver=None picks per dtype; float64 here).
    solver_for = getattr(layer, "solver_for", None)
    resolved = solver_for(jnp.float64) if solver_for else getattr(layer, "solver", tool.solver)
    return Built(fwd, grad, _as_batch, {"resolved_solver": str(resolved)})


def _build_cvxpylayers(tool: Tool, inst: Instance) -> Built:
    from cvxpylayers.jax import CvxpyLayer

    if tool.solver == "MOREAU":
        # cvxpylayers 1.2 with the Moreau solver: jit- and vmap-capable, reverse mode only.
        try:
            import moreau  # noqa: F401
        except ImportError as err:
            raise Unavailable(f"moreau is not installed: {err}") from err
        layer = CvxpyLayer(
            inst.problem, parameters=inst.parameters, variables=[inst.x], solver="MOREAU"
        )
        fwd, grad = _jax_callables(lambda *p: layer(*p)[0], len(inst.parameters), True)
        return Built(fwd, grad, _as_batch, {"resolved_solver": "MOREAU"})
    layer = CvxpyLayer(inst.problem, parameters=inst.parameters, variables=[inst.x])
    fwd, grad = _jax_callables(lambda *p: layer(*p)[0], len(inst.parameters), False)
    return Built(fwd, grad, _as_batch, {"resolved_solver": "diffcp (SCS)"})


def _batched(one, inst: Instance):
    import jax

    return jax.vmap(one) if inst.batched else one


def _build_qpax(tool: Tool, inst: Instance) -> Built:
    import qpax

    def one(*params):
        return qpax.solve_qp_primal(*inst.dense(*params))

    fwd, grad = _jax_callables(_batched(one, inst), len(inst.parameters), True)
    return Built(fwd, grad, _as_batch, {"settings": "defaults"})


def _build_jaxopt(tool: Tool, inst: Instance) -> Built:
    import jaxopt

    solver = jaxopt.OSQP(**JAXOPT_SETTINGS)

    def one(*params):
        P, q, A, b, G, h = inst.dense(*params)
        eq = (A, b) if A.shape[0] else None
        return solver.run(params_obj=(P, q), params_eq=eq, params_ineq=(G, h)).params.primal

    fwd, grad = _jax_callables(_batched(one, inst), len(inst.parameters), True)
    return Built(fwd, grad, _as_batch, {"settings": JAXOPT_SETTINGS})


_BUILDERS: Dict[str, Callable[[Tool, Instance], Built]] = {
    "cvxjax": _build_cvxjax,
    "cvxpylayers": _build_cvxpylayers,
    "qpax": _build_qpax,
    "jaxopt": _build_jaxopt,
}


# ---------------------------------------------------------------------------------------------
# Bare solvers


def _canonical_data(inst: Instance, solver: str) -> List[dict]:
    """CVXPY's canonical data for every batch element (the first call canonicalizes)."""
    data = []
    for k in range(inst.spec.batch):
        inst.set_element(k)
        data.append(inst.problem.get_problem_data(solver)[0])
    inst.set_element(0)
    return data


def _x_slice(data: dict, inst: Instance) -> slice:
    offset = data["param_prob"].var_id_to_col[inst.x.id]
    return slice(offset, offset + inst.x.size)


def _csc32(M):
    """A canonical CSC matrix with int32 indices (what OSQP's C extension takes)."""
    import scipy.sparse as sp

    M = sp.csc_matrix(M)
    M.sum_duplicates()
    M.sort_indices()
    out = sp.csc_matrix(M.shape)
    out.data = np.asarray(M.data, np.float64)
    out.indices = M.indices.astype(np.int32)
    out.indptr = M.indptr.astype(np.int32)
    return out


def _build_osqp(tool: Tool, inst: Instance) -> Built:
    import osqp
    import scipy.sparse as sp
    from cvxpy import OSQP

    items = []
    for d in _canonical_data(inst, OSQP):
        P = _csc32(sp.triu(d["P"], format="csc"))
        A = _csc32(sp.vstack([d["A"], d["F"]], format="csc"))
        lower = np.concatenate([d["b"], np.full(d["n_ineq"], -np.inf)])
        upper = np.concatenate([d["b"], d["G"]])
        items.append((P, np.asarray(d["q"], float), A, lower, upper))
    xs = _x_slice(d, inst)
    P0, q0, A0, l0, u0 = items[0]
    same = lambda M, N: (
        M.shape == N.shape
        and np.array_equal(M.indptr, N.indptr)
        and np.array_equal(M.indices, N.indices)
    )
    if not all(same(P, P0) and same(A, A0) for P, _, A, _, _ in items):
        raise RuntimeError("canonical sparsity pattern varies across the batch")
    matrices_change = any(
        not (np.array_equal(P.data, P0.data) and np.array_equal(A.data, A0.data))
        for P, _, A, _, _ in items
    )
    workspace = osqp.OSQP()
    workspace.setup(P0, q0, A0, l0, u0, **OSQP_SETTINGS)

    def fwd(*_unused):
        out = np.empty((len(items), inst.x.size))
        for k, (P, q, A, lower, upper) in enumerate(items):
            if matrices_change:
                workspace.update(q=q, l=lower, u=upper, Px=P.data, Ax=A.data)
            else:
                workspace.update(q=q, l=lower, u=upper)
            result = workspace.solve(raise_error=False)
            if result.info.status_val != osqp.SolverStatus.OSQP_SOLVED:
                raise RuntimeError(f"OSQP status {result.info.status}")
            out[k] = result.x[xs]
        return out

    return Built(
        fwd, None, _as_batch, {"settings": OSQP_SETTINGS, "matrix_updates": bool(matrices_change)}
    )


def _clarabel_cones(dims) -> list:
    import clarabel

    cones = []
    if dims.zero:
        cones.append(clarabel.ZeroConeT(dims.zero))
    if dims.nonneg:
        cones.append(clarabel.NonnegativeConeT(dims.nonneg))
    cones += [clarabel.SecondOrderConeT(k) for k in dims.soc]
    if dims.exp or dims.psd or getattr(dims, "p3d", []):
        raise RuntimeError("bare Clarabel adapter handles zero/nonneg/SOC cones only")
    return cones


def _build_clarabel(tool: Tool, inst: Instance) -> Built:
    import clarabel
    import scipy.sparse as sp
    from cvxpy import CLARABEL

    settings = clarabel.DefaultSettings()
    for key, value in CLARABEL_SETTINGS.items():
        setattr(settings, key, value)
    items = []
    for d in _canonical_data(inst, CLARABEL):
        P = sp.triu(d["P"], format="csc")
        A = sp.csc_matrix(d["A"])
        items.append(
            (P, np.asarray(d["c"], float), A, np.asarray(d["b"], float), _clarabel_cones(d["dims"]))
        )
    xs = _x_slice(d, inst)

    def fwd(*_unused):
        out = np.empty((len(items), inst.x.size))
        for k, (P, q, A, b, cones) in enumerate(items):
            solution = clarabel.DefaultSolver(P, q, A, b, cones, settings).solve()
            # cvxjax accepts "AlmostSolved" when the KKT residual passes its check; so do we.
            if str(solution.status).split(".")[-1] not in ("Solved", "AlmostSolved"):
                raise RuntimeError(f"Clarabel status {solution.status}")
            out[k] = np.asarray(solution.x)[xs]
        return out

    return Built(fwd, None, _as_batch, {"settings": CLARABEL_SETTINGS})


_BUILDERS["osqp"] = _build_osqp
_BUILDERS["clarabel"] = _build_clarabel


def prepare(tool: Tool) -> None:
    """Import the tool's modules (kept out of the construction time)."""
    import importlib

    modules = {
        "cvxjax": ["cvxjax"],
        "cvxpylayers": ["cvxpylayers.jax"],
        "qpax": ["qpax"],
        "jaxopt": ["jaxopt"],
        "osqp": ["osqp"],
        "clarabel": ["clarabel"],
    }[tool.name.split("-")[0]]
    for module in modules:
        importlib.import_module(module)
