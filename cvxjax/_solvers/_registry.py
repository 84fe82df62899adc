"""Solver names → solver classes, and the cone-support table derived from them."""

from __future__ import annotations

import dataclasses

from ._base import AbstractSolver
from .auto import Auto
from .clarabel import Clarabel
from .osqp import OSQP
from .pure_jax import Jax
from .scs import SCS

# Every concrete solver, by the name ``solver=`` accepts. A new solver registers here and
# gets the layer's whole contract test suite (tests/test_solver_contract.py).
SOLVERS: dict[str, type[AbstractSolver]] = {cls.name: cls for cls in (Clarabel, SCS, OSQP, Jax)}

# cvxpylayers' backends. Code written for cvxpylayers names one of them (a parametrized
# quad_form needs MOREAU, CUCLARABEL or MPAX there); cvxjax differentiates its own solvers, so
# each of these names means the automatic choice (the accurate host interior point, or the
# pure-JAX solver where it measured faster; on an accelerator the latter for every cone).
CVXPYLAYERS_SOLVERS = frozenset({"DIFFCP", "MOREAU", "CUCLARABEL", "MPAX"})

CONE_NAMES = {
    "zero": "zero cone (equality constraints)",
    "nonneg": "nonnegative cone (inequality constraints)",
    "soc": "second-order cone",
    "psd": "positive semidefinite cone",
    "exp": "exponential cone",
    "pow": "power cone",
}


def supported_cones() -> dict[str, frozenset]:
    """Solver name → the cone families it handles."""
    return {name: cls.supported_cones for name, cls in SOLVERS.items()}


def resolve(solver, max_workers=None) -> AbstractSolver:
    """A solver instance from ``None`` (automatic), a registered name or an instance."""
    if isinstance(solver, AbstractSolver):
        return solver
    if isinstance(solver, type) and issubclass(solver, AbstractSolver):
        solver = solver.name
    host = {} if max_workers is None else {"max_workers": int(max_workers)}
    if solver is None:
        return Auto(**host)
    name = str(solver).upper()
    if name in CVXPYLAYERS_SOLVERS:
        return Auto(**host)
    if name not in SOLVERS:
        raise ValueError(
            f"Unknown solver {solver!r}; choose one of {sorted(SOLVERS)} or None (automatic; "
            f"cvxpylayers' names {', '.join(sorted(CVXPYLAYERS_SOLVERS))} mean the same)."
        )
    cls = SOLVERS[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in host.items() if k in fields})


def check_cones(solver: AbstractSolver, cones) -> None:
    """Raise a ``ValueError`` naming the cones ``solver`` cannot handle and the solvers that can."""
    present = set(cones.present())
    missing = present - solver.supported_cones
    if missing:
        can = [name for name, ok in supported_cones().items() if present <= ok]
        cones_text = ", ".join(CONE_NAMES[c] for c in sorted(missing))
        raise ValueError(
            f"Solver {solver.name} cannot handle the {cones_text} in this problem; "
            f"solvers that can: {', '.join(can)}."
        )
