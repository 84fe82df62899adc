"""What cvxpylayers users write: parametrized quad_form, geometric programs (gp=True),
solver_args with cvxpylayers' names, checks of parameter values, cvxpylayers' constructor
arguments. Values against CVXPY's own solve; derivatives (jvp and vjp) against float64 central
finite differences of CVXPY's solve or closed forms; jit and vmap."""

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from helpers import central_fd_jacobian

import cvxjax
from cvxjax import CvxpyLayer
from cvxjax._solvers import _settings

TIGHT = dict(solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
FD_EPS = 1e-4  # reference accurate to ~1e-10: FD error ~1e-6 plus O(eps²)


def _solve(problem, params, values, outputs, **kwargs):
    for p, v in zip(params, values):
        p.value = np.asarray(v, dtype=np.float64)
    problem.solve(**{**TIGHT, **kwargs})
    assert problem.status == cp.OPTIMAL, problem.status
    return np.concatenate([np.ravel(o.value) for o in outputs])


def _check_derivatives(layer, problem, params, values, modes=("jvp", "vjp")):
    """The layer's first output at ``values`` against CVXPY's solve, and its jvp and/or vjp in
    all parameters at once against central FD of CVXPY's solve (each mode compiles its own
    program, so tests choose; the value comes with the jvp/vjp, no eager compile needed)."""
    outputs = layer.variables[:1]
    shapes = [np.shape(v) for v in values]
    sizes = [int(np.prod(sh)) for sh in shapes]

    def split(flat, xp):
        parts = xp.split(flat, np.cumsum(sizes)[:-1])
        return [part.reshape(sh) for part, sh in zip(parts, shapes)]

    def reference(flat):
        vals = split(flat, np)
        # The layer uses a symmetric parameter's value through (Θ + Θᵀ)/2; CVXPY needs it so.
        vals = [
            (v + v.T) / 2 if p.is_symmetric() and v.ndim == 2 else v for p, v in zip(params, vals)
        ]
        return _solve(problem, params, vals, outputs)

    theta = np.concatenate([np.ravel(v) for v in values]).astype(np.float64)
    J = central_fd_jacobian(reference, theta, eps=FD_EPS)

    def f(flat):
        return jnp.ravel(layer(*split(flat, jnp))[0])

    want = reference(theta)
    rng = np.random.default_rng(0)
    if "jvp" in modes:
        t = rng.standard_normal(theta.shape)
        value, jvp = jax.jvp(f, (jnp.asarray(theta),), (jnp.asarray(t),))
        np.testing.assert_allclose(value, want, atol=1e-7)
        np.testing.assert_allclose(jvp, J @ t, atol=2e-5, rtol=1e-4)
    if "vjp" in modes:
        w = rng.standard_normal(J.shape[0])
        value, pullback = jax.vjp(f, jnp.asarray(theta))
        np.testing.assert_allclose(value, want, atol=1e-7)
        np.testing.assert_allclose(pullback(jnp.asarray(w))[0], w @ J, atol=2e-5, rtol=1e-4)


def _spd(rng, n, shift=1.0):
    L = rng.standard_normal((n, n))
    return L @ L.T / n + shift * np.eye(n)


# ---------------------------------------------------------------------------------------------
# quad_form with a Parameter Q
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def box_qp():
    """min ½ xᵀQx + qᵀx s.t. −1 ≤ x ≤ 1, Q a PSD Parameter (one bound active)."""
    n = 3
    Q, q, x = cp.Parameter((n, n), PSD=True), cp.Parameter(n), cp.Variable(n)
    problem = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, Q) + q @ x), [x >= -1, x <= 1])
    rng = np.random.default_rng(0)
    values = [_spd(rng, n), np.array([2.5, -0.3, 0.4])]
    return problem, [Q, q], [x], values, CvxpyLayer(problem, [Q, q], [x])


def test_quad_form_parameter_matches_cvxpy(box_qp):
    problem, params, outputs, values, layer = box_qp
    (x,) = layer(*values)
    np.testing.assert_allclose(x, _solve(problem, params, values, outputs), atol=1e-7)
    assert np.isclose(np.max(np.abs(x)), 1.0)  # a bound is active: not the unconstrained point


