"""Decision-focused learning benchmark: cvxjax.dfl against PyEPO on PyEPO-style shortest path.

Same data (cvxjax.dfl.shortest_path_data: 5×5 grid, 5 features, polynomial degree d, noise
half-width 0.5), same linear model and initialization, Adam (lr 1e-2), batch 32, 800 training
and 1000 test samples, 3 epochs. Reported per (tool, method, degree, seed): normalized test
regret (decisions of every tool evaluated with the same float64 LP solve, so the number
measures the predictor) and seconds per epoch (mean over epochs, compilation excluded and
reported separately).

Tools:
* ``cvxjax``: the methods of examples/decision_focused_lp.py (``solver="JAX"``: the pure-JAX
  interior point in float64, the batch's solves inside the one compiled training step).
* ``pyepo-jax``: PyEPO's JAX front end (``pyepo.func.jax``) with its MPAX model
  (``pyepo.model.mpax.shortestPathModel``, PDHG in float32, batched by ``jax.vmap``), in the
  same compiled training step. PyEPO is optional (``pip install pyepo mpax`` plus PyTorch,
  which PyEPO imports); without it only cvxjax runs.

Run:  OPENBLAS_NUM_THREADS=1 python benchmarks/dfl.py                       # degree 4, seeds 0-2
      python benchmarks/dfl.py --degrees 1,2,4,6 --seeds 0,1,2 --json out.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small dense factorizations: one thread

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)  # the pure-JAX solver needs float64 for LPs

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def load_example():
    path = ROOT / "examples" / "decision_focused_lp.py"
    spec = importlib.util.spec_from_file_location("decision_focused_lp", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def pyepo_losses(example, config):
    """PyEPO's SPO+ and perturbed Fenchel–Young (JAX front end, MPAX solver), as losses with
    the example's signature ``loss(params, z, c, x_true, key)``; None if PyEPO is missing."""
    try:
        from pyepo.func import jax as pyepo_jax
        from pyepo.model.mpax import shortestPathModel
    except Exception as error:  # ImportError, or MPAX/torch failing to import
        print(f"PyEPO not available ({type(error).__name__}: {error}); skipping it.")
        return None
    optmodel = shortestPathModel(grid=config["grid"])
    spo = pyepo_jax.SPOPlus(optmodel)
    pfy = pyepo_jax.perturbedFenchelYoung(
        optmodel, n_samples=config["num_samples"], sigma=config["sigma"]
    )

    def spo_plus(params, z, c, x_true, key):
        true_obj = jnp.sum(c * x_true, axis=-1)
        return spo(example.predict(params, z), c, x_true, true_obj)  # reduction="mean"

    def fenchel_young(params, z, c, x_true, key):
        return pfy(example.predict(params, z), x_true, key=key)

    return {"spo_plus": spo_plus, "fenchel_young": fenchel_young}


def run_one(example, tool, methods, config):
    """Train ``methods`` of ``tool`` on one data set; returns {method: figures}."""
    dtype = jnp.float64
    (z_train, c_train), (z_test, c_test) = example.make_data(config)
    z_train, c_train, z_test, c_test = (
        jnp.asarray(a, dtype) for a in (z_train, c_train, z_test, c_test)
    )
    lp, smooth = example.make_layers(config)
    decide = example.batched(jax.jit(lambda c: lp(c)[0]), config["batch_size"])
    x_train, x_test = decide(c_train), decide(c_test)
    z_star = jnp.sum(c_test * x_test, axis=-1)

    def evaluate(params):
        from cvxjax import dfl

        return float(dfl.normalized_regret(c_test, decide(example.predict(params, z_test)), z_star))

    losses = (
        example.make_losses(lp, smooth, config)
        if tool == "cvxjax"
        else pyepo_losses(example, config)
    )
    out = {}
    for method in methods:
        if losses is None or method not in losses:
            continue
        params = example.init_params(config, dtype)
        _, curve, seconds, compile_seconds = example.train(
            method, losses[method], params, (z_train, c_train, x_train), evaluate, config
        )
        out[method] = {
            "regret": float(curve[-1]),
            "epoch_seconds": float(np.mean(seconds)),
            "compile_seconds": float(compile_seconds),
        }
        print(
            f"  {tool:<10} {method:<14} degree {config['degree']} seed {config['seed']}: "
            f"regret {curve[-1]:.4f}  {np.mean(seconds):.3f} s/epoch  (compile {compile_seconds:.1f} s)",
            flush=True,
        )
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degrees", default="4")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--tools", default="cvxjax,pyepo-jax")
    parser.add_argument("--methods", default="two_stage,spo_plus,fenchel_young,smoothed,lpgd")
    parser.add_argument("--json", default=None, help="write all results here")
    args = parser.parse_args()
    example = load_example()
    methods = args.methods.split(",")
    rows = []
    for degree in map(int, args.degrees.split(",")):
        for seed in map(int, args.seeds.split(",")):
            config = {
                **example.default_config(),
                "degree": degree,
                "seed": seed,
                "epochs": args.epochs,
                "num_train": 800,
                "num_test": 1000,
                "batch_size": 32,
            }
            for tool in args.tools.split(","):
                for method, figures in run_one(example, tool, methods, config).items():
                    rows.append(
                        {"tool": tool, "method": method, "degree": degree, "seed": seed, **figures}
                    )
    print("\n| tool | method | degree | regret (mean over seeds) | s/epoch | compile s |")
    print("| --- | --- | --- | --- | --- | --- |")
    keys = sorted(
        {(r["tool"], r["method"], r["degree"]) for r in rows}, key=lambda k: (k[2], k[1], k[0])
    )
    for tool, method, degree in keys:
        sel = [r for r in rows if (r["tool"], r["method"], r["degree"]) == (tool, method, degree)]
        print(
            f"| {tool} | {method} | {degree} | {np.mean([r['regret'] for r in sel]):.4f} "
            f"({', '.join(format(r['regret'], '.4f') for r in sel)}) | "
            f"{np.mean([r['epoch_seconds'] for r in sel]):.3f} | {np.mean([r['compile_seconds'] for r in sel]):.1f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
