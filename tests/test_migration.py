"""cvxpylayers' own tests, re-expressed against cvxjax: the migration guarantee.

Source: cvxpylayers (github.com/cvxpy/cvxpylayers, tests/test_jax.py at f0b1c15, and the
parametric-quad_form and solver_args tests of tests/test_torch.py written in JAX). The test
bodies are cvxpylayers'; what changed, each marked ``# cvxjax:`` where it occurs:

* the import: ``from cvxjax import CvxpyLayer`` instead of ``from cvxpylayers.jax import ...``;
* exception types and message patterns where cvxjax says the same in other words
  (``cvxjax.SolverError`` for ``diffcp.SolverError``, its own wording of shape errors, a
  ``ValueError`` naming the parameter instead of an ``AttributeError`` for ``None``);
* torch tests: tensors as ``jnp`` arrays, ``.backward()`` as ``jax.grad``,
  ``torch.autograd.gradcheck`` as ``jax.test_util.check_grads`` (reverse mode, same tolerances);

Left out: ``test_entropy_maximization`` (skipped in cvxpylayers: its random data make the
problem infeasible, which cvxjax reports as ``PRIMAL_INFEASIBLE``) and
``test_solver_args_actually_used`` (it assumes one iteration cannot solve an unconstrained
least squares, true of SCS, not of the interior point cvxjax runs, which solves it in one
Newton step; that options reach the solver is tested in
tests/test_compat.py::test_translated_solver_args_reach_the_solver).

``solver="MOREAU"`` (cvxpylayers needs a QP backend for a parametric quad_form) is kept: in
cvxjax every cvxpylayers backend name means the automatic choice. Tests of cvxpylayers'
torch-only behaviour (``no_grad``, ``requires_grad``) and the torch copies of the JAX tests
above are not repeated.
"""

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import random
from jax.test_util import check_grads

import cvxjax
from cvxjax import CvxpyLayer  # cvxjax: the one line a user changes


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_example():
    key = random.PRNGKey(0)

    n, m = 2, 3
    x = cp.Variable(n)
    A = cp.Parameter((m, n))
    b = cp.Parameter(m)
    constraints = [x >= 0]
    objective = cp.Minimize(0.5 * cp.pnorm(A @ x - b, p=1))
    problem = cp.Problem(objective, constraints)
    assert problem.is_dpp()

    cvxpylayer = CvxpyLayer(problem, parameters=[A, b], variables=[x])

    key, k1, k2 = random.split(key, num=3)
    A_jax = random.normal(k1, shape=(m, n))
    b_jax = random.normal(k2, shape=(m,))

    # solve the problem
    (solution,) = cvxpylayer(A_jax, b_jax)

    # compute the gradient of the sum of the solution with respect to A, b
    def sum_sol(A_jax, b_jax):
        (solution,) = cvxpylayer(A_jax, b_jax)
        return solution.sum()

    dsum_sol = jax.grad(sum_sol)
    dsum_sol(A_jax, b_jax)


def test_simple_batch_socp():
    key = random.PRNGKey(0)
    n = 5
    m = 1
    batch_size = 4

    P_sqrt = cp.Parameter((n, n), name="P_sqrt")
    q = cp.Parameter((n, 1), name="q")
    A = cp.Parameter((m, n), name="A")
    b = cp.Parameter((m, 1), name="b")

    x = cp.Variable((n, 1), name="x")

    objective = 0.5 * cp.sum_squares(P_sqrt @ x) + q.T @ x
    constraints = [A @ x == b, cp.norm(x) <= 1]
    prob = cp.Problem(cp.Minimize(objective), constraints)

    prob_jax = CvxpyLayer(prob, [P_sqrt, q, A, b], [x])

    key, k1, k2, k3, k4 = random.split(key, num=5)
    P_sqrt_jax = random.normal(k1, shape=(batch_size, n, n))
    q_jax = random.normal(k2, shape=(batch_size, n, 1))
    A_jax = random.normal(k3, shape=(batch_size, m, n))
    b_jax = random.normal(k4, shape=(batch_size, m, 1))

    def f(*params):
        (sol,) = prob_jax(*params)
        return sum(sol)

    check_grads(f, (P_sqrt_jax, q_jax, A_jax, b_jax), order=1, modes=["rev"], atol=5e-3, rtol=5e-3)


def test_least_squares():
    key = random.PRNGKey(0)
    m, n = 100, 20

    A = cp.Parameter((m, n))
    b = cp.Parameter(m)
    x = cp.Variable(n)
    obj = cp.sum_squares(A @ x - b) + cp.sum_squares(x)
    prob = cp.Problem(cp.Minimize(obj))
    prob_jax = CvxpyLayer(prob, [A, b], [x])

    key, k1, k2 = random.split(key, num=3)
    A_jax = random.normal(k1, shape=(m, n))
    b_jax = random.normal(k2, shape=(m,))

    def lstsq_sum_cp(A_jax, b_jax):
        x = prob_jax(A_jax, b_jax, solver_args={"eps": 1e-10})[0]
        return sum(x)

    def lstsq_sum_linalg(A_jax, b_jax):
        x = jnp.linalg.solve(A_jax.T @ A_jax + jnp.eye(n), A_jax.T @ b_jax)
        return sum(x)

    d_lstsq_sum_cp = jax.grad(lstsq_sum_cp, [0, 1])
    d_lstsq_sum_linalg = jax.grad(lstsq_sum_linalg, [0, 1])

    grad_A_cvxpy, grad_b_cvxpy = d_lstsq_sum_cp(A_jax, b_jax)
    # Run linalg on CPU (conflict between JAX and multiprocessing)
    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        grad_A_lstsq, grad_b_lstsq = d_lstsq_sum_linalg(
            jax.device_put(A_jax, cpu), jax.device_put(b_jax, cpu)
        )

    assert np.isclose(
        jnp.linalg.norm(grad_A_cvxpy - grad_A_lstsq).item(),
        0.0,
        atol=1e-6,
    )
    assert np.isclose(
        jnp.linalg.norm(grad_b_cvxpy - grad_b_lstsq).item(),
        0.0,
        atol=1e-6,
    )