def test_quad_form_parameter_derivatives_match_fd(box_qp):
    problem, params, _, values, layer = box_qp
    _check_derivatives(layer, problem, params, values)


def test_quad_form_parameter_closed_form_jit_vmap():
    """Unconstrained: x* = −Q⁻¹q, dx = −Q⁻¹ sym(dQ) x*; batched Q, jit and vmap agree."""
    n = 3
    Q, q, x = cp.Parameter((n, n), PSD=True), cp.Parameter(n), cp.Variable(n)
    layer = CvxpyLayer(cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, Q) + q @ x)), [Q, q], [x])
    rng = np.random.default_rng(1)
    Qs = np.stack([_spd(rng, n) for _ in range(3)])
    qv = rng.standard_normal(n)
    want = np.stack([-np.linalg.solve(Qk, qv) for Qk in Qs])
    # Batched Q, shared q (the layer's own batching is covered by the GP test).
    (xs_jit,) = jax.jit(jax.vmap(layer, in_axes=(0, None)))(Qs, qv)
    np.testing.assert_allclose(xs_jit, want, atol=1e-8)
    V = rng.standard_normal((n, n))
    _, dx = jax.jvp(lambda Q_: layer(Q_, qv)[0], (jnp.asarray(Qs[0]),), (jnp.asarray(V),))
    np.testing.assert_allclose(dx, -np.linalg.solve(Qs[0], (V + V.T) / 2 @ want[0]), atol=1e-7)


def test_quad_form_sums_multiples_and_nsd_maximize():
    """quad_form(x, P1 + 2 P2) minimized, and quad_form(x, N) with N NSD maximized."""
    n = 3
    P1, P2 = cp.Parameter((n, n), PSD=True), cp.Parameter((n, n), PSD=True)
    N, q, x = cp.Parameter((n, n), NSD=True), cp.Parameter(n), cp.Variable(n)
    rng = np.random.default_rng(2)
    cons = [cp.sum(x) == 1, x >= -0.2]
    both = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, P1 + 2 * P2) + q @ x), cons)
    neg = cp.Problem(cp.Maximize(cp.quad_form(x, N) + q @ x), cons)
    q0 = np.array([1.0, -2.0, 0.5])
    for problem, params, values, mode in [
        (both, [P1, P2, q], [_spd(rng, n), _spd(rng, n), q0], "vjp"),
        (neg, [N, q], [-_spd(rng, n), q0], "jvp"),
    ]:
        layer = CvxpyLayer(problem, params, [x])
        _check_derivatives(layer, problem, params, values, modes=(mode,))


def test_quad_form_forms_cvxpy_rejects():
    n = 2
    x, p = cp.Variable(n), cp.Parameter(n)
    Q, S = cp.Parameter((n, n), PSD=True), cp.Parameter((n, n), symmetric=True)
    alpha = cp.Parameter(nonneg=True)
    in_constraint = cp.Problem(cp.Minimize(cp.sum(x)), [cp.quad_form(x, Q) <= 1])
    with pytest.raises(ValueError, match=r"objective only.*sum_squares\(L @ x\)"):
        CvxpyLayer(in_constraint, [Q], [x])
    with pytest.raises(ValueError, match="not DPP.*parameter-free"):
        CvxpyLayer(cp.Problem(cp.Minimize(cp.quad_form(x + p, Q)), [x >= -1]), [p, Q], [x])
    with pytest.raises(ValueError, match="not DPP.*Q @ Q"):
        prob = cp.Problem(cp.Minimize(cp.quad_form(x, Q @ Q, assume_PSD=True)), [x >= -1])
        CvxpyLayer(prob, [Q], [x])
    with pytest.raises(ValueError, match="not DCP"):  # no PSD attribute: not known convex
        CvxpyLayer(cp.Problem(cp.Minimize(cp.quad_form(x, S)), [x >= -1]), [S], [x])
    with pytest.raises(ValueError, match="not DCP"):
        CvxpyLayer(cp.Problem(cp.Minimize(cp.quad_form(x, alpha * Q))), [alpha, Q], [x])


