"""Loader for the Maros–Meszaros QPs shipped in ``tests/data/maros_meszaros/``.

It lives in ``tests/`` (not ``benchmarks/``) so that tests can ``import maros_meszaros`` with
``tests/`` on ``sys.path`` (pytest's rootdir-relative imports put it there), and
``benchmarks/maros_meszaros.py`` imports it by adding ``tests/`` to ``sys.path``.

Each ``.mat`` file holds ``P`` (sparse, full symmetric), ``q``, ``r``, ``A``, ``l``, ``u``,
``n``, ``m`` for

    minimize ½ xᵀPx + qᵀx + r   subject to   l ≤ A x ≤ u,

where the last ``n`` rows of ``A`` are the identity (the variable bounds) and ``±1e20`` stands
for an infinite bound (|bound| ≥ 9e19 is taken as infinite, see :data:`INF`). :func:`load` splits those rows off as ``lb``/``ub``.
"""

from __future__ import annotations

import os
from typing import Dict, List, Tuple

import numpy as np
import scipy.io as sio
import scipy.sparse as sp

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "maros_meszaros")

INF = 9e19
"""A bound of magnitude at least this is infinite.

The files write an infinite bound as ±1e20, but some one-sided rows were converted from a
range, so their infinite side is ``u - 1e20`` (e.g. ``-1e20 + 16384``, which is just above
-1e20): PRIMALC1, PRIMALC2, QISRAEL and QPCBOEI2 have such bounds. A cutoff at exactly 1e20
would keep them as finite bounds of about -1e20, which makes those problems badly scaled
(Clarabel reports PRIMALC1 unbounded; the JAX solver hits its iteration limit)."""


def names() -> List[str]:
    """The problems shipped, sorted."""
    return sorted(f[:-4] for f in os.listdir(DATA_DIR) if f.endswith(".mat"))


def _finite(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=float).copy()
    v[v >= INF] = np.inf
    v[v <= -INF] = -np.inf
    return v


def load(name: str) -> Dict[str, object]:
    """The data of problem ``name``.

    Returns a dict with ``P`` (``scipy.sparse.csc_matrix``, n×n, full symmetric), ``q`` (n,),
    ``r`` (float), ``A`` (``csc_matrix``, m×n, the general constraints without the bound rows),
    ``l``, ``u`` (m,), ``lb``, ``ub`` (n,), ``n`` and ``m``. Infinite bounds are ``±inf``.
    """
    d = sio.loadmat(os.path.join(DATA_DIR, name + ".mat"))
    n = int(np.asarray(d["n"]).ravel()[0])
    P = sp.csc_matrix(d["P"], dtype=float)
    A_all = sp.csr_matrix(d["A"], dtype=float)
    l_all = _finite(np.asarray(d["l"]).ravel())
    u_all = _finite(np.asarray(d["u"]).ravel())
    m_all = A_all.shape[0]
    bounds = A_all[m_all - n :]
    if (abs(bounds - sp.eye(n, format="csr"))).max() != 0:
        raise ValueError(f"{name}: the last n rows of A are not the identity")
    m = m_all - n
    return dict(
        P=P,
        q=np.asarray(d["q"], dtype=float).ravel(),
        r=float(np.asarray(d["r"]).ravel()[0]),
        A=sp.csc_matrix(A_all[:m]),
        l=l_all[:m],
        u=u_all[:m],
        lb=l_all[m:],
        ub=u_all[m:],
        n=n,
        m=m,
    )


def cvxpy_problem(name: str) -> Tuple[object, object, object]:
    """Problem ``name`` as a DPP CVXPY problem with the linear cost a parameter.

    Returns ``(problem, q, x)``: ``q`` is a ``cp.Parameter(n)`` whose value is the data's ``q``,
    ``x`` the variable. Rows with ``l == u`` become equalities, the others one inequality per
    finite side; only finite variable bounds are kept. The quadratic term is
    ``0.5 * cp.quad_form(x, P, assume_PSD=True)`` (P is a constant, so the problem is DPP); it
    canonicalizes as fast as ``0.5 * cp.sum_squares(L @ x)`` here (milliseconds, checked on
    DUAL1 and QSHARE2B) and needs no factorization of P.
    """
    import cvxpy as cp

    d = load(name)
    n = d["n"]
    A, l, u, lb, ub = d["A"], d["l"], d["u"], d["lb"], d["ub"]
    x = cp.Variable(n, name="x")
    q = cp.Parameter(n, name="q", value=d["q"])
    objective = 0.5 * cp.quad_form(x, d["P"], assume_PSD=True) + q @ x + d["r"]
    constraints = []
    eq = l == u
    if eq.any():
        constraints.append(A[eq] @ x == u[eq])
    lo = ~eq & np.isfinite(l)
    if lo.any():
        constraints.append(A[lo] @ x >= l[lo])
    hi = ~eq & np.isfinite(u)
    if hi.any():
        constraints.append(A[hi] @ x <= u[hi])
    beq = lb == ub
    if beq.any():
        idx = np.flatnonzero(beq)
        constraints.append(x[idx] == ub[idx])
    blo = ~beq & np.isfinite(lb)
    if blo.any():
        idx = np.flatnonzero(blo)
        constraints.append(x[idx] >= lb[idx])
    bhi = ~beq & np.isfinite(ub)
    if bhi.any():
        idx = np.flatnonzero(bhi)
        constraints.append(x[idx] <= ub[idx])
    problem = cp.Problem(cp.Minimize(objective), constraints)
    assert problem.is_dpp()
    return problem, q, x
