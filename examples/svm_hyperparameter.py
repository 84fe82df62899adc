"""Hyperparameter optimization of a multiclass SVM by implicit differentiation.

Problem. A Crammer–Singer multiclass SVM on scikit-learn's digits (8×8 images, k = 10 classes,
standardized pixels) is trained on n noisy-label training samples X (n, p), one-hot labels
Y (n, k). Its regularization strength λ > 0 is the hyperparameter; we tune log λ by gradient
descent on the multiclass hinge loss of a clean validation set (Blondel et al., "Efficient and
Modular Implicit Differentiation", 2022, section on multiclass SVMs).

Inner problem (the SVM dual). Each sample gets a distribution β_i ∈ Δ^k over the classes; with
β ∈ C = Δ^k × … × Δ^k (n, k), the primal weights are W(β, λ) = Xᵀ(Y − β)/λ (p, k) and the dual
is min_{β ∈ C} (1/2λ)‖Xᵀ(Y − β)‖²_F + ⟨β, Y⟩. We minimize the same function times λ,

    f(β, λ) = ½‖Xᵀ(Y − β)‖²_F + λ⟨β, Y⟩,

which has the same minimizers but a λ-independent Lipschitz constant L = ‖X‖₂², so one step
size η = 1/L serves every λ the outer loop visits. The solver is accelerated projected
gradient descent (FISTA with adaptive restart) built on the step β ← Π_C(β − η∇f(β, λ)), with
Π_C the row-wise Euclidean projection onto the simplex.

Optimality condition. β*(λ) is a fixed point of the same map,

    T(β, λ) = Π_C(β − η∇_β f(β, λ))   (cvxjax.optimality.projected_gradient),

so ``cvxjax.custom_fixed_point(T)`` differentiates any solver of this problem with the implicit
function theorem on F(β, λ) = T(β, λ) − β = 0: dβ*/dλ = (I − ∂₁T)⁻¹ ∂₂T, a linear system of
size n·k solved matrix-free by BiCGSTAB. The solver itself is never differentiated (any solver
converging to the fixed point will do, warm starts included).

What is differentiated. The outer objective is the validation hinge loss
ℓ(λ) = mean_i max_j (1 − Y_ij + s_ij) − s_{i,y_i} with scores s = X_val W(β*(λ), λ); its
derivative with respect to log λ (the hypergradient) is computed

  (a) by implicit differentiation (custom_fixed_point around K solver iterations), and
  (b) by unrolling: ``jax.grad`` straight through the same K iterations (a scan),

and both are compared with central finite differences of ℓ at a converged solution. We time one
hypergradient of each method as K grows: unrolling must record and replay all K iterations,
implicit differentiation pays for the forward iterations plus one linear solve.

The example runs in float64 (inside ``jax.enable_x64``) so that the finite-difference check is
meaningful; it does not change the global JAX configuration.

Run:  python examples/svm_hyperparameter.py [--smoke] [--out DIR]
"""

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import cvxjax  # noqa: E402
from cvxjax import optimality  # noqa: E402

NAME = "svm_hyperparameter"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "assets" / "examples"
DTYPE = jnp.float64


@dataclasses.dataclass(frozen=True)
class Splits:
    """Standardized digits. X_*: (n_*, 64) features; Y_*: (n_*, 10) one-hot labels."""

    X_train: jax.Array
    Y_train: jax.Array
    X_val: jax.Array
    Y_val: jax.Array
    X_test: jax.Array
    Y_test: jax.Array


def load_splits(n_train: int, n_val: int, n_test: int, label_noise: float, seed: int = 0) -> Splits:
    """Digits split into train / validation / test; a fraction ``label_noise`` of the training
    labels is replaced by uniformly random classes (so that regularization matters)."""
    X, y = load_digits(return_X_y=True)
    X_train, X_rest, y_train, y_rest = train_test_split(
        X, y, train_size=n_train, random_state=seed, stratify=y
    )
    X_val, X_test, y_val, y_test = train_test_split(
        X_rest, y_rest, train_size=n_val, test_size=n_test, random_state=seed, stratify=y_rest
    )
    rng = np.random.default_rng(seed)
    noisy = rng.random(n_train) < label_noise
    y_train = np.where(noisy, rng.integers(0, 10, n_train), y_train)
    scaler = StandardScaler().fit(X_train)
    as_x = lambda a: jnp.asarray(scaler.transform(a), DTYPE)
    as_y = lambda labels: jax.nn.one_hot(labels, 10, dtype=DTYPE)
    return Splits(
        as_x(X_train), as_y(y_train), as_x(X_val), as_y(y_val), as_x(X_test), as_y(y_test)
    )


