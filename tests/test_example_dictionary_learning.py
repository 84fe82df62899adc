"""Smoke test of examples/dictionary_learning.py at reduced size.

Checks the implicit gradient of the outer loss with respect to the dictionary against central
finite differences (float64, tiny instance with sparse codes), and that learning the dictionary
for the task beats the unsupervised dictionary with the same classifier and training budget.
"""

from pathlib import Path

import numpy as np
from helpers import load_example


def test_dictionary_learning_smoke(tmp_path):
    out = load_example("dictionary_learning").main(smoke=True, out_dir=tmp_path)

    png = Path(out["png"])
    assert png.parent == tmp_path and png.exists() and png.stat().st_size > 10_000

    # Implicit ∂loss/∂D vs finite differences, at a point where the l1 term is active (some
    # code entries exactly zero, some not), so the soft-thresholding Jacobian is exercised.
    assert 0.0 < out["fd_zero_fraction"] < 1.0
    assert out["fd_max_entry"] > 1e-2
    assert out["fd_max_error"] < 1e-6

    base, task = out["baseline_losses"], out["task_driven_losses"]
    assert np.all(np.isfinite(base)) and np.all(np.isfinite(task))
    assert task[-1] < 0.8 * task[0]  # training makes progress
    assert task[-1] < base[-1]  # learning D lowers the objective beyond a fixed D
    assert out["dictionary_change"] > 1e-2  # the dictionary actually moved

    # Generalization: task-driven codes classify held-out digits better.
    assert out["task_driven_test_acc"] > out["baseline_test_acc"] + 0.02
    assert out["task_driven_test_ce"] < out["baseline_test_ce"]
