"""Tests of the cone projections (cvxjax._cones): values, optimality, derivatives, transforms.

Reference projections come from CVXPY + Clarabel solving ``min ‖p − v‖² s.t. p ∈ K`` (one
parametrized problem per cone, re-solved for every point). Derivatives are checked against
float64 central differences at generic points and for finiteness at the non-smooth ones.
"""

from __future__ import annotations

import functools
import math
import warnings

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvxjax._cones import (
    Cone,
    ExponentialCone,
    NonnegativeCone,
    PowerCone,
    ProductCone,
    PSDCone,
    SecondOrderCone,
    ZeroCone,
    smat,
    svec,
)
from cvxjax._cones.power import project_pow
from cvxjax._program import ConeDims

CLARABEL_OPTS = dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10, max_iter=500)

# --------------------------------------------------------------------------------------------
# Cone cases: constructor, reference projections (CVXPY), membership tests, test points.
# --------------------------------------------------------------------------------------------


def _soc_in(v, tol):
    return np.linalg.norm(v[1:]) <= v[0] + tol


def _psd_in(v, tol):
    return np.linalg.eigvalsh(np.asarray(smat(jnp.asarray(v)))).min() >= -tol


def _exp_in(v, tol):
    r, s, t = v
    if s >= -tol and r <= tol and t >= -tol:  # near the s = 0 face {r ≤ 0, s = 0, t ≥ 0}
        return True
    if s <= 0:
        return False
    if t > 0:  # log form, so huge/small exponentials are harmless
        return r <= s * math.log(t / s) + tol * (1 + abs(r))
    return r / s < -700 and t >= -tol  # s·e^{r/s} underflows to 0


def _exp_dual_in(v, tol):
    u, w_, w = v
    return _exp_in(np.array([-w_, -u, math.e * w]), tol)


def _pow_in(alpha):
    def member(v, tol):
        x, y, z = v
        if x < -tol or y < -tol:
            return False
        return max(x, 0.0) ** alpha * max(y, 0.0) ** (1 - alpha) >= abs(z) - tol

    return member


def _pow_dual_in(alpha):
    def member(v, tol):
        return _pow_in(alpha)(np.array([v[0] / alpha, v[1] / (1 - alpha), v[2]]), tol)

    return member


def _solve(prob):
    # Degenerate projections (answer on a low-dimensional face) can end "optimal_inaccurate"
    # at these tight tolerances; the comparisons below decide whether that is good enough.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Solution may be inaccurate")
        prob.solve(solver=cp.CLARABEL, **CLARABEL_OPTS)
    assert prob.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE), prob.status


@functools.lru_cache(maxsize=None)
def _vector_projector(kind: str, dim: int, alpha: float = 0.0, dual: bool = False):
    """A function v -> argmin_{p ∈ K (or K*)} ‖p − v‖² solved by CVXPY/Clarabel."""
    p = cp.Variable(dim)
    v = cp.Parameter(dim)
    if kind == "nonneg":
        cons = [p >= 0]
    elif kind == "soc":
        cons = [p[0] >= 0] if dim == 1 else [cp.SOC(p[0], p[1:])]
    elif kind == "exp" and not dual:
        cons = [cp.ExpCone(p[0], p[1], p[2])]
    elif kind == "exp":
        # (u, v, w) ∈ K*_exp  ⇔  (−v, −u, e·w) ∈ K_exp
        cons = [cp.ExpCone(-p[1], -p[0], math.e * p[2])]
    elif kind == "pow" and not dual:
        cons = [cp.PowCone3D(p[0], p[1], p[2], alpha)]
    elif kind == "pow":
        # (u, v, w) ∈ K*_α  ⇔  (u/α, v/(1−α), w) ∈ K_α
        cons = [cp.PowCone3D(p[0] / alpha, p[1] / (1 - alpha), p[2], alpha)]
    else:
        raise ValueError(kind)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(p - v)), cons)

    def project(x):
        v.value = np.asarray(x, dtype=float)
        _solve(prob)
        return p.value

    return project