# ----------------------------------------------------------------------------- inner problem


def uniform_start(splits):
    """The cold start used everywhere: uniform distributions β_i = 1/k, shape (n, k)."""
    return jnp.full_like(splits.Y_train, 1.0 / splits.Y_train.shape[1])


def scaled_dual_objective(beta, fun_params):
    """f(β, λ) = ½‖Xᵀ(Y − β)‖²_F + λ⟨β, Y⟩ for β (n, k); fun_params = (λ, X (n, p), Y (n, k))."""
    lam, X, Y = fun_params
    return 0.5 * jnp.sum((X.T @ (Y - beta)) ** 2) + lam * jnp.vdot(beta, Y)


def primal_weights(beta, lam, X, Y):
    """W(β, λ) = Xᵀ(Y − β)/λ, shape (p, k): the primal solution recovered from the dual."""
    return X.T @ (Y - beta) / lam


def project_rows_on_simplex(B, _unused_params):
    """Row-wise Euclidean projection of B (n, k) onto the probability simplex Δ^k."""
    return jax.vmap(optimality.projection_simplex)(B)


def make_fixed_point_map(X_train):
    """T(β, (λ, X, Y), None) = Π_C(β − ∇f/L): the PGD step, and the optimality condition."""
    lipschitz = float(jnp.linalg.norm(X_train, 2) ** 2)  # ‖∇²f‖ = ‖X‖₂², independent of λ
    return optimality.projected_gradient(
        scaled_dual_objective, project_rows_on_simplex, step_size=1.0 / lipschitz
    )


def accelerated_pgd(T, beta_init, fun_params, num_iters):
    """``num_iters`` steps of accelerated projected gradient from ``beta_init`` (n, k).

    FISTA (Beck & Teboulle 2009) with gradient-based adaptive restart (O'Donoghue & Candès
    2015): the momentum is reset whenever the step goes against the previous one. On this
    ill-conditioned dual plain PGD still has a fixed-point residual ~4e-4 after 5000
    iterations; the restarted variant converges linearly (residual ~1e-8 after 2000, at
    log λ = 2). Its fixed points are those of T, so the implicit derivative is the same for
    any of these solvers.
    """

    def step(_, state):
        beta, extrapolated, t = state
        beta_next = T(extrapolated, fun_params, None)
        restart = jnp.vdot(extrapolated - beta_next, beta_next - beta) > 0
        t = jnp.where(restart, jnp.ones_like(t), t)
        t_next = (1.0 + jnp.sqrt(1.0 + 4.0 * t**2)) / 2.0
        return beta_next, beta_next + (t - 1.0) / t_next * (beta_next - beta), t_next

    one = jnp.asarray(1.0, beta_init.dtype)
    return jax.lax.fori_loop(0, num_iters, step, (beta_init, beta_init, one))[0]


# One compiled solver for every "solve to convergence" below (T and num_iters are static).
solve_jit = jax.jit(accelerated_pgd, static_argnums=(0, 3))


# ----------------------------------------------------------------------------- outer problem


def multiclass_hinge(W, X, Y):
    """Crammer–Singer loss mean_i [max_j (1 − Y_ij + s_ij) − s_{i,y_i}], s = XW."""
    scores = X @ W
    return jnp.mean(jnp.max(1.0 - Y + scores, axis=1) - jnp.sum(scores * Y, axis=1))


def accuracy(W, X, Y):
    return jnp.mean(jnp.argmax(X @ W, axis=1) == jnp.argmax(Y, axis=1))


def make_validation_loss(inner_solver, splits: Splits):
    """ℓ(log λ, β_init) = hinge loss on the validation set of W(β*(λ), λ); also returns β*.

    ``inner_solver(beta_init, fun_params, None)`` returns β*; how it is differentiated
    (implicitly or by unrolling) is the solver's business.
    """

    def validation_loss(log_lam, beta_init):
        lam = jnp.exp(log_lam)
        beta = inner_solver(beta_init, (lam, splits.X_train, splits.Y_train), None)
        W = primal_weights(beta, lam, splits.X_train, splits.Y_train)
        return multiclass_hinge(W, splits.X_val, splits.Y_val), beta

    return validation_loss


def implicit_solver(T, solver, num_iters):
    """``solver`` run for ``num_iters`` iterations, differentiated by the implicit function
    theorem on β = T(β, λ); BiCGSTAB solves the (n·k)-dimensional linear system matrix-free."""

    @cvxjax.custom_fixed_point(T, solve="bicgstab")
    def solve(beta_init, fun_params, proj_params):
        return solver(T, beta_init, fun_params, num_iters)

    return solve


