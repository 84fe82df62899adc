"""Smoke test of examples/svm_hyperparameter.py at reduced size.

Checks that the implicit hypergradient of the validation loss with respect to log λ matches
central finite differences at a converged solution and the unrolled hypergradient at a large
iteration count, and that gradient descent on log λ lowers the validation loss.
"""

import math
from pathlib import Path

from helpers import load_example


def test_svm_hyperparameter_smoke(tmp_path):
    out = load_example("svm_hyperparameter").main(smoke=True, out_dir=tmp_path)

    png = Path(out["png"])
    assert png.parent == tmp_path and png.exists() and png.stat().st_size > 10_000

    # At a converged dual solution the implicit hypergradient is the derivative of ℓ(log λ).
    assert out["fixed_point_residual"] < 1e-10
    assert abs(out["hypergrad_fd"]) > 1e-3  # a non-trivial derivative to compare
    assert out["fd_rel_error"] < 1e-6

    # With enough inner iterations, implicit and unrolled hypergradients agree, and both agree
    # with the converged finite-difference value.
    assert out["implicit_vs_unrolled"] < 1e-3
    reference = out["hypergrad_fd"]
    assert abs(out["grad_implicit"][-1] - reference) < 1e-4 * abs(reference)
    assert abs(out["grad_unrolled"][-1] - reference) < 1e-3 * abs(reference)
    assert all(t > 0 and math.isfinite(t) for t in [*out["time_implicit"], *out["time_unrolled"]])

    # Tuning: the validation loss decreases, and λ moves up (the start is under-regularized
    # for 20% noisy training labels: the derivative at log λ = 2 is negative).
    assert reference < 0
    assert out["log_lam_final"] > out["log_lam_init"] + 0.5
    assert out["val_loss_after"] < out["val_loss_before"] - 0.05
    assert out["val_acc_after"] >= out["val_acc_before"]