@functools.lru_cache(maxsize=None)
def _psd_projector(k: int):
    X = cp.Variable((k, k), symmetric=True)
    V = cp.Parameter((k, k), symmetric=True)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(X - V)), [X >> 0])

    def project(x):
        V.value = np.asarray(smat(jnp.asarray(x)))
        _solve(prob)
        return np.asarray(svec(jnp.asarray(X.value)))

    return project


def _random_points(rng, dim, n=6, scale=(1.0, 3.0)):
    pts = [rng.normal(size=dim) * scale[i % len(scale)] for i in range(n)]
    return [np.asarray(p) for p in pts]


def _exp_degenerate():
    return [
        np.zeros(3),
        np.array([0.0, 1.0, 1.0]),  # on ∂K (1·e⁰ = 1)
        np.array([1.0, 1.0, math.e]),  # on ∂K
        np.array([-1.0, 0.0, 1.0]),  # on the y = 0 face of K
        np.array([-1.0, 0.0, 0.0]),
        np.array([0.0, 0.0, 1.0]),
        np.array([1.0, 0.0, 0.0]),
        np.array([1.0, 1.0, -1.0]),  # on ∂K° (1·e^{1/1−1} = 1 = −t)
        np.array([0.0, -1.0, -1.0]),  # on the u = 0 face of K°
        np.array([-1.0, -1.0, 0.0]),  # edge of the r ≤ 0, s ≤ 0 region
        np.array([-1.0, -2.0, 3.0]),  # r < 0, s < 0: answer (r, 0, t)
        np.array([-1.0, -2.0, -3.0]),
    ]


def _pow_degenerate(alpha):
    return [
        np.zeros(3),
        np.array([1.0, 1.0, 1.0]),  # on ∂K
        np.array([1.0, 1.0, -1.0]),
        np.array([1.0, 0.0, 0.0]),
        np.array([0.0, 1.0, 0.0]),
        np.array([0.0, 0.0, 1.0]),
        np.array([-1.0, -1.0, 0.0]),
        np.array([1.0, -1.0, 0.0]),  # z = 0 outside K
        -np.array([alpha, 1 - alpha, 1.0]),  # on ∂K°
        np.array([0.0, 1.0, 0.5]),
        np.array([-1.0, 2.0, 3.0]),
    ]


def _soc_degenerate(dim):
    pts = [np.zeros(dim)]
    if dim > 1:
        e = np.zeros(dim)
        e[1] = 1.0
        pts += [e + np.eye(dim)[0], -np.eye(dim)[0] + e, e, np.eye(dim)[0], 1e-200 * e]
    else:
        pts += [np.ones(1), -np.ones(1)]
    return pts


def _psd_degenerate(k):
    mats = [np.zeros((k, k)), np.eye(k), -np.eye(k)]
    if k >= 2:
        d = np.ones(k)
        d[0] = -1.0
        mats.append(np.diag(d))
        d = np.zeros(k)
        d[0] = 1.0
        mats.append(np.diag(d))  # rank one, repeated zero eigenvalue
        Q, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(k, k)))
        lam = np.linspace(-1, 1, k)
        lam[-2:] = [1.0, 1.0 + 1e-13]  # nearly repeated eigenvalues, rotated
        mats.append(Q @ np.diag(lam) @ Q.T)
    return [np.asarray(svec(jnp.asarray(M))) for M in mats]


class Case:
    def __init__(self, name, cone, ref, ref_dual, member, dual_member, degenerate):
        self.name = name
        self.cone = cone
        # The power cones share one compiled test bundle, with the exponent as data.
        self.bundle_key = "pow" if isinstance(cone, PowerCone) else name
        self.param = cone.alpha if isinstance(cone, PowerCone) else 0.0
        self.ref = ref
        self.ref_dual = ref_dual
        self.member = member
        self.dual_member = dual_member
        self.degenerate = degenerate

    def points(self, seed=0):
        rng = np.random.default_rng(seed)
        return _random_points(rng, self.cone.dim)

    def __repr__(self):
        return self.name


