"""A batch sharded over a device mesh (cvxjax._sharding): the same answers and derivatives
as on one device, each device solving its own shard, failures named by their global batch
index. Runs tests/scripts/sharded_batch.py in a fresh process with 4 CPU devices, since the
device count is fixed when JAX starts."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "sharded_batch.py"


@pytest.fixture(scope="module")
def measured():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "CLARABEL", "JAX:light"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT")]
    assert run.returncode == 0 and lines, run.stderr[-4000:]
    # The partitioner warns when it has to gather a sharded value onto one device.
    return json.loads(lines[0][len("RESULT") :]), run.stderr


def test_four_devices(measured):
    assert measured[0]["devices"] == 4


@pytest.mark.parametrize("solver", ["CLARABEL", "JAX"])
def test_sharded_reverse_mode_matches_one_device(measured, solver):
    r = measured[0][solver]
    assert r["b8_value_err"] < 1e-12
    assert r["b8_grad_err"] < 1e-10  # the shared parameter's gradient is summed over devices


@pytest.mark.parametrize("solver", ["CLARABEL", "JAX"])
def test_each_device_solves_its_shard(measured, solver):
    r = measured[0][solver]
    assert not r["all_gather"]
    if solver == "CLARABEL":
        assert r["callback_batch"] == [2]  # batch 8 over 4 devices


def test_no_rematerialization_warning(measured):
    assert "rematerialization" not in measured[1]


def test_padding_forward_mode_eager_detection(measured):
    r = measured[0]["CLARABEL"]
    assert r["b6_value_err"] < 1e-12 and r["b6_grad_err"] < 1e-10  # 6 over 4 devices: padded
    assert r["jvp_err"] < 1e-10
    assert r["eager_spec"] == "P('batch',)" and r["eager_err"] < 1e-12


def test_failure_names_global_batch_index(measured):
    error = measured[0]["CLARABEL"]["error"]
    assert error is not None and "batch element 5" in error and "PRIMAL_INFEASIBLE" in error
