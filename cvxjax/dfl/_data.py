"""Synthetic predict-then-optimize data (PyEPO-style), written from the published recipes
(Tang & Khalil, "PyEPO", 2022; Elmachtoub & Grigas, 2022), in NumPy with explicit seeds."""

import cvxpy as cp
import numpy as np


def grid_edges(grid=(5, 5)):
    """Edges of the directed grid graph whose arcs go right or down, as (tail, head) node
    pairs, shape ``(E, 2)``; node (i, j) has index i·cols + j. A 5×5 grid has 40 edges."""
    rows, cols = grid
    edges = []
    for i in range(rows):
        for j in range(cols):
            node = i * cols + j
            if j + 1 < cols:
                edges.append((node, node + 1))
            if i + 1 < rows:
                edges.append((node, node + cols))
    return np.asarray(edges, dtype=np.int64)


def shortest_path_problem(grid=(5, 5), upper_bounds=False):
    r"""The shortest-path LP from the top-left to the bottom-right node of the grid:

    $$
    \min_x c^\top x \quad\text{s.t.}\quad N x = b,\ x \ge 0 \ (,\ x \le 1),
    $$

    with N the node–arc incidence matrix (+1 for arcs leaving a node, −1 for arcs entering),
    b = e_source − e_sink. The sink's row is dropped: the rows of N sum to zero, and a
    redundant equality would make the KKT system singular. The incidence matrix is totally
    unimodular, so optimal vertices are paths (0/1 vectors). The bounds x ≤ 1 are implied
    (the arcs only go right or down, so the graph has no cycle and a unit flow decomposes
    into paths), even for costs with negative entries such as SPO+'s 2ĉ − c; leaving them
    out (the default) gives the same feasible set with 40 fewer inequality rows, which
    halves the pure-JAX solver's time. ``upper_bounds=True`` writes them anyway.

    Returns:
      ``(problem, cost, x)``: the ``cvxpy.Problem``, its cost ``cp.Parameter`` (E,) and the
      decision ``cp.Variable`` (E,), ready for ``CvxpyLayer(problem, [cost], [x])``.
    """
    edges = grid_edges(grid)
    num_nodes = grid[0] * grid[1]
    incidence = np.zeros((num_nodes, len(edges)))
    incidence[edges[:, 0], np.arange(len(edges))] = 1.0
    incidence[edges[:, 1], np.arange(len(edges))] = -1.0
    supply = np.zeros(num_nodes)
    supply[0], supply[-1] = 1.0, -1.0
    cost = cp.Parameter(len(edges), name="cost")
    x = cp.Variable(len(edges), name="x")
    constraints = [incidence[:-1] @ x == supply[:-1], x >= 0]
    if upper_bounds:
        constraints.append(x <= 1)
    return cp.Problem(cp.Minimize(cost @ x), constraints), cost, x


def _polynomial_costs(rng, features, num_costs, degree, noise_width):
    r"""c_ij = [(((B x_i)_j / √p + 3)^deg) / 3.5^deg + 1] · ε_ij, B ∈ {0,1}^{d×p} Bernoulli(½),
    ε_ij ~ U[1 − ē, 1 + ē]: positive costs whose dependence on x is a degree-deg polynomial
    (deg = 1: linear, a correctly specified linear model up to noise)."""
    num_data, num_features = features.shape
    loadings = rng.binomial(1, 0.5, size=(num_costs, num_features))
    signal = features @ loadings.T / np.sqrt(num_features) + 3.0
    costs = signal**degree / 3.5**degree + 1.0
    return costs * rng.uniform(1.0 - noise_width, 1.0 + noise_width, size=costs.shape)


def shortest_path_data(num_data, num_features, grid=(5, 5), degree=1, noise_width=0.0, seed=0):
    """Features x_i ~ N(0, I_p) and edge costs from the polynomial model of PyEPO's shortest
    path data (degree ``deg``, multiplicative noise of half-width ``noise_width``).

    Returns:
      ``(features (N, p), costs (N, E))`` in float64, E = number of grid edges.
    """
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(num_data, num_features))
    costs = _polynomial_costs(rng, features, len(grid_edges(grid)), degree, noise_width)
    return features, costs


def knapsack_data(
    num_data,
    num_features,
    num_items,
    dim=1,
    degree=1,
    noise_width=0.0,
    seed=0,
    capacity_fraction=0.5,
):
    """Multi-dimensional knapsack data: item values from the same polynomial model as
    ``shortest_path_data``; weights w_ki ~ U{3..8} (integers); capacities a share of the total
    weight per dimension.

    Returns:
      ``(weights (dim, I), capacities (dim,), features (N, p), values (N, I))``; the decision
      problem (``knapsack_problem``) maximizes valuesᵀx, i.e. its linear cost is −values.
    """
    rng = np.random.default_rng(seed)
    weights = rng.integers(3, 9, size=(dim, num_items)).astype(np.float64)
    capacities = capacity_fraction * weights.sum(axis=1)
    features = rng.normal(size=(num_data, num_features))
    values = _polynomial_costs(rng, features, num_items, degree, noise_width)
    return weights, capacities, features, values


def knapsack_problem(weights, capacities):
    r"""The LP relaxation of the knapsack problem, written as a minimization with cost c = −v:

    $$
    \min_x c^\top x \quad\text{s.t.}\quad W x \le \text{capacity},\ 0 \le x \le 1 .
    $$

    (A relaxation: the LP solution may be fractional, and the integer problem is not convex.)

    Returns:
      ``(problem, cost, x)`` as in ``shortest_path_problem``.
    """
    weights = np.asarray(weights, dtype=np.float64)
    cost = cp.Parameter(weights.shape[1], name="cost")
    x = cp.Variable(weights.shape[1], name="x")
    constraints = [weights @ x <= np.asarray(capacities, dtype=np.float64), x >= 0, x <= 1]
    return cp.Problem(cp.Minimize(cost @ x), constraints), cost, x
