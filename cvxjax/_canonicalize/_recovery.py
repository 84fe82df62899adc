"""Solution recovery: a canonical primal-dual pair ``(x, y)`` ↦ the requested CVXPY outputs.

The other way round from :mod:`._problem_data`: CVXPY's ``SolvingChain.invert`` maps SCS's
``(x, y)`` to variable values and constraint duals with all of CVXPY's sign/scaling conventions
(``<=`` duals, PSD duals as full matrices, SOC/exp/pow duals split per argument, symmetric
variables rebuilt from their upper triangle, ...). Every step is linear in ``(x, y)`` except
that variables with bound-type attributes (``nonneg``, ``bounds``, ...) get *projected* onto
their attribute set; we use the reductions' ``var_forward`` (the same map without the
projection, which is the identity at any feasible point) for the primal part. The linear map is
found once by probing that inversion and stored as a sparse matrix.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from cvxpy.reductions.reduction import Reduction
from cvxpy.reductions.solution import Solution

from ._linear_map import _LinearMap, _probe_linear_map


def _resolve_outputs(problem: cp.Problem, outputs) -> list[tuple]:
    """For each output: ``("var", variable)`` or ``("dual", constraint, k)``."""
    variables = {v.id: v for v in problem.variables()}
    duals = {}
    for c in problem.constraints:
        for k, dv in enumerate(c.dual_variables):
            duals[dv.id] = (c, k)
    sources = []
    for o in outputs:
        oid = getattr(o, "id", None)
        if isinstance(o, cp.Variable) and oid in variables:
            sources.append(("var", o))
        elif isinstance(o, cp.Variable) and oid in duals:
            c, k = duals[oid]
            sources.append(("dual", c, k))
        else:
            raise ValueError(
                f"output {o!r} is neither a variable of the problem nor a dual variable of one "
                "of its constraints (use `constraint.dual_variables[k]`)"
            )
    return sources


def _invert(chain, inverse_data, x: np.ndarray, y: np.ndarray) -> Solution:
    """CVXPY's inversion of an SCS result ``(x, y)``, without attribute projections.

    Walks the chain backwards exactly like ``SolvingChain.invert``; for reductions that
    override ``var_forward`` (CvxAttr2Constr: symmetric/diag/sparse/bounded variables) the
    primal part is taken from ``var_forward``, the linear map CVXPY uses to push derivatives
    through the reduction, instead of ``invert``, which also projects onto the attribute set.
    """
    m = y.size
    solution = {
        "x": x,
        "y": y,
        "s": np.zeros(m),
        "info": {
            "status_val": 1,  # SCS_SOLVED
            "status": "solved",
            "solve_time": 0.0,
            "setup_time": 0.0,
            "iter": 0,
            "pobj": 0.0,
        },
    }
    for r, inv in reversed(list(zip(chain.reductions, inverse_data))):
        if type(r).var_forward is not Reduction.var_forward and isinstance(solution, Solution):
            primal = r.var_forward(dict(solution.primal_vars))
            solution = r.invert(solution, inv)
            solution = Solution(
                solution.status, solution.opt_val, primal, solution.dual_vars, solution.attr
            )
        else:
            solution = r.invert(solution, inv)
    return solution


def _as_output(value, shape, what: str) -> np.ndarray:
    if value is None:
        raise ValueError(f"CVXPY does not report a value for {what}")
    if sp.issparse(value):
        value = value.toarray()
    value = np.asarray(value, dtype=np.float64)
    if value.size != int(np.prod(shape, dtype=np.int64)):
        raise AssertionError(f"{what}: got a value of shape {value.shape}, expected {shape}")
    return value.reshape(shape).ravel()


def _recover_map(chain, inverse_data, n: int, m: int, outputs, sources) -> _LinearMap:
    """The matrix R with ``concat_k vec_C(output_k) = R [x; y]``, found by probing CVXPY."""
    # One private copy per constraint: ``save_dual_value`` on the copy splits a dual into the
    # constraint's dual variables (SOC: t and X parts, exp/pow: 3 parts) exactly as CVXPY
    # does, without touching the user's objects.
    copies = {}
    for src in sources:
        if src[0] == "dual" and src[1].id not in copies:
            copies[src[1].id] = src[1].copy()

    def f(z: np.ndarray) -> np.ndarray:
        sol = _invert(chain, inverse_data, z[:n].copy(), z[n:].copy())
        out = []
        for o, src in zip(outputs, sources):
            if src[0] == "var":
                value = sol.primal_vars.get(o.id)
                out.append(_as_output(value, o.shape, f"variable {o.name()!r}"))
            else:
                c, k = src[1], src[2]
                what = f"dual variable {k} of constraint {c}"
                if sol.dual_vars is None or c.id not in sol.dual_vars:
                    raise ValueError(f"CVXPY does not report a value for {what}")
                cc = copies[c.id]
                cc.save_dual_value(sol.dual_vars[c.id])
                out.append(_as_output(cc.dual_variables[k].value, o.shape, what))
        return np.concatenate(out) if out else np.zeros(0)

    n_out = sum(int(np.prod(o.shape, dtype=np.int64)) for o in outputs)
    return _LinearMap.from_scipy(_probe_linear_map(f, n + m, n_out))
