"""The code of docs/training-loops.md runs as written: its top-level ```python blocks run in
order in one namespace, then each training step it defines is run and must lower the loss.
(The models' gradients are checked against finite differences in tests/test_models.py; this
keeps the page from drifting away from the API.)"""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

PAGE = pathlib.Path(__file__).parent.parent / "docs" / "training-loops.md"


@pytest.fixture(scope="module")
def page():
    # Top-level blocks only: the indented one in a list sets the persistent compilation cache,
    # which a test session must not.
    blocks = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)
    assert len(blocks) >= 3, "the page lost its code blocks"
    # Each block runs in a copy of the names so far: its functions keep their own globals
    # (the NNX block reuses the names `model`, `optimizer` and `step`).
    namespaces, namespace = [], {}
    for block in blocks:
        namespace = dict(namespace)
        exec(compile(block, str(PAGE), "exec"), namespace)
        namespaces.append(namespace)
    return namespaces


def _batch(d, n, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal((8, d))), jnp.asarray(rng.dirichlet(np.ones(n), 8))


def test_equinox_step_trains(page):
    ns = page[0]
    z, target = _batch(ns["d"], ns["n"])
    model, state, losses = ns["model"], ns["state"], []
    for _ in range(5):
        model, state, loss = ns["step"](model, state, z, target)
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0], losses


def test_nnx_step_trains(page):
    ns = page[1]
    z, target = _batch(ns["d"], ns["n"])
    losses = [float(ns["step"](ns["model"], ns["optimizer"], z, target)) for _ in range(5)]
    assert losses[-1] < 0.8 * losses[0], losses


def test_warm_started_scan_matches_cold_steps(page):
    ns = page[2]
    layer, n = ns["layer"], ns["n"]
    targets = jnp.tile(jnp.full(n, 1.0 / n).at[0].add(0.3).at[1].add(-0.3), (6, 1))
    q0 = jnp.zeros(n)
    (q_final, _), losses = ns["train"](q0, targets)

    # The same descent with cold solves, eagerly.
    def loss(q, target):
        (x,) = layer(q)
        return jnp.sum((x - target) ** 2)

    q = q0
    for target in targets:
        q = q - 0.05 * jax.grad(loss)(q, target)
    np.testing.assert_allclose(q_final, q, atol=1e-6)
    assert losses[-1] < losses[0]
