"""cvxjax: differentiable convex optimization in JAX.

Compile a parametrized CVXPY problem into a JAX function of its parameters
([`CvxpyLayer`][cvxjax.CvxpyLayer]), or differentiate any solver of your own with the implicit function
theorem ([`custom_root`][cvxjax.custom_root], [`custom_fixed_point`][cvxjax.custom_fixed_point]).
"""

from . import dfl as dfl
from . import linear_solve as linear_solve
from . import optimality as optimality
from . import solvers as solvers
from ._errors import DegenerateDerivativeError as DegenerateDerivativeError
from ._errors import DegenerateDerivativeWarning as DegenerateDerivativeWarning
from ._errors import SolverError as SolverError
from ._errors import Status as Status
from ._implicit import custom_fixed_point as custom_fixed_point
from ._implicit import custom_root as custom_root
from ._implicit import root_jvp as root_jvp
from ._implicit import root_vjp as root_vjp
from ._layer import CvxpyLayer as CvxpyLayer
from ._layer import LayerInfo as LayerInfo
from ._solution_map import Solution as Solution
from ._solution_map import WarmStart as WarmStart

__version__ = "0.1.0"
