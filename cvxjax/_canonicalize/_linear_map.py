"""Fixed real linear maps, built once with NumPy/SciPy and applied in JAX.

:class:`_LinearMap` applies ``w = M v``; :func:`_probe_linear_map` finds ``M`` for one of
CVXPY's linear black boxes; the rest are small helpers for index arrays and CVXPY tensors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

# A dense matvec costs rows·cols multiply-adds; the sparse path costs nnz gathers plus a
# scatter-add that is several times slower per element (markedly so on accelerators), so we go
# dense while rows·cols is within this factor of nnz -- or tiny -- and below a memory cap.
_DENSE_FILL_FACTOR = 8
_DENSE_ALWAYS_ENTRIES = 1 << 12
_DENSE_MAX_ENTRIES = 1 << 24


@dataclasses.dataclass(frozen=True, eq=False)
class _LinearMap:
    """``w = M v`` for a fixed real matrix ``M`` of shape (rows, cols), applied in JAX.

    Stored as COO triplets sorted by row, plus a dense copy when that is cheaper to apply
    (see ``_DENSE_FILL_FACTOR``). Works for one unbatched ``v`` of shape (cols,); batching is
    left to ``jax.vmap``. Being linear in ``v`` it is trivially differentiable.
    """

    shape: tuple[int, int]
    rows: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    dense: np.ndarray | None

    @classmethod
    def from_scipy(cls, M) -> _LinearMap:
        M = sp.coo_array(M)
        M.sum_duplicates()  # also sorts by (row, col)
        shape = (int(M.shape[0]), int(M.shape[1]))
        rows, cols = _index_array(M.row), _index_array(M.col)
        vals = np.asarray(M.data, dtype=np.float64)
        entries = shape[0] * shape[1]
        dense = None
        if entries <= _DENSE_MAX_ENTRIES and (
            entries <= _DENSE_ALWAYS_ENTRIES or entries <= _DENSE_FILL_FACTOR * vals.size
        ):
            dense = M.toarray().astype(np.float64)
            dense.flags.writeable = False
        for a in (rows, cols, vals):
            a.flags.writeable = False
        return cls(shape, rows, cols, vals, dense)

    def __call__(self, v: jax.Array) -> jax.Array:
        """v: (cols,) -> (rows,), in v's dtype."""
        if self.dense is not None:
            return jnp.asarray(self.dense, v.dtype) @ v
        contrib = jnp.asarray(self.vals, v.dtype) * v[self.cols]
        return jax.ops.segment_sum(
            contrib, self.rows, num_segments=self.shape[0], indices_are_sorted=True
        )

    def to_scipy(self) -> sp.csr_array:
        return sp.csr_array((self.vals, (self.rows, self.cols)), shape=self.shape)


def _index_array(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    if a.size == 0 or a.max() < np.iinfo(np.int32).max:
        a = a.astype(np.int32)
    return a


def _frozen_index(a) -> np.ndarray:
    a = _index_array(a)
    a.flags.writeable = False
    return a


def _tensor_coo(tensor, n_rows: int, n_cols: int) -> sp.coo_array:
    """A CVXPY problem-data tensor (sparse, dense, or None) as COO with zeros removed."""
    if tensor is None:
        return sp.coo_array((n_rows, n_cols))
    T = sp.coo_array(tensor)
    if T.shape != (n_rows, n_cols):
        raise AssertionError(f"unexpected tensor shape {T.shape}, wanted {(n_rows, n_cols)}")
    T.sum_duplicates()
    T.eliminate_zeros()
    T.row = T.row.astype(np.int64)
    T.col = T.col.astype(np.int64)
    return T


def _probe_linear_map(f: Callable[[np.ndarray], np.ndarray], n_in: int, n_out: int) -> sp.csr_array:
    """The matrix M (n_out × n_in) of a linear black box ``f(u) = M u``.

    CVXPY's maps here are almost always *monomial* (each output is one input times a constant:
    slicing, reshaping, ±1, √2 scalings), which two probes identify: ``f(1)`` gives each row's
    coefficient c_i and ``f(1, 2, …, N)`` gives ``c_i (σ_i + 1)``, hence the input σ_i. The
    guess is checked on random inputs; if it fails we fall back to probing every unit vector.
    Either way the result is verified and a non-linear ``f`` raises.
    """
    rng = np.random.default_rng(0)

    def call(u):
        w = np.asarray(f(u), dtype=np.float64)
        if w.shape != (n_out,):
            raise AssertionError(f"probe returned shape {w.shape}, expected ({n_out},)")
        return w

    def matches(M, trials=2):
        for _ in range(trials):
            u = rng.standard_normal(n_in)
            want = call(u)
            got = M @ u
            scale = 1.0 + (abs(M) @ np.abs(u) if M.nnz else 0.0)
            if not np.all(np.abs(got - want) <= 1e-10 * scale):
                return False
        return True

    if n_out == 0 or n_in == 0:
        return sp.csr_array((n_out, n_in))

    if np.any(call(np.zeros(n_in)) != 0):
        raise RuntimeError("CVXPY's map is not linear (nonzero at zero); please report this")
    coef = call(np.ones(n_in))
    tagged = call(np.arange(1, n_in + 1, dtype=np.float64))
    nz = coef != 0
    ok = np.all(tagged[~nz] == 0)
    if ok:
        idx = np.rint(tagged[nz] / coef[nz]) - 1
        ok = bool(np.all((idx >= 0) & (idx < n_in)))
        ok = ok and np.allclose(tagged[nz], coef[nz] * (idx + 1), rtol=1e-12, atol=0)
    if ok:
        M = sp.csr_array(
            (coef[nz], (np.flatnonzero(nz), idx.astype(np.int64))), shape=(n_out, n_in)
        )
        if matches(M):
            return M

    rows, cols, vals = [], [], []
    e = np.zeros(n_in)
    for j in range(n_in):
        e[j] = 1.0
        w = call(e)
        e[j] = 0.0
        (r,) = np.nonzero(w)
        rows.append(r)
        cols.append(np.full(r.size, j))
        vals.append(w[r])
    M = sp.csr_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_out, n_in)
    )
    if not matches(M):
        raise RuntimeError("CVXPY's solution map is not linear; please report this problem")
    return M
