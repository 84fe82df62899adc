"""Geometric programs (``gp=True``): a DGP problem through CVXPY's DGP → DCP reduction.

A log-log convex program in positive variables ``x`` and parameters ``θ`` becomes a convex
one in ``u = log x`` (CVXPY's ``Dgp2Dcp``): a monomial ``c xᵃ`` becomes the affine
``log c + aᵀu``, a posynomial a ``log_sum_exp``. Each parameter that enters the DGP problem as a
positive quantity is replaced by a new parameter holding its logarithm; a parameter used as
an exponent (``y ** c``) stays as it is. So, with ``ψ`` the value the DCP problem sees,

    ψ_k = log θ_k  (log-transformed parameters),   ψ_k = θ_k  (the others),
    x*(θ) = exp(u*(ψ(θ))),

and the chain rule carries the derivative: ``∂x*/∂θ_k = diag(x*) ∂u*/∂ψ_k / θ_k``. JAX
applies it through ``jnp.log`` and ``jnp.exp`` around the DCP problem's solution map, which is
compiled exactly like any other DPP problem (:func:`cvxjax._canonicalize.canonicalize`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import cvxpy as cp
import jax
import jax.numpy as jnp

from .._program import ProgramData, ProgramStructure
from ._problem import CanonicalProblem, canonicalize
from ._problem_data import _check_parameters

_DGP_URL = "https://www.cvxpy.org/tutorial/dgp/"


@dataclasses.dataclass(frozen=True, eq=False)
class GeometricProblem:
    """A DGP problem compiled through its DCP form; the interface of :class:`CanonicalProblem`.

    Attributes:
      dcp: the :class:`CanonicalProblem` of the log-log transformed (DCP) problem.
      parameters: the user's (DGP) parameters, in the order ``data`` takes their values.
      outputs: the user's (positive) variables, in the order ``recover`` returns them.
      log_parameters: per parameter, whether the DCP problem sees its logarithm.
    """

    dcp: CanonicalProblem
    parameters: tuple[cp.Parameter, ...]
    outputs: tuple[cp.Variable, ...]
    log_parameters: tuple[bool, ...]

    @property
    def structure(self) -> ProgramStructure:
        return self.dcp.structure

    @property
    def objective_sign(self) -> float:
        return self.dcp.objective_sign

    @property
    def param_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(p.shape) for p in self.parameters)

    @property
    def output_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(o.shape) for o in self.outputs)

    def _dcp_values(self, param_values):
        return [
            jnp.log(v) if log else v
            for v, log in zip((jnp.asarray(v) for v in param_values), self.log_parameters)
        ]

    def data(self, *param_values) -> ProgramData:
        """The canonical data of the DCP problem at ``ψ(θ)``: logarithms of the positive
        parameters (each value with its parameter's shape, unbatched)."""
        return self.dcp.data(*self._dcp_values(param_values))

    def constant_A_entries(self):
        return self.dcp.constant_A_entries()

    def objective_offset(self, *param_values) -> jax.Array:
        """The DCP problem's offset (of the logarithm of the DGP objective)."""
        return self.dcp.objective_offset(*self._dcp_values(param_values))

    def recover(self, x: jax.Array, y: jax.Array) -> tuple[jax.Array, ...]:
        """The DGP variables, ``exp`` of the DCP problem's log-space variables."""
        return tuple(jnp.exp(u) for u in self.dcp.recover(x, y))


def canonicalize_geometric(
    problem: cp.Problem,
    parameters: Sequence[cp.Parameter],
    outputs: Sequence[cp.Variable],
    canon_backend=None,
) -> GeometricProblem:
    """Compile a DGP problem (``problem.is_dgp(dpp=True)``) into a :class:`GeometricProblem`.

    Raises:
      ValueError: the problem is not DGP, or not DPP under the DGP rules; ``parameters`` does
        not match the problem's; an output is not one of its variables (duals of a geometric
        program are not supported).
    """
    if not isinstance(problem, cp.Problem):
        raise TypeError(f"expected a cvxpy.Problem, got {type(problem).__name__}")
    if not problem.is_dgp():
        raise ValueError(
            "gp=True, but the problem is not DGP (log-log convex: positive variables, "
            f"monomials and posynomials); see {_DGP_URL}"
        )
    if not problem.is_dgp(dpp=True):
        raise ValueError(
            "gp=True, but the problem is DGP and not DPP under the DGP rules (parameters must "
            f"enter as monomials of the variables' logarithms); see {_DGP_URL}"
        )
    parameters = _check_parameters(problem, parameters)
    outputs = tuple(outputs)
    variables = {v.id for v in problem.variables()}
    for o in outputs:
        if not (isinstance(o, cp.Variable) and o.id in variables):
            raise ValueError(
                f"output {o!r} is not a variable of the problem; with gp=True the outputs must "
                "be the problem's (positive) variables (duals of geometric programs are not "
                "supported)"
            )

    reduction = cp.reductions.Dgp2Dcp(problem)
    dcp_problem, _ = reduction.apply(problem)
    # CVXPY's map from each positive parameter to the parameter holding its logarithm.
    log_of = {p.id: q for p, q in reduction.canon_methods._parameters.items()}
    dcp_parameters = tuple(log_of.get(p.id, p) for p in parameters)
    dcp_outputs = []
    for o in outputs:
        (log_id,) = reduction.var_id_map[o.id]
        dcp_outputs.append(next(v for v in dcp_problem.variables() if v.id == log_id))
    dcp = canonicalize(dcp_problem, dcp_parameters, dcp_outputs, canon_backend=canon_backend)
    return GeometricProblem(
        dcp=dcp,
        parameters=parameters,
        outputs=outputs,
        log_parameters=tuple(p.id in log_of for p in parameters),
    )