def test_logistic_regression():
    key = random.PRNGKey(0)

    N, n = 5, 2

    key, k1, k2, k3 = random.split(key, num=4)
    X_np = random.normal(k1, shape=(N, n))
    a_true = random.normal(k2, shape=(n, 1))
    y_np = jnp.round(sigmoid(X_np @ a_true + random.normal(k3, shape=(N, 1)) * 0.5))

    X_jax = jnp.array(X_np)
    lam_jax = 0.1 * jnp.ones(1)

    a = cp.Variable((n, 1))
    X = cp.Parameter((N, n))
    lam = cp.Parameter(1, nonneg=True)
    y = y_np

    log_likelihood = cp.sum(
        cp.multiply(y, X @ a)
        - cp.log_sum_exp(
            cp.hstack([np.zeros((N, 1)), X @ a]).T,
            axis=0,
            keepdims=True,
        ).T,
    )
    prob = cp.Problem(cp.Minimize(-log_likelihood + lam * cp.sum_squares(a)))

    fit_logreg = CvxpyLayer(prob, [X, lam], [a])

    check_grads(fit_logreg, (X_jax, lam_jax), order=1, modes=["rev"], atol=1e-3, rtol=1e-3)


def test_lml():
    k = 2
    x = cp.Parameter(4)
    y = cp.Variable(4)
    obj = -x @ y - cp.sum(cp.entr(y)) - cp.sum(cp.entr(1.0 - y))
    cons = [cp.sum(y) == k]
    prob = cp.Problem(cp.Minimize(obj), cons)
    lml = CvxpyLayer(prob, [x], [y])

    x_th = jnp.array([1.0, -1.0, -1.0, -1.0])
    check_grads(lml, (x_th,), order=1, modes=["rev"], atol=1e-3, rtol=1e-3)


def test_sdp():
    """Test SDP with symmetric parameters."""
    n = 3
    X = cp.Variable((n, n), symmetric=True)
    C = cp.Parameter((n, n), symmetric=True)

    psd_con = X >> 0
    trace_con = cp.trace(X) == 1
    prob = cp.Problem(cp.Minimize(cp.trace(C @ X)), [psd_con, trace_con])

    layer = CvxpyLayer(prob, parameters=[C], variables=[X])

    # Use a well-conditioned symmetric matrix
    C_jax = jnp.array([[2.0, 0.5, 0.1], [0.5, 3.0, 0.2], [0.1, 0.2, 1.5]])

    check_grads(layer, (C_jax,), order=1, modes=["rev"], atol=1e-4, rtol=1e-3)


def test_not_enough_parameters():
    x = cp.Variable(1)
    lam = cp.Parameter(1, nonneg=True)
    lam2 = cp.Parameter(1, nonneg=True)
    objective = lam * cp.norm(x, 1) + lam2 * cp.sum_squares(x)
    prob = cp.Problem(cp.Minimize(objective))
    # cvxjax: its wording
    with pytest.raises(ValueError, match="must be exactly the problem's parameters"):
        layer = CvxpyLayer(prob, [lam], [x])  # noqa: F841


def test_not_enough_parameters_at_call_time():
    x = cp.Variable(1)
    lam = cp.Parameter(1, nonneg=True)
    lam2 = cp.Parameter(1, nonneg=True)
    objective = lam * cp.norm(x, 1) + lam2 * cp.sum_squares(x)
    prob = cp.Problem(cp.Minimize(objective))
    layer = CvxpyLayer(prob, [lam, lam2], [x])
    lam_jax = jnp.ones(1)
    with pytest.raises(ValueError, match="Expected 2 parameter values"):  # cvxjax: wording
        layer(lam_jax)


def test_none_parameter_at_call_time():
    """Test that passing None as a parameter raises an appropriate error."""
    x = cp.Variable(1)
    lam = cp.Parameter(1, nonneg=True)
    lam2 = cp.Parameter(1, nonneg=True)
    objective = lam * cp.norm(x, 1) + lam2 * cp.sum_squares(x)
    prob = cp.Problem(cp.Minimize(objective))
    layer = CvxpyLayer(prob, [lam, lam2], [x])
    lam_jax = jnp.ones(1)
    with pytest.raises(ValueError, match="got None"):  # cvxjax: names the parameter
        layer(lam_jax, None)


def test_too_many_variables():
    x = cp.Variable(1)
    y = cp.Variable(1)
    lam = cp.Parameter(1, nonneg=True)
    objective = lam * cp.norm(x, 1)
    prob = cp.Problem(cp.Minimize(objective))
    with pytest.raises(ValueError, match="neither a variable of the problem"):
        layer = CvxpyLayer(prob, [lam], [x, y])  # noqa: F841


