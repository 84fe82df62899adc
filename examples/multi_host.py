"""Data-parallel training through a `cvxjax.CvxpyLayer` over several processes (hosts).

Each process owns some devices and the slice of the batch that lives on them. The layer
runs under ``shard_map`` over the global mesh (``mesh=``), so every device solves its own
problems -- a host solver's callback runs in the process that owns the device -- and only
the gradient of the shared parameters crosses processes (one all-reduce, inserted by
``shard_map``'s transpose).

The model: a learned cost vector θ (n,) of a QP layer

    x*(θ, d) = argmin ½‖x‖² + (θ + d)ᵀx   s.t.  x ≥ 0,  Σx = 1

fitted so that x*(θ, d_i) matches targets t_i on a batch of contexts d_i, by gradient
descent on the mean squared error. Every process computes the same loss and the same
update, since the loss is a mean over the global batch.

Run, on one machine with two processes of 2 CPU devices each (two terminals, or `&`):

    python examples/multi_host.py --process-id 0 --num-processes 2 --port 12355 &
    python examples/multi_host.py --process-id 1 --num-processes 2 --port 12355

On a cluster, give each process the coordinator's address (``--coordinator host:port``)
instead; on GPU/TPU hosts leave out ``--cpu-devices``. With ``--num-processes 1`` (the
default) it runs in one process.
"""

from __future__ import annotations

import argparse
import os


def main(
    process_id=0, num_processes=1, coordinator=None, port=12355, cpu_devices=2, steps=20, batch=16
):
    if cpu_devices:
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={cpu_devices}"
    import jax

    jax.config.update("jax_enable_x64", True)
    if num_processes > 1:
        if cpu_devices:
            # Cross-process collectives on CPU devices go through gloo.
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=coordinator or f"localhost:{port}",
            num_processes=num_processes,
            process_id=process_id,
        )
    import cvxpy as cp
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import cvxjax

    n = 5
    x = cp.Variable(n)
    theta, d = cp.Parameter(n), cp.Parameter(n)
    problem = cp.Problem(
        cp.Minimize(0.5 * cp.sum_squares(x) + (theta + d) @ x), [x >= 0, cp.sum(x) == 1]
    )
    mesh = jax.make_mesh((jax.device_count(),), ("batch",))
    layer = cvxjax.CvxpyLayer(problem, [theta, d], [x], solver="CLARABEL", mesh=mesh)

    # The global batch (its size a multiple of the device count), generated identically
    # everywhere; each process puts only its own rows on its own devices.
    rng = np.random.default_rng(0)
    contexts = rng.normal(size=(batch, n))
    true_theta = rng.normal(size=n)
    reference = cvxjax.CvxpyLayer(problem, [theta, d], [x], solver="CLARABEL")
    targets = np.asarray(reference(jnp.asarray(true_theta), jnp.asarray(contexts))[0])
    sharding = NamedSharding(mesh, P("batch"))
    rows = slice(process_id * batch // num_processes, (process_id + 1) * batch // num_processes)
    global_contexts = jax.make_array_from_process_local_data(sharding, contexts[rows])
    global_targets = jax.make_array_from_process_local_data(sharding, targets[rows])

    def loss(theta_value, contexts, targets):
        (solution,) = layer(theta_value, contexts)
        return jnp.mean(jnp.sum((solution - targets) ** 2, axis=-1))

    step = jax.jit(jax.value_and_grad(loss))
    theta_value = jnp.zeros(n)
    losses = []
    for _ in range(steps):
        value, grad = step(theta_value, global_contexts, global_targets)
        theta_value = theta_value - 2.0 * grad
        losses.append(float(value))
    if process_id == 0:
        print(f"processes {num_processes}, devices {jax.device_count()}, batch {batch}")
        print(f"loss {losses[0]:.4g} -> {losses[-1]:.4g}")
        print("LOSSES " + " ".join(repr(v) for v in losses))
    return {"losses": losses, "theta": np.asarray(theta_value), "devices": jax.device_count()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--coordinator", default=None, help="host:port of process 0")
    parser.add_argument("--port", type=int, default=12355, help="with no --coordinator")
    parser.add_argument("--cpu-devices", type=int, default=2, help="0: the real devices")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    main(
        args.process_id,
        args.num_processes,
        args.coordinator,
        args.port,
        args.cpu_devices,
        args.steps,
    )
