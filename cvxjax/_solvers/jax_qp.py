"""The pure-JAX dense QP solver behind the solver base (the algorithm is in :mod:`._qp_ipm`).

No host round trip: it runs inside the caller's ``jit``, on any backend, and under ``vmap``.
It receives the presolved dense program (:mod:`cvxjax._reduce`), so a least-squares QP is
solved at the size the user wrote.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import Status
from .._program import DenseProgram
from ._base import AbstractSolver, RawSolution
from ._qp_ipm import solve_qp

# Status codes of solve_qp (SOLVED, MAX_ITER, PRIMAL_INFEASIBLE, DUAL_INFEASIBLE,
# NUMERICAL_ERROR) -> ours.
_STATUS = np.array(
    [
        Status.SOLVED,
        Status.MAX_ITERATIONS,
        Status.PRIMAL_INFEASIBLE,
        Status.DUAL_INFEASIBLE,
        Status.NUMERICAL_ERROR,
    ],
    dtype=np.int32,
)


@dataclasses.dataclass(frozen=True)
class JaxQP(AbstractSolver):
    """Dense homogeneous-embedding interior-point method for QPs, in JAX (``solver="JAX"``).

    Options (``settings`` / ``solver_args``): ``tol`` (relative; default 1e-8 in float64,
    1e-5 in float32), ``max_iter`` (default 50), ``refine`` (iterative-refinement steps per
    direction). In float32 the layer's default residual check is 1e-4.
    """

    name = "JAX"
    supported_cones = frozenset({"zero", "nonneg"})
    data_form = "dense"

    def init(self, structure):
        return structure.cones.zero  # the static number of equality rows

    def solve(self, workspace, program: DenseProgram, settings, warm_start=None) -> RawSolution:
        del warm_start  # an interior-point method gains little from a warm start
        n_zero = workspace
        settings = dict(settings)

        def solve(P, q, A, b):
            sol = solve_qp(P, q, A, b, n_zero, **settings)
            return sol.x, sol.y, sol.s, sol.status, sol.iterations

        if jax.default_backend() == "cpu":
            # On CPU a batch is solved one problem after the other, with unbatched LAPACK
            # calls: the vmapped while_loop would call jaxlib's batched CPU kernels, and two of
            # those running at once can deadlock XLA's intra-op pool (see
            # cvxjax._robust_solve). The price: on an idle 2-core machine the vmapped loop was
            # 1.4x (dense QP n=50) to 2.4x (n=10) faster at batch 32. On accelerators vmap is used.
            solve = jax.custom_batching.sequential_vmap(solve)
        x, y, s, status, iterations = solve(program.P, program.q, program.A, program.b)
        status = jnp.asarray(_STATUS)[status]
        return RawSolution(x, y, s, status, iterations.astype(jnp.int32))
