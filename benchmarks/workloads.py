"""Benchmark workloads: parametrized CVXPY problems with random, feasible data.

Every workload is described by a :class:`Spec` (family, size ``n``, batch size) and turned into
an :class:`Instance` by :func:`make_instance`: the ``cvxpy.Problem``, its parameters, the
variable whose value the tools return, the parameter values (with a leading batch axis when
``batch > 1``) and, for the QP families, a function producing the dense QP data
``(P, q, A, b, G, h)`` of ``min ½xᵀPx + qᵀx s.t. Ax = b, Gx ≤ h`` from the same parameter
values, for the tools that take raw matrices (qpax, JAXopt).

The data depend only on the spec (the random seed is derived from its name), so the parent
process and every tool's worker process build identical problems.

Families (parameters in brackets):

* ``dense_qp``  min ½‖Lx‖² + qᵀx s.t. Gx ≤ h, Ax = b  [q, h, b];  L = 3I + N/√n (n×n),
  G (n×n) and A (n/4×n) dense Gaussian / √n. Feasible by construction: h = Gx₀ + slack,
  b = Ax₀ for a random x₀ per batch element.
* ``sparse_qp`` min ½xᵀDx + qᵀx s.t. Gx ≤ h, Ax = b  [q, h, b];  D diagonal in [0.5, 2],
  G = I + R (n×n), A = [I 0] + R (n/4×n), R with 5 random entries per row in a band of
  half-width 10 around the diagonal (1% dense at n = 500, 0.25% at n = 2000; see
  :func:`_banded_random`); feasible as above.
* ``nnls``      min ‖Ax − b‖² s.t. x ≥ 0  [A, b];  A (2n×n) Gaussian / √(2n),
  b = Ax_true + noise with x_true ≥ 0 half zeros.
* ``box_lp``    min cᵀx + 0.1‖x‖² s.t. Gx ≤ h, 0 ≤ x ≤ 1  [c];  G (n/2×n), h = Gx₀ + slack
  with x₀ ∈ [0.2, 0.8]ⁿ.
* ``lasso``     min ‖Ax − b‖₂ + 0.1‖x‖₁ + 0.01‖x‖²  [A, b];  A (n×n) Gaussian / √n: a
  second-order-cone program (the norm is not squared).
* ``softmax``   max cᵀx + Σ entr(xᵢ) s.t. 1ᵀx = 1  [c]: x = softmax(c) (exponential cones).
* ``logistic``  min Σ log(1 + exp(−yᵢ aᵢᵀw)) + 0.1‖w‖²  [A]: 4n examples with labels from a
  noisy linear rule (exponential cones).
* ``sdp``       nearest correlation matrix: min ‖X − C‖²_F s.t. X ⪰ 0, diag(X) = 1  [C]
  (an n×n PSD cone).
* ``pnorm``     min ‖Ax − b‖₃ + 0.01‖x‖²  [b];  A (n×n) Gaussian / √n (power cones).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

FAMILIES = (
    "dense_qp",
    "sparse_qp",
    "nnls",
    "box_lp",
    "lasso",
    "softmax",
    "logistic",
    "sdp",
    "pnorm",
)

#: Families with second-order, exponential, PSD or power cones.
CONIC_FAMILIES = frozenset({"lasso", "softmax", "logistic", "sdp", "pnorm"})

#: Families whose canonical problem is a QP (only zero and nonnegative cones): OSQP applies.
QP_FAMILIES = frozenset({"dense_qp", "sparse_qp", "nnls", "box_lp"})

#: Families for which a dense (P, q, A, b, G, h) is built for qpax and JAXopt.
DENSE_FAMILIES = frozenset({"dense_qp", "nnls", "box_lp"})


@dataclass(frozen=True)
class Spec:
    """One workload: a problem family, its size and the batch size."""

    family: str
    n: int
    batch: int = 1

    @property
    def name(self) -> str:
        suffix = (
            f"-b{self.batch}"
            if self.family in ("dense_qp",) or self.family in CONIC_FAMILIES
            else ""
        )
        return f"{self.family}-n{self.n}{suffix}"

    @property
    def seed(self) -> int:
        return zlib.crc32(self.name.encode())

    def to_dict(self) -> dict:
        return {"family": self.family, "n": self.n, "batch": self.batch}


ALL_SPECS: List[Spec] = (
    [Spec("dense_qp", n, b) for n in (10, 50, 200) for b in (1, 32)]
    + [Spec("sparse_qp", n) for n in (500, 2000)]
    + [Spec("nnls", n) for n in (20, 100)]
    + [Spec("box_lp", n) for n in (50, 300)]
    + [Spec("lasso", n, b) for n in (20, 100) for b in (1, 32)]
    + [Spec("softmax", 20, 32), Spec("logistic", 10, 32), Spec("pnorm", 20, 32)]
    + [Spec("sdp", n, 32) for n in (5, 10)]
)

#: The subset run by ``--quick``: a dense QP (the qpax target), a sparse QP and an SOCP.
QUICK_NAMES = ("dense_qp-n50-b1", "sparse_qp-n500", "lasso-n20-b1")


def spec_by_name(name: str) -> Spec:
    """The spec called ``name`` (e.g. ``"dense_qp-n50-b1"``)."""
    for spec in ALL_SPECS:
        if spec.name == name:
            return spec
    raise KeyError(name)


@dataclass
class Instance:
    """A built workload.

    Attributes:
      spec: the workload's spec.
      problem: the DPP ``cvxpy.Problem``.
      parameters: its parameters, in the order their values are passed to the layers.
      x: the variable returned by every tool.
      values: numpy parameter values; each has a leading batch axis when ``spec.batch > 1``.
      dense: for QP families with a dense form, a function of one batch element's parameter
        values (jax arrays) returning ``(P, q, A, b, G, h)`` as jax arrays, else ``None``.
    """

    spec: Spec
    problem: cp.Problem
    parameters: List[cp.Parameter]
    x: cp.Variable
    values: List[np.ndarray]
    dense: Optional[Callable] = field(default=None, repr=False)

    @property
    def batched(self) -> bool:
        return self.spec.batch > 1

    def element(self, k: int) -> List[np.ndarray]:
        """Parameter values of batch element ``k``."""
        return [v[k] for v in self.values] if self.batched else list(self.values)

    def set_element(self, k: int) -> None:
        """Set the CVXPY parameters' ``.value`` to batch element ``k``."""
        for param, value in zip(self.parameters, self.element(k)):
            param.value = value

    def reference(self, ks: Sequence[int]) -> np.ndarray:
        """CVXPY's own solution (Clarabel, tolerances 1e-9) for batch elements ``ks``."""
        out = []
        for k in ks:
            self.set_element(k)
            try:
                self.problem.solve(
                    solver=cp.CLARABEL, tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9
                )
            except cp.SolverError:
                pass
            if self.problem.status != cp.OPTIMAL:  # tight tolerances not reached: defaults
                self.problem.solve(solver=cp.CLARABEL)
            if self.problem.status != cp.OPTIMAL:
                raise RuntimeError(
                    f"{self.spec.name}: reference solve status {self.problem.status}"
                )
            out.append(np.array(self.x.value, dtype=np.float64))
        return np.stack(out)