def test_infeasible():
    x = cp.Variable(1)
    param = cp.Parameter(1)
    prob = cp.Problem(cp.Minimize(param), [x >= 1, x <= -1])
    layer = CvxpyLayer(prob, [param], [x])
    param_jax = jnp.ones(1)
    with pytest.raises(cvxjax.SolverError):  # cvxjax: its error type
        layer(param_jax)


def test_unbounded():
    x = cp.Variable(1)
    param = cp.Parameter(1)
    prob = cp.Problem(cp.Minimize(x), [x <= param])
    layer = CvxpyLayer(prob, [param], [x])
    param_jax = jnp.ones(1)
    with pytest.raises(cvxjax.SolverError):  # cvxjax: its error type
        layer(param_jax)


def test_incorrect_parameter_shape():
    key = random.PRNGKey(0)
    m, n = 100, 20

    A = cp.Parameter((m, n))
    b = cp.Parameter(m)
    x = cp.Variable(n)
    obj = cp.sum_squares(A @ x - b) + cp.sum_squares(x)
    prob = cp.Problem(cp.Minimize(obj))
    prob_th = CvxpyLayer(prob, [A, b], [x])

    key, k1, k2 = random.split(key, num=3)
    A_th = random.normal(k1, shape=(32, m, n))
    b_th = random.normal(k2, shape=(20, m))

    with pytest.raises(ValueError, match="Inconsistent batch sizes"):
        prob_th(A_th, b_th)

    key, k1, k2 = random.split(key, num=3)
    A_th = random.normal(k1, shape=(32, m, n))
    b_th = random.normal(k2, shape=(32, 2 * m))

    with pytest.raises(ValueError, match="expects shape"):
        prob_th(A_th, b_th)

    key, k1, k2 = random.split(key, num=3)
    A_th = random.normal(k1, shape=(m, n))
    b_th = random.normal(k2, shape=(2 * m,))

    with pytest.raises(ValueError, match="expects shape"):
        prob_th(A_th, b_th)

    key, k1, k2 = random.split(key, num=3)
    A_th = random.normal(k1, shape=(32, m, n))
    b_th = random.normal(k2, shape=(32, 32, m))

    with pytest.raises(ValueError, match="expects shape"):
        prob_th(A_th, b_th)


def test_broadcasting():
    key = random.PRNGKey(0)
    m, n = 100, 20

    A = cp.Parameter((m, n))
    b = cp.Parameter(m)
    x = cp.Variable(n)
    obj = cp.sum_squares(A @ x - b) + cp.sum_squares(x)
    prob = cp.Problem(cp.Minimize(obj))
    prob_jax = CvxpyLayer(prob, [A, b], [x])

    key, k1, k2 = random.split(key, num=3)
    A_jax = random.normal(k1, shape=(m, n))
    b_jax_0 = random.normal(k2, shape=(m,))
    b_jax = jnp.stack((b_jax_0, b_jax_0))

    def lstsq_sum_cp(A_jax, b_jax):
        x = prob_jax(A_jax, b_jax, solver_args={"eps": 1e-10})[0]
        return jnp.sum(x)

    def lstsq_sum_linalg(A_jax, b_jax):
        x = jnp.linalg.solve(A_jax.T @ A_jax + jnp.eye(n), A_jax.T @ b_jax)
        return sum(x)

    d_lstsq_sum_cp = jax.grad(lstsq_sum_cp, [0, 1])
    d_lstsq_sum_linalg = jax.grad(lstsq_sum_linalg, [0, 1])

    grad_A_cvxpy, grad_b_cvxpy = d_lstsq_sum_cp(A_jax, b_jax)
    # Run linalg on CPU (conflict between JAX and multiprocessing)
    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        grad_A_lstsq, grad_b_lstsq = d_lstsq_sum_linalg(
            jax.device_put(A_jax, cpu), jax.device_put(b_jax_0, cpu)
        )

    assert np.isclose(
        jnp.linalg.norm(grad_A_cvxpy / 2.0 - grad_A_lstsq).item(),
        0.0,
        atol=1e-6,
    )
    assert np.isclose(
        jnp.linalg.norm(grad_b_cvxpy[0] - grad_b_lstsq).item(),
        0.0,
        atol=1e-6,
    )


def test_shared_parameter():
    key = random.PRNGKey(0)
    m, n = 10, 5

    A = cp.Parameter((m, n))
    x = cp.Variable(n)
    key, k1, k2 = random.split(key, num=3)
    b1 = random.normal(k1, shape=(m,))
    b2 = random.normal(k2, shape=(m,))
    prob1 = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b1)))
    layer1 = CvxpyLayer(prob1, parameters=[A], variables=[x])
    prob2 = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b2)))
    layer2 = CvxpyLayer(prob2, parameters=[A], variables=[x])

    key, k1 = random.split(key, num=2)
    A_jax = random.normal(k1, shape=(m, n))
    solver_args = {
        "eps": 1e-10,
        "acceleration_lookback": 0,
        "max_iters": 10000,
    }

    def f(A_jax):
        (x1,) = layer1(A_jax, solver_args=solver_args)
        (x2,) = layer2(A_jax, solver_args=solver_args)
        return jnp.concatenate((x1, x2))

    check_grads(f, [A_jax], order=1, modes=["rev"])


