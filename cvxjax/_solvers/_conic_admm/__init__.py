"""Pure-JAX dense conic solver (every cone): ADMM on the canonical program, then Newton on F.

:func:`solve_conic` is the entry point; the algorithm is documented in :mod:`._admm`, the
cone-respecting equilibration in :mod:`._scaling`.
"""

from ._admm import ConicSolution as ConicSolution
from ._admm import solve_conic as solve_conic