# ---------------------------------------------------------------------------------------------
# Geometric programs
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gp_layer():
    """cvxpylayers' GP: min 1/(xyz) s.t. a(xy + xz + yz) ≤ b, x ≥ y^c; with one jitted copy
    shared by the tests (each distinct transformation costs a compile)."""
    x, y, z = (cp.Variable(pos=True) for _ in range(3))
    a, b, c = cp.Parameter(pos=True), cp.Parameter(pos=True), cp.Parameter()
    problem = cp.Problem(
        cp.Minimize(1 / (x * y * z)), [a * (x * y + x * z + y * z) <= b, x >= y**c]
    )
    layer = CvxpyLayer(problem, [a, b, c], [x, y, z], gp=True)
    return problem, [a, b, c], [x, y, z], layer, jax.jit(layer)


def _gp_reference(problem, params, outputs, values):
    return _solve(problem, params, values, outputs, gp=True)


def test_gp_matches_cvxpy_batched_and_jit(gp_layer):
    problem, params, outputs, layer, jitted = gp_layer
    assert layer.canonical.log_parameters == (True, True, False)  # c is an exponent
    values = [np.array([2.0, 1.5, 2.5]), np.array([1.0, 1.2, 0.8]), np.array([0.5, 0.6, 0.4])]
    got = np.stack(layer(*values), axis=-1)
    for i in range(3):
        want = _gp_reference(problem, params, outputs, [v[i] for v in values])
        # This GP's optimum is flat (objectives agree to 1e-11, points to ~1e-6).
        np.testing.assert_allclose(got[i], want, rtol=1e-5)
        np.testing.assert_allclose(np.stack(jitted(*[v[i] for v in values])), got[i], rtol=1e-9)


def test_gp_derivatives_match_fd(gp_layer):
    """The chain rule through log θ and exp u, against central FD of the layer's (jitted)
    values, and against FD of CVXPY's own gp=True solve with a step large enough for its
    ~1e-6 solution noise (the optimum is flat)."""
    problem, params, outputs, layer, jitted = gp_layer
    values = np.array([2.0, 1.0, 0.5])

    J = central_fd_jacobian(lambda t: np.stack(jitted(*t)), values, eps=1e-5)
    J_cvxpy = central_fd_jacobian(
        lambda t: _gp_reference(problem, params, outputs, list(t)), values, eps=1e-2
    )
    np.testing.assert_allclose(J, J_cvxpy, atol=2e-3)

    def f(theta):
        return jnp.stack(layer(*theta))

    t = np.array([1.0, 0.5, -2.0])
    _, jvp = jax.jvp(f, (jnp.asarray(values),), (jnp.asarray(t),))
    np.testing.assert_allclose(jvp, J @ t, atol=1e-6, rtol=1e-5)
    w = np.array([1.0, -2.0, 0.5])
    _, pullback = jax.vjp(f, jnp.asarray(values))
    np.testing.assert_allclose(pullback(jnp.asarray(w))[0], w @ J, atol=1e-6, rtol=1e-5)


def test_gp_positive_parameters_checked_eagerly_and_under_jit(gp_layer):
    jitted = gp_layer[4]
    with pytest.raises(ValueError, match="geometric program.*must be positive"):
        gp_layer[3](-1.0, 1.0, 0.5)
    with pytest.raises(jax.errors.JaxRuntimeError, match="geometric program.*must be positive"):
        jax.block_until_ready(jitted(-1.0, 1.0, 0.5))
    jax.block_until_ready(jitted(1.0, 1.0, -0.5))  # the exponent c may be negative


