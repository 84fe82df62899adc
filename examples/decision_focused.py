"""Decision-focused learning (predict-then-optimize) through a QP layer, against two-stage.

Problem. Before each period we see features z ∈ R^p and must choose a long-only, fully
invested portfolio of n assets. Its quality is the mean-variance utility under the *true*
expected returns μ(z):

    U(x; μ) = μᵀx − γ xᵀΣx,        x*(m) = argmax_x  mᵀx − γ xᵀΣx   s.t. 1ᵀx = 1, x ≥ 0.

Σ is known; μ(z) is not: we only observe realized returns r = μ(z) + ε with E[ε] = 0 and
Cov(ε) = Σ. A linear model μ̂ = Wz + w₀ predicts returns and the portfolio is x*(μ̂). The
truth μ(z) is a degree-4 polynomial of z, so the linear model is *misspecified*: no W fits μ
everywhere and the two ways of fitting W disagree.

* Two-stage: fit W by least squares (minimize ‖μ̂ − r‖²), then optimize with the prediction.
* Decision-focused (DFL): minimize the realized loss of the decision itself,
  L(W) = mean[ −rᵀx*(μ̂) + γ x*(μ̂)ᵀΣx*(μ̂) ], whose expectation is −U(x*(μ̂); μ).
  The gradient needs ∂x*/∂μ̂: `cvxjax.CvxpyLayer` gets it from the implicit function theorem
  on the QP's optimality (KKT) residual F(x, v; μ̂) = 0, ∂x* = −(∂_z F)⁻¹ ∂_μ̂ F, without
  differentiating the solver.

Evaluated on a test set with the true μ: regret(z) = U(x*(μ); μ) − U(x*(μ̂); μ) ≥ 0 (what
the prediction cost us) and the MSE ‖μ̂ − μ‖². DFL is expected to win on regret and lose on
MSE. Least squares spreads its errors over every asset and sample, most of which do not
matter for the decision (low-return assets the portfolio never holds). The decision depends
only on which assets rank highest and on how far apart their predictions are relative to the
risk term γΣ (a common shift of μ̂ changes nothing since 1ᵀx = 1). The degree-4 truth has a
heavy right tail, so the best portfolios are concentrated; the linear model cannot produce
that tail, and DFL compensates by ranking the top assets better and inflating the spread of μ̂
(which then concentrates the portfolio), both of which MSE penalizes. The script prints both
diagnostics (the spread of μ̂ relative to that of μ, and how often the best asset is ranked
first).

Run:  python examples/decision_focused.py           (full run, about a minute on 2 CPU cores)
      python examples/decision_focused.py --smoke   (reduced size)
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

NAME = "decision_focused"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "assets" / "examples"


# ---------------------------------------------------------------------------------------------
# Synthetic market: nonlinear true expected returns, factor-model noise
# ---------------------------------------------------------------------------------------------
def make_market(rng, num_assets, num_features, num_factors=2):
    """Random market: loadings B (n, p) of the return on the features, noise covariance Σ (n, n).

    Σ = F Fᵀ + σ²I (a few common factors plus idiosyncratic noise), with its sampler factor.
    """
    loadings = rng.normal(size=(num_assets, num_features))
    factors = 0.05 * rng.normal(size=(num_assets, num_factors))
    idiosyncratic = 0.05
    covariance = factors @ factors.T + idiosyncratic**2 * np.eye(num_assets)
    return {
        "loadings": loadings,
        "factors": factors,
        "idiosyncratic": idiosyncratic,
        "covariance": covariance,
        "degree": 4,
    }


def true_expected_returns(market, z):
    """μ(z) = 0.05 ((1 + B z / √p) / 2)^deg − 0.01: (N, p) -> (N, n). Nonlinear (deg 4) in z."""
    signal = 1.0 + z @ market["loadings"].T / np.sqrt(z.shape[1])
    return 0.05 * (0.5 * signal) ** market["degree"] - 0.01


def sample(rng, market, num):
    """Features z ~ N(0, I) (N, p), true means μ (N, n) and realized returns r = μ + ε (N, n)."""
    z = rng.normal(size=(num, market["loadings"].shape[1]))
    mu = true_expected_returns(market, z)
    noise = rng.normal(size=(num, market["factors"].shape[1])) @ market["factors"].T + market[
        "idiosyncratic"
    ] * rng.normal(size=mu.shape)
    return z, mu, mu + noise


# ---------------------------------------------------------------------------------------------
# The decision layer and the linear predictor
# ---------------------------------------------------------------------------------------------
def make_portfolio_layer(covariance, risk_aversion, solver, dtype):
    """x*(m) = argmax mᵀx − γ xᵀΣx s.t. 1ᵀx = 1, x ≥ 0, as a JAX function m (B, n) -> x (B, n)."""
    num_assets = covariance.shape[0]
    x = cp.Variable(num_assets)
    predicted_mean = cp.Parameter(num_assets)
    risk = risk_aversion * cp.quad_form(x, cp.psd_wrap(covariance))
    problem = cp.Problem(cp.Minimize(risk - predicted_mean @ x), [cp.sum(x) == 1, x >= 0])
    check_tol = 1e-6 if jnp.finfo(dtype).bits == 64 else 1e-4  # float32 IPM accuracy ~1e-5
    layer = cvxjax.CvxpyLayer(
        problem,
        parameters=[predicted_mean],
        variables=[x],
        solver=solver,
        on_failure="nan",
        check_tol=check_tol,
    )
    return lambda mean_batch: layer(mean_batch)[0]


def predict(params, z):
    """Linear model μ̂ = z W + w₀: (N, p) -> (N, n)."""
    return z @ params["weight"] + params["bias"]


def utility(x, mean, covariance, risk_aversion):
    """U(x; m) = mᵀx − γ xᵀΣx per row: x, m (N, n) -> (N,)."""
    return jnp.sum(mean * x, axis=-1) - risk_aversion * jnp.einsum("bi,ij,bj->b", x, covariance, x)


def fit_two_stage(z, r):
    """Least squares fit of r on [z, 1] (the MSE-optimal linear predictor)."""
    design = np.hstack([z, np.ones((len(z), 1))])
    coefficients, *_ = np.linalg.lstsq(design, r, rcond=None)
    return {"weight": coefficients[:-1], "bias": coefficients[-1]}


# ---------------------------------------------------------------------------------------------
# Decision loss, evaluation and decision-focused training
# ---------------------------------------------------------------------------------------------
def make_decision_loss(layer, covariance, risk_aversion):
    """Compiled ``(m (B, n), r (B, n)) -> ((loss, x*(m)), ∂loss/∂m)`` for the realized loss
    mean[−rᵀx*(m) + γ x*ᵀΣx*], failed solves (NaN with on_failure="nan") skipped.

    The only compiled function containing the QP layer: training chains its gradient through
    the linear model, and evaluation reads x*(m) from it (discarding the gradient), because
    compiling the layer's implicit backward pass takes seconds — more than the extra backward
    passes cost at these sizes. Every call uses the same batch shape, so it compiles once.
    """

    def decision_loss(means, returns):
        decisions = layer(means)
        per_sample = -utility(decisions, returns, covariance, risk_aversion)
        solved = jnp.isfinite(per_sample)
        return jnp.sum(jnp.where(solved, per_sample, 0.0)) / jnp.maximum(
            jnp.sum(solved), 1
        ), decisions

    return jax.jit(jax.value_and_grad(decision_loss, has_aux=True))


def decide(decision_loss, means, batch):
    """x*(m) for every row of ``means`` (N, n), in batches of the training size (N % batch == 0)."""
    return jnp.concatenate(
        [
            decision_loss(means[i : i + batch], means[i : i + batch])[0][1]
            for i in range(0, len(means), batch)
        ]
    )


def make_evaluator(decision_loss, covariance, risk_aversion, z, mu, batch):
    """Returns params -> dict of test figures on the samples (z, μ):

    ``regret``: normalized regret Σ regret / Σ |U(x*(μ); μ)| (share of the attainable utility
    lost); ``mean_regret``; ``mse``: mean ‖μ̂ − μ‖²; ``spread_ratio``: the cross-asset spread
    of μ̂ over that of μ (mean over samples of std_j μ̂_j / std_j μ_j; 1 = right scale);
    ``top_asset_hit``: how often μ̂ ranks the truly best asset first.
    """
    best_utility = utility(decide(decision_loss, mu, batch), mu, covariance, risk_aversion)

    def evaluate(params):
        predicted = predict(params, z)
        decisions = decide(decision_loss, predicted, batch)
        regret = np.asarray(best_utility - utility(decisions, mu, covariance, risk_aversion))
        return {
            "regret": float(np.nansum(regret) / jnp.sum(jnp.abs(best_utility))),
            "mean_regret": float(np.nanmean(regret)),
            "mse": float(jnp.mean(jnp.sum((predicted - mu) ** 2, axis=-1))),
            "spread_ratio": float(
                jnp.mean(jnp.std(predicted, axis=-1)) / jnp.mean(jnp.std(mu, axis=-1))
            ),
            "top_asset_hit": float(
                jnp.mean(jnp.argmax(predicted, axis=-1) == jnp.argmax(mu, axis=-1))
            ),
        }

    return evaluate


def train_decision_focused(decision_loss, params, train, evaluate, config):
    """Adam on the realized decision loss through the layer; returns params and curves."""
    z_train, r_train = train
    num_train, batch = len(z_train), config["batch_size"]
    # Cosine decay: the realized-return loss is noisy, so the step shrinks to settle at the end.
    schedule = optax.cosine_decay_schedule(
        config["learning_rate"], config["epochs"] * (num_train // batch)
    )
    # A failed solve makes the gradient NaN: apply_if_finite skips that update.
    optimizer = optax.apply_if_finite(optax.adam(schedule), max_consecutive_errors=10)
    opt_state = optimizer.init(params)

    @jax.jit
    def apply_gradient(params, opt_state, z, gradient_means):
        # Chain rule through the linear model: ∂loss/∂(W, w₀) from ∂loss/∂μ̂ (B, n).
        _, predict_vjp = jax.vjp(lambda p: predict(p, z), params)
        updates, opt_state = optimizer.update(predict_vjp(gradient_means)[0], opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    order_rng = np.random.default_rng(config["seed"] + 1)
    initial = evaluate(params)
    curves = {"regret": [initial["regret"]], "mse": [initial["mse"]], "epoch_seconds": []}
    for _ in tqdm(range(config["epochs"]), desc="decision-focused", leave=False):
        start = time.perf_counter()
        permutation = order_rng.permutation(num_train)
        for first in range(0, num_train - batch + 1, batch):
            idx = permutation[first : first + batch]
            _, gradient_means = decision_loss(predict(params, z_train[idx]), r_train[idx])
            params, opt_state = apply_gradient(params, opt_state, z_train[idx], gradient_means)
        jax.block_until_ready(params)
        curves["epoch_seconds"].append(time.perf_counter() - start)
        figures = evaluate(params)
        curves["regret"].append(figures["regret"])
        curves["mse"].append(figures["mse"])
    return params, curves


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def main(smoke: bool = False, out_dir=None, solver: str | None = None) -> dict:
    """Fit two-stage and decision-focused linear predictors; compare regret and MSE on test data.

    Args:
      smoke: reduced size for the test suite.
      out_dir: where ``decision_focused.png`` goes (default docs/assets/examples).
      solver: the layer's solver; default ``"JAX"`` (pure-JAX interior point, fastest per step
        here) for the full run; Clarabel (host, compiles faster) for ``smoke``.

    Returns a dict: for each method in (``two_stage``, ``dfl``) the test figures of
    ``make_evaluator`` as ``<method>_regret`` (normalized), ``<method>_mean_regret``,
    ``<method>_mse``, ``<method>_spread_ratio``, ``<method>_top_asset_hit``; and
    ``dfl_regret_curve`` (per epoch, epoch 0 = initialization),
    ``dfl_train_regret``, ``two_stage_train_regret`` (normalized, with the true μ of the training
    samples), ``epoch_seconds``, ``compile_seconds``, ``max_violation`` (of x*(μ̂) on the test set).
    """
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    if solver is None:
        solver = None if smoke else "JAX"
    dtype = jnp.result_type(float)  # float64 when x64 is enabled (the script enables it)
    config = dict(
        seed=0,
        num_assets=10,
        num_features=5,
        risk_aversion=10.0,
        num_train=1000,
        num_test=1000,
        epochs=30,
        batch_size=50,
        learning_rate=1e-2,
    )
    if smoke:
        config.update(num_train=200, num_test=200, epochs=5, batch_size=20)

    rng = np.random.default_rng(config["seed"])
    market = make_market(rng, config["num_assets"], config["num_features"])
    as_jax = lambda *arrays: tuple(jnp.asarray(a, dtype) for a in arrays)
    z_train, mu_train, r_train = as_jax(*sample(rng, market, config["num_train"]))
    z_test, mu_test, _ = as_jax(*sample(rng, market, config["num_test"]))
    covariance = jnp.asarray(market["covariance"], dtype)
    gamma = config["risk_aversion"]
    print(
        f"{config['num_assets']} assets, {config['num_features']} features, true μ(z) of degree "
        f"{market['degree']}, linear model; {config['num_train']} train / {config['num_test']} test; "
        f"γ = {gamma}; QP solver: {solver or 'CLARABEL'}; dtype {jnp.dtype(dtype).name}"
    )
    layer = make_portfolio_layer(market["covariance"], gamma, solver, dtype)
    decision_loss = make_decision_loss(layer, covariance, gamma)
    batch = config["batch_size"]
    start = time.perf_counter()  # the first call compiles the layer (forward and backward)
    evaluate_test = make_evaluator(decision_loss, covariance, gamma, z_test, mu_test, batch)
    compile_seconds = time.perf_counter() - start
    evaluate_train = make_evaluator(decision_loss, covariance, gamma, z_train, mu_train, batch)

    two_stage = jax.tree.map(
        lambda a: jnp.asarray(a, dtype), fit_two_stage(np.asarray(z_train), np.asarray(r_train))
    )
    # DFL starts from the two-stage fit: the curve then shows what the decision loss changes.
    dfl, curves = train_decision_focused(
        decision_loss, two_stage, (z_train, r_train), evaluate_test, config
    )

    results = {}
    for name, params in (("two_stage", two_stage), ("dfl", dfl)):
        results.update({f"{name}_{key}": value for key, value in evaluate_test(params).items()})
        results[f"{name}_train_regret"] = evaluate_train(params)["regret"]
    decisions = np.asarray(decide(decision_loss, predict(dfl, z_test), batch))
    results["max_violation"] = float(
        max(np.abs(decisions.sum(axis=1) - 1).max(), np.maximum(-decisions, 0).max())
    )
    results["dfl_regret_curve"] = np.asarray(curves["regret"])
    results["dfl_mse_curve"] = np.asarray(curves["mse"])
    results["epoch_seconds"] = float(np.median(curves["epoch_seconds"]))
    results["compile_seconds"] = compile_seconds

    print(
        f"{'method':<17} {'test regret':>11} {'mean regret':>11} {'train regret':>12} "
        f"{'test MSE of μ̂':>13} {'spread μ̂/μ':>11} {'best asset ranked 1st':>21}"
    )
    for name, label in (("two_stage", "two-stage (MSE)"), ("dfl", "decision-focused")):
        print(
            f"{label:<17} {results[f'{name}_regret']:>11.2%} {results[f'{name}_mean_regret']:>11.2e} "
            f"{results[f'{name}_train_regret']:>12.2%} {results[f'{name}_mse']:>13.3f} "
            f"{results[f'{name}_spread_ratio']:>11.2f} {results[f'{name}_top_asset_hit']:>21.1%}"
        )
    print(
        f"DFL: {results['epoch_seconds']:.3f} s/epoch; compiling the layer (+ first solves): "
        f"{compile_seconds:.1f} s; max constraint violation of x*: {results['max_violation']:.1e}"
    )

    plot(results, out_dir / f"{NAME}.png")
    return results


def plot(results, path):
    fig, (ax_curve, ax_bars) = plt.subplots(
        1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1.4, 1]}
    )
    curve = results["dfl_regret_curve"]
    ax_curve.plot(
        np.arange(len(curve)), 100 * curve, color="C0", marker="o", ms=3, label="decision-focused"
    )
    ax_curve.axhline(
        100 * results["two_stage_regret"], color="C1", linestyle="--", label="two-stage (MSE fit)"
    )
    ax_curve.set_xlabel("epoch (0 = two-stage initialization)")
    ax_curve.set_ylabel("test regret, % of optimal utility")
    ax_curve.set_title("Test regret during decision-focused training")
    ax_curve.legend()

    labels = ["two-stage", "decision-focused"]
    regret = [100 * results["two_stage_regret"], 100 * results["dfl_regret"]]
    mse = [results["two_stage_mse"], results["dfl_mse"]]
    positions = np.arange(2)
    regret_bars = ax_bars.bar(positions - 0.2, regret, width=0.4, color="C0")
    ax_mse = ax_bars.twinx()
    mse_bars = ax_mse.bar(positions + 0.2, mse, width=0.4, color="C2")
    ax_bars.bar_label(regret_bars, fmt="%.1f%%", fontsize=8)
    ax_mse.bar_label(mse_bars, fmt="%.3f", fontsize=8)
    ax_bars.set_xticks(positions, labels)
    ax_bars.set_ylabel("test regret (%)", color="C0")
    ax_mse.set_ylabel("test MSE of μ̂", color="C2")
    ax_bars.set_title("Better decisions, worse predictions")
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
