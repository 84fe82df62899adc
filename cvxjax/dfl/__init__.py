"""Decision-focused learning for problems with a linear cost: informative gradients where the
exact derivative of x*(c) = argmin_{x ∈ X} cᵀx is zero (LPs, relaxations of combinatorial
problems).

Convention: the layer's first parameter is the linear cost c, its first output the decision x.

* Surrogate losses: [`spo_plus`][cvxjax.dfl.spo_plus] (SPO+, Elmachtoub & Grigas) and
  [`fenchel_young_loss`][cvxjax.dfl.fenchel_young_loss] (perturbed Fenchel–Young, Berthet et al.).
* Smoothed solution maps: [`perturbed`][cvxjax.dfl.perturbed] (E[x*(c + σZ)] with its Stein
  Jacobian), [`quadratic_smoothing`][cvxjax.dfl.quadratic_smoothing] (exact implicit derivative of
  a regularized problem) and [`lpgd`][cvxjax.dfl.lpgd] (finite differences along the cotangent).
* Metrics and data: [`normalized_regret`][cvxjax.dfl.normalized_regret], PyEPO-style shortest
  path and knapsack generators.

None of these use the layer's own derivative of an LP (zero almost everywhere); the library's
exact derivative stays available beside them.
"""

from ._data import grid_edges as grid_edges
from ._data import knapsack_data as knapsack_data
from ._data import knapsack_problem as knapsack_problem
from ._data import shortest_path_data as shortest_path_data
from ._data import shortest_path_problem as shortest_path_problem
from ._metrics import normalized_regret as normalized_regret
from ._metrics import regret as regret
from ._perturbed import fenchel_young_loss as fenchel_young_loss
from ._perturbed import perturbed as perturbed
from ._smoothing import lpgd as lpgd
from ._smoothing import quadratic_smoothing as quadratic_smoothing
from ._spo import spo_plus as spo_plus
