"""examples/multi_host.py in two processes (2 CPU devices each, gloo collectives) against the
same training in this process on one device: the sharded layer gives the same losses."""

import os
import socket
import subprocess
import sys

import numpy as np
from helpers import load_example

STEPS = 3


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_device():
    script = os.path.join(os.path.dirname(__file__), "..", "examples", "multi_host.py")
    port = str(_free_port())
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    args = ["--num-processes", "2", "--port", port, "--steps", str(STEPS)]
    procs = [
        subprocess.Popen(
            [sys.executable, script, "--process-id", str(i), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert "devices 4" in outs[0][0]
    lines = [line for line in outs[0][0].splitlines() if line.startswith("LOSSES")]
    losses = np.array([float(v) for v in lines[0].split()[1:]])

    # One device, this process (x64 is on in conftest): the plain, unsharded path.
    reference = load_example("multi_host").main(cpu_devices=0, steps=STEPS)
    np.testing.assert_allclose(losses, reference["losses"], rtol=1e-10, atol=1e-14)
    assert losses[-1] < 0.5 * losses[0]  # it trains
