"""Solvers behind one base (:class:`AbstractSolver`); see its docstring for the contract."""

from ._base import AbstractSolver as AbstractSolver
from ._base import RawSolution as RawSolution
from ._host import HostSolver as HostSolver
from .auto import Auto as Auto
from .clarabel import Clarabel as Clarabel
from .jax_qp import JaxQP as JaxQP
from .osqp import OSQP as OSQP
from .scs import SCS as SCS
