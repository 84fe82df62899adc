"""Iterations per training step with and without warm starts.

A training loop solves nearly the same problem at every step. Here one parameter vector θ of
a layer is trained with Adam (learning rate ``--lr``) to make the solution match a target,
for ``--steps`` steps; every step solves the layer twice at the same θ: warm-started from the
previous step's ``Solution`` (``layer.solve(..., warm_start=previous)``; the loss and its
gradient come from this solve) and cold (``warm_start=layer.cold_start()``, forward only).
Both run inside one jitted step, so each solver's iteration counts are compared on the same
sequence of problems. Step 0 is cold in both and left out of the means.

Workloads (``benchmarks/workloads.py``):

* ``dense_qp-n50``: θ = q (50), the QP ``min ½‖Lx‖² + qᵀx s.t. Gx ≤ h, Ax = b``; solvers: the
  default (the JAX interior-point method), OSQP, SCS;
* ``lasso-n20``: θ = b (20), ``min ‖Ax − b‖₂ + 0.1‖x‖₁ + 0.01‖x‖²`` (second-order cones);
  solver ``"JAX"`` (ADMM + Newton polish) and SCS.

Usage::

    python benchmarks/warm_start.py                 # 30 steps, lr 0.01
    python benchmarks/warm_start.py --steps 50 --lr 0.03 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import optax  # noqa: E402
from workloads import Spec, make_instance  # noqa: E402

import cvxjax  # noqa: E402

CASES = [
    ("dense_qp", 50, 0, None),
    ("dense_qp", 50, 0, "OSQP"),
    ("dense_qp", 50, 0, "SCS"),
    ("lasso", 20, 1, "JAX"),
    ("lasso", 20, 1, "SCS"),
]


def run_case(family, n, trained, solver, steps, lr):
    """Returns per-step (warm iterations, cold iterations, loss)."""
    inst = make_instance(Spec(family, n, 1))
    values = [jnp.asarray(v) for v in inst.values]
    layer = cvxjax.CvxpyLayer(inst.problem, inst.parameters, [inst.x], solver=solver)
    # Target: the solution at a different value of the trained parameter.
    rng = np.random.default_rng(0)
    theta0 = values[trained]
    other = list(values)
    other[trained] = theta0 + jnp.asarray(rng.standard_normal(theta0.shape)) * jnp.std(theta0)
    target = layer(*other)[0]
    optimizer = optax.adam(lr * float(jnp.std(theta0)))

    def with_theta(theta):
        vals = list(values)
        vals[trained] = theta
        return vals

    @jax.jit
    def step(theta, opt_state, warm):
        def loss(theta):
            (x,), sol = layer.solve(*with_theta(theta), warm_start=warm)
            return jnp.sum((x - target) ** 2), sol

        (value, sol), grad = jax.value_and_grad(loss, has_aux=True)(theta)
        _, cold = layer.solve(*with_theta(theta), warm_start=layer.cold_start())
        updates, opt_state = optimizer.update(grad, opt_state)
        return optax.apply_updates(theta, updates), opt_state, sol, cold.iterations, value

    theta, opt_state, warm = theta0, optimizer.init(theta0), layer.cold_start()
    rows = []
    for _ in range(steps):
        theta, opt_state, sol, cold_iters, value = step(theta, opt_state, warm)
        rows.append((int(sol.iterations), int(cold_iters), float(value), int(sol.status)))
        warm = sol
    return layer.solver_for(jnp.float64), rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--lr", type=float, default=0.01, help="Adam step, relative to std(θ)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--only", default=None, help="substring of 'family/solver' to run")
    args = ap.parse_args()
    out = {}
    print(f"{'workload':14s} {'solver':8s} {'cold it/step':>12s} {'warm it/step':>12s} ratio")
    for family, n, trained, solver in CASES:
        if args.only and args.only not in f"{family}/{solver}":
            continue
        name, rows = run_case(family, n, trained, solver, args.steps, args.lr)
        warm = np.mean([r[0] for r in rows[1:]])
        cold = np.mean([r[1] for r in rows[1:]])
        key = f"{family}-n{n}/{name}"
        out[key] = {"steps": rows, "warm_mean": warm, "cold_mean": cold, "ratio": cold / warm}
        losses = f"loss {rows[0][2]:.3g} -> {rows[-1][2]:.3g}"
        print(
            f"{family + '-n' + str(n):14s} {name:8s} {cold:12.1f} {warm:12.1f} {cold / warm:.2f}x  {losses}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
