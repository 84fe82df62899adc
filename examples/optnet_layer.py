"""OptNet-style QP layer: a neural network whose last layer solves a quadratic program.

Task (learning the solution map of a parametric QP from samples). A context vector
z ∈ R^d determines an allocation over n assets that must lie in the *capped simplex*

    C = {x ∈ R^n : 1ᵀx = 1, 0 ≤ x ≤ u}        (fully invested, long only, at most u per asset).

The hidden ground truth is y(z) = Π_C(c(z)), the Euclidean projection of an unknown nonlinear
score c(z) onto C. Targets therefore have exact zeros, entries exactly at the cap u, and sum
to one: structure that a plain network can only approximate.

Model (Amos & Kolter, *OptNet*, 2017). A small MLP maps z to the linear term q = g_θ(z) of

    x*(q) = argmin_x  ½‖x‖² − qᵀx   s.t.  1ᵀx = 1,  x ≥ 0,  x ≤ u          (inner QP)

and the network's output is x*(q), feasible by construction. Training minimizes the mean
squared error ‖x*(g_θ(z)) − y‖² end to end with optax. The gradient with respect to q comes
from `cvxjax.CvxpyLayer`: the implicit function theorem applied to the KKT conditions of the
QP (the layer's conic optimality residual F(x, v; q) = 0), ∂x*/∂q = −(∂_z F)⁻¹ ∂_q F; the
solver itself is never differentiated. On the active set this is the projection onto the
free coordinates with the budget constraint: zeros and capped entries get zero derivative.

Baselines with the same MLP body: a plain MLP regressing y directly (unconstrained output),
and an MLP followed by a softmax (on the simplex, but it cannot produce exact zeros and
ignores the cap u). We report train/test loss, the largest constraint violation on the test
set and the time per epoch.

Run:  python examples/optnet_layer.py            (full run, ~1 min on 2 CPU cores)
      python examples/optnet_layer.py --smoke    (reduced size, a few seconds + compile)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cvxpy as cp
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from tqdm import tqdm

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import cvxjax  # noqa: E402

NAME = "optnet_layer"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "assets" / "examples"
MODEL_NAMES = ("qp_layer", "mlp", "mlp_softmax")


# ---------------------------------------------------------------------------------------------
# Data: projections of a nonlinear score onto the capped simplex
# ---------------------------------------------------------------------------------------------
def project_capped_simplex(scores: np.ndarray, cap: float, iters: int = 100) -> np.ndarray:
    """Euclidean projection of each row of ``scores`` (N, n) onto {1ᵀx = 1, 0 ≤ x ≤ cap}.

    The projection is clip(c − τ, 0, cap) with the scalar τ chosen so the row sums to one;
    the sum is monotone in τ, so bisection finds it. Independent of cvxjax (ground truth).
    """
    low = scores.min(axis=1, keepdims=True) - 1.0
    high = scores.max(axis=1, keepdims=True)
    for _ in range(iters):
        tau = 0.5 * (low + high)
        too_big = np.clip(scores - tau, 0.0, cap).sum(axis=1, keepdims=True) > 1.0
        low, high = np.where(too_big, tau, low), np.where(too_big, high, tau)
    return np.clip(scores - 0.5 * (low + high), 0.0, cap)


def make_dataset(rng, num_train, num_test, dim_context, num_assets, cap):
    """Contexts z ~ N(0, I) (N, d) and targets y = Π_C(c(z)) (N, n), c a random sine network."""
    hidden = 32
    w1 = rng.normal(size=(dim_context, hidden))
    w2 = rng.normal(size=(hidden, num_assets)) / np.sqrt(hidden)
    # A smooth score whose 0.5 scale puts ~40% of target entries at 0 and ~20% at the cap:
    # the constraints shape most targets.
    score = lambda z: 0.5 * np.sin(0.3 * z @ w1) @ w2
    z = rng.normal(size=(num_train + num_test, dim_context))
    y = project_capped_simplex(score(z), cap)
    return (z[:num_train], y[:num_train]), (z[num_train:], y[num_train:])


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
def init_mlp(key, sizes, dtype):
    """Weights [(W (in, out), b (out,)), ...] with LeCun-normal initialization."""
    params = []
    for key_layer, (fan_in, fan_out) in zip(
        jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])
    ):
        weight = jax.random.normal(key_layer, (fan_in, fan_out), dtype) / np.sqrt(fan_in)
        params.append((weight, jnp.zeros(fan_out, dtype)))
    return params


def mlp(params, z):
    """(B, d) -> (B, n): tanh hidden layers, linear output."""
    for weight, bias in params[:-1]:
        z = jnp.tanh(z @ weight + bias)
    weight, bias = params[-1]
    return z @ weight + bias


def make_qp_layer(num_assets, cap, solver, dtype):
    """The inner QP min ½‖x‖² − qᵀx s.t. 1ᵀx = 1, 0 ≤ x ≤ u as a JAX function q (B, n) -> x (B, n)."""
    x = cp.Variable(num_assets)
    q = cp.Parameter(num_assets)
    constraints = [cp.sum(x) == 1, x >= 0, x <= cap]
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x) - q @ x), constraints)
    # float32 solutions are only accurate to ~1e-5 relative, so the residual check must be
    # looser there; in float64 keep the library's tight default.
    check_tol = 1e-6 if jnp.finfo(dtype).bits == 64 else 1e-4
    layer = cvxjax.CvxpyLayer(
        problem, parameters=[q], variables=[x], solver=solver, on_failure="nan", check_tol=check_tol
    )
    return lambda q_batch: layer(q_batch)[0]


def make_models(num_assets, cap, solver, dtype):
    """Each model maps (MLP params, z (B, d)) to an allocation (B, n)."""
    qp_layer = make_qp_layer(num_assets, cap, solver, dtype)
    return {
        "qp_layer": lambda params, z: qp_layer(mlp(params, z)),
        "mlp": mlp,
        "mlp_softmax": lambda params, z: jax.nn.softmax(mlp(params, z), axis=-1),
    }


def constraint_violation(x, cap):
    """Largest violation of 1ᵀx = 1, x ≥ 0, x ≤ u per row: (B, n) -> (B,)."""
    budget = jnp.abs(jnp.sum(x, axis=-1) - 1.0)
    bounds = jnp.max(jnp.maximum(jnp.maximum(-x, x - cap), 0.0), axis=-1)
    return jnp.maximum(budget, bounds)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def mean_squared_error(prediction, target):
    """Mean over samples of ‖x − y‖² (sum over assets); failed QP solves (NaN) are skipped."""
    per_sample = jnp.sum((prediction - target) ** 2, axis=-1)
    solved = jnp.isfinite(per_sample)
    return jnp.sum(jnp.where(solved, per_sample, 0.0)) / jnp.maximum(jnp.sum(solved), 1)


def make_training_functions(model, optimizer):
    """Compiled pieces of a training step for ``model(params, z) -> x``.

    Returns ``loss_and_grad(params, z, y) -> ((MSE, predictions), gradient)`` and
    ``apply_gradient(params, opt_state, gradient) -> (params, opt_state)``. Evaluation reuses
    ``loss_and_grad`` and discards the gradient: compiling the QP layer's implicit backward
    pass takes seconds, more than the extra backward passes cost at these sizes, so one
    compilation (fixed batch shape) serves training and evaluation.
    """

    def loss_and_predictions(params, z, y):
        predictions = model(params, z)
        return mean_squared_error(predictions, y), predictions

    @jax.jit
    def apply_gradient(params, opt_state, gradient):
        updates, opt_state = optimizer.update(gradient, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return jax.jit(jax.value_and_grad(loss_and_predictions, has_aux=True)), apply_gradient


def evaluate(loss_and_grad, params, z, y, batch):
    """(MSE, predictions (N, n)) over (z, y) in batches of the training size (N % batch == 0)."""
    predictions = jnp.concatenate(
        [
            loss_and_grad(params, z[i : i + batch], y[i : i + batch])[0][1]
            for i in range(0, len(z), batch)
        ]
    )
    return float(mean_squared_error(predictions, y)), predictions


def train_model(model, params, data, config, desc):
    """Adam on minibatches; returns params and per-epoch train/test MSE (epoch 0 = init)."""
    (z_train, y_train), (z_test, y_test) = data
    # A failed solve makes its gradient NaN: apply_if_finite skips that update instead of
    # corrupting the weights (on_failure="nan" in the layer keeps the batch alive).
    optimizer = optax.apply_if_finite(
        optax.adam(config["learning_rate"]), max_consecutive_errors=10
    )
    opt_state = optimizer.init(params)
    loss_and_grad, apply_gradient = make_training_functions(model, optimizer)
    batch = config["batch_size"]
    evaluate_all = lambda params: [
        evaluate(loss_and_grad, params, z, y, batch)[0]
        for z, y in ((z_train, y_train), (z_test, y_test))
    ]

    order_rng = np.random.default_rng(config["seed"])
    start = time.perf_counter()
    train_loss, test_loss = evaluate_all(params)  # the first call compiles
    history = {
        "train": [train_loss],
        "test": [test_loss],
        "epoch_seconds": [],
        "compile_seconds": time.perf_counter() - start,
    }
    for _ in tqdm(range(config["epochs"]), desc=desc, leave=False):
        start = time.perf_counter()
        permutation = order_rng.permutation(len(z_train))
        for first in range(0, len(z_train) - batch + 1, batch):
            idx = permutation[first : first + batch]
            _, gradient = loss_and_grad(params, z_train[idx], y_train[idx])
            params, opt_state = apply_gradient(params, opt_state, gradient)
        jax.block_until_ready(params)
        history["epoch_seconds"].append(time.perf_counter() - start)
        train_loss, test_loss = evaluate_all(params)
        history["train"].append(train_loss)
        history["test"].append(test_loss)
    _, history["test_predictions"] = evaluate(loss_and_grad, params, z_test, y_test, batch)
    return params, history


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def main(smoke: bool = False, out_dir=None, solver: str | None = None) -> dict:
    """Train the QP-layer network and both baselines; print and plot the comparison.

    Args:
      smoke: reduced size for the test suite.
      out_dir: where ``optnet_layer.png`` goes (default docs/assets/examples).
      solver: the layer's solver; default ``"JAX"`` (pure-JAX interior point, fastest per step
        here) for the full run; Clarabel (host, compiles faster) for ``smoke``.

    Returns a dict with, per model name in ``MODEL_NAMES``: ``<name>_initial_test_loss``,
    ``<name>_train_loss``, ``<name>_test_loss`` (MSE), ``<name>_max_violation`` (largest
    constraint violation on the test set), ``<name>_test_curve`` (per epoch, 0 = init),
    ``<name>_epoch_seconds``, ``<name>_compile_seconds``; and ``qp_layer_failed_solves``.
    """
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    if solver is None:
        solver = None if smoke else "JAX"
    dtype = jnp.result_type(float)  # float64 when x64 is enabled (the script enables it)
    config = dict(
        seed=0,
        dim_context=5,
        num_assets=10,
        cap=0.25,
        hidden=64,
        num_train=1000,
        num_test=500,
        epochs=40,
        batch_size=50,
        learning_rate=3e-3,
    )
    if smoke:
        config.update(num_train=200, num_test=100, epochs=6, batch_size=20)

    rng = np.random.default_rng(config["seed"])
    train, test = make_dataset(
        rng,
        config["num_train"],
        config["num_test"],
        config["dim_context"],
        config["num_assets"],
        config["cap"],
    )
    data = tuple((jnp.asarray(z, dtype), jnp.asarray(y, dtype)) for z, y in (train, test))
    models = make_models(config["num_assets"], config["cap"], solver, dtype)
    sizes = [config["dim_context"], config["hidden"], config["hidden"], config["num_assets"]]
    initial = init_mlp(jax.random.PRNGKey(config["seed"]), sizes, dtype)  # same start for all

    print(
        f"capped simplex: n = {config['num_assets']} assets, cap u = {config['cap']}; "
        f"{config['num_train']} train / {config['num_test']} test samples; "
        f"MLP {sizes}; QP solver: {solver or 'CLARABEL'}; dtype {jnp.dtype(dtype).name}"
    )
    results, curves = {}, {}
    for name in MODEL_NAMES:
        params, history = train_model(models[name], initial, data, config, desc=name)
        test_loss, predictions = history["test"][-1], history["test_predictions"]
        violation = np.asarray(constraint_violation(jnp.asarray(predictions), config["cap"]))
        if name == "qp_layer":
            results["qp_layer_failed_solves"] = int(np.sum(~np.isfinite(predictions).all(axis=1)))
        results.update(
            {
                f"{name}_initial_test_loss": history["test"][0],
                f"{name}_train_loss": history["train"][-1],
                f"{name}_test_loss": test_loss,
                f"{name}_max_violation": float(np.nanmax(violation)),
                f"{name}_test_curve": np.asarray(history["test"]),
                f"{name}_epoch_seconds": float(np.median(history["epoch_seconds"])),
                f"{name}_compile_seconds": history["compile_seconds"],
            }
        )
        curves[name] = history

    print(
        f"{'model':<12} {'train MSE':>10} {'test MSE':>10} {'max violation':>14} "
        f"{'s/epoch':>8} {'compile + 1st eval (s)':>23}"
    )
    for name in MODEL_NAMES:
        print(
            f"{name:<12} {results[f'{name}_train_loss']:>10.2e} {results[f'{name}_test_loss']:>10.2e} "
            f"{results[f'{name}_max_violation']:>14.1e} {results[f'{name}_epoch_seconds']:>8.3f} "
            f"{results[f'{name}_compile_seconds']:>23.1f}"
        )
    print(f"failed QP solves on the test set: {results['qp_layer_failed_solves']}")

    plot_curves(curves, out_dir / f"{NAME}.png")
    return results


def plot_curves(curves, path):
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    styles = {
        "qp_layer": ("QP layer (cvxjax)", "C0"),
        "mlp": ("MLP", "C1"),
        "mlp_softmax": ("MLP + softmax", "C2"),
    }
    for name, history in curves.items():
        label, color = styles[name]
        epochs = np.arange(len(history["train"]))
        ax.plot(epochs, history["test"], color=color, label=f"{label}, test")
        ax.plot(
            epochs,
            history["train"],
            color=color,
            linestyle="--",
            alpha=0.6,
            label=f"{label}, train",
        )
    ax.set_yscale("log")
    ax.set_xlabel("epoch (0 = initialization)")
    ax.set_ylabel("mean ‖x − y‖²")
    ax.set_title("Learning projections onto the capped simplex")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="reduced size (for tests)")
    parser.add_argument("--out", default=None, help="output directory for the PNG")
    parser.add_argument(
        "--solver", default=None, help='layer solver: "JAX", "CLARABEL", "OSQP", ...'
    )
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)  # accurate QP solutions and gradients
    main(smoke=args.smoke, out_dir=args.out, solver=args.solver)
