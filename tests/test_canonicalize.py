"""Tests of cvxjax._canonicalize: CVXPY problem -> canonical program (data map + recovery).

For each problem family we check that
  (1) ``data(θ)`` densified is exactly what CVXPY hands SCS (``get_problem_data``),
  (2) solving the canonical program ourselves (Clarabel, and SCS for some) and mapping the
      solution back with ``recover`` gives the variable and dual values CVXPY reports after
      its own solve, and the objective value,
plus the validation errors, jit/vmap/grad of ``data``/``recover`` and dtype preservation.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import clarabel
import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
import scs
from helpers import central_fd_jacobian

from cvxjax._canonicalize import _probe_linear_map, canonicalize
from cvxjax._program import ConeDims, ProgramData, ProgramStructure, dense_A, dense_P

TOL = dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10, tol_ktratio=1e-9)


# ---------------------------------------------------------------------------------------------
# Problem families. Each has a unique primal and dual solution for the random parameter values.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    problem: cp.Problem
    parameters: list
    outputs: list
    sample: Callable[[np.random.Generator], list]  # random parameter values


def sym(M):
    return (M + M.T) / 2


def case_qp():
    n = 4
    rng = np.random.default_rng(1)
    Q = rng.standard_normal((n, n))
    Q = Q @ Q.T + np.eye(n)
    G = rng.standard_normal((3, n))
    G2 = rng.standard_normal((2, n))
    x = cp.Variable(n, name="x")
    q, A, b = cp.Parameter(n, name="q"), cp.Parameter((2, n), name="A"), cp.Parameter(2, name="b")
    h, g = cp.Parameter(3, name="h"), cp.Parameter(2, name="g")
    eq = A @ x == b
    le = G @ x <= h
    ge = G2 @ x >= g
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, Q) + q @ x), [eq, le, ge])

    def sample(rng):
        # Feasible by construction: x0 satisfies every constraint.
        x0 = rng.standard_normal(n)
        Av = rng.standard_normal((2, n))
        # The unconstrained minimizer x0 + Gᵀ1 − G2ᵀ1 violates both inequality blocks, so some
        # of each are active.
        qv = -Q @ (x0 + G.T @ np.ones(3) - G2.T @ np.ones(2))
        return [qv, Av, Av @ x0, G @ x0 + 0.1 * rng.random(3), G2 @ x0 - 0.1 * rng.random(2)]

    outs = [x, eq.dual_variables[0], le.dual_variables[0], ge.dual_variables[0]]
    return Case(prob, [q, A, b, h, g], outs, sample)


def case_least_squares():
    n = 4
    x = cp.Variable(n, name="x")
    z = cp.Variable(2, nonneg=True, name="z")  # attribute variable (bound -> constraint)
    L, yv = cp.Parameter((6, n), name="L"), cp.Parameter(6, name="y")
    alpha = cp.Parameter(nonneg=True, name="alpha")
    zc = cp.Parameter(2, name="zc")
    total = cp.sum(x) == 1
    low = x >= -0.2
    prob = cp.Problem(
        cp.Minimize(
            cp.sum_squares(L @ x - yv) + alpha * cp.sum_squares(x) + cp.sum_squares(z - zc)
        ),
        [total, low],
    )

    def sample(rng):
        Lv, yv = rng.standard_normal((6, n)), 2 * rng.standard_normal(6)
        return [Lv, yv, 0.1 + rng.random(), np.array([1.0, -1.0])]  # zc[1] < 0: z[1] ≥ 0 active

    outs = [x, z, total.dual_variables[0], low.dual_variables[0]]
    return Case(prob, [L, yv, alpha, zc], outs, sample)


def case_lp():
    n = 5
    rng = np.random.default_rng(2)
    G = rng.standard_normal((4, n))
    x = cp.Variable(n, name="x")
    c, h = cp.Parameter(n, name="c"), cp.Parameter(4, name="h")
    box_hi, box_lo = x <= 1, -1 <= x
    poly = G @ x <= h
    prob = cp.Problem(cp.Minimize(c @ x), [box_hi, box_lo, poly])

    def sample(rng):
        return [rng.standard_normal(n), 0.5 + rng.random(4)]

    outs = [x, box_hi.dual_variables[0], box_lo.dual_variables[0], poly.dual_variables[0]]
    return Case(prob, [c, h], outs, sample)


def case_socp():
    n = 3
    rng = np.random.default_rng(3)
    A = rng.standard_normal((5, n))
    x, t = cp.Variable(n, name="x"), cp.Variable(name="t")
    c, b, x0 = cp.Parameter(n, name="c"), cp.Parameter(5, name="b"), cp.Parameter(n, name="x0")
    r = cp.Parameter(nonneg=True, name="r")
    soc = cp.SOC(t, A @ x - b)
    ball = cp.norm(x - x0) <= r
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x) + c @ x + t), [soc, ball])

    def sample(rng):
        c, b, x0 = 2 * rng.standard_normal(n), rng.standard_normal(5), 0.1 * rng.standard_normal(n)
        return [c, b, x0, 0.3 + 0.2 * rng.random()]

    outs = [x, t, soc.dual_variables[0], soc.dual_variables[1], ball.dual_variables[0]]
    return Case(prob, [c, b, x0, r], outs, sample)


def case_sdp():
    X = cp.Variable((3, 3), symmetric=True, name="X")
    Y = cp.Variable((2, 2), PSD=True, name="Y")
    S = cp.Parameter((3, 3), symmetric=True, name="S")
    c0 = cp.Parameter(name="c0")
    psd = X >> 0
    tr = cp.trace(X) == 1
    off = X[0, 1] >= c0
    corner = Y[0, 0] >= 1
    prob = cp.Problem(
        cp.Minimize(cp.trace(S @ X) + 0.5 * cp.sum_squares(X) + cp.trace(Y) - c0 * Y[0, 1]),
        [psd, tr, off, corner],
    )

    def sample(rng):
        M = rng.standard_normal((3, 3))
        return [2 * sym(M), -0.05 - 0.1 * rng.random()]

    outs = [X, Y] + [con.dual_variables[0] for con in (psd, tr, off, corner)]
    return Case(prob, [S, c0], outs, sample)


def case_exp():
    p = cp.Variable(4, name="p")
    W = cp.Variable((2, 3), name="W")
    a, u = cp.Parameter(4, name="a"), cp.Parameter(4, name="u")
    W0 = cp.Parameter((2, 3), name="W0")
    simplex = cp.sum(p) == 1
    cap = p <= u
    expc = cp.constraints.ExpCone(W[:, 0], W[:, 1], W[:, 2])
    prob = cp.Problem(
        cp.Maximize(cp.sum(cp.entr(p)) + a @ p - cp.sum_squares(W - W0)),
        [simplex, cap, expc],
    )

    def sample(rng):
        W0v = rng.standard_normal((2, 3))
        W0v[:, 2] = -np.abs(W0v[:, 2])  # z < 0: outside the cone, so the cone is active
        return [rng.standard_normal(4), np.array([0.2, 0.5, 0.5, 0.5]) + 0.05 * rng.random(4), W0v]

    outs = [p, W, simplex.dual_variables[0], cap.dual_variables[0]] + list(expc.dual_variables)
    return Case(prob, [a, u, W0], outs, sample)


def case_pow():
    w = cp.Variable(3, name="w")
    v = cp.Variable(name="v")
    w0 = cp.Parameter(3, name="w0")
    pc = cp.constraints.PowCone3D(w[0], w[1], w[2], 0.3)
    pw = cp.power(v, 1.5) <= w[0] + 1  # power atom -> cone constraints
    prob = cp.Problem(cp.Minimize(cp.sum_squares(w - w0) - v), [pc, pw])

    def sample(rng):
        return [np.array([0.3, 0.4, 1.5]) + 0.1 * rng.standard_normal(3)]

    outs = [w, v, pw.dual_variables[0]] + list(pc.dual_variables)
    return Case(prob, [w0], outs, sample)


def case_mixed():
    x = cp.Variable(3, name="x")
    X = cp.Variable((2, 2), symmetric=True, name="X")
    z0 = cp.Variable(0, name="z0")  # zero-size pieces
    p0 = cp.Parameter(0, name="p0")
    a = cp.Parameter(3, name="a")
    B = cp.Parameter((2, 2), name="B")
    r = cp.Parameter(pos=True, name="r")
    ball = cp.norm(x, 2) <= r
    psd = X >> 0
    link = X[0, 0] + X[1, 1] >= x[0]
    pc = cp.constraints.PowCone3D(x[1] + 1, x[2] + 1, x[0], 0.4)
    zs = z0 >= p0
    prob = cp.Problem(
        cp.Maximize(
            -cp.sum_squares(x - a) + cp.sum(cp.entr(x + 1)) - cp.sum_squares(X - B) + cp.sum(z0)
        ),
        [ball, psd, link, pc, zs, cp.sum(x) <= 1],
    )

    def sample(rng):
        # Chosen so that the ball, the power cone, the PSD cone and `link` are all active.
        # B has eigenvalues (0.2, −1.5): X is its rank-one PSD projection, lifted by `link`.
        a = np.array([3.0, -2.0, -2.0]) + 0.1 * rng.standard_normal(3)
        th = rng.uniform(0, np.pi)
        R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        B = R @ np.diag([0.2, -1.5]) @ R.T
        return [a, B, 0.9 + 0.1 * rng.random(), np.zeros(0)]

    outs = [x, X, z0] + [con.dual_variables[0] for con in (ball, psd, link, zs)]
    outs += list(pc.dual_variables)
    return Case(prob, [a, B, r, p0], outs, sample)


CASES = {
    "qp": case_qp,
    "least_squares": case_least_squares,
    "lp": case_lp,
    "socp": case_socp,
    "sdp": case_sdp,
    "exp": case_exp,
    "pow": case_pow,
    "mixed": case_mixed,
}


@pytest.fixture(scope="module", params=list(CASES))
def compiled(request):
    case = CASES[request.param]()
    return request.param, case, canonicalize(case.problem, case.parameters, case.outputs)


# ---------------------------------------------------------------------------------------------
# Solving the canonical program directly.
# ---------------------------------------------------------------------------------------------


def to_scipy(structure: ProgramStructure, data: ProgramData):
    n, m = structure.n, structure.m
    P = sp.csc_array((np.asarray(data.P), (structure.P_rows, structure.P_cols)), shape=(n, n))
    A = sp.csc_array((np.asarray(data.A), (structure.A_rows, structure.A_cols)), shape=(m, n))
    return P, np.asarray(data.q), A, np.asarray(data.b)


def clarabel_psd_permutation(cones: ConeDims) -> np.ndarray:
    """perm with ``rows_clarabel = rows_ours[perm]``.

    Ours (SCS): lower triangle, column-major; Clarabel: upper triangle, column-major. Both scale
    off-diagonals by √2, so the PSD blocks only need their rows reordered: Clarabel's (r, c),
    r ≤ c, is our lower entry (c, r).
    """
    perm = np.arange(cones.rows)
    start = cones.zero + cones.nonneg + sum(cones.soc)
    for k in cones.psd:
        block = []
        for c in range(k):
            for r in range(c + 1):
                # our index of lower entry (i, j) = (c, r), column-major over the lower triangle
                block.append(r * k - r * (r - 1) // 2 + (c - r))
        perm[start : start + len(block)] = start + np.array(block)
        start += len(block)
    return perm


def solve_clarabel(structure, data):
    P, q, A, b = to_scipy(structure, data)
    cones = structure.cones
    perm = clarabel_psd_permutation(cones)
    K = []
    if cones.zero:
        K.append(clarabel.ZeroConeT(cones.zero))
    if cones.nonneg:
        K.append(clarabel.NonnegativeConeT(cones.nonneg))
    K += [clarabel.SecondOrderConeT(k) for k in cones.soc]
    K += [clarabel.PSDTriangleConeT(k) for k in cones.psd]
    K += [clarabel.ExponentialConeT() for _ in range(cones.exp)]
    K += [clarabel.PowerConeT(a) for a in cones.pow]
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    for key, val in TOL.items():
        setattr(settings, key, val)
    sol = clarabel.DefaultSolver(
        sp.triu(P, format="csc"), q, sp.csc_array(A[perm]), b[perm], K, settings
    ).solve()
    assert str(sol.status) == "Solved", sol.status
    y = np.empty(structure.m)
    y[perm] = np.asarray(sol.z)
    return np.asarray(sol.x), y


def solve_scs(structure, data):
    P, q, A, b = to_scipy(structure, data)
    c = structure.cones
    cone = dict(z=c.zero, l=c.nonneg, q=list(c.soc), s=list(c.psd), ep=c.exp, p=list(c.pow))
    solver = scs.SCS(
        dict(P=sp.triu(P, format="csc"), A=A, b=b, c=q),
        cone,
        eps_abs=1e-10,
        eps_rel=1e-10,
        max_iters=200_000,
        verbose=False,
    )
    sol = solver.solve()
    assert sol["info"]["status_val"] == 1, sol["info"]["status"]
    return sol["x"], sol["y"]


def cvxpy_value(obj, shape):
    v = obj.value
    if sp.issparse(v):
        v = v.toarray()
    return np.reshape(np.asarray(v, dtype=float), shape)


def assert_close(got, want, tol=2e-5, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = 1.0 + (np.abs(want).max() if want.size else 0.0)
    err = np.abs(got - want).max() if want.size else 0.0
    assert err <= tol * scale, f"{what}: max error {err:.2e}\ngot  {got}\nwant {want}"


# ---------------------------------------------------------------------------------------------
# (1) data(θ) == what CVXPY hands SCS.
# ---------------------------------------------------------------------------------------------


def test_data_matches_cvxpy_scs_data(compiled):
    name, case, cpb = compiled
    rng = np.random.default_rng(10)
    for _ in range(2):
        values = case.sample(rng)
        for p, v in zip(case.parameters, values):
            p.value = v
        ref, _, _ = case.problem.get_problem_data(cp.SCS)
        d = cpb.data(*values)
        s = cpb.structure
        assert s.cones == ConeDims(
            zero=ref["dims"].zero,
            nonneg=ref["dims"].nonneg,
            soc=tuple(ref["dims"].soc),
            psd=tuple(ref["dims"].psd),
            exp=ref["dims"].exp,
            pow=tuple(ref["dims"].p3d),
        )
        P_ref = ref["P"].toarray() if "P" in ref else np.zeros((s.n, s.n))
        np.testing.assert_allclose(np.asarray(dense_P(s, d)), P_ref, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(
            np.asarray(dense_A(s, d)), ref["A"].toarray(), atol=1e-12, err_msg=name
        )
        np.testing.assert_allclose(np.asarray(d.q), ref["c"], atol=1e-12, err_msg=name)
        np.testing.assert_allclose(np.asarray(d.b), ref["b"], atol=1e-12, err_msg=name)
        # P's pattern is the full symmetric one.
        pattern = set(zip(s.P_rows.tolist(), s.P_cols.tolist()))
        assert pattern == {(j, i) for i, j in pattern}


# ---------------------------------------------------------------------------------------------
# (2) recover(solve(canonical data)) == CVXPY's own solution.
# ---------------------------------------------------------------------------------------------


def test_recover_matches_cvxpy_solution(compiled):
    name, case, cpb = compiled
    rng = np.random.default_rng(20)
    values = case.sample(rng)
    for p, v in zip(case.parameters, values):
        p.value = v
    case.problem.solve(solver=cp.CLARABEL, **TOL)
    assert case.problem.status == cp.OPTIMAL

    d = cpb.data(*values)
    x, y = solve_clarabel(cpb.structure, d)
    got = cpb.recover(x, y)
    assert len(got) == len(case.outputs)
    for o, g, shape in zip(case.outputs, got, cpb.output_shapes):
        assert g.shape == tuple(o.shape)
        assert_close(g, cvxpy_value(o, shape), what=f"{name}: {o}")

    # The objective value, with the offset and the sign of a maximization.
    P = dense_P(cpb.structure, d)
    val = 0.5 * x @ np.asarray(P) @ x + np.asarray(d.q) @ x + cpb.objective_offset(*values)
    assert_close(cpb.objective_sign * val, case.problem.value, tol=1e-6, what=f"{name}: value")


@pytest.mark.parametrize("name", ["qp", "socp", "sdp", "exp"])
def test_recover_from_scs_solution(name):
    # SCS reads our data as is (no PSD reordering): checks the conventions end to end.
    case = CASES[name]()
    cpb = canonicalize(case.problem, case.parameters, case.outputs)
    values = case.sample(np.random.default_rng(30))
    for p, v in zip(case.parameters, values):
        p.value = v
    case.problem.solve(solver=cp.CLARABEL, **TOL)
    x, y = solve_scs(cpb.structure, cpb.data(*values))
    for o, g, shape in zip(case.outputs, cpb.recover(x, y), cpb.output_shapes):
        assert_close(g, cvxpy_value(o, shape), tol=1e-4, what=f"{name}: {o}")


def test_psd_rows_are_lower_svec_of_the_matrix():
    # s = b − A x on X's PSD block is svec(X): lower triangle, column-major, off-diagonals ×√2.
    case = case_sdp()
    X = case.outputs[0]
    cpb = canonicalize(case.problem, case.parameters, [X])
    d = cpb.data(*case.sample(np.random.default_rng(40)))
    x, y = solve_clarabel(cpb.structure, d)
    (Xv,) = cpb.recover(x, y)
    s = np.asarray(d.b) - np.asarray(dense_A(cpb.structure, d)) @ x
    c = cpb.structure.cones
    assert c.psd == (2, 3)  # Y's (from its PSD attribute), then X's
    start = c.zero + c.nonneg + sum(c.soc) + 3
    svec = [Xv[i, j] * (1.0 if i == j else np.sqrt(2.0)) for j in range(3) for i in range(j, 3)]
    np.testing.assert_allclose(s[start : start + 6], svec, atol=1e-7)


def test_exp_cone_rows_in_cvxpy_order():
    # ExpCone(x, y, z) occupies rows (x, y, z): y·exp(x/y) ≤ z.
    xv, yv, zv = cp.Variable(), cp.Variable(), cp.Variable()
    a = cp.Parameter(3)
    prob = cp.Problem(
        cp.Minimize(cp.sum_squares(cp.hstack([xv, yv, zv]) - a)),
        [cp.constraints.ExpCone(xv, yv, zv)],
    )
    cpb = canonicalize(prob, [a], [xv, yv, zv])
    d = cpb.data(np.array([1.0, 0.5, 0.2]))
    x, y = solve_clarabel(cpb.structure, d)
    s = np.asarray(d.b) - np.asarray(dense_A(cpb.structure, d)) @ x
    c = cpb.structure.cones
    assert c.exp == 1
    rows = s[c.rows - 3 :]
    recovered = np.concatenate([np.ravel(v) for v in cpb.recover(x, y)])
    np.testing.assert_allclose(rows, recovered, atol=1e-7)
    assert rows[1] > 0 and rows[1] * np.exp(rows[0] / rows[1]) <= rows[2] + 1e-6


# ---------------------------------------------------------------------------------------------
# JAX transformations and dtypes.
# ---------------------------------------------------------------------------------------------


def test_data_and_recover_under_jit_vmap_grad():
    case = case_qp()
    cpb = canonicalize(case.problem, case.parameters, case.outputs)
    rng = np.random.default_rng(50)
    batch = [case.sample(rng) for _ in range(3)]
    stacked = [np.stack(v) for v in zip(*batch)]

    vmapped = jax.jit(jax.vmap(cpb.data))(*stacked)
    for k, values in enumerate(batch):
        single = cpb.data(*values)
        for got, want in zip(vmapped, single):
            np.testing.assert_allclose(got[k], want, rtol=1e-13, atol=1e-13)
    assert vmapped.A.shape == (3, cpb.structure.A_rows.size)

    xs = rng.standard_normal((3, cpb.structure.n))
    ys = rng.standard_normal((3, cpb.structure.m))
    rec = jax.jit(jax.vmap(cpb.recover))(xs, ys)
    for k in range(3):
        for got, want in zip(rec, cpb.recover(xs[k], ys[k])):
            np.testing.assert_allclose(got[k], want, rtol=1e-13, atol=1e-13)

    # Affine map: the JAX Jacobian equals central differences.
    values = batch[0]
    fun = lambda A: jnp.concatenate(cpb.data(values[0], A, *values[2:]))
    jac = jax.jacfwd(fun)(jnp.asarray(values[1]))
    np.testing.assert_allclose(jac, central_fd_jacobian(fun, values[1]), atol=1e-8)
    g = jax.grad(lambda q: jnp.sum(cpb.data(q, *values[1:]).q ** 2))(jnp.asarray(values[0]))
    np.testing.assert_allclose(g, 2 * np.asarray(values[0]), atol=1e-12)


def test_sparse_path_matches_dense_path():
    # A problem large enough for the sparse (segment_sum) application of the data map.
    n, k = 60, 40
    x = cp.Variable(n)
    A, b = cp.Parameter((k, n)), cp.Parameter(k)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x)), [A[:, :5] @ x[:5] <= b, x >= -1])
    cpb = canonicalize(prob, [A, b], [x])
    assert cpb._data_map.dense is None
    rng = np.random.default_rng(60)
    Av, bv = rng.standard_normal((k, n)), rng.standard_normal(k)
    A.value, b.value = Av, bv
    ref, _, _ = prob.get_problem_data(cp.SCS)
    d = jax.jit(cpb.data)(Av, bv)
    A_dense = np.asarray(dense_A(cpb.structure, d))
    np.testing.assert_allclose(A_dense, ref["A"].toarray(), atol=1e-12)
    np.testing.assert_allclose(np.asarray(d.b), ref["b"], atol=1e-12)


def test_float32_in_float32_out():
    case = case_sdp()
    cpb = canonicalize(case.problem, case.parameters, case.outputs)
    values = [np.asarray(v, np.float32) for v in case.sample(np.random.default_rng(70))]
    d = cpb.data(*values)
    assert all(leaf.dtype == jnp.float32 for leaf in d)
    assert cpb.objective_offset(*values).dtype == jnp.float32
    out = cpb.recover(np.zeros(cpb.structure.n, np.float32), np.ones(cpb.structure.m, np.float32))
    assert all(o.dtype == jnp.float32 for o in out)
    d64 = cpb.data(*[v.astype(np.float64) for v in values])
    for a, b in zip(d, d64):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_symmetric_parameter_is_symmetrized():
    case = case_sdp()
    cpb = canonicalize(case.problem, case.parameters, [])
    S, c0 = case.sample(np.random.default_rng(80))
    skew = np.array([[0.0, 1.0, 2.0], [-1.0, 0.0, 3.0], [-2.0, -3.0, 0.0]])
    for a, b in zip(cpb.data(S + skew, c0), cpb.data(S, c0)):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_problem_without_parameters():
    x = cp.Variable(2)
    con = x >= 1
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x)), [con])
    cpb = canonicalize(prob, [], [x, con.dual_variables[0]])
    d = cpb.data()
    xs, ys = solve_clarabel(cpb.structure, d)
    xv, dual = cpb.recover(xs, ys)
    np.testing.assert_allclose(xv, [1.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(dual, [2.0, 2.0], atol=1e-6)


def test_probe_linear_map_general_and_nonlinear():
    # Non-monomial rows take the unit-vector fallback; a non-linear map is refused.
    rng = np.random.default_rng(90)
    M = rng.standard_normal((5, 7)) * (rng.random((5, 7)) < 0.5)
    np.testing.assert_allclose(_probe_linear_map(lambda u: M @ u, 7, 5).toarray(), M, atol=1e-14)
    P = np.eye(7)[rng.permutation(7)[:4]] * np.array([[1.0], [-2.0], [np.sqrt(2)], [0.5]])
    np.testing.assert_allclose(_probe_linear_map(lambda u: P @ u, 7, 4).toarray(), P, atol=1e-14)
    with pytest.raises(RuntimeError, match="not linear"):
        _probe_linear_map(lambda u: np.abs(u[:3]), 7, 3)


# ---------------------------------------------------------------------------------------------
# (3) Validation errors.
# ---------------------------------------------------------------------------------------------


def test_error_not_dcp():
    x = cp.Variable(2)
    with pytest.raises(ValueError, match="not DCP"):
        canonicalize(cp.Problem(cp.Maximize(cp.sum_squares(x))), [], [x])


def test_error_not_dpp():
    x = cp.Variable(2)
    p1, p2 = cp.Parameter(name="p1"), cp.Parameter(name="p2")
    prob = cp.Problem(cp.Minimize(p1 * p2 * cp.sum(x)), [x >= 0, x <= 1])
    with pytest.raises(ValueError, match=r"not DPP.*https://www\.cvxpy\.org/tutorial/dpp/"):
        canonicalize(prob, [p1, p2], [x])


def test_error_parameters_mismatch():
    x = cp.Variable(2)
    a, b, other = cp.Parameter(2, name="a"), cp.Parameter(2, name="b"), cp.Parameter(name="other")
    prob = cp.Problem(cp.Minimize(a @ x), [x >= b, x <= 1])
    with pytest.raises(ValueError, match=r"Missing: b\."):
        canonicalize(prob, [a], [x])
    with pytest.raises(ValueError, match=r"Not in the problem: other\."):
        canonicalize(prob, [a, b, other], [x])
    with pytest.raises(ValueError, match="more than once"):
        canonicalize(prob, [a, b, a], [x])
    with pytest.raises(TypeError):
        canonicalize(prob, [a, b, x], [x])


def test_error_bad_output():
    x, stranger = cp.Variable(2), cp.Variable(2, name="stranger")
    other_con = stranger >= 0
    prob = cp.Problem(cp.Minimize(cp.sum(x)), [x >= 0])
    for bad in (stranger, other_con.dual_variables[0], 3.0):
        with pytest.raises(ValueError, match="neither a variable of the problem nor a dual"):
            canonicalize(prob, [], [bad])


def test_error_wrong_parameter_values():
    case = case_lp()
    cpb = canonicalize(case.problem, case.parameters, [])
    c, h = case.sample(np.random.default_rng(0))
    with pytest.raises(ValueError, match="expected 2 parameter values"):
        cpb.data(c)
    with pytest.raises(ValueError, match="has shape"):
        cpb.data(c[None], h)
    with pytest.raises(ValueError, match="expected x of shape"):
        cpb.recover(np.zeros(3), np.zeros(cpb.structure.m))
