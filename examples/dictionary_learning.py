"""Task-driven dictionary learning with implicit differentiation through sparse coding.

Problem (Mairal, Bach & Ponce, "Task-Driven Dictionary Learning", 2012; Blondel et al.,
"Efficient and Modular Implicit Differentiation", 2022). A sample x ∈ ℝᵖ is represented by its
elastic-net sparse code on a dictionary D ∈ ℝ^{p×m} with unit-norm atoms (columns):

    z*(x, D) = argmin_z  ½‖x − Dz‖² + λ₁‖z‖₁ + ½λ₂‖z‖²              (inner problem, z ∈ ℝᵐ)

and a linear softmax classifier reads the codes: logits = z*ᵀW + b. Unsupervised dictionary
learning chooses D to reconstruct x well; *task-driven* dictionary learning chooses D (jointly
with W, b) to make the codes good for the classifier:

    min_{D, W, b}  mean_i CE(z*(x_i, D)ᵀW + b, y_i) + μ‖W‖²          (outer problem)

Optimality condition. Split the inner objective into the smooth part
f(z; x, D) = ½‖x − Dz‖² + ½λ₂‖z‖² and g(z) = λ₁‖z‖₁. The code is the fixed point of the
proximal-gradient map (cvxjax.optimality.proximal_gradient with soft_threshold)

    T(z, (x, D), λ₁) = S_{ηλ₁}(z − η∇f(z; x, D)),     S = soft thresholding,

so ``cvxjax.custom_fixed_point(T)`` gives ∂z*/∂D = (I − ∂₁T)⁻¹ ∂_D T from the implicit function
theorem: an m×m linear system per sample (dense LU; nonsingular because λ₂ > 0). The solver
(FISTA with restart, warm-started from the previous outer step) is never differentiated.

What is differentiated. ``jax.grad`` of the outer loss with respect to D, W, b; the codes are
computed for all samples at once with ``jax.vmap`` of the implicitly differentiated solver, and
the gradient with respect to D flows through z* (implicit) and through the atom normalization
D = D_raw / ‖D_raw‖_col (ordinary autodiff). Optimizer: Adam (optax), full batch.

Data: scikit-learn's digits (8×8 images, 10 classes), centered and scaled so that the average
sample has ‖x‖ = 1. Baseline: an unsupervised dictionary (scikit-learn's MiniBatchDictionaryLearning with
the same λ₁), codes from the same elastic-net coder, then the same classifier trained with D
fixed. The task-driven dictionary starts from that same unsupervised dictionary.

Check: on a tiny float64 instance the implicit gradient with respect to D is compared with
central finite differences of the outer loss (inside ``jax.enable_x64``; the global JAX
configuration is not changed). Training itself runs in float32.

Run:  python examples/dictionary_learning.py [--smoke] [--out DIR]
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
from sklearn.decomposition import MiniBatchDictionaryLearning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import cvxjax  # noqa: E402
from cvxjax import optimality  # noqa: E402

NAME = "dictionary_learning"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "assets" / "examples"
DTYPE = jnp.float32  # training precision (explicit, whatever jax_enable_x64 says)


@dataclasses.dataclass(frozen=True)
class Config:
    n_train: int
    n_test: int
    n_atoms: int
    l1: float = 0.05  # λ₁: sparsity of the codes
    l2: float = 0.05  # λ₂: elastic-net ridge; makes z* unique and I − ∂T nonsingular
    weight_decay: float = 1e-3  # μ on the classifier weights
    train_iters: int = 60  # FISTA iterations per outer step (warm-started)
    eval_iters: int = 300  # FISTA iterations for codes from scratch (evaluation)
    steps: int = 200
    learning_rate: float = 0.05


# ----------------------------------------------------------------------------- inner problem


def smooth_part(z, fun_params, l2):
    """f(z; x, D) = ½‖x − Dz‖² + ½λ₂‖z‖²; z (m,), fun_params = (x (p,), D (p, m))."""
    x, D = fun_params
    return 0.5 * jnp.sum((x - D @ z) ** 2) + 0.5 * l2 * jnp.sum(z**2)


def make_sparse_coder(n_atoms, l2, num_iters):
    """The elastic-net coder z*(z_init, (x, D), λ₁) for one sample, with implicit derivatives.

    The optimality condition is the proximal-gradient fixed point with step η = 1/(m + λ₂),
    a valid step for every dictionary with unit-norm atoms (‖D‖₂² ≤ ‖D‖_F² = m). The solver
    uses the sharper step 1/(‖D‖₂² + λ₂) of the current D; the fixed points are the same.
    """
    fixed_point_map = optimality.proximal_gradient(
        lambda z, fun_params: smooth_part(z, fun_params, l2),
        optimality.soft_threshold,
        step_size=1.0 / (n_atoms + l2),
    )

    @cvxjax.custom_fixed_point(fixed_point_map, solve="lu")
    def sparse_code(z_init, fun_params, l1):
        x, D = fun_params
        step = 1.0 / (jnp.linalg.norm(D, 2) ** 2 + l2)

        def prox_grad(z):
            return optimality.soft_threshold(z - step * (D.T @ (D @ z - x) + l2 * z), l1, step)

        def fista_step(_, state):  # FISTA with gradient-based adaptive restart
            z, extrapolated, t = state
            z_next = prox_grad(extrapolated)
            restart = jnp.vdot(extrapolated - z_next, z_next - z) > 0
            t = jnp.where(restart, jnp.ones_like(t), t)
            t_next = (1.0 + jnp.sqrt(1.0 + 4.0 * t**2)) / 2.0
            return z_next, z_next + (t - 1.0) / t_next * (z_next - z), t_next

        one = jnp.asarray(1.0, z_init.dtype)
        return jax.lax.fori_loop(0, num_iters, fista_step, (z_init, z_init, one))[0]

    return sparse_code


def normalize_atoms(D_raw):
    """D = D_raw / ‖D_raw‖ per column: unit-norm atoms (p, m)."""
    return D_raw / jnp.linalg.norm(D_raw, axis=0, keepdims=True)


def batch_codes(coder, Z_init, X, D, l1):
    """Codes of all samples X (n, p) on D (p, m): (n, m), one implicit coder per sample."""
    return jax.vmap(coder, in_axes=(0, (0, None), None))(Z_init, (X, D), l1)


# ----------------------------------------------------------------------------- outer problem


def cross_entropy(logits, labels):
    return jnp.mean(
        jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, labels[:, None], 1)[:, 0]
    )


def outer_loss(params, Z_init, X, labels, coder, cfg):
    """Training objective (CE + μ‖W‖²) of the classifier on the codes; also returns the codes."""
    D = normalize_atoms(params["D"])
    Z = batch_codes(coder, Z_init, X, D, cfg.l1)
    logits = Z @ params["W"] + params["b"]
    return cross_entropy(logits, labels) + cfg.weight_decay * jnp.sum(params["W"] ** 2), Z


def evaluate(params, X, labels, cfg):
    """(cross-entropy, accuracy) on (X, labels) with codes computed from scratch."""
    coder = make_sparse_coder(cfg.n_atoms, cfg.l2, cfg.eval_iters)
    D = normalize_atoms(params["D"])
    Z = batch_codes(coder, jnp.zeros((X.shape[0], cfg.n_atoms), X.dtype), X, D, cfg.l1)
    logits = Z @ params["W"] + params["b"]
    return cross_entropy(logits, labels), jnp.mean(jnp.argmax(logits, axis=1) == labels)


def train(params, data, cfg, learn_dictionary, eval_every):
    """Full-batch Adam on (D, W, b), or on (W, b) only with D frozen (the baseline).

    Returns the final params, the training objective per step and the test (step, CE, acc).
    """
    X_train, y_train, X_test, y_test = data
    coder = make_sparse_coder(cfg.n_atoms, cfg.l2, cfg.train_iters)
    optimizer = optax.adam(cfg.learning_rate)
    opt_state = optimizer.init(params)
    loss_and_grad = jax.value_and_grad(outer_loss, has_aux=True)

    @jax.jit
    def step(params, opt_state, Z):
        (value, Z), grads = loss_and_grad(params, Z, X_train, y_train, coder, cfg)
        if not learn_dictionary:  # baseline: Adam turns a zero gradient into a zero update
            grads = dict(grads, D=jnp.zeros_like(grads["D"]))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, Z, value

    evaluate_test = jax.jit(lambda p: evaluate(p, X_test, y_test, cfg))
    Z = jnp.zeros((X_train.shape[0], cfg.n_atoms), DTYPE)  # warm start carried across steps
    losses, test_curve = [], []
    for i in range(cfg.steps):
        if i % eval_every == 0:
            test_curve.append((i, *map(float, evaluate_test(params))))
        params, opt_state, Z, value = step(params, opt_state, Z)
        losses.append(float(value))
    test_curve.append((cfg.steps, *map(float, evaluate_test(params))))
    return params, np.asarray(losses), np.asarray(test_curve)


# ----------------------------------------------------------------------------- checks and data


def finite_difference_check(seed=0, p=6, n_atoms=4, n_samples=5, n_classes=3, eps=1e-6):
    """Implicit ∂loss/∂D_raw vs central finite differences on a tiny float64 instance.

    Returns (max abs error, max abs gradient entry, fraction of zero code entries).
    """
    cfg = Config(n_train=n_samples, n_test=0, n_atoms=n_atoms, l1=0.1, l2=0.05, train_iters=3000)
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        X = jnp.asarray(rng.normal(size=(n_samples, p)))
        labels = jnp.asarray(rng.integers(0, n_classes, n_samples))
        W = jnp.asarray(rng.normal(size=(n_atoms, n_classes)))
        b = jnp.zeros(n_classes)
        D_raw = jnp.asarray(rng.normal(size=(p, n_atoms)))
        coder = make_sparse_coder(n_atoms, cfg.l2, cfg.train_iters)
        Z0 = jnp.zeros((n_samples, n_atoms))

        def loss_of_dictionary(D_raw):
            return outer_loss({"D": D_raw, "W": W, "b": b}, Z0, X, labels, coder, cfg)[0]

        grad = np.asarray(jax.jit(jax.grad(loss_of_dictionary))(D_raw))
        loss_fn = jax.jit(loss_of_dictionary)
        fd = np.zeros_like(grad)
        for idx in np.ndindex(*grad.shape):
            step = np.zeros(grad.shape)
            step[idx] = eps
            fd[idx] = (loss_fn(D_raw + step) - loss_fn(D_raw - step)) / (2 * eps)
        codes = batch_codes(coder, Z0, X, normalize_atoms(D_raw), cfg.l1)
        zero_fraction = float(jnp.mean(codes == 0))
    return float(np.abs(grad - fd).max()), float(np.abs(fd).max()), zero_fraction


def load_data(n_train, n_test, seed=0):
    """Digits as float32 vectors: pixels in [0, 1], minus the mean training image, scaled by
    one global factor so that the average training sample has ‖x‖ = 1.

    (Per-pixel standardization would blow up the nearly constant border pixels.)
    """
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, train_size=n_train, test_size=n_test, random_state=seed, stratify=y
    )
    mean_image = X_train.mean(axis=0)
    scale = np.linalg.norm(X_train - mean_image, axis=1).mean()
    as_x = lambda a: jnp.asarray((a - mean_image) / scale, DTYPE)
    return as_x(X_train), jnp.asarray(y_train), as_x(X_test), jnp.asarray(y_test)


def unsupervised_dictionary(X_train, cfg, max_epochs, seed=0):
    """Reconstruction-only dictionary (p, m) from scikit-learn, atoms normalized."""
    learner = MiniBatchDictionaryLearning(
        n_components=cfg.n_atoms,
        alpha=cfg.l1,
        batch_size=64,
        max_iter=max_epochs,
        random_state=seed,
    )
    atoms = learner.fit(np.asarray(X_train, np.float64)).components_.T
    return jnp.asarray(atoms / np.linalg.norm(atoms, axis=0), DTYPE)


def plot(path, curves, dictionaries):
    fig = plt.figure(figsize=(15, 4.4))
    grid = fig.add_gridspec(1, 4, width_ratios=[1, 1, 0.8, 0.8])
    ax = fig.add_subplot(grid[0])
    for label, (losses, _) in curves.items():
        ax.plot(losses, label=label)
    ax.set_xlabel("Adam step")
    ax.set_ylabel("training objective (CE + μ‖W‖²)")
    ax.set_title("Training")
    ax.legend()
    ax.grid(True, alpha=0.3)

    ax = fig.add_subplot(grid[1])
    for label, (_, test) in curves.items():
        ax.plot(test[:, 0], test[:, 2], "o-", ms=3, label=label)
    ax.set_xlabel("Adam step")
    ax.set_ylabel("test accuracy")
    ax.set_title("Test accuracy")
    ax.legend()
    ax.grid(True, alpha=0.3)

    for slot, (title, D) in enumerate(dictionaries.items()):
        ax = fig.add_subplot(grid[2 + slot])
        ax.imshow(atom_mosaic(np.asarray(D)), cmap="RdBu_r", vmin=-1.0, vmax=1.0)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def atom_mosaic(D, side=8, columns=5):
    """Tile the m atoms (64-pixel columns of D) into one image, each scaled to [-1, 1]."""
    m = D.shape[1]
    rows = -(-m // columns)
    mosaic = np.full((rows * (side + 1), columns * (side + 1)), np.nan)
    for j in range(m):
        atom = D[:, j].reshape(side, side)
        r, c = divmod(j, columns)
        mosaic[r * (side + 1) : r * (side + 1) + side, c * (side + 1) : c * (side + 1) + side] = (
            atom / np.abs(atom).max()
        )
    return mosaic


def main(smoke: bool = False, out_dir=None) -> dict:
    """Run the example; returns the key figures checked by the smoke test."""
    t_start = time.perf_counter()
    out_dir = Path(DEFAULT_OUT if out_dir is None else out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if smoke:
        cfg = Config(n_train=200, n_test=300, n_atoms=10, steps=30, train_iters=40, eval_iters=150)
        eval_every, dictionary_epochs = cfg.steps, 3
    else:
        cfg = Config(n_train=1000, n_test=797, n_atoms=20)
        eval_every, dictionary_epochs = 10, 10

    fd_error, fd_scale, zero_fraction = finite_difference_check()
    print(
        f"[tiny float64 instance] implicit ∂loss/∂D vs central differences: max error "
        f"{fd_error:.1e} (largest entry {fd_scale:.2f}; {zero_fraction:.0%} of code entries are 0)"
    )

    data = load_data(cfg.n_train, cfg.n_test)
    X_train, y_train, X_test, y_test = data
    print(
        f"digits: {X_train.shape[0]} train, {X_test.shape[0]} test, {X_train.shape[1]} pixels; "
        f"{cfg.n_atoms} atoms, λ₁ = {cfg.l1}, λ₂ = {cfg.l2}"
    )
    t0 = time.perf_counter()
    D_unsupervised = unsupervised_dictionary(X_train, cfg, dictionary_epochs)
    print(
        f"unsupervised dictionary (MiniBatchDictionaryLearning): {time.perf_counter() - t0:.1f} s"
    )

    init = {
        "D": D_unsupervised,
        "W": jnp.zeros((cfg.n_atoms, 10), DTYPE),
        "b": jnp.zeros(10, DTYPE),
    }
    results, curves = {}, {}
    for label, learn_dictionary in (("unsupervised D", False), ("task-driven D", True)):
        t0 = time.perf_counter()
        params, losses, test_curve = train(init, data, cfg, learn_dictionary, eval_every)
        train_ce, train_acc = map(float, evaluate(params, X_train, y_train, cfg))
        test_ce, test_acc = test_curve[-1, 1:]
        results[label] = dict(
            params=params,
            train_ce=train_ce,
            train_acc=train_acc,
            test_ce=float(test_ce),
            test_acc=float(test_acc),
            loss_first=float(losses[0]),
            loss_last=float(losses[-1]),
        )
        curves[label] = (losses, test_curve)
        print(
            f"{label:15s}: objective {losses[0]:.3f} → {losses[-1]:.3f} in {cfg.steps} steps "
            f"({time.perf_counter() - t0:.1f} s)"
        )

    print("\n                 train CE  train acc  test CE  test acc")
    for label, r in results.items():
        print(
            f"{label:15s}  {r['train_ce']:8.4f}  {r['train_acc']:9.4f}  {r['test_ce']:7.4f}  {r['test_acc']:8.4f}"
        )
    raw_pixels = LogisticRegression(max_iter=2000).fit(np.asarray(X_train), np.asarray(y_train))
    raw_acc = float(raw_pixels.score(np.asarray(X_test), np.asarray(y_test)))
    print(
        f"(context: logistic regression on all {X_train.shape[1]} raw pixels, test acc {raw_acc:.4f})"
    )

    png = out_dir / f"{NAME}.png"
    plot(
        png,
        curves,
        {
            "unsupervised atoms": D_unsupervised,
            "task-driven atoms": normalize_atoms(results["task-driven D"]["params"]["D"]),
        },
    )
    elapsed = time.perf_counter() - t_start
    print(f"\nsaved {png}; total {elapsed:.1f} s")

    base, task = results["unsupervised D"], results["task-driven D"]
    return {
        "fd_max_error": fd_error,
        "fd_max_entry": fd_scale,
        "fd_zero_fraction": zero_fraction,
        "baseline_test_acc": base["test_acc"],
        "baseline_test_ce": base["test_ce"],
        "task_driven_test_acc": task["test_acc"],
        "task_driven_test_ce": task["test_ce"],
        "baseline_losses": curves["unsupervised D"][0],
        "task_driven_losses": curves["task-driven D"][0],
        "raw_pixels_test_acc": raw_acc,
        "dictionary_change": float(
            jnp.linalg.norm(normalize_atoms(task["params"]["D"]) - D_unsupervised)
        ),
        "png": str(png),
        "seconds": elapsed,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="reduced size (seconds)")
    parser.add_argument("--out", type=Path, default=None, help="directory for the PNG")
    args = parser.parse_args()
    main(smoke=args.smoke, out_dir=args.out)
