"""Decision-focused learning on an LP: shortest paths on a 5×5 grid (PyEPO-style data).

Problem. Features z ∈ R^5 predict the 40 edge costs c of a grid graph; the decision is the
shortest path from the top-left to the bottom-right node,

    x*(c) = argmin_x cᵀx   s.t.  N x = b (flow conservation),  0 ≤ x ≤ 1,

an LP whose vertices are paths. The true costs are a degree-d polynomial of z with
multiplicative noise (as in PyEPO's shortest-path data), so a linear model ĉ = zW + w₀ is
misspecified for d > 1. Quality is the normalized regret on test data,
Σ (c_iᵀx*(ĉ_i) − z*(c_i)) / Σ |z*(c_i)|.

Training through the LP is not possible with its exact derivative: x*(c) is piecewise
constant, ∂x*/∂c = 0 almost everywhere. The methods compared (all from `cvxjax.dfl`):

* two-stage: fit ĉ to c by mean squared error, then optimize;
* SPO+ (Elmachtoub & Grigas): convex surrogate of the regret, subgradient 2(x*(c) − x*(2ĉ − c));
* Fenchel–Young with Gaussian perturbations (Berthet et al.): gradient x*(c) − E[x*(ĉ + σZ)];
* quadratic smoothing (Wilder et al.): train on the true cost cᵀx*_γ(ĉ) of the solution of the
  regularized QP min ĉᵀx + (γ/2)‖x‖², with the layer's exact implicit derivative;
* LPGD (Paulus et al.): the same decision loss through the LP itself, with the backward pass
  replaced by (x*(ĉ + τg) − x*(ĉ))/τ.

Every method uses the same data, linear model, initialization and Adam. Each training step
(the batch's solves included) is one compiled JAX program.

Run:  python examples/decision_focused_lp.py           (full: 800 train, 10 epochs, ~2 min on 2 cores)
      python examples/decision_focused_lp.py --quick   (reduced size, Clarabel solver, ~30 s)
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
from tqdm import tqdm

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import cvxjax  # noqa: E402
from cvxjax import dfl  # noqa: E402

NAME = "decision_focused_lp"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "assets" / "examples"
METHODS = ("two_stage", "spo_plus", "fenchel_young", "smoothed", "lpgd")
LABELS = {
    "two_stage": "two-stage (MSE)",
    "spo_plus": "SPO+",
    "fenchel_young": "Fenchel–Young",
    "smoothed": "quadratic smoothing",
    "lpgd": "LPGD",
}


# ---------------------------------------------------------------------------------------------
# Data, layers, model
# ---------------------------------------------------------------------------------------------
def make_data(config):
    """Train and test sets (features, costs) of the PyEPO-style shortest-path model."""
    num = config["num_train"] + config["num_test"]
    features, costs = dfl.shortest_path_data(
        num,
        config["num_features"],
        grid=config["grid"],
        degree=config["degree"],
        noise_width=config["noise_width"],
        seed=config["seed"],
    )
    split = config["num_train"]
    return (features[:split], costs[:split]), (features[split:], costs[split:])


def make_layers(config):
    """The LP layer x*(c) and the smoothed QP layer x*_γ(c), both (B, E) -> (B, E)."""
    problem, cost, x = dfl.shortest_path_problem(config["grid"])
    solver = config["solver"]
    lp = cvxjax.CvxpyLayer(problem, [cost], [x], solver=solver)
    smooth = dfl.quadratic_smoothing(problem, [cost], [x], config["temperature"], solver=solver)
    return lp, smooth


def batched(fun, batch):
    """Apply ``fun`` ((batch, ...) -> (batch, ...)) to (N, ...) arrays in chunks of exactly
    ``batch`` rows (the last chunk padded by repeating a row): one compiled shape for any N."""

    def apply(*arrays):
        num = len(arrays[0])
        pad = (-num) % batch
        padded = [jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]) for a in arrays]
        chunks = [fun(*(a[i : i + batch] for a in padded)) for i in range(0, num + pad, batch)]
        return jnp.concatenate(chunks)[:num]

    return apply


def init_params(config, dtype):
    """Linear model ĉ = zW + w₀, (p, E) and (E,), small random weights (same for all methods)."""
    rng = np.random.default_rng(config["seed"] + 1)
    num_edges = len(dfl.grid_edges(config["grid"]))
    scale = 1.0 / np.sqrt(config["num_features"])  # like torch.nn.Linear's default range
    weight = rng.uniform(-scale, scale, size=(config["num_features"], num_edges))
    bias = rng.uniform(-scale, scale, size=num_edges)
    return {"weight": jnp.asarray(weight, dtype), "bias": jnp.asarray(bias, dtype)}


def predict(params, z):
    """ĉ = zW + w₀: (B, p) -> (B, E)."""
    return z @ params["weight"] + params["bias"]


# ---------------------------------------------------------------------------------------------
# Losses: one per method, all (params, batch, key) -> scalar
# ---------------------------------------------------------------------------------------------
def make_losses(lp, smooth, config):
    """Batch losses ``loss(params, z, c, x_true, key)`` for every method."""
    fenchel_young = dfl.fenchel_young_loss(lp, config["sigma"], config["num_samples"])
    lpgd_layer = dfl.lpgd(lp, config["tau"])

    def two_stage(params, z, c, x_true, key):
        return jnp.mean(jnp.sum((predict(params, z) - c) ** 2, axis=-1))

    def spo_plus(params, z, c, x_true, key):
        return jnp.mean(dfl.spo_plus(lp, predict(params, z), c, x_true))

    def fy(params, z, c, x_true, key):
        return jnp.mean(fenchel_young(key, predict(params, z), x_true))

    def smoothed(params, z, c, x_true, key):
        # The true cost of the smoothed decision: differentiable, exact implicit derivative.
        return jnp.mean(jnp.sum(c * smooth(predict(params, z))[0], axis=-1))

    def lpgd(params, z, c, x_true, key):
        return jnp.mean(jnp.sum(c * lpgd_layer(predict(params, z)), axis=-1))

    return {
        "two_stage": two_stage,
        "spo_plus": spo_plus,
        "fenchel_young": fy,
        "smoothed": smoothed,
        "lpgd": lpgd,
    }


def make_step(loss, optimizer):
    """One compiled Adam step: the whole batch's solves are inside this one JAX program."""

    @jax.jit
    def step(params, opt_state, z, c, x_true, key):
        value, grads = jax.value_and_grad(loss)(params, z, c, x_true, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def train(method, loss, params, train_set, evaluate, config, progress=None):
    """Adam on ``loss``; returns (params, test regret per epoch (epoch 0 = init), epoch seconds,
    compile seconds)."""
    z, c, x_true = train_set
    batch = config["batch_size"]
    optimizer = optax.adam(config["learning_rate"])
    opt_state = optimizer.init(params)
    step = make_step(loss, optimizer)
    key = jax.random.key(config["seed"] + 2)
    start = time.perf_counter()  # compile once, on the first batch (discarded update)
    jax.block_until_ready(step(params, opt_state, z[:batch], c[:batch], x_true[:batch], key))
    compile_seconds = time.perf_counter() - start
    order = np.random.default_rng(config["seed"] + 3)
    curve, seconds = [evaluate(params)], []
    for _ in range(config["epochs"]):
        start = time.perf_counter()
        permutation = order.permutation(len(z))
        for first in range(0, len(z) - batch + 1, batch):
            idx = permutation[first : first + batch]
            key, subkey = jax.random.split(key)
            params, opt_state, _ = step(params, opt_state, z[idx], c[idx], x_true[idx], subkey)
        jax.block_until_ready(params)
        seconds.append(time.perf_counter() - start)
        curve.append(evaluate(params))
        if progress is not None:
            progress.update(1)
            progress.set_postfix(method=method, regret=f"{curve[-1]:.3f}")
    return params, np.asarray(curve), seconds, compile_seconds


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def default_config(quick=False):
    config = dict(
        seed=0,
        grid=(5, 5),
        num_features=5,
        degree=4,
        noise_width=0.5,
        num_train=800,
        num_test=1000,
        epochs=10,
        batch_size=32,
        learning_rate=1e-2,
        sigma=1.0,
        num_samples=8,
        temperature=1.0,
        tau=1.0,
        solver="JAX",
    )
    if quick:
        config.update(num_train=192, num_test=192, epochs=3, num_samples=4, solver="CLARABEL")
    return config


def run(config, methods=METHODS, show_progress=True):
    """Train each method on the same data; returns a dict of results (see ``main``)."""
    dtype = jnp.result_type(float)  # float64 when x64 is enabled (the script enables it)
    (z_train, c_train), (z_test, c_test) = make_data(config)
    as_jax = lambda a: jnp.asarray(a, dtype)
    z_train, c_train, z_test, c_test = map(as_jax, (z_train, c_train, z_test, c_test))
    lp, smooth = make_layers(config)
    batch = config["batch_size"]
    decide = batched(jax.jit(lambda c: lp(c)[0]), batch)
    start = time.perf_counter()
    x_train, x_test = decide(c_train), decide(c_test)
    setup_seconds = time.perf_counter() - start
    z_star_test = jnp.sum(c_test * x_test, axis=-1)

    def evaluate(params):
        return float(dfl.normalized_regret(c_test, decide(predict(params, z_test)), z_star_test))

    losses = make_losses(lp, smooth, config)
    results = {"config": config, "setup_seconds": setup_seconds}
    progress = tqdm(
        total=len(methods) * config["epochs"], desc="training", disable=not show_progress
    )
    for method in methods:
        params = init_params(config, dtype)
        _, curve, seconds, compile_seconds = train(
            method, losses[method], params, (z_train, c_train, x_train), evaluate, config, progress
        )
        results[method] = {
            "regret_curve": curve,
            "regret": float(curve[-1]),
            "epoch_seconds": float(np.mean(seconds)),
            "compile_seconds": compile_seconds,
        }
    progress.close()
    return results


def main(quick: bool = False, out_dir=None, methods=METHODS, **overrides) -> dict:
    """Train two-stage, SPO+, Fenchel–Young, smoothed and LPGD predictors; plot test regret.

    Args:
      quick: reduced size (192 train/test samples, 3 epochs, Clarabel, which compiles fastest)
        for the test suite.
      out_dir: where ``decision_focused_lp.png`` goes (default docs/assets/examples).
      methods: which of ``METHODS`` to train.
      **overrides: entries of ``default_config`` to change (``degree``, ``solver``, ...).

    Returns a dict with ``config``, ``setup_seconds`` and, per method, ``regret_curve``
    (normalized test regret per epoch, epoch 0 = initialization), ``regret`` (final),
    ``epoch_seconds`` (mean) and ``compile_seconds``.
    """
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {**default_config(quick), **overrides}
    print(
        f"shortest path on a {config['grid'][0]}x{config['grid'][1]} grid, degree {config['degree']}, "
        f"noise {config['noise_width']}; {config['num_train']} train / {config['num_test']} test; "
        f"batch {config['batch_size']}, {config['epochs']} epochs; solver {config['solver']}"
    )
    results = run(config, methods)
    print(f"{'method':<20} {'test regret':>11} {'s/epoch':>8} {'compile s':>10}")
    for method in methods:
        r = results[method]
        print(
            f"{LABELS[method]:<20} {r['regret']:>11.2%} {r['epoch_seconds']:>8.3f} {r['compile_seconds']:>10.1f}"
        )
    plot(results, methods, out_dir / f"{NAME}.png")
    return results


def plot(results, methods, path):
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, method in enumerate(methods):
        curve = results[method]["regret_curve"]
        ax.plot(
            np.arange(len(curve)),
            100 * curve,
            marker="o",
            ms=3,
            color=f"C{i}",
            label=LABELS[method],
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("normalized test regret (%)")
    ax.set_yscale("log")
    ax.set_title(f"Shortest path, degree {results['config']['degree']}: test regret per epoch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", "--smoke", action="store_true", help="reduced size (for tests)")
    parser.add_argument("--out", default=None, help="output directory for the PNG")
    parser.add_argument(
        "--degree", type=int, default=None, help="polynomial degree of the true costs"
    )
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--solver", default=None, help='layer solver: "JAX" (default), "CLARABEL", ...'
    )
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)  # the pure-JAX solver needs float64 for LPs
    overrides = {
        k: v
        for k, v in (("degree", args.degree), ("epochs", args.epochs), ("solver", args.solver))
        if v is not None
    }
    main(quick=args.quick, out_dir=args.out, **overrides)