def _dense_qp(spec: Spec, rng: np.random.Generator) -> Instance:
    n, B = spec.n, spec.batch
    m, p = n, max(1, n // 4)
    L = 3.0 * np.eye(n) + rng.standard_normal((n, n)) / np.sqrt(n)
    G = rng.standard_normal((m, n)) / np.sqrt(n)
    A = rng.standard_normal((p, n)) / np.sqrt(n)
    x0 = rng.standard_normal((B, n))
    q = 3.0 * rng.standard_normal((B, n))
    h = x0 @ G.T + rng.uniform(0.0, 0.5, (B, m))
    b = x0 @ A.T

    x = cp.Variable(n, name="x")
    qp, hp, bp = cp.Parameter(n, name="q"), cp.Parameter(m, name="h"), cp.Parameter(p, name="b")
    problem = cp.Problem(
        cp.Minimize(0.5 * cp.sum_squares(L @ x) + qp @ x), [G @ x <= hp, A @ x == bp]
    )
    P = L.T @ L

    def dense(qv, hv, bv):
        import jax.numpy as jnp

        return jnp.asarray(P), qv, jnp.asarray(A), bv, jnp.asarray(G), hv

    return Instance(spec, problem, [qp, hp, bp], x, _unbatch(spec, [q, h, b]), dense)


def _banded_random(
    rows: int, cols: int, rng: np.random.Generator, per_row: int = 5, half_width: int = 10
) -> sp.csc_matrix:
    """``per_row`` Gaussian entries per row at random columns near the (scaled) diagonal.

    Structured sparsity, like the constraint matrices of control or signal problems: with the
    same density but columns drawn uniformly (a random graph), the KKT factor of a direct
    solver fills in almost completely (Clarabel then takes 7-13 s per solve at n = 2000 on the
    benchmark machine), and the workload would measure fill-in rather than the layers.
    """
    r = np.repeat(np.arange(rows), per_row)
    c = np.clip(r * cols // rows + rng.integers(-half_width, half_width + 1, r.size), 0, cols - 1)
    M = sp.csc_matrix((rng.standard_normal(r.size) / np.sqrt(per_row), (r, c)), shape=(rows, cols))
    M.sum_duplicates()
    return M


def _sparse_qp(spec: Spec, rng: np.random.Generator) -> Instance:
    n, B = spec.n, spec.batch
    m, p = n, max(1, n // 4)
    d = rng.uniform(0.5, 2.0, n)
    G = (sp.eye(n) + _banded_random(m, n, rng)).tocsc()
    A = (sp.eye(p, n) + _banded_random(p, n, rng)).tocsc()
    x0 = rng.standard_normal((B, n))
    q = rng.standard_normal((B, n))
    h = (G @ x0.T).T + rng.uniform(0.0, 0.5, (B, m))
    b = (A @ x0.T).T

    x = cp.Variable(n, name="x")
    qp, hp, bp = cp.Parameter(n, name="q"), cp.Parameter(m, name="h"), cp.Parameter(p, name="b")
    problem = cp.Problem(
        cp.Minimize(0.5 * cp.quad_form(x, sp.diags(d).tocsc()) + qp @ x),
        [G @ x <= hp, A @ x == bp],
    )
    return Instance(spec, problem, [qp, hp, bp], x, _unbatch(spec, [q, h, b]))


def _nnls(spec: Spec, rng: np.random.Generator) -> Instance:
    n, B = spec.n, spec.batch
    m = 2 * n
    A = rng.standard_normal((B, m, n)) / np.sqrt(m)
    x_true = np.maximum(rng.standard_normal((B, n)), 0.0)
    b = np.einsum("bmn,bn->bm", A, x_true) + 0.1 * rng.standard_normal((B, m))

    x = cp.Variable(n, name="x")
    Ap, bp = cp.Parameter((m, n), name="A"), cp.Parameter(m, name="b")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(Ap @ x - bp)), [x >= 0])

    def dense(Av, bv):
        import jax.numpy as jnp

        return (
            2.0 * Av.T @ Av,
            -2.0 * Av.T @ bv,
            jnp.zeros((0, n), Av.dtype),
            jnp.zeros((0,), Av.dtype),
            -jnp.eye(n, dtype=Av.dtype),
            jnp.zeros(n, Av.dtype),
        )

    return Instance(spec, problem, [Ap, bp], x, _unbatch(spec, [A, b]), dense)


def _box_lp(spec: Spec, rng: np.random.Generator) -> Instance:
    n, B = spec.n, spec.batch
    m = max(1, n // 2)
    G = rng.standard_normal((m, n)) / np.sqrt(n)
    x0 = rng.uniform(0.2, 0.8, n)
    h = G @ x0 + rng.uniform(0.0, 0.5, m)
    c = rng.standard_normal((B, n))

    x = cp.Variable(n, name="x")
    cpar = cp.Parameter(n, name="c")
    problem = cp.Problem(
        cp.Minimize(cpar @ x + 0.1 * cp.sum_squares(x)), [G @ x <= h, x >= 0, x <= 1]
    )
    G_all = np.vstack([G, -np.eye(n), np.eye(n)])
    h_all = np.concatenate([h, np.zeros(n), np.ones(n)])

    def dense(cv):
        import jax.numpy as jnp

        return (
            0.2 * jnp.eye(n, dtype=cv.dtype),
            cv,
            jnp.zeros((0, n), cv.dtype),
            jnp.zeros((0,), cv.dtype),
            jnp.asarray(G_all),
            jnp.asarray(h_all),
        )

    return Instance(spec, problem, [cpar], x, _unbatch(spec, [c]), dense)


def _lasso(spec: Spec, rng: np.random.Generator) -> Instance:
    n, B = spec.n, spec.batch
    m = n
    A = rng.standard_normal((B, m, n)) / np.sqrt(m)
    x_true = rng.standard_normal((B, n)) * (rng.uniform(size=(B, n)) < 0.3)
    b = np.einsum("bmn,bn->bm", A, x_true) + 0.1 * rng.standard_normal((B, m))

    x = cp.Variable(n, name="x")
    Ap, bp = cp.Parameter((m, n), name="A"), cp.Parameter(m, name="b")
    problem = cp.Problem(
        cp.Minimize(cp.norm2(Ap @ x - bp) + 0.1 * cp.norm1(x) + 0.01 * cp.sum_squares(x))
    )
    return Instance(spec, problem, [Ap, bp], x, _unbatch(spec, [A, b]))


def _softmax(spec: Spec, rng: np.random.Generator) -> Instance:
    x, c = cp.Variable(spec.n, name="x"), cp.Parameter(spec.n, name="c")
    problem = cp.Problem(cp.Maximize(c @ x + cp.sum(cp.entr(x))), [cp.sum(x) == 1])
    return Instance(spec, problem, [c], x, _unbatch(spec, [rng.normal(size=(spec.batch, spec.n))]))


def _logistic(spec: Spec, rng: np.random.Generator) -> Instance:
    n, m, B = spec.n, 4 * spec.n, spec.batch
    A = rng.normal(size=(B, m, n))
    w_true = rng.normal(size=n)
    y = np.sign(A[0] @ w_true + 0.5 * rng.normal(size=m))
    w, Ap = cp.Variable(n, name="w"), cp.Parameter((m, n), name="A")
    loss = cp.sum(cp.logistic(-cp.multiply(y, Ap @ w)))
    problem = cp.Problem(cp.Minimize(loss + 0.1 * cp.sum_squares(w)))
    return Instance(spec, problem, [Ap], w, _unbatch(spec, [A]))


def _sdp(spec: Spec, rng: np.random.Generator) -> Instance:
    n, B = spec.n, spec.batch
    M = rng.normal(size=(B, n, n)) / np.sqrt(n)
    C_val = (M + np.swapaxes(M, 1, 2)) / 2 + np.eye(n)
    X = cp.Variable((n, n), symmetric=True, name="X")
    C = cp.Parameter((n, n), symmetric=True, name="C")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(X - C)), [X >> 0, cp.diag(X) == 1])
    return Instance(spec, problem, [C], X, _unbatch(spec, [C_val]))


