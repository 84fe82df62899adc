"""Linear solvers accepted by ``solve=`` in [`cvxjax.custom_root`][cvxjax.custom_root] and friends.

Each is ``solve(matvec, b) -> x`` on flat 1-D arrays; pass one directly, by name, or wrap it
with ``functools.partial`` to change tolerances, e.g. ``partial(solve_gmres, tol=1e-12)``.
"""

from ._linear_solve import SOLVERS as SOLVERS
from ._linear_solve import solve_bicgstab as solve_bicgstab
from ._linear_solve import solve_cg as solve_cg
from ._linear_solve import solve_gmres as solve_gmres
from ._linear_solve import solve_lstsq as solve_lstsq
from ._linear_solve import solve_lu as solve_lu
from ._linear_solve import solve_normal_cg as solve_normal_cg