def unrolled_solver(T, num_iters):
    """The same solver without a custom rule: ``jax.grad`` differentiates every iteration
    (``fori_loop`` with a static trip count lowers to ``lax.scan``, which JAX can reverse by
    storing all ``num_iters`` intermediate states)."""

    def solve(beta_init, fun_params, proj_params):
        return accelerated_pgd(T, beta_init, fun_params, num_iters)

    return solve


def compiled_hypergradient(T, splits, method, num_iters, example_args):
    """(log λ, β_init) ↦ ((ℓ, β*), dℓ/dlog λ) for one differentiation method, compiled ahead of
    time for ``example_args``; also returns XLA's temporary-buffer size in bytes (for unrolling
    this holds the K stored iterates that the backward pass replays)."""
    if method == "implicit":
        inner = implicit_solver(T, accelerated_pgd, num_iters)
    else:
        inner = unrolled_solver(T, num_iters)
    loss = make_validation_loss(inner, splits)
    compiled = jax.jit(jax.value_and_grad(loss, has_aux=True)).lower(*example_args).compile()
    memory = compiled.memory_analysis()
    return compiled, (np.nan if memory is None else float(memory.temp_size_in_bytes))


def median_time(fun, *args, repeats):
    """Median wall time of ``fun(*args)`` (already compiled), waiting for the result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fun(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# ----------------------------------------------------------------------------- the three parts


def check_at_convergence(T, splits, log_lam, num_iters, fd_step):
    """Implicit hypergradient at a converged β* vs central finite differences of ℓ.

    Returns (fixed-point residual, implicit hypergradient, finite-difference value).
    """
    beta_uniform = uniform_start(splits)
    params = lambda lg: (jnp.exp(lg), splits.X_train, splits.Y_train)
    beta_star = solve_jit(T, beta_uniform, params(log_lam), num_iters)
    residual = float(jnp.linalg.norm(T(beta_star, params(log_lam), None) - beta_star))

    # Implicit: β* handed over as the solver's output (zero further iterations).
    loss = make_validation_loss(implicit_solver(T, accelerated_pgd, 0), splits)
    hypergrad = float(jax.jit(jax.grad(lambda lg: loss(lg, beta_star)[0]))(log_lam))

    def loss_converged(lg):
        beta = solve_jit(T, beta_star, params(lg), num_iters)  # warm start: ~machine precision
        W = primal_weights(beta, jnp.exp(lg), splits.X_train, splits.Y_train)
        return float(multiclass_hinge(W, splits.X_val, splits.Y_val))

    finite_diff = (loss_converged(log_lam + fd_step) - loss_converged(log_lam - fd_step)) / (
        2 * fd_step
    )
    return residual, hypergrad, finite_diff


def timing_sweep(T, splits, log_lam, iteration_counts, reference, repeats):
    """Hypergradient at log λ from a cold start with K solver iterations, for both methods.

    Returns rows (K, t_implicit, t_unrolled, g_implicit, g_unrolled, MB_implicit, MB_unrolled).
    """
    args = (log_lam, uniform_start(splits))
    rows = []
    for num_iters in iteration_counts:
        times, grads, megabytes = [], [], []
        for method in ("implicit", "unrolled"):
            fn, temp_bytes = compiled_hypergradient(T, splits, method, num_iters, args)
            grads.append(float(fn(*args)[1]))
            times.append(median_time(fn, *args, repeats=repeats))
            megabytes.append(temp_bytes / 2**20)
        rows.append((num_iters, *times, *grads, *megabytes))
        rel = [abs(g - reference) / abs(reference) for g in grads]
        print(
            f"{num_iters:6d}  {times[0] * 1e3:9.1f}  {times[1] * 1e3:9.1f}  {times[1] / times[0]:5.2f}x"
            f"  {megabytes[0]:7.1f}  {megabytes[1]:7.1f}"
            f"  {grads[0]:+.6f}  {grads[1]:+.6f}  {rel[0]:.1e}  {rel[1]:.1e}"
        )
    return rows


def tune_regularization(T, splits, log_lam_init, num_steps, learning_rate, inner_iters):
    """Adam on log λ with implicit hypergradients; the inner solver is warm-started each step.

    Returns the trajectory of (log λ, validation loss) and the final (log λ, β*).
    """
    loss = make_validation_loss(implicit_solver(T, accelerated_pgd, inner_iters), splits)
    loss_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
    optimizer = optax.adam(learning_rate)
    log_lam = jnp.asarray(log_lam_init, DTYPE)
    opt_state = optimizer.init(log_lam)
    beta = uniform_start(splits)
    trajectory = []
    for _ in range(num_steps):
        (value, beta), grad = loss_and_grad(log_lam, beta)
        trajectory.append((float(log_lam), float(value)))
        updates, opt_state = optimizer.update(grad, opt_state)
        log_lam = optax.apply_updates(log_lam, updates)
    (value, beta), _ = loss_and_grad(log_lam, beta)
    trajectory.append((float(log_lam), float(value)))
    return np.asarray(trajectory), log_lam, beta


def evaluate_at(T, splits, log_lam, beta_init, num_iters):
    """Validation hinge loss / accuracy and test accuracy of the SVM solved to convergence."""
    lam = jnp.exp(jnp.asarray(log_lam, DTYPE))
    beta = solve_jit(T, beta_init, (lam, splits.X_train, splits.Y_train), num_iters)
    W = primal_weights(beta, lam, splits.X_train, splits.Y_train)
    return {
        "val_loss": float(multiclass_hinge(W, splits.X_val, splits.Y_val)),
        "val_acc": float(accuracy(W, splits.X_val, splits.Y_val)),
        "test_acc": float(accuracy(W, splits.X_test, splits.Y_test)),
    }


def loss_curve(T, splits, log_lams, num_iters):
    """Validation loss on a grid of log λ (solves warm-started along the grid)."""
    beta = uniform_start(splits)
    values = []
    for log_lam in log_lams:
        lam = jnp.exp(jnp.asarray(log_lam, DTYPE))
        beta = solve_jit(T, beta, (lam, splits.X_train, splits.Y_train), num_iters)
        W = primal_weights(beta, lam, splits.X_train, splits.Y_train)
        values.append(float(multiclass_hinge(W, splits.X_val, splits.Y_val)))
    return np.asarray(values)


def plot(path, sweep, reference, trajectory, grid, grid_losses):
    sweep = np.asarray(sweep)
    iters, t_imp, t_unr, g_imp, g_unr = (sweep[:, i] for i in range(5))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))

    ax = axes[0]
    ax.loglog(iters, t_imp * 1e3, "o-", label="implicit (custom_fixed_point)")
    ax.loglog(iters, t_unr * 1e3, "s-", label="unrolled (jax.grad through the loop)")
    ax.set_xlabel("inner solver iterations K")
    ax.set_ylabel("time per hypergradient [ms]")
    ax.set_title("Runtime of one hypergradient")
    ax.text(
        0.97,
        0.04,
        f"XLA temp. memory at K = {int(iters[-1])}:\n"
        f"implicit {sweep[-1, 5]:.1f} MB, unrolled {sweep[-1, 6]:.1f} MB",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize=8,
    )
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[1]
    ax.loglog(iters, np.abs(g_imp - reference) / abs(reference), "o-", label="implicit")
    ax.loglog(iters, np.abs(g_unr - reference) / abs(reference), "s-", label="unrolled")
    ax.set_xlabel("inner solver iterations K")
    ax.set_ylabel("relative error of dℓ/dlog λ")
    ax.set_title("Hypergradient error vs converged finite differences")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[2]
    if grid is not None:
        ax.plot(grid, grid_losses, "-", color="0.6", label="validation loss (grid)")
    ax.plot(trajectory[:, 0], trajectory[:, 1], "o-", ms=3, color="C3", label="Adam on log λ")
    ax.plot(trajectory[0, 0], trajectory[0, 1], "k^", label="start")
    ax.plot(trajectory[-1, 0], trajectory[-1, 1], "k*", ms=10, label="end")
    ax.set_xlabel("log λ")
    ax.set_ylabel("validation hinge loss")
    ax.set_title("Tuning λ with implicit hypergradients")
    ax.legend()
    ax.grid(True, alpha=0.3)

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(smoke: bool = False, out_dir=None) -> dict:
    """Run the example; returns the key figures checked by the smoke test."""
    t_start = time.perf_counter()
    out_dir = Path(DEFAULT_OUT if out_dir is None else out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with jax.enable_x64(True):  # float64 for the finite-difference check; scoped, not global
        return _run(smoke, out_dir, t_start)


def _run(smoke, out_dir, t_start):
    if smoke:
        sizes = dict(n_train=150, n_val=150, n_test=150)
        iteration_counts, repeats, outer_steps, ref_iters, grid = [600], 1, 5, 1500, None
    else:
        sizes = dict(n_train=500, n_val=500, n_test=797)
        iteration_counts, repeats, outer_steps, ref_iters = [100, 200, 500, 1000, 2000], 3, 25, 5000
        grid = np.linspace(0.0, 7.0, 15)
    splits = load_splits(**sizes, label_noise=0.2)
    T = make_fixed_point_map(splits.X_train)
    n, k = splits.Y_train.shape
    print(
        f"digits: {n} train (20% labels randomized), {splits.X_val.shape[0]} validation, "
        f"{splits.X_test.shape[0]} test; {splits.X_train.shape[1]} features, {k} classes; "
        f"dual variables n·k = {n * k}"
    )

    # 1. At a converged β*: implicit hypergradient vs finite differences.
    log_lam_check = jnp.asarray(2.0, DTYPE)
    residual, hypergrad_implicit, hypergrad_fd = check_at_convergence(
        T, splits, log_lam_check, ref_iters, fd_step=1e-5
    )
    fd_rel_error = abs(hypergrad_implicit - hypergrad_fd) / abs(hypergrad_fd)
    print(
        f"\n[converged, log λ = {float(log_lam_check):.1f}] {ref_iters} solver iterations, "
        f"fixed-point residual {residual:.1e}"
    )
    print(f"  dℓ/dlog λ implicit           : {hypergrad_implicit:+.8f}")
    print(
        f"  dℓ/dlog λ finite differences : {hypergrad_fd:+.8f}   (relative gap {fd_rel_error:.1e})"
    )

    # 2. Runtime and accuracy of one hypergradient vs the number of solver iterations.
    print(
        "\n     K  impl. ms  unrol. ms  ratio  impl. MB  unrol. MB"
        "  g implicit  g unrolled  err impl.  err unrol."
    )
    sweep = timing_sweep(T, splits, log_lam_check, iteration_counts, hypergrad_fd, repeats)
    last = sweep[-1]
    implicit_vs_unrolled = abs(last[3] - last[4]) / abs(last[4])
    print(f"at K = {last[0]}: |implicit − unrolled| / |unrolled| = {implicit_vs_unrolled:.1e}")

    # 3. Tune log λ by Adam on the validation loss, with implicit hypergradients.
    log_lam_init = 0.5
    trajectory, log_lam_final, beta_final = tune_regularization(
        T, splits, log_lam_init, outer_steps, learning_rate=0.3, inner_iters=300
    )
    before = evaluate_at(T, splits, log_lam_init, uniform_start(splits), ref_iters)
    after = evaluate_at(T, splits, log_lam_final, beta_final, ref_iters)
    print(f"\nAdam on log λ: {outer_steps} steps, {log_lam_init:.2f} → {float(log_lam_final):.2f}")
    for name, m in (("before", before), ("after", after)):
        print(
            f"  {name:6s}: validation hinge {m['val_loss']:.4f}, validation accuracy "
            f"{m['val_acc']:.3f}, test accuracy {m['test_acc']:.3f}"
        )

    grid_losses = None if grid is None else loss_curve(T, splits, grid, ref_iters)
    png = out_dir / f"{NAME}.png"
    plot(png, sweep, hypergrad_fd, trajectory, grid, grid_losses)
    elapsed = time.perf_counter() - t_start
    print(f"\nsaved {png}; total {elapsed:.1f} s")

    sweep_arr = np.asarray(sweep)
    return {
        "fixed_point_residual": residual,
        "hypergrad_implicit": hypergrad_implicit,
        "hypergrad_fd": hypergrad_fd,
        "fd_rel_error": fd_rel_error,
        "iterations": sweep_arr[:, 0],
        "time_implicit": sweep_arr[:, 1],
        "time_unrolled": sweep_arr[:, 2],
        "grad_implicit": sweep_arr[:, 3],
        "grad_unrolled": sweep_arr[:, 4],
        "megabytes_implicit": sweep_arr[:, 5],
        "megabytes_unrolled": sweep_arr[:, 6],
        "implicit_vs_unrolled": implicit_vs_unrolled,
        "log_lam_init": log_lam_init,
        "log_lam_final": float(log_lam_final),
        "trajectory": trajectory,
        "val_loss_before": before["val_loss"],
        "val_loss_after": after["val_loss"],
        "val_acc_before": before["val_acc"],
        "val_acc_after": after["val_acc"],
        "test_acc_before": before["test_acc"],
        "test_acc_after": after["test_acc"],
        "png": str(png),
        "seconds": elapsed,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="reduced size (seconds)")
    parser.add_argument("--out", type=Path, default=None, help="directory for the PNG")
    args = parser.parse_args()
    main(smoke=args.smoke, out_dir=args.out)
