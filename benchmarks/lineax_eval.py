"""Should the implicit system use lineax? Speed and accuracy of its solvers against ours.

The implicit system of a layer is ``J dz = r`` with J = ∂F/∂z of the conic residual, dense
(n + m up to a few hundred on the dense path), nonsingular at a nondegenerate solution and
exactly singular (but consistent) at a degenerate one. Compared, each jit-compiled and run on
one system (the layer loops over a batch one system at a time on CPU):

* ``cvxjax``: ``robust_dense_solve`` (LU, damped-Cholesky fallback when LU fails);
* ``lineax LU``: ``lineax.linear_solve(op, b, lineax.LU())``;
* ``lineax QR`` / ``lineax SVD``: the least-squares solvers (minimum norm for SVD);
* ``jnp lstsq``: ``jnp.linalg.lstsq`` (SVD-based, minimum norm);
* ``jnp solve``: ``jnp.linalg.solve`` (LU alone, what ``cvxjax`` runs first).

Accuracy is the relative residual ‖J x − r‖/‖r‖ and, for the singular case, the distance to
the minimum-norm solution (NumPy's pinv in float64). Run::

    pip install lineax && python benchmarks/lineax_eval.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import lineax as lx

from cvxjax._robust_solve import robust_dense_solve


def conic_like_jacobian(n, m, rank_drop, seed):
    """J = [[P, AᵀD], [A, D − I]] with D a 0/1 diagonal (the nonnegative cone), like the
    layer's; ``rank_drop`` duplicated rows of A make J singular with a consistent system."""
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(n, n)) / np.sqrt(n)
    P = L @ L.T + 0.1 * np.eye(n)
    A = rng.normal(size=(m, n))
    if rank_drop:
        A[-rank_drop:] = A[:rank_drop]
    d = (rng.random(m) < 0.5).astype(float)
    if rank_drop:
        d[-rank_drop:] = 1.0
        d[:rank_drop] = 1.0
    J = np.block([[P, A.T * d], [A, np.diag(d - 1.0)]])
    x_true = rng.normal(size=n + m)
    r = J @ x_true  # consistent even when J is singular
    return J, r


def timed(fn, *args, repeats=20):
    fn(*args).block_until_ready()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*args).block_until_ready()
        samples.append(time.perf_counter() - t)
    return float(np.median(samples))


def solvers():
    def ours(J, r):
        return robust_dense_solve(lambda v: J @ v, r)

    def lineax_with(solver):
        def solve(J, r):
            op = lx.MatrixLinearOperator(J)
            return lx.linear_solve(op, r, solver, throw=False).value

        return solve

    return {
        "cvxjax": ours,
        "lineax LU": lineax_with(lx.LU()),
        "lineax QR": lineax_with(lx.QR()),
        "lineax SVD": lineax_with(lx.SVD()),
        "jnp lstsq": lambda J, r: jnp.linalg.lstsq(J, r)[0],
        "jnp solve": jnp.linalg.solve,
    }


def main():
    rows = []
    for n, m in ((50, 62), (100, 112), (200, 212)):
        for rank_drop in (0, 3):
            J, r = conic_like_jacobian(n, m, rank_drop, seed=n)
            x_min = np.linalg.pinv(J, rcond=1e-12) @ r
            for name, solve in solvers().items():
                fn = jax.jit(solve)
                x = np.asarray(fn(jnp.asarray(J), jnp.asarray(r)))
                residual = np.linalg.norm(J @ x - r) / np.linalg.norm(r)
                to_min_norm = np.linalg.norm(x - x_min) / np.linalg.norm(x_min)
                seconds = timed(fn, jnp.asarray(J), jnp.asarray(r))
                rows.append(
                    (
                        n + m,
                        "singular" if rank_drop else "regular",
                        name,
                        seconds * 1e3,
                        residual,
                        to_min_norm,
                    )
                )
    print(f"{'size':>5} {'J':>9} {'solver':>11} {'ms':>8} {'residual':>10} {'vs min-norm':>12}")
    for size, kind, name, ms, res, dist in rows:
        print(f"{size:>5} {kind:>9} {name:>11} {ms:8.3f} {res:10.1e} {dist:12.1e}")


if __name__ == "__main__":
    main()