def test_equality():
    key = random.PRNGKey(0)
    n = 10
    A = np.eye(n)
    x = cp.Variable(n)
    b = cp.Parameter(n)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x)), [A @ x == b])
    layer = CvxpyLayer(prob, parameters=[b], variables=[x])

    key, k1 = random.split(key, num=2)
    b_jax = random.normal(k1, shape=(n,))

    check_grads(layer, [b_jax], order=1, modes=["rev"])


def test_basic_gp():
    x = cp.Variable(pos=True)
    y = cp.Variable(pos=True)
    z = cp.Variable(pos=True)

    a = cp.Parameter(pos=True, value=2.0)
    b = cp.Parameter(pos=True, value=1.0)
    c = cp.Parameter(value=0.5)

    objective_fn = 1 / (x * y * z)
    constraints = [a * (x * y + x * z + y * z) <= b, x >= y**c]
    problem = cp.Problem(cp.Minimize(objective_fn), constraints)
    problem.solve(cp.CLARABEL, gp=True)

    layer = CvxpyLayer(problem, parameters=[a, b, c], variables=[x, y, z], gp=True)
    a_jax = jnp.array(2.0)
    b_jax = jnp.array(1.0)
    c_jax = jnp.array(0.5)
    x_jax, y_jax, z_jax = layer(a_jax, b_jax, c_jax)

    assert np.isclose(x.value, x_jax, atol=1e-5)
    assert np.isclose(y.value, y_jax, atol=1e-5)
    assert np.isclose(z.value, z_jax, atol=1e-5)

    check_grads(
        lambda a, b, c: jnp.sum(
            layer(
                a,
                b,
                c,
                solver_args={"acceleration_lookback": 0},
            )[0],
        ),
        [a_jax, b_jax, c_jax],
        order=1,
        modes=["rev"],
    )


def test_batched_gp():
    """Test GP with batched parameters."""
    x = cp.Variable(pos=True)
    y = cp.Variable(pos=True)
    z = cp.Variable(pos=True)

    # Batched parameters (need initial values for GP)
    a = cp.Parameter(pos=True, value=2.0)
    b = cp.Parameter(pos=True, value=1.0)
    c = cp.Parameter(value=0.5)

    # Objective and constraints
    objective_fn = 1 / (x * y * z)
    constraints = [a * (x * y + x * z + y * z) <= b, x >= y**c]
    problem = cp.Problem(cp.Minimize(objective_fn), constraints)

    # Create layer
    layer = CvxpyLayer(problem, parameters=[a, b, c], variables=[x, y, z], gp=True)

    # Batched parameters - test with batch size 4
    # For scalar parameters, batching means 1D arrays
    batch_size = 4
    a_batch = jnp.array([2.0, 1.5, 2.5, 1.8])
    b_batch = jnp.array([1.0, 1.2, 0.8, 1.5])
    c_batch = jnp.array([0.5, 0.6, 0.4, 0.5])

    # Forward pass
    x_batch, y_batch, z_batch = layer(a_batch, b_batch, c_batch)

    # Check shapes - batched results are (batch_size, 1) for scalar variables
    assert x_batch.shape == (batch_size,)
    assert y_batch.shape == (batch_size,)
    assert z_batch.shape == (batch_size,)

    # Verify each batch element by solving individually
    for i in range(batch_size):
        a.value = float(a_batch[i])
        b.value = float(b_batch[i])
        c.value = float(c_batch[i])
        problem.solve(cp.CLARABEL, gp=True)

        assert np.allclose(x.value, x_batch[i], atol=1e-4, rtol=1e-4), (
            f"Mismatch in batch {i} for x"
        )
        assert np.allclose(y.value, y_batch[i], atol=1e-4, rtol=1e-4), (
            f"Mismatch in batch {i} for y"
        )
        assert np.allclose(z.value, z_batch[i], atol=1e-4, rtol=1e-4), (
            f"Mismatch in batch {i} for z"
        )

    # Test gradients on batched problem
    check_grads(
        lambda a, b, c: jnp.sum(
            layer(a, b, c, solver_args={"acceleration_lookback": 0})[0],
        ),
        [a_batch, b_batch, c_batch],
        order=1,
        modes=["rev"],
    )


def test_gp_without_param_values():
    """Test that GP layers can be created without setting parameter values."""
    x = cp.Variable(pos=True)
    y = cp.Variable(pos=True)
    z = cp.Variable(pos=True)

    # Create parameters WITHOUT setting values (this is the key test!)
    a = cp.Parameter(pos=True, name="a")
    b = cp.Parameter(pos=True, name="b")
    c = cp.Parameter(name="c")

    # Build GP problem
    objective_fn = 1 / (x * y * z)
    constraints = [a * (x * y + x * z + y * z) <= b, x >= y**c]
    problem = cp.Problem(cp.Minimize(objective_fn), constraints)

    # This should work WITHOUT needing to set a.value, b.value, c.value
    layer = CvxpyLayer(problem, parameters=[a, b, c], variables=[x, y, z], gp=True)

    # Now use the layer with actual parameter values
    a_jax = jnp.array(2.0)
    b_jax = jnp.array(1.0)
    c_jax = jnp.array(0.5)

    # Forward pass
    x_jax, y_jax, z_jax = layer(a_jax, b_jax, c_jax)

    # Verify solution against CVXPY direct solve
    a.value = 2.0
    b.value = 1.0
    c.value = 0.5
    problem.solve(cp.CLARABEL, gp=True)

    assert np.isclose(x.value, x_jax, atol=1e-5)
    assert np.isclose(y.value, y_jax, atol=1e-5)
    assert np.isclose(z.value, z_jax, atol=1e-5)

    # Test gradients
    check_grads(
        lambda a, b, c: jnp.sum(
            layer(
                a,
                b,
                c,
                solver_args={"acceleration_lookback": 0},
            )[0],
        ),
        [a_jax, b_jax, c_jax],
        order=1,
        modes=["rev"],
    )


