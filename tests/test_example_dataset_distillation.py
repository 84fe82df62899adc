"""Smoke test of examples/dataset_distillation.py at reduced size (float64 session)."""

import numpy as np
from helpers import load_example


def test_dataset_distillation_smoke(tmp_path):
    example = load_example("dataset_distillation")
    out = example.main(smoke=True, out_dir=tmp_path)

    assert (tmp_path / "dataset_distillation.png").stat().st_size > 10_000
    assert out["n_synthetic"] == 10
    # The implicit gradient wrt the distilled pixels matches central finite differences.
    assert out["grad_fd_rel_error"] < 1e-5
    # Distillation works: the outer loss falls a lot and the distilled images go from a
    # chance-level model to one close to the model trained on all (here 400) real images.
    losses = out["loss_history"]
    assert np.all(np.isfinite(losses))
    assert out["outer_loss_final"] < 0.3 * out["outer_loss_init"]
    assert out["test_acc_init"] < 0.25
    assert out["test_acc_full"] > 0.85
    assert out["test_acc_distilled"] > 0.8
    assert out["test_acc_distilled"] > out["test_acc_full"] - 0.1