def test_gp_errors():
    x = cp.Variable(pos=True)
    a = cp.Parameter(pos=True)
    not_dgp = cp.Problem(cp.Minimize(x - a), [x >= 1])  # x − a is not log-log convex
    with pytest.raises(ValueError, match="not DGP"):
        CvxpyLayer(not_dgp, [a], [x], gp=True)
    con = x >= a
    with pytest.raises(ValueError, match="duals of geometric programs"):
        CvxpyLayer(cp.Problem(cp.Minimize(x), [con]), [a], [con.dual_variables[0]], gp=True)


# ---------------------------------------------------------------------------------------------
# solver_args
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_qp():
    x, b = cp.Variable(2), cp.Parameter(2)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - b)), [x >= 0])
    return problem, b, x


@pytest.mark.parametrize("solver", [None, "CLARABEL", "SCS", "OSQP", "JAX"])
def test_unknown_solver_arg_one_error_for_every_solver(small_qp, solver):
    problem, b, x = small_qp
    name = {None: "CLARABEL"}.get(solver, solver)  # the automatic choice with options
    with pytest.raises(ValueError, match=f"unknown option 'bogus' for solver {name}.*accepts: "):
        CvxpyLayer(problem, [b], [x], solver=solver, solver_args={"bogus": 1})
    layer = CvxpyLayer(problem, [b], [x], solver=solver)
    # Per call, and eagerly even inside the user's jit (not a JaxRuntimeError from a callback).
    with pytest.raises(ValueError, match=f"unknown option 'bogus' for solver {name}"):
        layer(np.ones(2), solver_args={"bogus": 1})
    with pytest.raises(ValueError, match=f"unknown option 'bogus' for solver {name}"):
        jax.jit(lambda v: layer(v, solver_args={"bogus": 1}))(np.ones(2))


def test_cvxpylayers_solver_args_are_translated():
    cones = cvxjax._program.ConeDims(nonneg=1)
    clarabel = cvxjax.solvers.Clarabel()
    opts = clarabel.check_settings({"eps": 1e-9, "max_iters": 7, "acceleration_lookback": 0}, cones)
    assert opts == dict(tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9, max_iter=7)
    # The solver's own name wins over an alias that sets the same option.
    assert clarabel.check_settings({"eps": 1e-9, "tol_feas": 1e-7}, cones)["tol_feas"] == 1e-7
    assert cvxjax.solvers.SCS().check_settings({"eps": 1e-9}, cones) == dict(
        eps_abs=1e-9, eps_rel=1e-9
    )
    assert cvxjax.solvers.OSQP().check_settings({"max_iters": 5}, cones) == dict(max_iter=5)
    jax_solver = cvxjax.solvers.Jax()
    assert jax_solver.check_settings({"eps": 1e-7, "max_iters": 9}, cones) == dict(
        tol=1e-7, max_iter=9
    )
    with pytest.raises(ValueError, match="eps_abs.*write tol="):
        jax_solver.check_settings({"eps_abs": 1e-7}, cones)
    with pytest.raises(ValueError, match="verbose=True.*solver='CLARABEL'"):
        jax_solver.check_settings({"verbose": True}, cones)
    with pytest.raises(ValueError, match="unknown option 'check_every'"):  # an ADMM option
        jax_solver.check_settings({"check_every": 5}, cones)
    with pytest.raises(ValueError, match="solve_method.*solver="):
        clarabel.check_settings({"solve_method": "SCS"}, cones)
    with pytest.raises(ValueError, match="n_jobs_forward.*max_workers="):
        clarabel.check_settings({"n_jobs_forward": 2}, cones)
    with pytest.raises(ValueError, match="does not take 'ten'"):
        clarabel.check_settings({"max_iter": "ten"}, cones)
    # Options given to a solver instance are checked too.
    with pytest.raises(ValueError, match="unknown option 'tol_fes'.*Did you mean 'tol_feas'"):
        cvxjax.solvers.Clarabel.with_settings(tol_fes=1e-9).check_settings({}, cones)


