"""Scratch timing: cvxjax's dense JAX IPM (``cvxjax._backends.jax_qp``) vs qpax.

Not a test. Run ``python benchmarks/_scratch_jax_qp_timing.py [--f32] [--runs N]``.

Random strictly convex QPs with n variables, n//4 equalities and n inequalities (qpax needs
Q + GᵀG ≻ 0 for its Cholesky, so P ≻ 0 here). Both solvers are jitted (``jit(vmap(...))`` for a
batch) and timed on the same data after a warm-up call; we report the median (and min) wall
time over ``--runs`` calls. qpax stops on an absolute ∞-norm KKT residual of 1e-5; ours on a
relative 1e-8 (float64) / 1e-5 (float32) on residuals and gap, so we also time ours at
``tol=1e-5`` for a like-for-like row. Accuracy column: max |x − x_ref| over the batch against
CVXPY + CLARABEL (float64, tolerances 1e-11).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np


def make_qp(rng, n, batch):
    p, l = n // 4, n
    Ps, qs, As, bs = [], [], [], []
    for _ in range(batch):
        M = rng.standard_normal((n, n))
        P = M @ M.T / n + 0.1 * np.eye(n)
        A = rng.standard_normal((p + l, n))
        x0 = rng.standard_normal(n)
        b = A @ x0
        b[p:] += rng.uniform(0.1, 1.0, l)
        Ps.append(P), qs.append(rng.standard_normal(n)), As.append(A), bs.append(b)
    return np.stack(Ps), np.stack(qs), np.stack(As), np.stack(bs), p


def clarabel_x(P, q, A, b, p):
    """Reference solution: CVXPY + CLARABEL in float64 at tight tolerances."""
    import cvxpy as cp

    x = cp.Variable(q.shape[0])
    cons = [A[:p] @ x == b[:p], A[p:] @ x <= b[p:]]
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(P)) + q @ x), cons)
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
    return x.value


def time_interleaved(fns, args, runs):
    """Median and min wall time (ms) of each fn, calling them round-robin so that load from
    other processes hits all of them alike."""
    for fn in fns.values():
        jax.block_until_ready(fn(*args))  # compile + warm-up
    ts = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            ts[k].append(time.perf_counter() - t0)
    return {k: (np.median(v) * 1e3, np.min(v) * 1e3) for k, v in ts.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--f32", action="store_true")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--sizes", type=int, nargs="*", default=[50, 200])
    ap.add_argument("--batches", type=int, nargs="*", default=[1, 32])
    args = ap.parse_args()
    if not args.f32:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from cvxjax._backends.jax_qp import solve_qp

    try:
        import qpax
    except ImportError:  # pragma: no cover
        qpax = None
    dtype = jnp.float32 if args.f32 else jnp.float64
    rng = np.random.default_rng(0)
    print(f"dtype={jnp.dtype(dtype).name} devices={jax.devices()} runs={args.runs}")
    print(f"{'solver':26s} {'n':>4s} {'batch':>5s} {'median ms':>10s} {'min ms':>8s} "
          f"{'iters':>6s} {'max|dx|':>9s}")
    for n in args.sizes:
        for batch in args.batches:
            P, q, A, b, p = (x if isinstance(x, int) else jnp.asarray(x, dtype)
                             for x in make_qp(rng, n, batch))
            x_ref = np.stack([clarabel_x(*(np.asarray(v[i], np.float64) for v in (P, q, A, b)), p)
                              for i in range(batch)])

            def ours(tol):
                f = jax.vmap(lambda P, q, A, b: solve_qp(P, q, A, b, p, tol=tol)[:5])
                return jax.jit(f)

            fns = {"cvxjax (default tol)": ours(None), "cvxjax (tol=1e-5)": ours(1e-5)}
            if batch > 1:
                # Sequential loop over the batch (each instance stops at its own iteration).
                fns["cvxjax lax.map (default)"] = jax.jit(lambda *a: jax.lax.map(
                    lambda d: solve_qp(*d, p)[:5], a))
            if qpax is not None:
                def qp(P, q, A, b):
                    return qpax.solve_qp(P, q, A[:p], b[:p], A[p:], b[p:])
                fns["qpax (solver_tol=1e-5)"] = jax.jit(jax.vmap(qp))
                if batch > 1:
                    fns["qpax lax.map"] = jax.jit(lambda *a: jax.lax.map(lambda d: qp(*d), a))
            times = time_interleaved(fns, (P, q, A, b), args.runs)
            for name, fn in fns.items():
                out = fn(P, q, A, b)
                iters = np.asarray(out[-1] if name.startswith("qpax") else out[4])
                dx = np.abs(np.asarray(out[0]) - x_ref).max()
                med, mn = times[name]
                print(f"{name:26s} {n:4d} {batch:5d} {med:10.2f} {mn:8.2f} "
                      f"{iters.max():6d} {dx:9.1e}", flush=True)


if __name__ == "__main__":
    main()
