"""Sensitivity analysis of an economic dispatch with `cvxjax.CvxpyLayer`.

Problem: a DC power network (buses connected by lines, generators at some buses, a demand
d_i at every bus) must meet demand at minimum generation cost. With generator outputs g
(n_gen,), bus voltage angles θ (n_bus,) and line flows f = diag(β) M θ (β: line susceptances
times the MVA base; M: the (n_line, n_bus) incidence matrix, +1 at the line's "from" bus and
−1 at its "to" bus), the DC optimal power flow is the QP

    minimize    Σ_k a_k g_k² + c_k g_k                      (quadratic generation cost)
    subject to  d = C g − Mᵀ f          : λ  (nodal balance: demand = generation − outflow)
                θ_ref = 0                    (angles are defined up to a constant)
                0 ≤ g ≤ g_max                (generator capacities)
                −f_max ≤ f ≤ f_max           (line limits)

with C (n_bus, n_gen) the generator-to-bus map. The demand d is the CVXPY parameter.

What is differentiated. The layer returns the dispatch g*(d) and the duals λ*(d) of the
nodal balance constraints — the *locational marginal prices* (LMPs): λ_i is what one more MW
of demand at bus i costs the system. cvxjax obtains all derivatives from the implicit function
theorem applied to the conic residual of the canonicalized QP,

    F(x, v) = [P x + q + Aᵀ Π_{K*}(v);  A x + Π_{K*}(v) − v − b] = 0,   v = y − s,

so we get, without differentiating the solver:

* ∂g*/∂d (n_gen, n_bus) with ``jax.jacfwd`` (forward mode, one column per bus);
* ∂(total cost)/∂d (n_bus,) with ``jax.grad`` of cost(g*(d)) (reverse mode).

The envelope theorem says ∂(optimal cost)/∂d_i = λ_i: the gradient computed through the
dispatch must equal the duals the layer returns. We check this identity numerically, check
the duals against CVXPY's own ``constraint.dual_value``, and check both derivatives against
central finite differences of CVXPY's own solves. Finally, one batched call of the layer
sweeps the system load to show how prices separate once a line congests.

The operating point is chosen *strictly complementary* (every inequality either slack or with
a strictly positive dual; we verify it): there the solution map is differentiable, and the
Jacobian is exact. (At load levels where a constraint is just becoming active the map has a
kink; see docs/concepts/degenerate-points.md.)

Run:  python examples/sensitivity_analysis.py [--smoke] [--out DIR]
"""

import argparse
import dataclasses
import time
from pathlib import Path

import cvxpy as cp
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import cvxjax  # noqa: E402

NAME = "sensitivity_analysis"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "assets" / "examples"
BASE_MVA = 100.0
# Tight tolerances for the reference CVXPY solves: finite differences divide solver error by
# the step, so the reference must be much more accurate than the derivatives we compare.
CLARABEL_TIGHT = dict(tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11, tol_ktratio=1e-9)


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Network:
    """A DC network. Shapes: n_bus buses, n_line lines, n_gen generators.

    Attributes:
      incidence: (n_line, n_bus) M, +1 at the from bus, −1 at the to bus of each line.
      susceptance: (n_line,) β = MVA base / reactance, so that f = diag(β) M θ is in MW.
      gen_bus: (n_gen,) bus index of each generator.
      quad_cost, lin_cost: (n_gen,) a [$/MW²h] and c [$/MWh].
      gen_capacity: (n_gen,) g_max [MW].
      line_limit: (n_line,) f_max [MW].
      demand: (n_bus,) base-case demand [MW].
    """

    incidence: np.ndarray
    susceptance: np.ndarray
    gen_bus: np.ndarray
    quad_cost: np.ndarray
    lin_cost: np.ndarray
    gen_capacity: np.ndarray
    line_limit: np.ndarray
    demand: np.ndarray

    @property
    def n_bus(self) -> int:
        return self.incidence.shape[1]

    @property
    def n_gen(self) -> int:
        return len(self.gen_bus)

    @property
    def gen_to_bus(self) -> np.ndarray:
        """C (n_bus, n_gen): C[i, k] = 1 if generator k sits at bus i."""
        C = np.zeros((self.n_bus, self.n_gen))
        C[self.gen_bus, np.arange(self.n_gen)] = 1.0
        return C