def test_translated_solver_args_reach_the_solver(small_qp):
    """max_iters=1 (cvxpylayers' name) stops Clarabel: the translated option is used."""
    problem, b, x = small_qp
    layer = CvxpyLayer(problem, [b], [x], on_failure="nan")
    _, info = layer.solve(np.array([1.0, -1.0]), solver_args={"max_iters": 1})
    assert info.solver == "CLARABEL" and int(info.status) == cvxjax.Status.MAX_ITERATIONS
    (xv,), info = layer.solve(np.array([1.0, -1.0]), solver_args={"eps": 1e-10, "max_iters": 50})
    assert int(info.status) == 0
    np.testing.assert_allclose(xv, [1.0, 0.0], atol=1e-8)


def test_scs_option_names_are_scs_keywords():
    import scs

    data = dict(A=sp.csc_matrix(np.ones((1, 1))), b=np.ones(1), c=np.ones(1))
    for name in sorted(_settings.SCS.names()):
        value = {"write_data_filename": None, "log_csv_filename": None}.get(name, 1)
        if name in ("normalize", "adaptive_scale", "verbose"):
            value = False
        scs.SCS(data, dict(l=1), **{name: value})  # raises TypeError for an unknown keyword
    with pytest.raises(TypeError):
        scs.SCS(data, dict(l=1), bogus=1)


# ---------------------------------------------------------------------------------------------
# Parameter values and cvxpylayers' constructor arguments
# ---------------------------------------------------------------------------------------------


def test_none_and_non_numeric_values_name_the_parameter(small_qp):
    problem, b, x = small_qp
    b_named = cp.Parameter(2, name="offset")
    layer = CvxpyLayer(cp.Problem(cp.Minimize(cp.sum_squares(x - b_named))), [b_named], [x])
    with pytest.raises(ValueError, match="'offset' got None"):
        layer(None)
    with pytest.raises(ValueError, match="'offset' got a value of type str"):
        layer("ab")
    with pytest.raises(ValueError, match="'offset' got a complex value"):
        layer(np.ones(2) * 1j)


def test_symmetric_parameter_eager_and_jit_agree(box_qp):
    """An asymmetric value of a symmetric (PSD) parameter is used through (Θ + Θᵀ)/2, eagerly
    and under jit alike (the documented choice; no error in either)."""
    problem, params, outputs, (Q, q), layer = box_qp
    asym = Q + np.triu(np.ones_like(Q), 1)  # symmetric part Q + (U + Uᵀ)/2
    want = _solve(problem, params, [(asym + asym.T) / 2, q], outputs)
    np.testing.assert_allclose(layer(asym, q)[0], want, atol=1e-7)
    np.testing.assert_allclose(jax.jit(layer)(asym, q)[0], want, atol=1e-7)


def test_sign_attributes_checked_eagerly():
    """(The traced check shares its code: test_gp_positive_parameters_checked_...)."""
    x, lam = cp.Variable(2), cp.Parameter(nonneg=True, name="lam")
    layer = CvxpyLayer(
        cp.Problem(cp.Minimize(cp.sum_squares(x - 1) + lam * cp.norm1(x))), [lam], [x]
    )
    with pytest.raises(ValueError, match="'lam' is nonneg, but its value has negative"):
        layer(-1.0)


def test_cvxpylayers_constructor_arguments(small_qp):
    problem, b, x = small_qp
    value = np.array([1.0, -1.0])
    for name in ("DIFFCP", "MOREAU", "CUCLARABEL", "MPAX"):  # cvxpylayers' backends: automatic
        layer = CvxpyLayer(problem, [b], [x], solver=name)
        assert isinstance(layer.solver, cvxjax.solvers.Auto)
    verbose = CvxpyLayer(problem, [b], [x], verbose=True)
    assert (
        verbose.solver_args == {"verbose": True} and verbose.solver_for(jnp.float64) == "CLARABEL"
    )
    scipy_backend = CvxpyLayer(problem, [b], [x], canon_backend="SCIPY")
    np.testing.assert_allclose(scipy_backend(value)[0], [1.0, 0.0], atol=1e-7)
    with pytest.raises(ValueError, match="Unknown solver 'GUROBI'.*MOREAU"):
        CvxpyLayer(problem, [b], [x], solver="GUROBI")