def _cases():
    cases = []
    for d in (4,):
        cases.append(
            Case(
                f"nonneg{d}",
                NonnegativeCone(d),
                _vector_projector("nonneg", d),
                _vector_projector("nonneg", d),
                lambda v, tol: np.all(v >= -tol),
                lambda v, tol: np.all(v >= -tol),
                [np.zeros(d), np.ones(d)],
            )
        )
    for d in (2, 5):  # (size 1 and PSD order 1 are covered by the mixed product test)
        cases.append(
            Case(
                f"soc{d}",
                SecondOrderCone(d),
                _vector_projector("soc", d),
                _vector_projector("soc", d),
                _soc_in,
                _soc_in,
                _soc_degenerate(d),
            )
        )
    for k in (2, 4):
        cases.append(
            Case(
                f"psd{k}",
                PSDCone(k),
                _psd_projector(k),
                _psd_projector(k),
                _psd_in,
                _psd_in,
                _psd_degenerate(k),
            )
        )
    cases.append(
        Case(
            "exp",
            ExponentialCone(),
            _vector_projector("exp", 3),
            _vector_projector("exp", 3, dual=True),
            _exp_in,
            _exp_dual_in,
            _exp_degenerate(),
        )
    )
    for alpha in (0.3, 0.5, 0.8):
        cases.append(
            Case(
                f"pow{alpha}",
                PowerCone(alpha),
                _vector_projector("pow", 3, alpha),
                _vector_projector("pow", 3, alpha, dual=True),
                _pow_in(alpha),
                _pow_dual_in(alpha),
                _pow_degenerate(alpha),
            )
        )
    return cases


CASES = _cases()


def _fd_jacobian(f, v, h=1e-6):
    cols = []
    for i in range(v.shape[0]):
        e = np.zeros_like(v)
        e[i] = h
        plus, minus = np.asarray(f(jnp.asarray(v + e))), np.asarray(f(jnp.asarray(v - e)))
        cols.append((plus - minus) / (2 * h))
    return np.stack(cols, axis=1)


# --------------------------------------------------------------------------------------------
# svec / smat
# --------------------------------------------------------------------------------------------


def test_svec_convention():
    X = jnp.array([[1.0, 2.0, 3.0], [2.0, 4.0, 5.0], [3.0, 5.0, 6.0]])
    r2 = math.sqrt(2.0)
    # lower triangle, column by column, off-diagonals × √2
    np.testing.assert_allclose(svec(X), [1.0, 2 * r2, 3 * r2, 4.0, 5 * r2, 6.0])
    np.testing.assert_allclose(smat(svec(X)), X)
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 4))
    B = rng.normal(size=(4, 4))
    A, B = jnp.asarray(A + A.T), jnp.asarray(B + B.T)
    np.testing.assert_allclose(jnp.dot(svec(A), svec(B)), jnp.trace(A @ B), rtol=1e-12)
    # batched
    np.testing.assert_allclose(smat(svec(jnp.stack([A, B]))), jnp.stack([A, B]), atol=1e-14)


# --------------------------------------------------------------------------------------------
# Everything about one cone is computed by a single jitted, vmapped "bundle" per case (one
# compilation per case keeps the suite fast); the tests below then inspect its outputs.
# --------------------------------------------------------------------------------------------


def _bundle_fn(project):
    """jit(vmap(...)) of the projection and its derivatives; project(v, param), param scalar."""

    def one(v, t, param):
        f = lambda x: project(x, param)  # noqa: E731
        eye = jnp.eye(v.shape[0], dtype=v.dtype)
        # Values come out of linearize/vjp rather than separate calls: every extra call of an
        # exp/pow projection costs ~1 s of XLA compilation, the bulk of this suite's runtime.
        p, f_jvp = jax.linearize(f, v)  # forward mode (what jax.jvp does)
        _, f_vjp = jax.vjp(f, v)  # reverse mode
        return dict(
            p=p,
            Jf=jax.vmap(f_jvp, out_axes=1)(eye),  # columns J e_j
            Jr=jax.vmap(f_vjp)(eye)[0],  # rows e_iᵀ J
            jvp=f_jvp(t),
            vjp=f_vjp(t)[0],
        )

    return jax.jit(jax.vmap(one, in_axes=(0, 0, None)))