def random_topology(n_bus: int, rng) -> np.ndarray:
    """Incidence matrix of a ring through all buses plus n_bus // 3 random chords (meshed, so
    flows split over parallel paths as in a real grid)."""
    lines = [(i, (i + 1) % n_bus) for i in range(n_bus)]
    while len(lines) < n_bus + n_bus // 3:
        i, j = sorted(rng.choice(n_bus, 2, replace=False))
        if j - i > 1 and (i, j) not in lines and not (i == 0 and j == n_bus - 1):
            lines.append((i, j))
    M = np.zeros((len(lines), n_bus))
    for line, (i, j) in enumerate(lines):
        M[line, i], M[line, j] = 1.0, -1.0
    return M


def make_network(n_bus: int, n_gen: int, seed: int = 0) -> Network:
    """A random network whose base case has one congested line and one generator at capacity.

    Limits are set from solves of the network itself: first without binding limits; then the
    most heavily loaded line is limited below its flow; then the generator with the largest
    output is capped below it; every other limit gets a wide margin over its final value. For
    the seeds used in ``main`` this gives a strictly complementary operating point with
    separated prices (``main`` prints the check; the smoke test asserts it).
    """
    rng = np.random.default_rng(seed)
    incidence = random_topology(n_bus, rng)
    gen_bus = np.sort(rng.choice(n_bus, n_gen, replace=False))
    base = Network(
        incidence=incidence,
        susceptance=BASE_MVA / rng.uniform(0.05, 0.2, incidence.shape[0]),
        gen_bus=gen_bus,
        quad_cost=rng.uniform(0.02, 0.08, n_gen),
        lin_cost=rng.uniform(15.0, 30.0, n_gen),
        gen_capacity=np.full(n_gen, 1e4),
        line_limit=np.full(incidence.shape[0], 1e4),
        demand=rng.uniform(40.0, 120.0, n_bus),
    )
    _, flows, _, _ = solve_with_cvxpy(base, base.demand)
    limits = base.line_limit.copy()
    congested = np.argmax(np.abs(flows))
    limits[congested] = 0.8 * abs(flows[congested])
    limited = dataclasses.replace(base, line_limit=limits)
    g, _, _, _ = solve_with_cvxpy(limited, limited.demand)
    capacity = base.gen_capacity.copy()
    capped_gen = np.argmax(g)
    capacity[capped_gen] = 0.9 * g[capped_gen]
    limited = dataclasses.replace(limited, gen_capacity=capacity)
    g, flows, _, _ = solve_with_cvxpy(limited, limited.demand)
    # The remaining limits were not binding; give them a margin over the final operating point.
    capacity = np.where(np.arange(n_gen) == capped_gen, capacity, 1.3 * g + 20.0)
    limits = np.where(np.arange(len(flows)) == congested, limits, 1.3 * np.abs(flows) + 10.0)
    return dataclasses.replace(limited, gen_capacity=capacity, line_limit=limits)


# ---------------------------------------------------------------------------------------------
# The optimization problem
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class DispatchProblem:
    """The CVXPY model and the handles we need from it."""

    problem: cp.Problem
    demand: cp.Parameter
    dispatch: cp.Variable
    flows: cp.Expression
    balance: cp.Constraint
    inequalities: list


def build_dispatch_problem(net: Network) -> DispatchProblem:
    """DC optimal power flow (module docstring) with the demand (n_bus,) as parameter."""
    demand = cp.Parameter(net.n_bus, name="demand")
    dispatch = cp.Variable(net.n_gen, name="dispatch")
    angles = cp.Variable(net.n_bus, name="angles")
    flows = cp.multiply(net.susceptance, net.incidence @ angles)
    # Written as "demand == injection" so that CVXPY's dual is +∂cost/∂demand (CVXPY's dual
    # of lhs == rhs is the multiplier of lhs − rhs; for "injection == demand" it is −LMP).
    balance = demand == net.gen_to_bus @ dispatch - net.incidence.T @ flows
    inequalities = [
        dispatch >= 0,
        dispatch <= net.gen_capacity,
        flows <= net.line_limit,
        -flows <= net.line_limit,
    ]
    cost = cp.sum(
        cp.multiply(net.quad_cost, cp.square(dispatch)) + cp.multiply(net.lin_cost, dispatch)
    )
    problem = cp.Problem(cp.Minimize(cost), [balance, angles[0] == 0, *inequalities])
    return DispatchProblem(problem, demand, dispatch, flows, balance, inequalities)


