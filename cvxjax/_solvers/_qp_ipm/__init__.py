"""Pure-JAX dense interior-point solver for convex QPs (homogeneous embedding, Mehrotra steps).

:func:`solve_qp` is the entry point; the algorithm is documented in :mod:`._ipm`, the KKT
linear algebra in :mod:`._kkt`, the data scaling in :mod:`._equilibrate` and the termination
tests in :mod:`._termination`.
"""

from ._ipm import QPSolution, solve_qp
from ._termination import (
    DUAL_INFEASIBLE,
    MAX_ITER,
    NUMERICAL_ERROR,
    PRIMAL_INFEASIBLE,
    SOLVED,
)

__all__ = [
    "DUAL_INFEASIBLE",
    "MAX_ITER",
    "NUMERICAL_ERROR",
    "PRIMAL_INFEASIBLE",
    "SOLVED",
    "QPSolution",
    "solve_qp",
]