_BUNDLES: dict = {}


def _bundle(case: Case):
    if case.bundle_key not in _BUNDLES:
        if isinstance(case.cone, PowerCone):
            # PowerCone.project is project_pow(v, self.alpha); the plain-call test checks it.
            fn = _bundle_fn(project_pow)
        else:
            cone = case.cone
            fn = _bundle_fn(lambda v, a: cone.project(v))
        _BUNDLES[case.bundle_key] = fn
    fn = _BUNDLES[case.bundle_key]
    # fixed tangents/cotangents for the jvp/vjp entries
    return lambda V: fn(V, jnp.asarray(np.random.default_rng(1).normal(size=V.shape)), case.param)


def _points(case: Case):
    """(V, n_generic): generic points first, then the degenerate ones."""
    gen = case.points()
    return np.stack(gen + case.degenerate), len(gen)


@functools.lru_cache(maxsize=None)
def _evaluated(case: Case, sign: float = 1.0):
    """Bundle outputs at the case's points (sign = −1: at their negatives), plus "d", the
    dual projections by plain (eager) calls of ``cone.project_dual``."""
    V, n = _points(case)
    V = sign * V
    out = {k: np.asarray(x) for k, x in _bundle(case)(jnp.asarray(V)).items()}
    out["d"] = np.stack([np.asarray(case.cone.project_dual(jnp.asarray(v))) for v in V])
    return V, n, out


def _bundle_on(case: Case, X: np.ndarray) -> dict:
    """The case's bundle on any number of points, in chunks of its compiled batch size (so
    no recompilation)."""
    size = len(_points(case)[0])
    chunks = []
    for i in range(0, len(X), size):
        chunk = X[i : i + size]
        pad = np.zeros((size - len(chunk), X.shape[1]))
        out = _bundle(case)(jnp.asarray(np.vstack([chunk, pad])))
        chunks.append({k: np.asarray(x)[: len(chunk)] for k, x in out.items()})
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def _wide_grid() -> np.ndarray:
    """Friberg-style grid over many orders of magnitude, plus a few extreme points."""
    mags = np.exp(np.arange(-12.0, 13.0, 3))
    dom = np.concatenate([-mags, [0.0], mags])
    V = np.stack(np.meshgrid(dom, dom, dom, indexing="ij"), -1).reshape(-1, 3)
    extreme = [[0.0, -1e8, -2e-9], [0.0, -1e30, 1e-30], [1e-30, -1e30, 1e-20], [1e20, 1e-20, -1e20]]
    return np.vstack([V, extreme])