def _pnorm(spec: Spec, rng: np.random.Generator) -> Instance:
    n, B = spec.n, spec.batch
    A = rng.normal(size=(n, n)) / np.sqrt(n)
    x, b = cp.Variable(n, name="x"), cp.Parameter(n, name="b")
    problem = cp.Problem(cp.Minimize(cp.pnorm(A @ x - b, 3) + 0.01 * cp.sum_squares(x)))
    return Instance(spec, problem, [b], x, _unbatch(spec, [rng.normal(size=(B, n))]))


def _unbatch(spec: Spec, values: List[np.ndarray]) -> List[np.ndarray]:
    """Drop the batch axis for batch size 1 (the layers are then called unbatched)."""
    return [np.ascontiguousarray(v if spec.batch > 1 else v[0]) for v in values]


_BUILDERS = {
    "dense_qp": _dense_qp,
    "sparse_qp": _sparse_qp,
    "nnls": _nnls,
    "box_lp": _box_lp,
    "lasso": _lasso,
    "softmax": _softmax,
    "logistic": _logistic,
    "sdp": _sdp,
    "pnorm": _pnorm,
}


def make_instance(spec: Spec) -> Instance:
    """Build the workload ``spec`` (deterministic: the seed comes from its name)."""
    instance = _BUILDERS[spec.family](spec, np.random.default_rng(spec.seed))
    assert instance.problem.is_dpp(), spec.name
    instance.set_element(0)
    return instance


def reference_indices(spec: Spec) -> List[int]:
    """Batch elements whose solutions are checked against CVXPY (at most 3)."""
    return list(range(min(spec.batch, 3)))