def solve_with_cvxpy(net: Network, demand: np.ndarray, model: DispatchProblem | None = None):
    """CVXPY's own solve (Clarabel, tight tolerances), the reference for every check.

    Returns (dispatch (n_gen,), flows (n_line,), prices λ (n_bus,), optimal cost).
    """
    model = build_dispatch_problem(net) if model is None else model
    model.demand.value = np.asarray(demand, dtype=np.float64)
    model.problem.solve(solver=cp.CLARABEL, **CLARABEL_TIGHT)
    if model.problem.status != cp.OPTIMAL:
        raise RuntimeError(f"CVXPY reference solve failed: {model.problem.status}")
    return (
        np.array(model.dispatch.value),
        np.array(model.flows.value),
        np.array(model.balance.dual_value),
        float(model.problem.value),
    )


def total_cost(net: Network, dispatch: jax.Array) -> jax.Array:
    """Generation cost Σ a g² + c g of a dispatch (n_gen,) [$/h], in JAX."""
    a = jnp.asarray(net.quad_cost, dispatch.dtype)
    c = jnp.asarray(net.lin_cost, dispatch.dtype)
    return jnp.sum(a * dispatch**2 + c * dispatch)


def complementarity_margin(model: DispatchProblem) -> float:
    """min over inequality rows of max(slack / max demand, dual / max dual) at CVXPY's solution.

    Clearly positive ⇔ strictly complementary: no constraint is "weakly active" (active with a
    zero multiplier), so the solution map is differentiable at this demand.
    """
    slacks = np.concatenate(
        [-np.ravel(c.expr.value) for c in model.inequalities]
    )  # a ≤ b: a − b ≤ 0
    duals = np.concatenate([np.ravel(c.dual_value) for c in model.inequalities])
    scale_mw = np.abs(model.demand.value).max()
    return float(np.min(np.maximum(slacks / scale_mw, duals / np.abs(duals).max())))


# ---------------------------------------------------------------------------------------------
# Reference derivatives by finite differences of CVXPY's solve
# ---------------------------------------------------------------------------------------------
def finite_difference_sensitivities(net: Network, model: DispatchProblem, demand, step: float):
    """Central differences of CVXPY's solve in each bus demand.

    Returns (∂g/∂d (n_gen, n_bus), ∂cost/∂d (n_bus,)). The dispatch is piecewise affine in d,
    so there is no truncation error as long as ±step stays inside the current active set.
    """
    d_dispatch = np.zeros((net.n_gen, net.n_bus))
    d_cost = np.zeros(net.n_bus)
    for bus in range(net.n_bus):
        e = np.zeros(net.n_bus)
        e[bus] = step
        g_plus, _, _, cost_plus = solve_with_cvxpy(net, demand + e, model)
        g_minus, _, _, cost_minus = solve_with_cvxpy(net, demand - e, model)
        d_dispatch[:, bus] = (g_plus - g_minus) / (2 * step)
        d_cost[bus] = (cost_plus - cost_minus) / (2 * step)
    return d_dispatch, d_cost


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------
def format_table(header, rows, formats) -> str:
    """A plain-text table (no pandas): right-aligned columns, one format string per column."""
    cells = [[fmt.format(v) for fmt, v in zip(formats, row)] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    line = lambda items: "  ".join(s.rjust(w) for s, w in zip(items, widths))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, cells)])