# --------------------------------------------------------------------------------------------
# Values: reference projections, optimality (Moreau), idempotence
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_projection_matches_cvxpy(case: Case):
    V, n, out = _evaluated(case)
    for i, v in enumerate(V):
        # An interior-point method reaches degenerate solutions (v = 0, v on a boundary,
        # answer on a lower-dimensional face) only to about the square root of its
        # tolerance, so the reference is looser there.
        atol = (2e-6 if i < n else 1e-4) * (1 + np.linalg.norm(v))
        np.testing.assert_allclose(out["p"][i], case.ref(v), atol=atol, err_msg=str(v))
        np.testing.assert_allclose(out["d"][i], case.ref_dual(v), atol=atol, err_msg=str(v))


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_moreau_membership_idempotence(case: Case):
    tol = 1e-9
    V, _, out = _evaluated(case)
    _, _, out_neg = _evaluated(case, -1.0)
    for v, p, d_neg, dv in zip(V, out["p"], out_neg["d"], out["d"]):
        # v = Π_K(v) + Π_{K°}(v), K° = −K*: the remainder r = Π_K(v) − v lies in K* and is
        # orthogonal to Π_K(v) (the optimality condition of the projection).
        r = p - v
        assert case.member(p, tol), (v, p)
        assert case.dual_member(r, tol), (v, r)
        assert abs(np.dot(p, r)) <= tol * (1 + np.dot(v, v)), (v, np.dot(p, r))
        # Moreau with the dual projection: v = Π_K(v) − Π_{K*}(−v)
        np.testing.assert_allclose(p - d_neg, v, atol=1e-12)
        assert case.dual_member(dv, tol)
    # idempotence: Π(Π(v)) = Π(v), Π*(Π*(v)) = Π*(v)
    again = _bundle(case)(jnp.asarray(out["p"]))
    np.testing.assert_allclose(again["p"], out["p"], atol=1e-12)
    for dv in out["d"]:
        np.testing.assert_allclose(case.cone.project_dual(jnp.asarray(dv)), dv, atol=1e-12)


def test_self_dual_moreau():
    rng = np.random.default_rng(3)
    for cone in (NonnegativeCone(5), SecondOrderCone(4), PSDCone(3)):
        assert cone.dual_is_self
        for _ in range(3):
            v = jnp.asarray(rng.normal(size=cone.dim))
            np.testing.assert_allclose(cone.project(v) - cone.project(-v), v, atol=1e-12)


def test_zero_cone():
    K = ZeroCone(3)
    v = jnp.array([1.0, -2.0, 3.0])
    np.testing.assert_array_equal(K.project(v), 0.0)
    np.testing.assert_array_equal(K.project_dual(v), v)
    np.testing.assert_array_equal(jax.jacfwd(K.project)(v), 0.0)
    np.testing.assert_array_equal(jax.jacrev(K.project_dual)(v), np.eye(3))


@pytest.mark.parametrize("case", [c for c in CASES if c.name in ("exp", "pow0.3")], ids=repr)
def test_exp_and_pow_wide_range(case: Case):
    """On a grid over many orders of magnitude: the optimality conditions hold (relative to
    ‖v‖) and the derivatives are finite with norm ≤ 1 (float32: see test_float32)."""
    V = _wide_grid()
    out = _bundle_on(case, V)
    P = out["p"]
    for key in ("p", "Jf", "Jr"):
        assert np.all(np.isfinite(out[key])), key
    assert np.all(np.linalg.norm(out["Jf"], 2, axis=(1, 2)) <= 1 + 1e-12)
    scale = np.maximum(1.0, np.linalg.norm(V, axis=1))
    R = P - V
    # complementarity, relative to ‖v‖²
    assert np.max(np.abs(np.sum(P * R, axis=1)) / scale**2) < 1e-12
    # primal membership, relative to ‖v‖
    assert all(case.member(p / s, 1e-10) for p, s in zip(P, scale))
    # 0 ∈ K, so the projection is never farther from v than 0 is
    assert np.all(np.linalg.norm(R, axis=1) <= np.linalg.norm(V, axis=1) * (1 + 1e-12))


