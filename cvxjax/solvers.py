"""The solvers a [`CvxpyLayer`][cvxjax.CvxpyLayer] can run, behind one base.

Pass a name (``solver="CLARABEL"``) or an instance (``solver=solvers.Clarabel.with_settings(
max_iter=100)``, ``solver=solvers.Auto(max_jax_variables=100)``). To add a solver, subclass
[`AbstractSolver`][cvxjax.solvers.AbstractSolver] (or [`HostSolver`][cvxjax.solvers.HostSolver]
for one that runs on the host) and pass an instance; its docstring is the contract.
"""

from ._solvers import OSQP as OSQP
from ._solvers import SCS as SCS
from ._solvers import AbstractSolver as AbstractSolver
from ._solvers import Auto as Auto
from ._solvers import Clarabel as Clarabel
from ._solvers import HostSolver as HostSolver
from ._solvers import Jax as Jax
from ._solvers import RawSolution as RawSolution
from ._solvers import WithFallback as WithFallback
