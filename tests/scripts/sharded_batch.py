"""Run by tests/test_sharding.py in a fresh process with 4 CPU devices (the device count is
fixed when JAX starts, so it cannot be changed inside the test process). Prints one JSON
object of measured quantities; the test asserts on them."""

import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"

import json
import re
import sys

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

jax.config.update("jax_enable_x64", True)
import cvxjax  # noqa: E402

# Solvers given as NAME (every check) or NAME:light (the sharded reverse mode and the
# compiled program only: the checks that differ between a host and a pure-JAX solver).
solvers = [arg.split(":") + [""] for arg in sys.argv[1:]]
n = 4
x = cp.Variable(n)
q, c = cp.Parameter(n), cp.Parameter(n)
problem = cp.Problem(cp.Minimize(cp.sum_squares(x - c) + q @ x), [x >= -0.3, cp.sum(x) == 1])
mesh = jax.make_mesh((4,), ("batch",), axis_types=(jax.sharding.AxisType.Auto,))
rng = np.random.default_rng(0)
Q8, Q6, C = rng.normal(size=(8, n)), rng.normal(size=(6, n)), rng.normal(size=n)
Q8_sharded = jax.device_put(Q8, NamedSharding(mesh, P("batch")))
W = jnp.asarray(rng.normal(size=n))


def loss(layer):
    return lambda Q, C: jnp.sum(jnp.sin(layer(Q, C)[0] * W))


result = {"devices": jax.device_count()}
for name, mode, *_ in solvers:
    light = mode == "light"
    sharded = cvxjax.CvxpyLayer(problem, [q, c], [x], solver=name, mesh=mesh)
    single = cvxjax.CvxpyLayer(problem, [q, c], [x], solver=name)
    r = {}
    # Reverse mode under jit, batch divisible (8 over 4 devices) and not (6: padded).
    for label, Q in (("b8", Q8_sharded),) + (() if light else (("b6", Q6),)):
        value, grads = jax.jit(jax.value_and_grad(loss(sharded), argnums=(0, 1)))(Q, C)
        value0, grads0 = jax.value_and_grad(loss(single), argnums=(0, 1))(np.asarray(Q), C)
        r[label + "_value_err"] = float(abs(value - value0))
        r[label + "_grad_err"] = max(float(jnp.abs(g - g0).max()) for g, g0 in zip(grads, grads0))
    # Each device solves its own shard: no all-gather, and a host solver's callback sees
    # batches of 2, not 8.
    text = jax.jit(lambda Q: sharded(Q, C)[0]).lower(Q8_sharded).compile().as_text()
    r["all_gather"] = "all-gather" in text
    callbacks = [
        line for line in text.splitlines() if "pure_callback" in line and "custom-call(" in line
    ]
    r["callback_batch"] = sorted(
        {
            int(m)
            for line in callbacks
            for m in re.findall(r"f64\[(\d+),", line.split("custom-call(")[0])
        }
    )
    if light:
        result[name] = r
        continue
    # Forward mode: a jvp in a shared parameter.
    tangent = jnp.asarray(rng.normal(size=n))
    f = lambda layer: lambda C: layer(Q8_sharded, C)[0]
    _, t = jax.jit(lambda C: jax.jvp(f(sharded), (C,), (tangent,)))(C)
    _, t0 = jax.jvp(lambda C: single(Q8, C)[0], (C,), (tangent,))
    r["jvp_err"] = float(jnp.abs(t - t0).max())
    # Eager call with a sharded input and no mesh= argument: the input's sharding is used,
    # and the answer stays sharded.
    detecting = cvxjax.CvxpyLayer(problem, [q, c], [x], solver=name)
    out = detecting(Q8_sharded, C)[0]
    r["eager_spec"] = str(out.sharding.spec)
    r["eager_err"] = float(jnp.abs(out - single(Q8, C)[0]).max())
    # A failure on a shard is reported with its global batch index, under jit.
    try:
        bad = cp.Problem(problem.objective, problem.constraints + [x <= q])
        bad_layer = cvxjax.CvxpyLayer(bad, [q, c], [x], solver=name, mesh=mesh)
        Q_bad = np.full((8, n), 1.0)
        Q_bad[5] = -1.0  # x <= -1 with x >= -0.3: infeasible
        jax.jit(lambda Q: bad_layer(Q, C)[0])(Q_bad).block_until_ready()
        r["error"] = None
    except Exception as error:  # noqa: BLE001 - the test reads the message
        r["error"] = str(error)
    result[name] = r
print("RESULT" + json.dumps(result))
