"""The pure-JAX solver (``solver="JAX"``) on every cone: ADMM + Newton on F, no host callback.

Values and derivatives against closed forms (projection onto a ball, softmax through the
entropy, the geometric mean, the nearest PSD matrix), against CVXPY, and against central
differences of CVXPY's solve with SCS at eps 1e-12 (Clarabel's exp/pow answers are ~1e-9
off, enough to spoil differences); vmap, leading batch, float32, infeasible and unbounded
problems per cone family, NaN mode, and the proof that it can run on a device: no callback
in the jaxpr of a layer built with ``on_failure="nan"``.
"""

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import central_fd_jacobian

import cvxjax
from cvxjax import CvxpyLayer

RNG = np.random.default_rng(7)


def ball():
    """min ‖x − c‖² s.t. ‖x‖ ≤ 1: x = c / max(1, ‖c‖) (second-order cone)."""
    x, c = cp.Variable(4), cp.Parameter(4)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - c)), [cp.norm(x) <= 1])
    closed = lambda c: c / jnp.maximum(1.0, jnp.linalg.norm(c))
    return problem, c, x, RNG.normal(size=4) * 2, closed


def softmax():
    """max cᵀx + Σ entr(x) s.t. 1ᵀx = 1: x = softmax(c) (exponential cone)."""
    x, c = cp.Variable(5), cp.Parameter(5)
    problem = cp.Problem(cp.Maximize(c @ x + cp.sum(cp.entr(x))), [cp.sum(x) == 1])
    return problem, c, x, RNG.normal(size=5), jax.nn.softmax


def geo_mean():
    """max (Πxᵢ)^(1/3) s.t. wᵀx ≤ 1: xᵢ = 1 / (3 wᵢ) (power cones)."""
    x, w = cp.Variable(3), cp.Parameter(3, pos=True)
    problem = cp.Problem(cp.Maximize(cp.geo_mean(x)), [w @ x <= 1])
    return problem, w, x, np.array([0.5, 1.0, 2.0]), lambda w: 1.0 / (3.0 * w)


def nearest_psd():
    """min ‖X − C‖²_F s.t. X ⪰ 0: X = V max(Λ, 0) Vᵀ (PSD cone)."""
    X, C = cp.Variable((3, 3), symmetric=True), cp.Parameter((3, 3), symmetric=True)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(X - C)), [X >> 0])
    M = RNG.normal(size=(3, 3))

    def closed(C):
        lam, V = jnp.linalg.eigh((C + C.T) / 2)
        return (V * jnp.maximum(lam, 0.0)) @ V.T

    return problem, C, X, (M + M.T) / 2, closed


CLOSED_FORMS = {"ball": ball, "softmax": softmax, "geo_mean": geo_mean, "nearest_psd": nearest_psd}
_LAYERS = {}


def layer_for(name):
    if name not in _LAYERS:
        problem, param, var, value, closed = CLOSED_FORMS[name]()
        layer = CvxpyLayer(problem, [param], [var], solver="JAX")
        _LAYERS[name] = (layer, problem, param, var, jnp.asarray(value), closed)
    return _LAYERS[name]


@pytest.mark.parametrize("name", list(CLOSED_FORMS))
def test_closed_forms_values_jacfwd_jacrev(name):
    layer, problem, param, var, value, closed = layer_for(name)
    (sol,), info = layer.solve(value)
    assert info.solver == "JAX" and int(info.status) == 0
    np.testing.assert_allclose(sol, closed(value), atol=1e-7)
    f = lambda v: layer(v)[0]
    expected = jax.jacfwd(closed)(value)
    np.testing.assert_allclose(jax.jacfwd(f)(value), expected, atol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.jacrev(f))(value), expected, atol=1e-6)
    # And the value against CVXPY's own solve.
    param.value = np.asarray(value)
    problem.solve(solver=cp.SCS, eps_abs=1e-11, eps_rel=1e-11, max_iters=200_000)
    np.testing.assert_allclose(sol, var.value, atol=1e-6)


def test_jacobians_match_finite_differences_of_cvxpy():
    """A lasso-type SOCP (no closed form): jacfwd and jacrev against central differences of
    CVXPY's solve with SCS at eps 1e-12."""
    n = 4
    x, A, b = cp.Variable(n), cp.Parameter((6, n)), cp.Parameter(6)
    objective = cp.norm(A @ x - b, 2) + 0.1 * cp.norm(x, 1) + 0.05 * cp.sum_squares(x)
    problem = cp.Problem(cp.Minimize(objective))
    A_val, b_val = RNG.normal(size=(6, n)), RNG.normal(size=6)
    layer = CvxpyLayer(problem, [A, b], [x], solver="JAX")

    def cvxpy_x(b_new):
        A.value, b.value = A_val, b_new
        problem.solve(solver=cp.SCS, eps_abs=1e-12, eps_rel=1e-12, max_iters=500_000)
        return x.value

    fd = central_fd_jacobian(cvxpy_x, b_val, eps=1e-4)
    f = lambda b_new: layer(jnp.asarray(A_val), b_new)[0]
    np.testing.assert_allclose(f(jnp.asarray(b_val)), cvxpy_x(b_val), atol=1e-7)
    np.testing.assert_allclose(jax.jacfwd(f)(jnp.asarray(b_val)), fd, atol=1e-5)
    np.testing.assert_allclose(jax.jacrev(f)(jnp.asarray(b_val)), fd, atol=1e-5)


