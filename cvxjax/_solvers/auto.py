"""The automatic choice of solver (``solver=None``), itself a solver that selects by
structure and dtype (as lineax's ``AutoLinearSolver`` selects by operator structure)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ._base import ALL_CONES, AbstractSolver
from .clarabel import Clarabel
from .fallback import WithFallback
from .pure_jax import Jax


@dataclasses.dataclass(frozen=True)
class Auto(AbstractSolver):
    """The pure-JAX solver where it measured faster, Clarabel otherwise.

    The pure-JAX solver (no host round trip, no per-problem Python) is chosen for programs
    whose presolved dense form has at most ``max_jax_variables`` variables and
    ``max_jax_constraints`` rows, when the call is in float64 and no ``solver_args`` are
    given (they would be Clarabel's or the JAX solver's names, so the choice must not depend
    on them), and

    * for QPs, always (its interior point beat Clarabel up to these sizes);
    * for other cones, when the default backend is not the CPU (no host round trip on an
      accelerator), or on the CPU when the program has at least ``min_jax_conic_variables``
      variables: on a lasso SOCP it measured faster than Clarabel with 201 presolved
      variables and slower with 41 (ADMM's fixed cost per iteration dominates small
      problems, the host solver's sparse factorization large ones; benchmarks/README.md).

    Its cost per iteration grows like n³, a sparse host solver's like nnz(L). Everything else,
    and float32 calls (the JAX solver cannot reach the default check in float32), goes to
    Clarabel. A problem the JAX solver does not solve (iteration limit, inaccurate) is solved
    again by Clarabel (:class:`~cvxjax._solvers.fallback.WithFallback`), only that problem
    of a batch.

    Fields:
      max_jax_variables, max_jax_constraints, min_jax_conic_variables: the size limits above.
      max_workers: host threads of the Clarabel fallback.
    """

    name = "AUTO"
    supported_cones = ALL_CONES
    data_form = "sparse"

    max_jax_variables: int = 300
    max_jax_constraints: int = 600
    min_jax_conic_variables: int = 100
    max_workers: int | None = None

    def select(self, structure, dense_shape, dtype, settings) -> AbstractSolver:
        small = (
            dense_shape is not None
            and dense_shape.n <= self.max_jax_variables
            and dense_shape.m <= self.max_jax_constraints
        )
        if small and not settings and jnp.dtype(dtype) == jnp.float64:
            on_cpu = jax.default_backend() == "cpu"
            conic_ok = not on_cpu or dense_shape.n >= self.min_jax_conic_variables
            if dense_shape.cones.is_qp or conic_ok:
                return WithFallback(primary=Jax(), fallback=self._clarabel())
        return self._clarabel()

    def _clarabel(self) -> Clarabel:
        return Clarabel(settings=self.settings, max_workers=self.max_workers)

    def init(self, structure):
        raise TypeError("Auto is resolved by select() before a solve; it has no workspace.")

    def solve(self, workspace, program, settings, warm_start=None):
        raise TypeError("Auto is resolved by select() before a solve.")
