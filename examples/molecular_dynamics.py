"""Sensitivity of a jammed soft-sphere packing to a particle diameter, by implicit differentiation.

After the molecular-dynamics experiment of Blondel et al., "Efficient and Modular Implicit
Differentiation" (2022), written in plain JAX (no jax-md).

System: N disks in a periodic square box of side L (2D), a 50:50 mixture of two species with
diameters σ_small = 1 and σ_large = 1.4, interacting by the soft-sphere pair energy

    E(x; σ_large) = Σ_{i<j} (ε/α) (1 − r_ij/σ_ij)^α   for r_ij < σ_ij  (0 otherwise),   α = 2,

with σ_ij = (σ_i + σ_j)/2 and r_ij the minimum-image distance. At packing fraction 0.9
(above jamming) the energy minimum is a rigid, overlapping packing.

Inner problem: x*(σ_large) = a local minimizer of E(·; σ_large), found by FIRE (the fast
inertial relaxation engine) from random positions.

Optimality condition: stationarity, F(x, σ_large) = ∇_x E(x; σ_large) = 0
(cvxjax.optimality.stationarity), so cvxjax.custom_root gives

    dx*/dσ_large = −H⁺ ∂_σ ∇_x E,      H = ∇²_x E(x*)   (2N × 2N).

Zero modes: E is invariant under a global translation of all particles, so H has a null space
(uniform shifts along x and y, plus two directions per "rattler", a particle caged without any
contact) and is singular: a plain LU solve would return garbage. The right-hand side
∂_σ∇_x E is orthogonal to that null space (the forces sum to zero for every σ, and a rattler
feels no force), so the system is consistent and has a unique minimum-norm solution H⁺(·), the
one with zero mean displacement. That is the physically meaningful answer: x* itself is only
defined up to a translation. Two ways to get it with cvxjax.custom_root:

* ``solve="cg"`` (used here, matrix-free): H is positive semidefinite at a stable minimum, and
  conjugate gradient started from zero only builds its iterates from b, Hb, H²b, … which lie in
  the range of H, so it converges to the minimum-norm solution.
* ``solve="lstsq"``: dense SVD least squares, the minimum-norm solution by construction; exact
  but it materializes the 2N × 2N Hessian (2N Hessian-vector products) — timed for comparison.

Check: central finite differences, re-minimizing at σ_large ± h from x* (same basin) and
removing the mean translation before comparing.

Printed: energy at the minimum, residual force, Hessian zero modes, ‖dx*/dσ‖, the FD agreement
and the timing of the implicit derivative (cg and lstsq) vs finite differences. Saves
``molecular_dynamics.png``: the packing with arrows showing dx*/dσ_large.

Needs float64 (``__main__`` enables it; ``main`` raises otherwise): finite differences of
positions relaxed to a force of 1e-11 are meaningless in float32.

Run:  python examples/molecular_dynamics.py [--smoke] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

import cvxjax
from cvxjax import optimality

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402

NAME = "molecular_dynamics"
DEFAULT_OUT_DIR = Path(__file__).resolve().parent.parent / "docs" / "assets" / "examples"
DTYPE = jnp.float64
SMALL_DIAMETER = 1.0
LARGE_DIAMETER = 1.4
EPSILON = 1.0  # energy scale ε
ALPHA = 2.0  # harmonic soft spheres: E is C¹, its Hessian jumps when a contact opens/closes


# ----------------------------------------------------------------------------------------------
# System and energy
# ----------------------------------------------------------------------------------------------


def box_side(n_particles, packing_fraction):
    """Side L of the square box in which the 50:50 mixture fills ``packing_fraction`` of the area."""
    disk_area = np.pi / 4 * (SMALL_DIAMETER**2 + LARGE_DIAMETER**2) / 2 * n_particles
    return float(np.sqrt(disk_area / packing_fraction))


def minimum_image(displacement, box):
    """Wrap displacements (…, 2) into [−L/2, L/2): the nearest periodic copy."""
    return displacement - box * jnp.round(displacement / box)


def make_energy(is_large, box):
    """E(x, σ_large) for positions x (N, 2): the soft-sphere energy of the periodic system.

    ``is_large`` (N,) bool marks the species; σ_large enters only through the pair diameters
    σ_ij, so E is smooth in it (where no pair sits exactly at contact).
    """
    n = is_large.shape[0]
    off_diagonal = ~jnp.eye(n, dtype=bool)

    def energy(positions, large_diameter):
        diameters = jnp.where(is_large, large_diameter, SMALL_DIAMETER)
        pair_diameter = (diameters[:, None] + diameters[None, :]) / 2
        delta = minimum_image(positions[:, None, :] - positions[None, :, :], box)
        squared = jnp.sum(delta**2, axis=-1)
        # Double where: r = 0 on the diagonal would make the gradient of sqrt NaN.
        distance = jnp.sqrt(jnp.where(off_diagonal, squared, 1.0))
        overlap = jnp.where(off_diagonal, jnp.maximum(1.0 - distance / pair_diameter, 0.0), 0.0)
        return 0.5 * jnp.sum(EPSILON / ALPHA * overlap**ALPHA)  # ½: each pair counted twice

    return energy


def contacts(positions, is_large, box, large_diameter):
    """(contacts per particle (N,) int, smallest |r_ij/σ_ij − 1| over all pairs).

    The second number says how far the packing is from a contact opening or closing: the
    Hessian jumps there (α = 2), so finite differences need a step well below it.
    """
    x = np.asarray(positions)
    diameters = np.where(np.asarray(is_large), float(large_diameter), SMALL_DIAMETER)
    pair_diameter = (diameters[:, None] + diameters[None, :]) / 2
    delta = x[:, None, :] - x[None, :, :]
    distance = np.linalg.norm(delta - box * np.round(delta / box), axis=-1)
    gap = np.abs(distance / pair_diameter - 1)
    off_diagonal = ~np.eye(len(x), dtype=bool)
    touching = (distance < pair_diameter) & off_diagonal
    return touching.sum(axis=1), float(gap[off_diagonal].min())


# ----------------------------------------------------------------------------------------------
# FIRE minimizer
# ----------------------------------------------------------------------------------------------
# Written by hand (not imported from jax-md) so that the example needs only JAX: FIRE is an
# MD integrator with a velocity-steering rule, twenty lines in lax.while_loop. Parameters are the
# standard ones of Bitzek et al., PRL 97, 170201 (2006), with unit masses.


class FireState(NamedTuple):
    positions: jax.Array  # (N, 2)
    velocities: jax.Array  # (N, 2)
    forces: jax.Array  # (N, 2)
    dt: jax.Array  # time step
    mixing: jax.Array  # α_FIRE: weight of the force direction in the velocity
    n_downhill: jax.Array  # consecutive steps with power F·v > 0
    step: jax.Array


def fire_minimize(
    energy,
    positions,
    large_diameter,
    force_tol,
    max_steps,
    dt_start=0.1,
    dt_max=0.4,
    n_min=5,
    f_inc=1.1,
    f_dec=0.5,
    mixing_start=0.1,
    f_mixing=0.99,
):
    """Minimize ``energy(x, large_diameter)`` from ``positions`` (N, 2) with FIRE.

    Stops when the largest force component is below ``force_tol`` or after ``max_steps``.
    Returns the final FireState (its ``step`` counts the iterations).
    """
    force_fn = lambda x: -jax.grad(energy)(x, large_diameter)

    def not_converged(state):
        return (jnp.max(jnp.abs(state.forces)) > force_tol) & (state.step < max_steps)

    def fire_step(state):
        # Semi-implicit Euler MD step (velocity first), then FIRE's steering and step control.
        velocities = state.velocities + state.dt * state.forces
        positions = state.positions + state.dt * velocities
        forces = force_fn(positions)
        power = jnp.vdot(forces, velocities)
        force_norm = jnp.linalg.norm(forces)
        steered = (1 - state.mixing) * velocities + state.mixing * jnp.linalg.norm(
            velocities
        ) * forces / jnp.maximum(force_norm, jnp.finfo(forces.dtype).tiny)
        downhill = power > 0
        accelerate = downhill & (state.n_downhill >= n_min)
        return FireState(
            positions=positions,
            # Uphill: stop dead and restart cautiously (smaller step, more steering).
            velocities=jnp.where(downhill, steered, jnp.zeros_like(velocities)),
            forces=forces,
            dt=jnp.where(
                downhill,
                jnp.where(accelerate, jnp.minimum(state.dt * f_inc, dt_max), state.dt),
                state.dt * f_dec,
            ),
            mixing=jnp.where(
                downhill, jnp.where(accelerate, state.mixing * f_mixing, state.mixing), mixing_start
            ),
            n_downhill=jnp.where(downhill, state.n_downhill + 1, 0),
            step=state.step + 1,
        )

    dtype = positions.dtype
    initial = FireState(
        positions=positions,
        velocities=jnp.zeros_like(positions),
        forces=force_fn(positions),
        dt=jnp.asarray(dt_start, dtype),
        mixing=jnp.asarray(mixing_start, dtype),
        n_downhill=jnp.asarray(0, jnp.int32),
        step=jnp.asarray(0, jnp.int32),
    )
    return jax.lax.while_loop(not_converged, fire_step, initial)


def make_relax(energy, force_tol, max_steps, solve="cg"):
    """x*(init, σ_large) → (positions (N, 2), FIRE steps): FIRE with implicit derivatives.

    F = ∇_x E (stationarity), via cvxjax.custom_root. Its Jacobian, the Hessian, is singular
    (translation zero modes): ``solve`` must return the minimum-norm solution ("cg" or
    "lstsq"; see the module docstring).
    """

    @cvxjax.custom_root(optimality.stationarity(energy), solve=solve, has_aux=True)
    def relax(init_positions, large_diameter):
        state = fire_minimize(energy, init_positions, large_diameter, force_tol, max_steps)
        return state.positions, state.step

    return relax


# ----------------------------------------------------------------------------------------------
# Finite-difference reference
# ----------------------------------------------------------------------------------------------


def remove_translation(displacement):
    """Displacement field (N, 2) minus its mean: the part a global translation cannot explain."""
    return displacement - jnp.mean(displacement, axis=0)


def finite_difference_sensitivity(relax, positions, large_diameter, box, step):
    """(x*(σ+h) − x*(σ−h)) / 2h, both re-minimized from ``positions`` = x*(σ), translation removed.

    Starting both runs from x*(σ) keeps them in the same energy basin (a random start would land
    in another packing); positions are not wrapped, but the difference is taken as a minimum
    image all the same.
    """
    plus, _ = relax(positions, large_diameter + step)
    minus, _ = relax(positions, large_diameter - step)
    return remove_translation(minimum_image(plus - minus, box)) / (2 * step)


# ----------------------------------------------------------------------------------------------
# Plot and main
# ----------------------------------------------------------------------------------------------


def plot(positions, sensitivity, is_large, box, large_diameter, path):
    """The packing (disks drawn with their periodic copies) and arrows dx*/dσ_large."""
    x = np.mod(np.asarray(positions), box)
    dx = np.asarray(sensitivity)
    large = np.asarray(is_large)
    fig, ax = plt.subplots(figsize=(6.4, 6.4))
    for species, color in ((False, "#9ecae1"), (True, "#fdae6b")):
        diameter = large_diameter if species else SMALL_DIAMETER
        disks = [
            Circle((px + sx * box, py + sy * box), diameter / 2)
            for (px, py) in x[large == species]
            for sx in (-1, 0, 1)
            for sy in (-1, 0, 1)
        ]
        ax.add_collection(
            PatchCollection(disks, facecolor=color, edgecolor="0.3", lw=0.5, alpha=0.85)
        )
    arrow_scale = 0.8 / max(np.abs(dx).max(), 1e-12)  # longest arrow: 0.8 small diameters
    ax.quiver(
        x[:, 0],
        x[:, 1],
        dx[:, 0],
        dx[:, 1],
        angles="xy",
        scale_units="xy",
        scale=1 / arrow_scale,
        width=0.004,
        color="k",
    )
    ax.set_xlim(0, box), ax.set_ylim(0, box)
    ax.set_aspect("equal")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(
        f"{len(x)} soft disks at the energy minimum: arrows = dx*/dσ_large\n"
        f"(blue σ = {SMALL_DIAMETER}, orange σ = {large_diameter}; "
        f"arrows ×{arrow_scale:.2g})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def timed(fn, *args, repeats=3):
    """(result, best wall time in seconds) of a jitted fn, after one warm-up (compile) call."""
    result = jax.block_until_ready(fn(*args))
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return result, best


def main(smoke: bool = False, out_dir=None) -> dict:
    """Relax a packing, differentiate it wrt σ_large, compare with FD; print, plot, return.

    Returns a dict with ``n_particles``, ``energy``, ``max_force``, ``fire_steps``,
    ``n_zero_modes``, ``smallest_nonzero_eigenvalue``, ``sensitivity`` (N, 2),
    ``sensitivity_norm``, ``mean_sensitivity`` (2,), ``fd_sensitivity`` (N, 2),
    ``fd_rel_error``, ``cg_vs_lstsq_rel_error``, ``n_rattlers``, ``smallest_contact_gap``,
    ``implicit_seconds`` (cg), ``lstsq_seconds``, ``fd_seconds``, ``seconds``.
    """
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError(
            "molecular_dynamics needs float64: call jax.config.update('jax_enable_x64', True) "
            "first (running the script does)."
        )
    out_dir = DEFAULT_OUT_DIR if out_dir is None else Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    n_particles = 32 if smoke else 128
    packing_fraction = 0.9
    force_tol, max_steps, fd_step = 1e-13, 200_000, 1e-6
    box = box_side(n_particles, packing_fraction)
    is_large = jnp.arange(n_particles) >= n_particles // 2
    large_diameter = jnp.asarray(LARGE_DIAMETER, DTYPE)

    energy = make_energy(is_large, box)
    relax = jax.jit(make_relax(energy, force_tol, max_steps, solve="cg"))
    relax_lstsq = jax.jit(make_relax(energy, force_tol, max_steps, solve="lstsq"))
    key = jax.random.PRNGKey(1)
    random_positions = jax.random.uniform(key, (n_particles, 2), DTYPE, 0.0, box)

    relax_start = time.perf_counter()
    positions, fire_steps = jax.block_until_ready(relax(random_positions, large_diameter))
    relax_seconds = time.perf_counter() - relax_start  # includes compilation
    energy_min = float(energy(positions, large_diameter))
    max_force = float(jnp.max(jnp.abs(jax.grad(energy)(positions, large_diameter))))

    # Hessian spectrum: the zero modes the implicit solve must cope with.
    hessian = jax.jit(jax.hessian(lambda x: energy(x.reshape(-1, 2), large_diameter)))(
        positions.ravel()
    )
    eigenvalues = np.linalg.eigvalsh(np.asarray(hessian))
    zero_cutoff = 1e-8 * eigenvalues.max()
    n_zero_modes = int(np.sum(np.abs(eigenvalues) < zero_cutoff))
    smallest_nonzero = float(eigenvalues[np.abs(eigenvalues) >= zero_cutoff].min())

    # Implicit derivative: forward mode along σ_large; warm-started at x*, FIRE stops at once,
    # so the time is that of the derivative (one linear solve with the Hessian).
    implicit = jax.jit(jax.jacfwd(lambda s: relax(positions, s)[0]))
    repeats = 1 if smoke else 3
    sensitivity, implicit_seconds = timed(implicit, large_diameter, repeats=repeats)
    implicit_lstsq = jax.jit(jax.jacfwd(lambda s: relax_lstsq(positions, s)[0]))
    sensitivity_lstsq, lstsq_seconds = timed(implicit_lstsq, large_diameter, repeats=repeats)
    cg_vs_lstsq = float(
        jnp.linalg.norm(sensitivity - sensitivity_lstsq) / jnp.linalg.norm(sensitivity_lstsq)
    )
    fd = lambda s: finite_difference_sensitivity(relax, positions, s, box, fd_step)
    fd_sensitivity, fd_seconds = timed(fd, large_diameter, repeats=repeats)

    # The min-norm derivative has zero mean already; remove it anyway to compare like with like.
    difference = remove_translation(sensitivity) - fd_sensitivity
    fd_rel_error = float(jnp.linalg.norm(difference) / jnp.linalg.norm(fd_sensitivity))
    n_contacts, smallest_gap = contacts(positions, is_large, box, large_diameter)
    results = {
        "n_particles": n_particles,
        "energy": energy_min,
        "max_force": max_force,
        "fire_steps": int(fire_steps),
        "n_zero_modes": n_zero_modes,
        "smallest_nonzero_eigenvalue": smallest_nonzero,
        "n_rattlers": int(np.sum(n_contacts == 0)),
        "smallest_contact_gap": smallest_gap,
        "sensitivity": np.asarray(sensitivity),
        "sensitivity_norm": float(jnp.linalg.norm(sensitivity)),
        "mean_sensitivity": np.asarray(jnp.mean(sensitivity, axis=0)),
        "fd_sensitivity": np.asarray(fd_sensitivity),
        "fd_rel_error": fd_rel_error,
        "cg_vs_lstsq_rel_error": cg_vs_lstsq,
        "implicit_seconds": implicit_seconds,
        "lstsq_seconds": lstsq_seconds,
        "fd_seconds": fd_seconds,
    }
    print(
        f"particles                 : {n_particles} (50:50, σ = {SMALL_DIAMETER} / "
        f"{LARGE_DIAMETER}), packing fraction {packing_fraction}, box {box:.3f}"
    )
    print(
        f"FIRE                      : {int(fire_steps)} steps, {relax_seconds:.2f} s "
        f"(incl. compile), max |force| {max_force:.1e}"
    )
    print(
        f"energy at minimum         : {energy_min:.6f}  ({energy_min / n_particles:.3e} per "
        f"particle), {n_contacts.mean():.2f} contacts per particle, "
        f"{results['n_rattlers']} rattler(s) (no contact)"
    )
    hessian_label = f"Hessian ({2 * n_particles}×{2 * n_particles})"
    print(
        f"{hessian_label:<26}: {n_zero_modes} zero modes "
        f"(2 translations + 2 per rattler), smallest nonzero eigenvalue {smallest_nonzero:.2e}"
    )
    print(f"closest pair to contact   : |r/σ − 1| = {smallest_gap:.1e} (FD step must stay below)")
    print(
        f"‖dx*/dσ_large‖            : {results['sensitivity_norm']:.4f}  "
        f"(mean over particles {np.abs(results['mean_sensitivity']).max():.1e}: no drift)"
    )
    print(f"implicit vs central FD    : relative error {fd_rel_error:.2e} (h = {fd_step:g})")
    print(f"solve='cg' vs 'lstsq'     : relative difference {cg_vs_lstsq:.1e}")
    print(
        f"time, implicit derivative : {1e3 * implicit_seconds:.1f} ms with solve='cg' "
        f"(Hessian-vector products), {1e3 * lstsq_seconds:.1f} ms with solve='lstsq' (dense SVD)"
    )
    print(
        f"time, finite differences  : {1e3 * fd_seconds:.1f} ms (2 re-minimizations from x*; "
        "one derivative direction only)"
    )
    plot(positions, sensitivity, is_large, box, float(large_diameter), out_dir / f"{NAME}.png")
    results["seconds"] = time.perf_counter() - start
    print(f"total time                : {results['seconds']:.1f} s")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="reduced size (seconds)")
    parser.add_argument("--out", default=None, help=f"output directory (default {DEFAULT_OUT_DIR})")
    cli = parser.parse_args()
    jax.config.update("jax_enable_x64", True)  # finite differences of relaxed positions
    main(smoke=cli.smoke, out_dir=cli.out)