def plot(net, jac_dispatch, prices, fd_prices, sweep_scale, sweep_prices, path):
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), gridspec_kw={"width_ratios": [1.25, 1, 1]})
    ax = axes[0]
    bound = float(np.abs(jac_dispatch).max())
    im = ax.imshow(jac_dispatch, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(net.n_bus))
    ax.set_yticks(range(net.n_gen), [f"G{k} @ bus {b}" for k, b in enumerate(net.gen_bus)])
    ax.set_xlabel("bus whose demand increases")
    ax.set_title("∂ dispatch / ∂ demand  (jax.jacfwd)")
    fig.colorbar(im, ax=ax, label="MW per MW")

    ax = axes[1]
    buses = np.arange(net.n_bus)
    ax.bar(buses, prices, color="tab:blue", label="cvxjax duals λ")
    ax.plot(buses, fd_prices, "k_", markersize=14, mew=2, label="FD of CVXPY's optimal cost")
    ax.set_ylim(0.9 * prices.min(), 1.05 * prices.max())
    ax.set_xticks(buses)
    ax.set_xlabel("bus")
    ax.set_ylabel("$/MWh")
    ax.set_title("Locational marginal prices")
    ax.legend(loc="lower right", fontsize=8)

    ax = axes[2]
    colors = plt.cm.viridis(np.linspace(0.0, 0.95, net.n_bus))
    for bus in range(net.n_bus):
        ax.plot(
            sweep_scale,
            sweep_prices[:, bus],
            lw=1.2,
            color=colors[bus],
            label=f"bus {bus}" if bus in (0, net.n_bus - 1) else None,
        )
    ax.axvline(1.0, color="gray", ls=":", lw=1)
    infeasible = np.isnan(sweep_prices).any(axis=1)
    if infeasible.any():
        ax.axvspan(
            sweep_scale[infeasible].min(),
            sweep_scale[-1],
            color="tab:red",
            alpha=0.12,
            label="infeasible (NaN, status ≠ 0)",
        )
    ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel("system load (× base case)")
    ax.set_ylabel("$/MWh")
    ax.set_title("Prices along a load sweep (one batched call)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
def main(smoke: bool = False, out_dir=None) -> dict:
    """Run the example; returns the key figures checked by the smoke test."""
    t_start = time.perf_counter()
    out_dir = Path(DEFAULT_OUT if out_dir is None else out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The host solve runs in float64 either way; float64 inputs keep the derivatives exact
    # enough to compare with finite differences (float32 in would give float32 out).
    dtype = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32

    n_bus, n_gen, n_sweep = (6, 3, 9) if smoke else (14, 5, 41)
    net = make_network(n_bus, n_gen, seed=2)
    model = build_dispatch_problem(net)
    layer = cvxjax.CvxpyLayer(
        model.problem,
        parameters=[model.demand],
        variables=[model.dispatch, model.balance.dual_variables[0]],
    )
    demand = jnp.asarray(net.demand, dtype)

    # Forward: dispatch and prices, against CVXPY's own solution and duals.
    dispatch, prices = jax.jit(layer)(demand)
    ref_dispatch, ref_flows, ref_prices, ref_cost = solve_with_cvxpy(net, net.demand, model)
    margin = complementarity_margin(model)
    err_dispatch = float(np.abs(np.asarray(dispatch) - ref_dispatch).max())
    err_dual = float(np.abs(np.asarray(prices) - ref_prices).max())

    # Derivatives: forward mode for the Jacobian, reverse mode for the cost gradient.
    jac_dispatch = jax.jit(jax.jacfwd(lambda d: layer(d)[0]))(demand)
    cost_of_demand = lambda d: total_cost(net, layer(d)[0])
    grad_cost = jax.jit(jax.grad(cost_of_demand))(demand)
    envelope_gap = float(np.abs(np.asarray(grad_cost) - np.asarray(prices)).max())

    fd_dispatch, fd_cost = finite_difference_sensitivities(net, model, net.demand, step=1e-2)
    err_jac = float(np.abs(np.asarray(jac_dispatch) - fd_dispatch).max())
    err_grad = float(np.abs(np.asarray(grad_cost) - fd_cost).max())
    # Lossless network: every extra MW of demand is met by exactly one extra MW of generation.
    column_sum_error = float(np.abs(np.asarray(jac_dispatch).sum(axis=0) - 1.0).max())

    # A load sweep in one batched call (leading batch axis on the demand). At high load the
    # line limits make the dispatch infeasible; on_failure="nan" returns NaN for those
    # elements (instead of raising for the whole batch) and solve() reports their statuses.
    sweep_layer = cvxjax.CvxpyLayer(
        model.problem,
        parameters=[model.demand],
        variables=[model.balance.dual_variables[0]],
        on_failure="nan",
    )
    sweep_scale = np.linspace(0.6, 1.3, n_sweep)
    (sweep_prices,), info = sweep_layer.solve(jnp.asarray(sweep_scale[:, None] * net.demand, dtype))
    sweep_prices, sweep_status = np.asarray(sweep_prices), np.asarray(info.status)
    feasible = sweep_status == cvxjax.Status.SOLVED
    infeasible_statuses = sorted({cvxjax.Status(s).name for s in sweep_status[~feasible]})

    congested = np.flatnonzero(np.abs(ref_flows) >= net.line_limit * (1 - 1e-6))
    at_capacity = np.flatnonzero(ref_dispatch >= net.gen_capacity * (1 - 1e-6))
    print(
        f"network: {net.n_bus} buses, {net.incidence.shape[0]} lines, {net.n_gen} generators; "
        f"total demand {net.demand.sum():.1f} MW, cost {ref_cost:.2f} $/h"
    )
    print(
        f"congested lines: {congested.tolist()}, generators at capacity: {at_capacity.tolist()}, "
        f"strict-complementarity margin {margin:.2e} (> 0: differentiable point)"
    )
    print()
    print(
        format_table(
            ["gen", "bus", "dispatch MW", "capacity MW"],
            [
                (k, b, g, cap)
                for k, (b, g, cap) in enumerate(
                    zip(net.gen_bus, np.asarray(dispatch), net.gen_capacity)
                )
            ],
            ["G{}", "{}", "{:.3f}", "{:.1f}"],
        )
    )
    print()
    print(
        format_table(
            ["bus", "demand MW", "LMP cvxjax", "LMP CVXPY", "dcost/dd grad", "dcost/dd FD"],
            [
                (i, net.demand[i], prices[i], ref_prices[i], grad_cost[i], fd_cost[i])
                for i in range(net.n_bus)
            ],
            ["{}", "{:.1f}", "{:.5f}", "{:.5f}", "{:.5f}", "{:.5f}"],
        )
    )
    print()
    print(f"|dispatch - CVXPY|_max                : {err_dispatch:.2e} MW")
    print(f"|duals - CVXPY dual_value|_max        : {err_dual:.2e} $/MWh")
    print(f"envelope: |grad cost - duals|_max     : {envelope_gap:.2e} $/MWh")
    print(f"|jacfwd dispatch - FD(CVXPY)|_max     : {err_jac:.2e} MW/MW")
    print(f"|grad cost - FD(CVXPY)|_max           : {err_grad:.2e} $/MWh")
    print(f"|column sums of d dispatch/d demand - 1|: {column_sum_error:.2e}")
    print(f"price spread at base load             : {prices.max() - prices.min():.3f} $/MWh")
    print(
        f"load sweep ×{sweep_scale[0]:.2f}..×{sweep_scale[-1]:.2f}: {feasible.sum()} of {n_sweep} "
        f"feasible (largest feasible ×{sweep_scale[feasible].max():.3f}); others: {infeasible_statuses}"
    )

    path = out_dir / f"{NAME}.png"
    plot(
        net, np.asarray(jac_dispatch), np.asarray(prices), fd_cost, sweep_scale, sweep_prices, path
    )
    elapsed = time.perf_counter() - t_start
    print(f"saved {path}  ({elapsed:.1f} s)")
    return dict(
        dispatch=np.asarray(dispatch),
        prices=np.asarray(prices),
        cvxpy_prices=ref_prices,
        jac_dispatch=np.asarray(jac_dispatch),
        fd_jac_dispatch=fd_dispatch,
        grad_cost=np.asarray(grad_cost),
        fd_grad_cost=fd_cost,
        err_dispatch=err_dispatch,
        err_dual=err_dual,
        envelope_gap=envelope_gap,
        err_jac=err_jac,
        err_grad=err_grad,
        column_sum_error=column_sum_error,
        complementarity_margin=margin,
        price_spread=float(prices.max() - prices.min()),
        n_congested=len(congested),
        n_at_capacity=len(at_capacity),
        sweep_scale=sweep_scale,
        sweep_prices=sweep_prices,
        sweep_status=sweep_status,
        elapsed=elapsed,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="reduced size (for tests)")
    parser.add_argument("--out", type=Path, default=None, help="directory for the PNG")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)  # finite-difference comparisons need float64
    main(smoke=args.smoke, out_dir=args.out)
