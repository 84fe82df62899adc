"""Warm starts: ``layer.solve(..., warm_start=solution)``.

A warm start must change only the iteration count: outputs and derivatives equal those of a
cold start (checked against each other and once against float64 central finite differences),
and it must work under ``jit``, ``vmap`` and as a ``lax.scan`` carry. Each solver that uses it
takes fewer iterations on a nearby problem (SCS: on the same problem; on a nearby one its
count did not move at the default 1e-9 tolerance, see benchmarks/README.md).
"""

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cvxjax
from tests.helpers import central_fd_jacobian

N, M = 4, 6


def _qp(n=N, m=M):
    """min ½‖x‖² + qᵀx s.t. Gx ≤ h, 1ᵀx = 1 (parameters q, h): a QP with both cone kinds."""
    rng = np.random.default_rng(0)
    G = rng.standard_normal((m, n))
    x = cp.Variable(n)
    q, h = cp.Parameter(n), cp.Parameter(m)
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x) + q @ x), [G @ x <= h, cp.sum(x) == 1])
    q0 = jnp.asarray(rng.standard_normal(n))
    h0 = jnp.asarray(rng.uniform(0.1, 0.5, m)) + G @ np.full(n, 1.0 / n)
    return problem, [q, h], [x], (q0, h0)


@pytest.fixture(scope="module")
def qp():
    problem, params, outputs, values = _qp()
    layer = cvxjax.CvxpyLayer(problem, params, outputs)  # Auto: the JAX interior point
    assert layer.solver_for(jnp.float64) == "JAX"

    # One compiled program serves cold and warm calls: zeros (cold_start) mean cold.
    @jax.jit
    def solve(warm, q, h):
        (x,), sol = layer.solve(q, h, warm_start=warm)
        return x, sol

    return layer, solve, values


def test_same_answer_and_derivatives_as_cold(qp):
    layer, solve, (q0, h0) = qp
    _, first = solve(layer.cold_start(), q0, h0)
    q1, h1 = q0 + 0.01, h0 * 1.01
    x_cold, cold = solve(layer.cold_start(), q1, h1)
    x_warm, warm = solve(first, q1, h1)
    np.testing.assert_allclose(x_warm, x_cold, atol=1e-7)
    assert int(warm.status) == int(cold.status) == 0
    assert int(warm.iterations) < int(cold.iterations)

    def loss(warm_start, q, h):
        return jnp.sum(jnp.sin(solve(warm_start, q, h)[0]))

    g_cold = jax.grad(loss, argnums=(1, 2))(layer.cold_start(), q1, h1)
    g_warm = jax.grad(loss, argnums=(1, 2))(first, q1, h1)
    for a, b in zip(g_warm, g_cold):
        np.testing.assert_allclose(a, b, atol=1e-7)
    # Both against float64 central differences (the warm start is in the jitted function).
    for k, value in enumerate((q1, h1)):

        def x_of(v, k=k):
            args = [q1, h1]
            args[k] = jnp.asarray(v)
            return np.asarray(solve(first, *args)[0])

        fd = central_fd_jacobian(x_of, np.asarray(value))
        np.testing.assert_allclose(g_warm[k], np.cos(x_warm) @ fd, atol=1e-5)


def test_scan_carries_the_warm_start(qp):
    """A training-loop shape: each step perturbs q and restarts from the previous answer."""
    layer, _, (q0, h0) = qp

    @jax.jit
    def loop(q0):
        def step(carry, k):
            q = q0 + 0.003 * k
            (x,), sol = layer.solve(q, h0, warm_start=carry)
            return sol.warm_start, (x, sol.iterations)

        return jax.lax.scan(step, layer.cold_start(), jnp.arange(4.0))[1]

    xs, iterations = loop(q0)
    assert iterations[0] > max(iterations[1:])  # only the first step is cold
    for k in range(4):
        (x,) = layer(q0 + 0.003 * k, h0)
        np.testing.assert_allclose(xs[k], x, atol=1e-7)


