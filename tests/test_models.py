"""A layer inside a model: an Equinox module and a Flax NNX module holding a ``CvxpyLayer``,
trained with optax for a few steps (the loss goes down), their gradients checked once against
float64 central finite differences along a random direction of the model's parameters.

The model is OptNet-shaped: ``x*(z) = argmin ½‖x‖² + (Wz + c)ᵀx  s.t.  Gx ≤ h, 1ᵀx = 1``, a
linear map of the input feeding the QP's linear term; the loss is ‖x*(z) − target‖².
The layer is not a parameter: Equinox keeps it in a static field, NNX as a plain attribute.
"""

import cvxpy as cp
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import cvxjax

N, M, D = 4, 6, 3  # QP variables, inequality rows, input features


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(1)
    G = rng.standard_normal((M, N))
    x = cp.Variable(N)
    q = cp.Parameter(N)
    h = G @ np.full(N, 1.0 / N) + rng.uniform(0.2, 0.6, M)
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x) + q @ x), [G @ x <= h, cp.sum(x) == 1])
    layer = cvxjax.CvxpyLayer(problem, [q], [x])
    z = jnp.asarray(rng.standard_normal((8, D)))  # a batch of 8 inputs
    target = jnp.asarray(rng.dirichlet(np.ones(N), 8))
    return layer, z, target


class EqxModel(eqx.Module):
    W: jax.Array
    c: jax.Array
    layer: cvxjax.CvxpyLayer = eqx.field(static=True)

    def __init__(self, layer, key):
        self.W = 0.3 * jax.random.normal(key, (N, D))
        self.c = jnp.zeros(N)
        self.layer = layer

    def __call__(self, z):
        (x,) = self.layer(z @ self.W.T + self.c)  # the layer batches over the leading axis
        return x


class NnxModel(nnx.Module):
    def __init__(self, layer, rngs: nnx.Rngs):
        self.linear = nnx.Linear(D, N, rngs=rngs)
        self.layer = layer

    def __call__(self, z):
        (x,) = self.layer(self.linear(z))
        return x


def _check_training(loss_and_grad, apply_update, model, z, target, steps=6):
    losses = []
    for _ in range(steps):
        loss, grads = loss_and_grad(model, z, target)
        losses.append(float(loss))
        model = apply_update(model, grads)
    assert losses[-1] < 0.8 * losses[0], losses
    return model


def _fd_check(loss_of_flat, flat, grad_flat):
    """Directional derivative along a random unit direction vs central differences."""
    direction = np.random.default_rng(2).standard_normal(flat.shape)
    direction /= np.linalg.norm(direction)
    eps = 1e-6
    fd = (loss_of_flat(flat + eps * direction) - loss_of_flat(flat - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(float(grad_flat @ direction), fd, rtol=1e-5, atol=1e-8)


def test_equinox_model_trains(setup):
    layer, z, target = setup
    model = EqxModel(layer, jax.random.PRNGKey(0))
    optimizer = optax.adam(0.05)
    state = [optimizer.init(eqx.filter(model, eqx.is_array))]

    @eqx.filter_jit
    def loss_and_grad(model, z, target):
        return eqx.filter_value_and_grad(lambda m: jnp.sum((m(z) - target) ** 2))(model)

    def apply_update(model, grads):
        updates, state[0] = optimizer.update(grads, state[0])
        return eqx.apply_updates(model, updates)

    model = _check_training(loss_and_grad, apply_update, model, z, target)

    # Gradient vs finite differences (the same compiled function gives the values).
    params, static = eqx.partition(model, eqx.is_array)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    _, grads = loss_and_grad(model, z, target)
    grad_flat = jax.flatten_util.ravel_pytree(grads)[0]

    def loss_of_flat(v):
        return float(loss_and_grad(eqx.combine(unravel(jnp.asarray(v)), static), z, target)[0])

    _fd_check(loss_of_flat, np.asarray(flat), np.asarray(grad_flat))


def test_flax_nnx_model_trains(setup):
    layer, z, target = setup
    model = NnxModel(layer, nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(0.05), wrt=nnx.Param)

    @nnx.jit
    def loss_and_grad(model, z, target):
        return nnx.value_and_grad(lambda m: jnp.sum((m(z) - target) ** 2))(model)

    def apply_update(model, grads):
        optimizer.update(model, grads)
        return model

    model = _check_training(loss_and_grad, apply_update, model, z, target)

    graphdef, params = nnx.split(model, nnx.Param)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    _, grads = loss_and_grad(model, z, target)
    grad_flat = jax.flatten_util.ravel_pytree(grads)[0]

    def loss_of_flat(v):
        probe = nnx.merge(graphdef, unravel(jnp.asarray(v)))
        return float(loss_and_grad(probe, z, target)[0])

    _fd_check(loss_of_flat, np.asarray(flat), np.asarray(grad_flat))