# --------------------------------------------------------------------------------------------
# Derivatives
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_derivatives_match_finite_differences(case: Case):
    V, n, out = _evaluated(case)
    V = V[:n]  # generic points only
    bundle = _bundle(case)
    h = 1e-6
    # central differences, one coordinate direction at a time for all points at once
    # (V ± h e_i has the shape of V, so the compiled bundle is reused)
    cols = []
    for i in range(V.shape[1]):
        E = np.zeros((len(out["p"]), V.shape[1]))
        E[:n, i] = h
        Vfull = _points(case)[0]
        plus = np.asarray(bundle(jnp.asarray(Vfull + E))["p"])[:n]
        minus = np.asarray(bundle(jnp.asarray(Vfull - E))["p"])[:n]
        cols.append((plus - minus) / (2 * h))
    Jfd = np.stack(cols, axis=-1)
    Jf, Jr = out["Jf"][:n], out["Jr"][:n]
    np.testing.assert_allclose(Jf, Jfd, rtol=1e-5, atol=1e-6)
    # forward (jvp-based) and reverse (vjp-based) derivatives agree
    np.testing.assert_allclose(Jr, Jf, rtol=1e-10, atol=1e-12)
    # the Jacobian of a projection onto a convex set is symmetric
    np.testing.assert_allclose(Jf, np.swapaxes(Jf, 1, 2), rtol=1e-8, atol=1e-9)
    # dual projection: Π_{K*}(v) = v + Π_K(−v)  ⇒  DΠ_{K*}(v) = I − DΠ_K(−v)  (self-dual: = DΠ_K)
    Jf_neg = _evaluated(case, -1.0)[2]["Jf"]
    Jd = np.asarray(jax.jacfwd(case.cone.project_dual)(jnp.asarray(V[0])))
    want = Jf[0] if case.cone.dual_is_self else np.eye(V.shape[1]) - Jf_neg[0]
    np.testing.assert_allclose(Jd, want, atol=1e-12)
    # jax.jvp / jax.vjp with the bundle's fixed tangents
    T = np.random.default_rng(1).normal(size=(len(out["p"]), V.shape[1]))[:n]
    np.testing.assert_allclose(out["jvp"][:n], np.einsum("bij,bj->bi", Jf, T), atol=1e-12)
    np.testing.assert_allclose(out["vjp"][:n], np.einsum("bij,bi->bj", Jf, T), atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_derivatives_finite_at_degenerate_points(case: Case):
    # at the points and at their negatives (DΠ_{K*}(v) = I − DΠ_K(−v) covers the dual)
    for sign in (1.0, -1.0):
        V, n, out = _evaluated(case, sign)
        for key in ("Jf", "Jr", "jvp", "vjp"):
            assert np.all(np.isfinite(out[key])), (case, key)
        for v, J in zip(V[n:], out["Jf"][n:]):
            # a projection's Jacobian (and any Clarke-Jacobian element) has spectral norm ≤ 1
            assert np.linalg.norm(J, 2) <= 1 + 1e-9, (v, J)


def test_psd_derivative_at_repeated_eigenvalues():
    K = PSDCone(3)
    J = jax.jit(jax.jacfwd(K.project))
    # identity: every B_ij = 1 → DΠ = I; −I: B = 0 → DΠ = 0; 0: B = ½ → DΠ = I/2
    np.testing.assert_allclose(J(svec(jnp.eye(3))), np.eye(6), atol=1e-12)
    np.testing.assert_allclose(J(svec(-jnp.eye(3))), np.zeros((6, 6)), atol=1e-12)
    np.testing.assert_allclose(J(svec(jnp.zeros((3, 3)))), 0.5 * np.eye(6), atol=1e-12)
    # generic point with a repeated positive eigenvalue: matches finite differences
    Q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(3, 3)))
    v = np.asarray(svec(jnp.asarray(Q @ np.diag([2.0, 2.0, -1.0]) @ Q.T)))
    np.testing.assert_allclose(J(jnp.asarray(v)), _fd_jacobian(K.project, v), rtol=1e-6, atol=1e-7)


