"""Solvers behind one base (:class:`AbstractSolver`); see its docstring for the contract."""

from ._base import AbstractSolver as AbstractSolver
from ._base import RawSolution as RawSolution
from ._host import HostSolver as HostSolver
from .auto import Auto as Auto
from .clarabel import Clarabel as Clarabel
from .fallback import WithFallback as WithFallback
from .osqp import OSQP as OSQP
from .pure_jax import Jax as Jax
from .scs import SCS as SCS
