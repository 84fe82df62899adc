"""Dataset distillation: learn one synthetic image per class that trains a good classifier.

After the dataset-distillation experiment of Blondel et al., "Efficient and Modular Implicit
Differentiation" (2022), at CPU scale on scikit-learn's 8×8 digits (10 classes).

Inner problem (a model trained on the distilled set only). With distilled images
X_d ∈ R^{m×64} (m = 10·k, k images per class) and their fixed one-hot labels Y_d ∈ R^{m×10},

    W*(X_d) = argmin_W  f(W, X_d) = (1/m) Σ_i CE(x_i W, y_i) + (l2/2) ‖W‖²,   W ∈ R^{64×10},

a strictly convex multinomial logistic regression, solved by Newton's method (each Newton
system solved by CG with Hessian-vector products), warm-started from the previous outer step's
solution so that four steps suffice.

Optimality condition used for the derivative: stationarity,

    F(W, X_d) = ∇_W f(W, X_d) = 0      (cvxjax.optimality.stationarity),

so cvxjax.custom_root gives ∂W*/∂X_d = −(∇²_W f)⁻¹ ∂_{X_d}∇_W f by the implicit function
theorem; reverse mode solves one linear system with the (symmetric positive definite) Hessian
by conjugate gradient. The Newton loop is never differentiated.

Outer problem: the cross-entropy of W*(X_d) on the *real* training set,

    min_{X_d}  L(X_d) = (1/n) Σ_j CE(x_j W*(X_d), y_j),

minimized over the pixels of X_d with Adam (optax), clipping the pixels to [0, 1] after each step.

Printed: test accuracy of the model trained on the distilled set at initialization (noise
images) and after distillation, against the model trained on the whole training set, and the
number of synthetic images. With float64 enabled (as ``__main__`` does), also the implicit
gradient against central finite differences. Saves ``dataset_distillation.png``: the learned
images and the outer loss curve.

Run:  python examples/dataset_distillation.py [--smoke] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import cvxjax
from cvxjax import optimality

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

NAME = "dataset_distillation"
DEFAULT_OUT_DIR = Path(__file__).resolve().parent.parent / "docs" / "assets" / "examples"
N_CLASSES = 10
N_PIXELS = 64


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def load_data(dtype, n_train=None, seed=0):
    """Digits scaled to [0, 1]: (X_train (n, 64), y_train (n,), X_test, y_test), stratified split.

    ``n_train`` optionally keeps only the first n training images (for quick runs).
    """
    digits = load_digits()
    images = digits.data / 16.0
    X_train, X_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.3, stratify=digits.target, random_state=seed
    )
    if n_train is not None:
        X_train, y_train = X_train[:n_train], y_train[:n_train]
    as_x = lambda a: jnp.asarray(a, dtype=dtype)
    as_y = lambda a: jnp.asarray(a, dtype=jnp.int32)
    return as_x(X_train), as_y(y_train), as_x(X_test), as_y(y_test)


# ----------------------------------------------------------------------------------------------
# Inner problem: ℓ2-regularized multinomial logistic regression, solved by Newton's method
# ----------------------------------------------------------------------------------------------


def cross_entropy(weights, images, labels):
    """Mean cross-entropy of the linear classifier ``images @ weights`` (n, 10) on int labels (n,)."""
    logits = images @ weights
    true_logit = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - true_logit)


def inner_objective(weights, images, labels, l2):
    """f(W, X, y) = mean CE(X W, y) + (l2/2)‖W‖², W (64, 10). Strictly convex in W."""
    return cross_entropy(weights, images, labels) + 0.5 * l2 * jnp.sum(weights**2)


def newton_solve(init_weights, images, labels, l2, n_steps, cg_tol=1e-7):
    """``n_steps`` Newton steps on :func:`inner_objective` from ``init_weights`` (64, 10).

    Each Newton system ∇²f d = ∇f is solved by conjugate gradient with Hessian-vector
    products (the Hessian is symmetric positive definite thanks to the ℓ2 term, and its data
    part has rank ≤ 9n, so CG needs at most 9n + 1 iterations for n images). f is strictly
    convex, so Newton converges quadratically near the solution: from a warm start (the
    previous outer step's solution) three steps reach float32 precision. No line search: from
    zero or a warm start this regularized problem does not need one; add one for general use.
    """
    gradient = lambda w: jax.grad(inner_objective)(w, images, labels, l2)

    def newton_step(_, weights):
        hessian_vector_product = lambda v: jax.jvp(gradient, (weights,), (v,))[1]
        direction, _ = jax.scipy.sparse.linalg.cg(
            hessian_vector_product, gradient(weights), tol=cg_tol, maxiter=500
        )
        return weights - direction

    return jax.lax.fori_loop(0, n_steps, newton_step, init_weights)


def make_inner_solver(n_newton_steps):
    """W*(init, X_d, y_d, l2) with implicit derivatives wrt X_d (and l2) via cvxjax.custom_root.

    F = ∇_W f (stationarity); its Jacobian ∂F/∂W is the Hessian of f, symmetric positive
    definite, hence ``solve="cg"`` (matrix-free: Hessian-vector products only).
    """

    @cvxjax.custom_root(optimality.stationarity(inner_objective), solve="cg")
    def train_on(init_weights, images, labels, l2):
        return newton_solve(init_weights, images, labels, l2, n_newton_steps)

    return train_on


def accuracy(weights, images, labels):
    return float(jnp.mean(jnp.argmax(images @ weights, axis=1) == labels))


# ----------------------------------------------------------------------------------------------
# Outer problem
# ----------------------------------------------------------------------------------------------


def make_outer_loss(train_on, distilled_labels, X_train, y_train, l2):
    """L(X_d; W_init) = CE of W*(X_d) on the real training set; returns (L, W*) for warm starts."""

    def outer_loss(distilled_images, init_weights):
        weights = train_on(init_weights, distilled_images, distilled_labels, l2)
        return cross_entropy(weights, X_train, y_train), weights

    return outer_loss


def distill(outer_loss, distilled_images, init_weights, n_steps, learning_rate):
    """Projected Adam on the distilled pixels. Returns (images, weights, losses (n_steps,))."""
    optimizer = optax.adam(learning_rate)
    value_and_grad = jax.value_and_grad(outer_loss, has_aux=True)

    @jax.jit
    def step(images, opt_state, weights):
        (loss, weights), grad = value_and_grad(images, weights)
        updates, opt_state = optimizer.update(grad, opt_state)
        # Projected step: keep the pixels in [0, 1], the range of the real (scaled) digits.
        images = jnp.clip(optax.apply_updates(images, updates), 0.0, 1.0)
        return images, opt_state, weights, loss

    opt_state = optimizer.init(distilled_images)
    weights, losses = init_weights, []
    for _ in range(n_steps):
        distilled_images, opt_state, weights, loss = step(distilled_images, opt_state, weights)
        losses.append(loss)
    # The returned weights belong to the images before the last update; re-solve for the final.
    _, weights = jax.jit(outer_loss)(distilled_images, weights)
    return distilled_images, weights, np.asarray(jnp.stack(losses), dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# Check: implicit gradient vs central finite differences (float64)
# ----------------------------------------------------------------------------------------------


def gradient_fd_check(l2, n_train=200, n_directions=3, step=1e-5, seed=0):
    """Max relative error of directional derivatives of L(X_d) (implicit) vs central FD.

    Tiny instance (10 distilled images, ``n_train`` real ones), everything float64, the inner
    problem solved to machine precision (15 Newton steps from zero). Requires jax_enable_x64.
    """
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError("gradient_fd_check needs float64: enable jax_enable_x64 first.")
    X_train, y_train, _, _ = load_data(jnp.float64, n_train=n_train)
    train_on = make_inner_solver(n_newton_steps=15)
    labels = jnp.arange(N_CLASSES, dtype=jnp.int32)
    outer_loss = make_outer_loss(train_on, labels, X_train, y_train, l2)
    init_weights = jnp.zeros((N_PIXELS, N_CLASSES), jnp.float64)
    loss = jax.jit(lambda x: outer_loss(x, init_weights)[0])

    key_images, key_directions = jax.random.split(jax.random.PRNGKey(seed))
    images = jax.random.uniform(key_images, (N_CLASSES, N_PIXELS), jnp.float64)
    grad = jax.jit(jax.grad(lambda x: outer_loss(x, init_weights)[0]))(images)
    directions = jax.random.normal(key_directions, (n_directions, N_CLASSES, N_PIXELS), jnp.float64)
    errors = []
    for v in directions:
        implicit = float(jnp.vdot(grad, v))
        fd = float(loss(images + step * v) - loss(images - step * v)) / (2 * step)
        errors.append(abs(implicit - fd) / max(abs(fd), 1e-12))
    return max(errors)


# ----------------------------------------------------------------------------------------------
# Plot and main
# ----------------------------------------------------------------------------------------------


def plot(init_images, distilled_images, distilled_labels, losses, path):
    """Left: the initial noise and the learned images, one column per class. Right: outer loss."""
    labels = np.asarray(distilled_labels)
    rows = [
        ("init", np.asarray(init_images, np.float64)),
        ("learned", np.asarray(distilled_images, np.float64)),
    ]
    per_class = labels.shape[0] // N_CLASSES
    n_rows = 2 * per_class
    fig = plt.figure(figsize=(12, 0.7 + 0.95 * n_rows))
    grid = fig.add_gridspec(
        n_rows, N_CLASSES, left=0.06, right=0.6, top=0.8, bottom=0.04, wspace=0.08, hspace=0.12
    )
    for block, (name, images) in enumerate(rows):
        for c in range(N_CLASSES):
            for k, image in enumerate(images[labels == c]):
                ax = fig.add_subplot(grid[block * per_class + k, c])
                ax.imshow(image.reshape(8, 8), cmap="gray_r", vmin=0.0, vmax=1.0)
                ax.set_xticks([]), ax.set_yticks([])
                if block == 0 and k == 0:
                    ax.set_title(str(c))
                if c == 0 and k == 0:
                    ax.set_ylabel(name)
    fig.text(0.33, 0.93, f"{labels.shape[0]} synthetic digits (column = class)", ha="center")
    ax = fig.add_axes([0.69, 0.2, 0.29, 0.65])
    ax.plot(losses)
    ax.set_yscale("log")
    ax.set_xlabel("Adam step")
    ax.set_ylabel("CE on real training set")
    ax.set_title("outer loss")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(smoke: bool = False, out_dir=None) -> dict:
    """Distill digits into 10 images; print and return the key figures; save the plot.

    Returns a dict with ``n_synthetic``, ``test_acc_init``, ``test_acc_distilled``,
    ``test_acc_full``, ``loss_history`` (array), ``outer_loss_init`` / ``outer_loss_final``,
    ``seconds`` and, when float64 is enabled, ``grad_fd_rel_error``.
    """
    out_dir = DEFAULT_OUT_DIR if out_dir is None else Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # float32 is plenty for the distillation itself (whatever jax_enable_x64 says).
    dtype = jnp.float32
    images_per_class = 1
    l2 = 1e-2
    n_outer_steps = 80 if smoke else 300
    n_train = 400 if smoke else None

    X_train, y_train, X_test, y_test = load_data(dtype, n_train=n_train)
    distilled_labels = jnp.repeat(jnp.arange(N_CLASSES, dtype=jnp.int32), images_per_class)
    n_synthetic = int(distilled_labels.shape[0])
    key = jax.random.PRNGKey(0)
    # Gray images with faint noise: the model trained on them is at chance level.
    init_images = 0.5 + 0.05 * jax.random.normal(key, (n_synthetic, N_PIXELS), dtype)
    zero_weights = jnp.zeros((N_PIXELS, N_CLASSES), dtype)

    # Reference: the same model trained on the whole training set (Newton from zero).
    full_weights = jax.jit(newton_solve, static_argnums=4)(zero_weights, X_train, y_train, l2, 10)
    init_weights = jax.jit(newton_solve, static_argnums=4)(
        zero_weights, init_images, distilled_labels, l2, 20
    )

    train_on = make_inner_solver(n_newton_steps=4)
    outer_loss = make_outer_loss(train_on, distilled_labels, X_train, y_train, l2)
    # A decaying step: with a constant one Adam keeps bouncing around the (nonconvex) optimum.
    learning_rate = optax.cosine_decay_schedule(0.05, n_outer_steps)
    images, weights, losses = distill(
        outer_loss, init_images, init_weights, n_outer_steps, learning_rate
    )

    results = {
        "n_synthetic": n_synthetic,
        "test_acc_init": accuracy(init_weights, X_test, y_test),
        "test_acc_distilled": accuracy(weights, X_test, y_test),
        "test_acc_full": accuracy(full_weights, X_test, y_test),
        "outer_loss_init": float(losses[0]),
        "outer_loss_final": float(jax.jit(outer_loss)(images, weights)[0]),
        "loss_history": losses,
    }
    print(f"synthetic images             : {n_synthetic} (from {X_train.shape[0]} training images)")
    print(
        f"outer loss (train CE)        : {results['outer_loss_init']:.4f} -> "
        f"{results['outer_loss_final']:.4f} after {n_outer_steps} Adam steps"
    )
    print(f"test accuracy, distilled init: {results['test_acc_init']:.3f}")
    print(f"test accuracy, distilled     : {results['test_acc_distilled']:.3f}")
    print(f"test accuracy, full train set: {results['test_acc_full']:.3f}  (reference)")
    if jax.config.read("jax_enable_x64"):
        results["grad_fd_rel_error"] = gradient_fd_check(l2)
        print(
            f"implicit grad vs central FD  : max rel. error {results['grad_fd_rel_error']:.1e} "
            "(float64, tiny instance)"
        )
    plot(init_images, images, distilled_labels, losses, out_dir / f"{NAME}.png")
    results["seconds"] = time.perf_counter() - start
    print(f"total time                   : {results['seconds']:.1f} s")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="reduced size (seconds)")
    parser.add_argument("--out", default=None, help=f"output directory (default {DEFAULT_OUT_DIR})")
    cli = parser.parse_args()
    jax.config.update("jax_enable_x64", True)  # only for the float64 finite-difference check
    main(smoke=cli.smoke, out_dir=cli.out)