def test_batched_warm_start(qp):
    layer, _, (q0, h0) = qp
    qs = q0 + 0.2 * jnp.arange(3.0)[:, None]
    cold_start = layer.cold_start(batch_size=3)
    (x0,), first = layer.solve(qs, h0, warm_start=cold_start)
    assert first.warm_start.x.shape == (3, layer._reduction.n)
    (x_cold,), cold = layer.solve(qs + 0.01, h0, warm_start=cold_start)
    (x_warm,), warm = layer.solve(qs + 0.01, h0, warm_start=first)
    np.testing.assert_allclose(x_warm, x_cold, atol=1e-7)
    assert np.all(np.asarray(warm.iterations) < np.asarray(cold.iterations))
    # The same under the user's vmap (the layer then sees unbatched values).
    (x_vmap,), sol = jax.vmap(lambda q, w: layer.solve(q, h0, warm_start=w))(
        qs + 0.01, first.warm_start
    )
    np.testing.assert_allclose(x_vmap, x_cold, atol=1e-7)
    np.testing.assert_array_equal(sol.iterations, warm.iterations)


def test_errors_name_the_problem(qp):
    layer, _, (q0, h0) = qp
    _, sol = layer.solve(q0, h0)
    with pytest.raises(TypeError, match="cvxjax.Solution or cvxjax.WarmStart"):
        layer.solve(q0, h0, warm_start=(1, 2, 3))
    bad = cvxjax.WarmStart(jnp.zeros(N + 7), sol.warm_start.y, sol.warm_start.s)
    with pytest.raises(ValueError, match=r"warm_start.x has shape \(11,\)"):
        layer.solve(q0, h0, warm_start=bad)
    with pytest.raises(ValueError, match="batch size 2, but the parameter values have no batch"):
        layer.solve(q0, h0, warm_start=layer.cold_start(batch_size=2))


@pytest.mark.parametrize("solver", ["OSQP", "SCS"])
def test_host_solvers_use_the_start(solver):
    # OSQP checks termination every 25 iterations: on a 4-variable QP cold and warm both
    # stop at the first or second check, so a larger one shows the difference.
    problem, params, outputs, (q0, h0) = _qp(50, 60)
    layer = cvxjax.CvxpyLayer(problem, params, outputs, solver=solver)
    (x0,), first = layer.solve(q0, h0)
    # SCS is restarted on the same problem (a nearby one did not save SCS iterations at its
    # 1e-9 tolerance); OSQP on a nearby one.
    q1 = q0 if solver == "SCS" else q0 + 0.01
    (x_cold,), cold = layer.solve(q1, h0)
    (x_warm,), warm = layer.solve(q1, h0, warm_start=first)
    np.testing.assert_allclose(x_warm, x_cold, atol=1e-6)
    assert int(warm.iterations) < int(cold.iterations)
    # Zeros are a cold start: the same iterations as no start (the reused OSQP workspace
    # resets its adapted rho on every call).
    (x_zero,), zero = layer.solve(q1, h0, warm_start=layer.cold_start())
    np.testing.assert_allclose(x_zero, x_cold, atol=1e-6)
    assert int(zero.iterations) == int(cold.iterations)


def test_jax_admm_starts_from_it():
    """The conic pure-JAX solver (ADMM + Newton polish): nearest point of the unit ball."""
    x = cp.Variable(3)
    a = cp.Parameter(3)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - a)), [cp.norm(x) <= 1])
    layer = cvxjax.CvxpyLayer(problem, [a], [x], solver="JAX")
    solve = jax.jit(lambda w, a: layer.solve(a, warm_start=w))
    a0 = jnp.array([2.0, -1.0, 0.5])
    _, first = solve(layer.cold_start(), a0)
    a1 = a0 * 1.02
    (x_cold,), cold = solve(layer.cold_start(), a1)
    (x_warm,), warm = solve(first, a1)
    np.testing.assert_allclose(x_warm, a1 / jnp.linalg.norm(a1), atol=1e-8)
    np.testing.assert_allclose(x_warm, x_cold, atol=1e-8)
    assert int(warm.iterations) < int(cold.iterations)
