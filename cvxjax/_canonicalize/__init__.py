"""Compile a DPP CVXPY problem into the canonical program of :mod:`cvxjax._program`.

:mod:`._problem`: the result, :class:`CanonicalProblem`, and :func:`canonicalize`.
:mod:`._problem_data`: checks, and the affine map θ ↦ (P, q, A, b) from CVXPY's conic form.
:mod:`._recovery`: the linear map from a canonical ``(x, y)`` to CVXPY's variables and duals.
:mod:`._geometric`: geometric programs (``gp=True``) through CVXPY's DGP → DCP reduction.
:mod:`._linear_map`: the fixed sparse linear maps both are applied as in JAX.
"""

from ._geometric import GeometricProblem as GeometricProblem
from ._geometric import canonicalize_geometric as canonicalize_geometric
from ._linear_map import _probe_linear_map as _probe_linear_map
from ._problem import CanonicalProblem as CanonicalProblem
from ._problem import canonicalize as canonicalize

__all__ = ["CanonicalProblem", "GeometricProblem", "canonicalize", "canonicalize_geometric"]