def test_gp_reversed_parameter_order():
    """Test that GP layers produce correct results regardless of parameter order.

    Regression test for a bug where the GP path in _build_user_order_mapping
    did not sort by column position, causing parameters to be concatenated
    in wrong order when user declaration order differed from CVXPY's internal
    column assignment order.
    """
    x = cp.Variable(pos=True)
    y = cp.Variable(pos=True)
    z = cp.Variable(pos=True)

    a = cp.Parameter(pos=True, name="a")
    b = cp.Parameter(pos=True, name="b")
    c = cp.Parameter(name="c")

    objective_fn = 1 / (x * y * z)
    constraints = [a * (x * y + x * z + y * z) <= b, x >= y**c]
    problem = cp.Problem(cp.Minimize(objective_fn), constraints)

    # Create layers with parameters in different orders
    layer_abc = CvxpyLayer(problem, parameters=[a, b, c], variables=[x, y, z], gp=True)
    layer_cba = CvxpyLayer(problem, parameters=[c, b, a], variables=[x, y, z], gp=True)

    a_jax = jnp.array(2.0)
    b_jax = jnp.array(1.0)
    c_jax = jnp.array(0.5)

    # Forward pass with both orderings
    x1, y1, z1 = layer_abc(a_jax, b_jax, c_jax)
    x2, y2, z2 = layer_cba(c_jax, b_jax, a_jax)

    # Both orderings should produce same results
    assert jnp.allclose(x1, x2, atol=1e-5), f"x mismatch: {x1} vs {x2}"
    assert jnp.allclose(y1, y2, atol=1e-5), f"y mismatch: {y1} vs {y2}"
    assert jnp.allclose(z1, z2, atol=1e-5), f"z mismatch: {z1} vs {z2}"

    # Verify against CVXPY ground truth
    a.value = 2.0
    b.value = 1.0
    c.value = 0.5
    problem.solve(cp.CLARABEL, gp=True)

    assert np.isclose(x.value, float(x1), atol=1e-5)
    assert np.isclose(y.value, float(y1), atol=1e-5)
    assert np.isclose(z.value, float(z1), atol=1e-5)

    # Test gradients for reversed order
    check_grads(
        lambda c, b, a: jnp.sum(layer_cba(c, b, a)[0]),
        [c_jax, b_jax, a_jax],
        order=1,
        modes=["rev"],
    )


def test_batch_size_one_preserves_batch_dimension():
    """Test that batch_size=1 is different from unbatched.

    When the input is explicitly batched with batch_size=1 (shape (1, n)),
    the output should also be batched with shape (1, n), not unbatched (n,).
    """
    key = random.PRNGKey(0)
    n = 3
    x = cp.Variable(n)
    b = cp.Parameter(n)

    # Simple quadratic problem: minimize ||x - b||^2
    objective = cp.Minimize(cp.sum_squares(x - b))
    problem = cp.Problem(objective)

    cvxpylayer = CvxpyLayer(problem, parameters=[b], variables=[x])

    # Create explicitly batched input with batch_size=1
    key, k1 = random.split(key)
    b_batched = random.normal(k1, shape=(1, n))  # Shape: (1, n)

    # Solve
    (x_batched,) = cvxpylayer(b_batched)

    # Solution should be batched
    assert x_batched.shape == (1, n), f"Expected shape (1, {n}), got {x_batched.shape}"

    # Compute gradient
    def loss_fn(b):
        (x_sol,) = cvxpylayer(b)
        return jnp.sum(x_sol)

    grad_b = jax.grad(loss_fn)(b_batched)

    # Gradient should preserve batch dimension
    assert grad_b.shape == (1, n), (
        f"Expected gradient shape (1, {n}), got {grad_b.shape}. "
        "Batch dimension should be preserved for batch_size=1."
    )


# ---------------------------------------------------------------------------------------------
# From cvxpylayers' tests/test_torch.py, in JAX (cvxjax: tensors as jnp arrays, backward() as
# jax.grad, torch.autograd.gradcheck as check_grads).
# ---------------------------------------------------------------------------------------------


def set_seed(x: int) -> np.random.Generator:
    return np.random.default_rng(x)


def test_nd_array_variable():
    rng = set_seed(123)
    m, n, k = 50, 20, 10

    A = cp.Parameter((m, n))
    b = cp.Parameter((m, k))
    x = cp.Variable((n, k))
    obj = cp.sum_squares(A @ x - b) + 0.01 * cp.sum_squares(x)
    prob = cp.Problem(cp.Minimize(obj))

    layer = CvxpyLayer(prob, [A, b], [x])

    A_th = rng.standard_normal((m, n))
    b_th = rng.standard_normal((m, k))

    (x_th,) = layer(A_th, b_th)

    A.value = A_th
    b.value = b_th
    prob.solve()
    assert np.allclose(x.value, np.asarray(x_th), atol=1e-4, rtol=1e-4)


# Parametric quad_form(x, P) tests (cvxpylayers issue #136)