def test_vmap_leading_batch_and_float32():
    layer, _, _, _, value, closed = layer_for("softmax")
    batch = jnp.stack([value, -value, 3 * value])
    expected = jax.vmap(closed)(batch)
    np.testing.assert_allclose(layer(batch)[0], expected, atol=1e-7)
    np.testing.assert_allclose(jax.vmap(lambda v: layer(v)[0])(batch), expected, atol=1e-7)
    (sol32,), info = layer.solve(batch.astype(jnp.float32))
    assert sol32.dtype == jnp.float32 and np.all(np.asarray(info.status) == 0)
    np.testing.assert_allclose(sol32, expected, atol=1e-5)


def _infeasible(family):
    h = cp.Parameter()
    x = cp.Variable(2)
    if family == "soc":  # ‖x‖ ≤ h with h < 0
        return cp.Problem(cp.Minimize(cp.sum(x)), [cp.norm(x) <= h]), h, x, -1.0
    if family == "exp":  # exp(x₀) ≤ h with h < 0
        return cp.Problem(cp.Minimize(cp.sum(x)), [cp.exp(x[0]) <= h, x >= -1]), h, x, -1.0
    X = cp.Variable((2, 2), symmetric=True)  # X ⪰ 0 with X₀₀ = h < 0
    return cp.Problem(cp.Minimize(cp.trace(X)), [X >> 0, X[0, 0] == h]), h, X, -1.0


def _unbounded(family):
    c = cp.Parameter(2)
    x, t = cp.Variable(2), cp.Variable()
    if family == "soc":  # min cᵀx − 2t s.t. ‖x‖ ≤ t: t → ∞ along x = 0
        return cp.Problem(cp.Minimize(c @ x - 2 * t), [cp.norm(x) <= t]), c, x
    # min −geo_mean(x) + cᵀx with c small, x ≥ 0 unbounded above: unbounded along x = (s, s).
    return cp.Problem(cp.Minimize(c @ x - cp.geo_mean(x))), c, x


@pytest.mark.parametrize("family", ["soc", "exp", "psd"])
def test_infeasible_per_cone_family(family):
    problem, h, var, value = _infeasible(family)
    with pytest.raises(cvxjax.SolverError, match="PRIMAL_INFEASIBLE"):
        CvxpyLayer(problem, [h], [var], solver="JAX")(value)


@pytest.mark.parametrize("family", ["soc", "pow"])
def test_unbounded_per_cone_family(family):
    problem, c, var = _unbounded(family)
    with pytest.raises(cvxjax.SolverError, match="DUAL_INFEASIBLE"):
        CvxpyLayer(problem, [c], [var], solver="JAX")(np.array([0.1, -0.2]))


def test_nan_mode_runs_without_any_callback():
    """No host callback in the compiled program: what lets it run on an accelerator."""
    problem, h, var, _ = _infeasible("soc")
    layer = CvxpyLayer(problem, [h], [var], solver="JAX", on_failure="nan")
    values = jnp.array([-1.0, 2.0])  # element 0 infeasible, element 1 feasible
    (sol,), info = jax.jit(layer.solve)(values)
    assert list(np.asarray(info.status)) == [int(cvxjax.Status.PRIMAL_INFEASIBLE), 0]
    assert np.all(np.isnan(np.asarray(sol[0]))) and np.all(np.isfinite(np.asarray(sol[1])))
    np.testing.assert_allclose(sol[1], [-np.sqrt(2.0), -np.sqrt(2.0)], atol=1e-7)
    jaxpr = str(jax.make_jaxpr(lambda v: jax.grad(lambda w: layer(w)[0][1].sum())(v))(values))
    assert "callback" not in jaxpr
    assert "callback" not in str(jax.make_jaxpr(lambda v: layer.solve(v))(values))


def test_automatic_choice_for_cones():
    """solver=None: the pure-JAX solver for conic programs above min_jax_conic_variables on
    the CPU (where it measured faster than Clarabel), Clarabel below; float32 to Clarabel."""
    from cvxjax._program import ConeDims, DenseShape
    from cvxjax.solvers import Auto

    def choice(n, dtype=jnp.float64, **fields):
        shape = DenseShape(n, ConeDims(zero=1, nonneg=n, soc=(n + 1,)))
        return Auto(**fields).select(None, shape, dtype, {}).name

    assert choice(150) == "JAX"
    assert choice(20) == "CLARABEL"
    assert choice(20, min_jax_conic_variables=10) == "JAX"
    assert choice(150, dtype=jnp.float32) == "CLARABEL"
    assert choice(400) == "CLARABEL"  # above max_jax_variables
