"""The cone of positive semidefinite matrices, in scaled-vectorized (svec) form (self-dual).

A symmetric k×k matrix ``X`` is stored as ``svec(X)`` ∈ R^{k(k+1)/2}: the lower triangle read
column by column, with the off-diagonal entries multiplied by √2. The √2 makes svec an
isometry, ``svec(X)·svec(Y) = tr(XY)``, so the Euclidean projection in svec coordinates is
the Frobenius projection of the matrix and the cone is self-dual for the plain dot product
(this is SCS's / CVXPY's convention).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ._base import Cone


@functools.lru_cache(maxsize=None)
def _svec_layout(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, is_offdiag) of the svec entries of a k×k matrix, in svec order."""
    rows, cols = [], []
    for j in range(k):
        for i in range(j, k):
            rows.append(i)
            cols.append(j)
    rows_a = np.asarray(rows, dtype=np.int32)
    cols_a = np.asarray(cols, dtype=np.int32)
    return rows_a, cols_a, rows_a != cols_a


def svec_order(n: int) -> int:
    """The order k of the matrix whose svec has n = k(k+1)/2 entries (ValueError otherwise)."""
    k = int(round((math.sqrt(8 * n + 1) - 1) / 2))
    if k * (k + 1) // 2 != n:
        raise ValueError(f"{n} is not a triangular number k(k+1)/2")
    return k


def _scale(k: int, dtype) -> jax.Array:
    # Built as a numpy array and cast to the input dtype so that float32 inputs stay float32
    # (a numpy float64 scalar would silently promote under jax_enable_x64).
    _, _, off = _svec_layout(k)
    return jnp.asarray(np.where(off, math.sqrt(2.0), 1.0), dtype=dtype)


def svec(X: jax.Array) -> jax.Array:
    """Scaled lower-triangle vectorization. X: (..., k, k) symmetric -> (..., k(k+1)/2).

    Only the lower triangle of ``X`` is read. Linear (so autodiff is exact).
    """
    k = X.shape[-1]
    rows, cols, _ = _svec_layout(k)
    return X[..., rows, cols] * _scale(k, X.dtype)


def smat(v: jax.Array) -> jax.Array:
    """Inverse of :func:`svec`. v: (..., k(k+1)/2) -> (..., k, k) symmetric."""
    k = svec_order(v.shape[-1])
    rows, cols, _ = _svec_layout(k)
    w = v / _scale(k, v.dtype)
    X = jnp.zeros(v.shape[:-1] + (k, k), v.dtype)
    return X.at[..., rows, cols].set(w).at[..., cols, rows].set(w)


def _divided_difference_relu(lam: jax.Array) -> jax.Array:
    """B_ij = (λi⁺ − λj⁺)/(λi − λj), the first divided difference of max(·, 0). (k,) -> (k, k).

    Written as ``(λi⁺ + λj⁺)/(|λi| + |λj|)``, which equals the divided difference whenever
    λi ≠ λj *and* is its limit 1[λ > 0] on ties with λ ≠ 0: if both are positive it is 1,
    if both are non-positive 0, and with opposite signs λi > 0 ≥ λj it is λi/(λi − λj). No
    subtraction of nearly equal numbers, so near-equal eigenvalues need no special casing.
    The only 0/0 is λi = λj = 0, where we use ½ (the symmetric choice, as for max(x, 0) at 0).
    """
    lp = jnp.maximum(lam, 0.0)
    la = jnp.abs(lam)
    num = lp[:, None] + lp[None, :]
    den = la[:, None] + la[None, :]
    nz = den > 0
    return jnp.where(nz, num / jnp.where(nz, den, 1.0), 0.5)


@jax.custom_jvp
def project_psd_matrix(X: jax.Array) -> jax.Array:
    """Frobenius projection of a symmetric matrix onto the PSD cone. X: (k, k) -> (k, k).

    ``X = U diag(λ) Uᵀ ⇒ Π(X) = U diag(max(λ, 0)) Uᵀ``.

    The derivative is a custom JVP (autodiff through ``eigh`` divides by λi − λj and is
    inf/NaN for repeated eigenvalues, e.g. at 0 or the identity). It is the Daleckii–Krein
    formula ``DΠ(X)[H] = U (B ∘ (Uᵀ H U)) Uᵀ`` with B the divided differences of max(·, 0)
    (see :func:`_divided_difference_relu`). B is constant on blocks of equal eigenvalues, so
    the result does not depend on which eigenbasis ``eigh`` picked inside such a block.
    """
    lam, U = jnp.linalg.eigh(X)
    return (U * jnp.maximum(lam, 0.0)) @ U.T


@project_psd_matrix.defjvp
def _project_psd_matrix_jvp(primals, tangents):
    (X,), (dX,) = primals, tangents
    lam, U = jnp.linalg.eigh(X)
    out = (U * jnp.maximum(lam, 0.0)) @ U.T
    B = _divided_difference_relu(lam)
    # Linear in dX with primal-only coefficients, so JAX can transpose it for reverse mode.
    dout = U @ (B * (U.T @ dX @ U)) @ U.T
    return out, dout


@jax.jit
def project_psd(v: jax.Array) -> jax.Array:
    """Projection onto the PSD cone in svec form. v: (k(k+1)/2,) -> (k(k+1)/2,)."""
    return svec(project_psd_matrix(smat(v)))


class PSDCone(Cone):
    """``K = K* = {svec(X) : X ⪰ 0}`` for k×k matrices; ``dim = k(k+1)/2``.

    Args:
      order: the matrix order k.
    """

    dual_is_self = True

    def __init__(self, order: int):
        if order < 1:
            raise ValueError(f"PSD cone needs order >= 1, got {order}")
        self.order = int(order)
        self.dim = self.order * (self.order + 1) // 2

    def project(self, v: jax.Array) -> jax.Array:
        return project_psd(v)

    def __repr__(self) -> str:
        return f"PSDCone(order={self.order})"
