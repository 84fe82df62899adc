"""The pure-JAX solver behind the solver base (``solver="JAX"``), for every cone.

QPs go to the homogeneous-embedding interior-point method of :mod:`._qp_ipm` (predictable
iteration counts, high accuracy); programs with second-order, PSD, exponential or power cones
to ADMM followed by Newton steps on F (:mod:`._conic_admm`). No host round trip: it runs
inside the caller's ``jit``, on any backend, and under ``vmap``. It receives the presolved
dense program (:mod:`cvxjax._reduce`), so a least-squares QP is solved at the size the user
wrote.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import Status
from .._program import DenseProgram
from . import _settings
from ._base import ALL_CONES, AbstractSolver, RawSolution
from ._conic_admm import solve_conic
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


def _on_cpu() -> bool:
    return jax.default_backend() == "cpu"


@dataclasses.dataclass(frozen=True)
class Jax(AbstractSolver):
    """Pure-JAX dense solver for every cone (``solver="JAX"``).

    QPs (zero and nonnegative cones only): a homogeneous-embedding interior-point method.
    Options: ``tol`` (relative; default 1e-8 in float64, 1e-5 in float32), ``max_iter``
    (default 50), ``refine`` (iterative-refinement steps per direction), ``warm_margin``
    (1e-3: how far into the interior a warm start is moved). A warm start saves a few
    iterations on a nearby problem (measured: 8 to 3-4 after a 0.1-1 % change of the data of a
    dense QP, 9 to 7 after a 10 % change; benchmarks/README.md).

    Other cones: ADMM with Newton polish on the conic residual. Options: ``tol`` (relative
    KKT residual; default 1e-9 in float64, 1e-5 in float32), ``max_iter`` (ADMM iterations,
    default 10000), ``check_every`` (10), ``polish_steps`` (2), ``polish_at`` (residual of the
    first Newton attempt), ``tol_inf`` (certificate tests). ADMM starts from a warm start
    as it is.

    float32 in, float32 out; the layer's default residual check is then 1e-4.
    """

    name = "JAX"
    supported_cones = ALL_CONES
    data_form = "dense"
    polishes = True  # its conic answers come out of Newton steps on F already

    def settings_spec(self, cones):
        return _settings.jax_spec(cones.is_qp)

    def init(self, structure):
        return structure.cones  # static: the method (interior point or ADMM) and the cones

    def solve(self, workspace, program: DenseProgram, settings, warm_start=None) -> RawSolution:
        cones = workspace
        settings = dict(settings)
        warm = () if warm_start is None else (warm_start.x, warm_start.y, warm_start.s)
        if cones.is_qp:

            def solve(P, q, A, b, *warm):
                sol = solve_qp(P, q, A, b, cones.zero, warm_start=warm or None, **settings)
                status = jnp.asarray(_STATUS)[sol.status]
                return sol.x, sol.y, sol.s, status, sol.iterations

        else:

            def solve(P, q, A, b, *warm):
                sol = solve_conic(P, q, A, b, cones, warm_start=warm or None, **settings)
                return sol.x, sol.y, sol.s, sol.status, sol.iterations

        args = (program.P, program.q, program.A, program.b, *warm)
        if _on_cpu():
            # On CPU a batch is solved one problem after the other, with unbatched LAPACK
            # calls: the vmapped while_loop would call jaxlib's batched CPU kernels, and two of
            # those running at once can deadlock XLA's intra-op pool (see
            # cvxjax._robust_solve). The price: on an idle 2-core machine the vmapped QP loop
            # was 1.4x (dense QP n=50) to 2.4x (n=10) faster at batch 32. On accelerators
            # vmap is used.
            solve = jax.custom_batching.sequential_vmap(solve)
        x, y, s, status, iterations = solve(*args)
        return RawSolution(x, y, s, status.astype(jnp.int32), iterations.astype(jnp.int32))