SOLVER_ARGS = {"tol": 1e-12, "max_iters": 500}  # Moreau's names in cvxpylayers


def _box_qp(n, constraints=True):
    Q = cp.Parameter((n, n), PSD=True)
    q = cp.Parameter(n)
    x = cp.Variable(n)
    cons = [x >= -1, x <= 1] if constraints else []
    return cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, Q) + q.T @ x), cons), Q, q, x


def test_quad_form_psd_parameter_dpp():
    from cvxpy.utilities import scopes

    prob, Q, q, x = _box_qp(3)
    with scopes.quad_form_dpp_scope():
        assert prob.is_dcp(dpp=True)
    layer = CvxpyLayer(prob, parameters=[Q, q], variables=[x], solver="MOREAU")
    assert layer is not None


def test_quad_form_psd_forward():
    n = 4
    prob, Q, q, x = _box_qp(n, constraints=False)
    layer = CvxpyLayer(prob, parameters=[Q, q], variables=[x], solver="MOREAU")

    rng = set_seed(136)
    Q_np = np.eye(n) * 2.0
    q_np = rng.standard_normal(n)

    (y,) = layer(jnp.asarray(Q_np), jnp.asarray(q_np), solver_args=SOLVER_ARGS)
    expected = np.linalg.solve(Q_np, -q_np)
    assert np.allclose(y, expected, atol=1e-6)


def test_quad_form_psd_different_Q():
    n = 3
    prob, Q, q, x = _box_qp(n, constraints=False)
    layer = CvxpyLayer(prob, parameters=[Q, q], variables=[x], solver="MOREAU")

    q_t = jnp.array([1.0, -1.0, 0.5])
    Q1 = jnp.eye(n)
    Q2 = 3.0 * jnp.eye(n)

    (y1,) = layer(Q1, q_t, solver_args=SOLVER_ARGS)
    (y2,) = layer(Q2, q_t, solver_args=SOLVER_ARGS)
    assert not jnp.allclose(y1, y2, atol=1e-6)
    assert np.allclose(y1, np.linalg.solve(Q1, -q_t), atol=1e-6)
    assert np.allclose(y2, np.linalg.solve(Q2, -q_t), atol=1e-6)


def test_quad_form_psd_gradcheck_q():
    n = 3
    prob, Q, q, x = _box_qp(n, constraints=False)
    layer = CvxpyLayer(prob, parameters=[Q, q], variables=[x], solver="MOREAU")

    Q_t = 2.0 * jnp.eye(n)
    q_t = jnp.array([1.0, -1.0, 0.5])

    def func(q_t):
        (y,) = layer(Q_t, q_t, solver_args=SOLVER_ARGS)
        return y.sum()

    check_grads(func, (q_t,), order=1, modes=["rev"], eps=1e-5, atol=1e-3)


def test_quad_form_psd_gradcheck_Q():
    n = 3
    prob, Q, q, x = _box_qp(n, constraints=False)
    layer = CvxpyLayer(prob, parameters=[Q, q], variables=[x], solver="MOREAU")

    q_t = jnp.array([1.0, -1.0, 0.5])

    def func(Q_t):
        Q_sym = (Q_t + Q_t.T) / 2
        (y,) = layer(Q_sym, q_t, solver_args=SOLVER_ARGS)
        return y.sum()

    check_grads(func, (2.0 * jnp.eye(n),), order=1, modes=["rev"], eps=1e-5, atol=1e-3)


def test_quad_form_psd_backward():
    n = 4
    prob, Q, q, x = _box_qp(n, constraints=False)
    layer = CvxpyLayer(prob, parameters=[Q, q], variables=[x], solver="MOREAU")

    Q_t = jnp.asarray(2.0 * np.eye(n))
    q_t = jnp.asarray(set_seed(0).standard_normal(n))

    gQ, gq = jax.grad(lambda Q_, q_: layer(Q_, q_, solver_args=SOLVER_ARGS)[0].sum(), (0, 1))(
        Q_t, q_t
    )
    assert jnp.all(jnp.isfinite(gQ))
    assert jnp.all(jnp.isfinite(gq))
    assert jnp.linalg.norm(gq) > 0


def test_quad_form_psd_batched():
    n, batch = 3, 4
    prob, Q, q, x = _box_qp(n, constraints=False)
    layer = CvxpyLayer(prob, parameters=[Q, q], variables=[x], solver="MOREAU")

    scales = jnp.array([1.0, 2.0, 3.0, 4.0])
    Q_batch = jnp.eye(n)[None] * scales[:, None, None]
    q_batch = jnp.asarray(set_seed(136).standard_normal((batch, n)))

    (y_batch,) = layer(Q_batch, q_batch, solver_args=SOLVER_ARGS)
    assert y_batch.shape == (batch, n)
    for i in range(batch):
        expected = np.linalg.solve(Q_batch[i], -q_batch[i])
        assert np.allclose(y_batch[i], expected, atol=1e-5)

    gQ, gq = jax.grad(lambda Q_, q_: layer(Q_, q_, solver_args=SOLVER_ARGS)[0].sum(), (0, 1))(
        Q_batch, q_batch
    )
    assert gQ.shape == Q_batch.shape and gq.shape == q_batch.shape