def test_soc_derivative_closed_form():
    # outside both cones: DΠ(t, u) = ½ [[1, ûᵀ], [û, (1 + t/r) I − (t/r) û ûᵀ]]
    t, u = 0.3, np.array([1.0, -2.0, 0.5])
    r = np.linalg.norm(u)
    uh = u / r
    want = 0.5 * np.block(
        [
            [np.ones((1, 1)), uh[None]],
            [uh[:, None], (1 + t / r) * np.eye(3) - (t / r) * np.outer(uh, uh)],
        ]
    )
    got = jax.jacrev(SecondOrderCone(4).project)(jnp.asarray(np.r_[t, u]))
    np.testing.assert_allclose(got, want, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Transformations
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_jit_and_vmap_match_plain_calls(case: Case):
    V, _, out = _evaluated(case)  # "p": jit(vmap(...)); "d": plain calls
    _, _, out_neg = _evaluated(case, -1.0)
    for i in range(len(V)):
        np.testing.assert_allclose(case.cone.project(jnp.asarray(V[i])), out["p"][i], atol=1e-12)
    # the plain dual projection against the jitted, vmapped primal one
    want = out["p"] if case.cone.dual_is_self else V + out_neg["p"]
    np.testing.assert_allclose(out["d"], want, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Product cone
# --------------------------------------------------------------------------------------------


def _parts(dims: ConeDims) -> list[Cone]:
    parts: list[Cone] = []
    if dims.zero:
        parts.append(ZeroCone(dims.zero))
    if dims.nonneg:
        parts.append(NonnegativeCone(dims.nonneg))
    parts += [SecondOrderCone(k) for k in dims.soc]
    parts += [PSDCone(k) for k in dims.psd]
    parts += [ExponentialCone() for _ in range(dims.exp)]
    parts += [PowerCone(a) for a in dims.pow]
    return parts


def _blockwise(parts, v, dual):
    out, i = [], 0
    for c in parts:
        seg = v[i : i + c.dim]
        out.append(c.project_dual(seg) if dual else c.project(seg))
        i += c.dim
    return jnp.concatenate(out) if out else v


def _block_diag(mats):
    n = sum(m.shape[0] for m in mats)
    out, i = np.zeros((n, n)), 0
    for m in mats:
        out[i : i + m.shape[0], i : i + m.shape[0]] = m
        i += m.shape[0]
    return out


# Exact (float64) product checks use the cheap families; test_float32 covers a product of all
# six families (exp/pow compilation is the expensive part of this suite).
MIXED = ConeDims(zero=2, nonneg=3, soc=(3, 1, 4, 3), psd=(2, 1, 3, 2))


def _mixed_points():
    """Rows: v0, v1, 0, −v0, then v0 ± h e_i (for finite differences), all of shape (dim,)."""
    K = ProductCone(MIXED)
    rng = np.random.default_rng(6)
    v0, v1 = rng.normal(size=(2, K.dim)) * 2
    h = 1e-6
    eye = np.eye(K.dim) * h
    return np.vstack([v0, v1, np.zeros(K.dim), -v0, v0 + eye, v0 - eye]), h


@functools.lru_cache(maxsize=None)
def _mixed_bundle():
    K = ProductCone(MIXED)

    @jax.jit
    @jax.vmap
    def bundle(v):
        p, f_vjp = jax.vjp(K.project, v)
        return p, K.project_dual(v), jax.vmap(f_vjp)(jnp.eye(K.dim, dtype=v.dtype))[0]

    return bundle


def _mixed_evaluated():
    V, _ = _mixed_points()
    return tuple(_mixed_bundle()(jnp.asarray(V)))


def test_product_cone_mixed():
    dims = MIXED
    K = ProductCone(dims)
    parts = _parts(dims)
    assert K.dim == dims.rows == sum(c.dim for c in parts)
    assert [repr(c) for c in K.cones] == [repr(c) for c in parts]
    assert not K.dual_is_self  # the zero cone
    assert K._inverse is not None  # equal SOC/PSD sizes are grouped out of row order
    V, h = _mixed_points()
    P, D, J = (np.asarray(x) for x in _mixed_evaluated())
    # matches projecting block by block (plain, unjitted calls of the parts)
    for i in range(3):
        vj = jnp.asarray(V[i])
        np.testing.assert_allclose(P[i], _blockwise(parts, vj, False), atol=1e-12)
        np.testing.assert_allclose(D[i], _blockwise(parts, vj, True), atol=1e-12)
    # dual of the product is the product of the duals: Π_{K*}(v) = v + Π_K(−v)
    np.testing.assert_allclose(D[0], V[0] + P[3], atol=1e-12)
    # derivative: finite everywhere, block diagonal, equal to finite differences
    assert np.all(np.isfinite(J))
    m = K.dim
    Jfd = (P[4 : 4 + m] - P[4 + m : 4 + 2 * m]).T / (2 * h)
    np.testing.assert_allclose(J[0], Jfd, rtol=1e-5, atol=1e-6)
    mask = _block_diag([np.ones((c.dim, c.dim)) for c in parts])
    assert np.all(J[:3][:, mask == 0] == 0)


@pytest.mark.parametrize(
    "dims",
    [ConeDims(nonneg=4), ConeDims(zero=1, nonneg=1), ConeDims()],
    ids=["lp", "eq+lp", "empty"],
)
def test_product_cone_small(dims: ConeDims):
    K = ProductCone(dims)
    parts = _parts(dims)
    assert K.dim == dims.rows
    assert K.dual_is_self == all(c.dual_is_self for c in parts)
    v = jnp.asarray(np.random.default_rng(9).normal(size=K.dim))
    for dual in (False, True):
        f = jax.jit(K.project_dual if dual else K.project)
        np.testing.assert_allclose(f(v), _blockwise(parts, v, dual), atol=1e-12)
    assert jax.jacrev(K.project)(v).shape == (K.dim, K.dim)


def test_float32():
    """A product of all six families in float32 (one compilation): dtypes preserved, values
    close to float64, finite derivatives of norm ≤ 1 — also at exp/pow points of the wide grid
    (where float32 under/overflows most)."""
    dims = ConeDims(zero=1, nonneg=2, soc=(3,), psd=(3,), exp=2, pow=(0.3, 0.8))
    K = ProductCone(dims)
    # rows: zero 0 | nonneg 1-2 | soc 3-5 | psd 6-11 | exp 12-17 | pow 18-23
    rng = np.random.default_rng(12)
    V = np.vstack([rng.normal(size=(3, K.dim)) * 2, np.zeros((1, K.dim))])
    V[0, 3:6] = [1.0, 1.0, 0.0]
    V[0, 6:12] = np.asarray(svec(jnp.eye(3)))
    V[0, 12:15] = [0.0, 1.0, 1.0]
    V[0, 18:21] = [1.0, 1.0, 1.0]
    # the wide grid, two points per exp/pow block per row
    grid = _wide_grid()
    grid = np.vstack([grid, grid[: len(grid) % 2]]).reshape(-1, 6)
    G = np.tile(V[1], (len(grid), 1))
    G[:, 12:18] = grid
    G[:, 18:24] = grid

    def with_jacobian(v):
        p, f_vjp = jax.vjp(K.project, v)
        return p, jax.vmap(f_vjp)(jnp.eye(K.dim, dtype=v.dtype))[0]

    @jax.jit
    def bundle(VG, V):
        # (DΠ_{K*}(v) = I − DΠ_K(−v) is finite wherever DΠ_K is, so the dual needs no vjp)
        return (*jax.vmap(with_jacobian)(VG), jax.vmap(K.project_dual)(V))

    out = bundle(jnp.asarray(np.vstack([V, G]), jnp.float32), jnp.asarray(V, jnp.float32))
    assert all(x.dtype == jnp.float32 for x in out)
    P, J, D = (np.asarray(x, np.float64) for x in out)
    for x in (P, J, D):
        assert np.all(np.isfinite(x))
    assert np.all(np.linalg.norm(J, 2, axis=(1, 2)) <= 1 + 1e-5)
    parts = _parts(dims)
    for i, v in enumerate(V):
        vj = jnp.asarray(v)
        np.testing.assert_allclose(P[i], _blockwise(parts, vj, False), atol=1e-4)
        np.testing.assert_allclose(D[i], _blockwise(parts, vj, True), atol=1e-4)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        PowerCone(1.0)
    with pytest.raises(ValueError):
        PSDCone(0)
    with pytest.raises(ValueError):
        smat(jnp.zeros(4))