def test_quad_form_psd_with_constraints():
    n = 3
    Q = cp.Parameter((n, n), PSD=True)
    q = cp.Parameter(n)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, Q) + q.T @ x), [x >= -0.5, x <= 0.5])
    layer = CvxpyLayer(prob, parameters=[Q, q], variables=[x], solver="MOREAU")

    (y,) = layer(jnp.eye(n), jnp.array([3.0, -3.0, 0.1]), solver_args=SOLVER_ARGS)
    assert np.allclose(y, [-0.5, 0.5, -0.1], atol=1e-4)


def test_quad_form_plus_constant_linear():
    n = 3
    P = cp.Parameter((n, n), PSD=True)
    c = np.array([2.0, -2.0, 0.5])
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, P) + c @ x))
    layer = CvxpyLayer(prob, parameters=[P], variables=[x], solver="MOREAU")

    (y,) = layer(jnp.eye(n), solver_args=SOLVER_ARGS)
    assert np.allclose(y, -c, atol=1e-5)
    (y2,) = layer(2.0 * jnp.eye(n), solver_args=SOLVER_ARGS)
    assert np.allclose(y2, -c / 2, atol=1e-5)


def test_quad_form_sum_of_parameters():
    n = 3
    P = cp.Parameter((n, n), PSD=True)
    Q = cp.Parameter((n, n), PSD=True)
    q = cp.Parameter(n)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, P + Q) + q.T @ x))
    layer = CvxpyLayer(prob, parameters=[P, Q, q], variables=[x], solver="MOREAU")

    P_t, Q_t = 2.0 * jnp.eye(n), 3.0 * jnp.eye(n)
    q_t = jnp.array([1.0, -1.0, 0.5])
    (y,) = layer(P_t, Q_t, q_t, solver_args=SOLVER_ARGS)
    assert np.allclose(y, np.linalg.solve(P_t + Q_t, -q_t), atol=1e-5)


def test_quad_form_negated_parameter():
    n = 3
    P = cp.Parameter((n, n), NSD=True)
    q = cp.Parameter(n)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, -P) + q.T @ x))
    layer = CvxpyLayer(prob, parameters=[P, q], variables=[x], solver="MOREAU")

    q_t = jnp.array([1.0, -1.0, 0.5])
    (y,) = layer(-2.0 * jnp.eye(n), q_t, solver_args=SOLVER_ARGS)
    assert np.allclose(y, -q_t / 2, atol=1e-5)


def test_quad_form_sum_of_parameters_gradcheck():
    n = 3
    P = cp.Parameter((n, n), PSD=True)
    Q = cp.Parameter((n, n), PSD=True)
    q = cp.Parameter(n)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, P + Q) + q.T @ x))
    layer = CvxpyLayer(prob, parameters=[P, Q, q], variables=[x], solver="MOREAU")

    q_t = jnp.array([1.0, -1.0, 0.5])

    def func(P_t, Q_t):
        (y,) = layer((P_t + P_t.T) / 2, (Q_t + Q_t.T) / 2, q_t, solver_args=SOLVER_ARGS)
        return y.sum()

    check_grads(
        func, (2.0 * jnp.eye(n), 3.0 * jnp.eye(n)), order=1, modes=["rev"], eps=1e-5, atol=1e-3
    )


def test_quad_form_negated_parameter_gradcheck():
    n = 3
    P = cp.Parameter((n, n), NSD=True)
    q = cp.Parameter(n)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, -P) + q.T @ x))
    layer = CvxpyLayer(prob, parameters=[P, q], variables=[x], solver="MOREAU")

    q_t = jnp.array([1.0, -1.0, 0.5])

    def func(P_t):
        (y,) = layer((P_t + P_t.T) / 2, q_t, solver_args=SOLVER_ARGS)
        return y.sum()

    check_grads(func, (-2.0 * jnp.eye(n),), order=1, modes=["rev"], eps=1e-5, atol=1e-3)


def test_quad_form_sum_of_parameters_backward():
    n = 4
    P = cp.Parameter((n, n), PSD=True)
    Q = cp.Parameter((n, n), PSD=True)
    q = cp.Parameter(n)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, P + Q) + q.T @ x))
    layer = CvxpyLayer(prob, parameters=[P, Q, q], variables=[x], solver="MOREAU")

    args = (2.0 * jnp.eye(n), 3.0 * jnp.eye(n), jnp.asarray(set_seed(1).standard_normal(n)))
    grads = jax.grad(lambda *a: layer(*a, solver_args=SOLVER_ARGS)[0].sum(), (0, 1, 2))(*args)
    for g, name in zip(grads, "PQq"):
        assert jnp.all(jnp.isfinite(g)), f"{name} grad has non-finite values"
        assert jnp.linalg.norm(g) > 0, f"{name} grad is all zeros"


def test_quad_form_rejects_symmetric_only_parameter():
    n = 3
    P = cp.Parameter((n, n), symmetric=True)
    q = cp.Parameter(n)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, P) + q.T @ x), [x >= -1, x <= 1])
    with pytest.raises((ValueError, AssertionError)):
        CvxpyLayer(prob, parameters=[P, q], variables=[x], solver="MOREAU")


def test_quad_form_rejects_param_times_param():
    n = 2
    P = cp.Parameter((n, n), PSD=True)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(cp.quad_form(x, P @ P, assume_PSD=True)), [cp.sum(x) == 1])
    with pytest.raises((ValueError, AssertionError)):
        CvxpyLayer(prob, parameters=[P], variables=[x], solver="MOREAU")


def test_quad_form_rejects_param_in_x():
    n = 2
    p = cp.Parameter(n)
    Q = cp.Parameter((n, n), PSD=True)
    prob = cp.Problem(cp.Minimize(cp.quad_form(p, Q)))
    with pytest.raises((ValueError, AssertionError)):
        CvxpyLayer(prob, parameters=[p, Q], variables=[], solver="MOREAU")


def test_quad_form_rejects_x_plus_param():
    n = 2
    x = cp.Variable(n)
    p = cp.Parameter(n)
    Q = cp.Parameter((n, n), PSD=True)
    prob = cp.Problem(cp.Minimize(cp.quad_form(x + p, Q)), [x >= -1, x <= 1])
    with pytest.raises((ValueError, AssertionError)):
        CvxpyLayer(prob, parameters=[p, Q], variables=[x], solver="MOREAU")


def test_quad_form_dpp_detection_in_scope():
    from cvxpy.utilities import scopes

    n = 2
    P = cp.Parameter((n, n), PSD=True)
    Q = cp.Parameter((n, n), PSD=True)
    x = cp.Variable(n)
    expr_sum = cp.quad_form(x, P + Q)
    assert not expr_sum.is_dpp()
    with scopes.quad_form_dpp_scope():
        assert expr_sum.is_dpp()
    P_nsd = cp.Parameter((n, n), NSD=True)
    expr_neg = cp.quad_form(x, -P_nsd)
    assert not expr_neg.is_dpp()
    with scopes.quad_form_dpp_scope():
        assert expr_neg.is_dpp()
    with scopes.quad_form_dpp_scope():
        assert not cp.quad_form(x, P @ P, assume_PSD=True).is_dpp()


def test_quad_form_multiple_quad_forms():
    n = 3
    P1 = cp.Parameter((n, n), PSD=True)
    P2 = cp.Parameter((n, n), PSD=True)
    q = cp.Parameter(n)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, P1) + 0.5 * cp.quad_form(x, P2) + q.T @ x))
    layer = CvxpyLayer(prob, parameters=[P1, P2, q], variables=[x], solver="MOREAU")

    P1_t = jnp.array([[2, 0.5, 0], [0.5, 1, 0], [0, 0, 3]])
    P2_t = jnp.array([[1, 0, 0], [0, 2, 0.5], [0, 0.5, 1]])
    q_t = jnp.array([1.0, -1.0, 0.5])
    (y,) = layer(P1_t, P2_t, q_t, solver_args=SOLVER_ARGS)
    assert np.allclose(y, np.linalg.solve(P1_t + P2_t, -q_t), atol=1e-5)


def test_quad_form_sum_of_parameters_resolve():
    n = 2
    P = cp.Parameter((n, n), PSD=True)
    Q = cp.Parameter((n, n), PSD=True)
    q = cp.Parameter(n)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, P + Q) + q.T @ x))
    layer = CvxpyLayer(prob, parameters=[P, Q, q], variables=[x], solver="MOREAU")

    q_t = jnp.array([1.0, -1.0])
    P1, Q1 = jnp.array([[2.0, 0], [0, 1.0]]), jnp.array([[1.0, 0], [0, 1.0]])
    (y1,) = layer(P1, Q1, q_t, solver_args=SOLVER_ARGS)
    assert np.allclose(y1, np.linalg.solve(P1 + Q1, -q_t), atol=1e-5)
    P2, Q2 = jnp.array([[1.0, 0], [0, 3.0]]), jnp.array([[1.0, 0], [0, 2.0]])
    (y2,) = layer(P2, Q2, q_t, solver_args=SOLVER_ARGS)
    assert np.allclose(y2, np.linalg.solve(P2 + Q2, -q_t), atol=1e-5)
    assert not np.allclose(y1, y2, atol=1e-3)


def test_quad_form_nsd_maximize():
    n = 3
    Q = cp.Parameter((n, n), NSD=True)
    q = cp.Parameter(n)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Maximize(0.5 * cp.quad_form(x, Q) + q.T @ x), [x >= -1, x <= 1])
    layer = CvxpyLayer(prob, parameters=[Q, q], variables=[x], solver="MOREAU")

    (y,) = layer(-jnp.eye(n), jnp.array([2.0, -2.0, 0.5]), solver_args=SOLVER_ARGS)
    assert np.allclose(y, [1.0, -1.0, 0.5], atol=1e-4)


def test_quad_form_nsd_maximize_backward():
    n = 4
    Q = cp.Parameter((n, n), NSD=True)
    q = cp.Parameter(n)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Maximize(0.5 * cp.quad_form(x, Q) + q.T @ x), [])
    layer = CvxpyLayer(prob, parameters=[Q, q], variables=[x], solver="MOREAU")

    args = (jnp.asarray(-2.0 * np.eye(n)), jnp.asarray(set_seed(2).standard_normal(n)))
    gQ, gq = jax.grad(lambda *a: layer(*a, solver_args=SOLVER_ARGS)[0].sum(), (0, 1))(*args)
    assert jnp.all(jnp.isfinite(gQ))
    assert jnp.all(jnp.isfinite(gq))
    assert jnp.linalg.norm(gq) > 0


def test_quad_form_psd_rejects_in_constraints():
    n = 3
    P = cp.Parameter((n, n), PSD=True)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(cp.sum(x)), [cp.quad_form(x, P) <= 1])
    with pytest.raises(ValueError, match="objective only"):  # cvxjax: its wording
        CvxpyLayer(prob, parameters=[P], variables=[x], solver="MOREAU")
