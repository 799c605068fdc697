"""The selection methods, one module per family; importing this package registers each of them.

- :mod:`~robustprune.selection.methods.prune4rel`: prune4rel, prune4rel_auto (objective and options; its own
  greedy engines in ``prune4rel/engines.py``).
- :mod:`~robustprune.selection.methods.scores`: uniform, full, small_loss, uncertainty, el2n, grand,
  forgetting, aum, deepfool (score methods over the functions of :mod:`robustprune.selection.core.scores`).
- :mod:`~robustprune.selection.methods.dynamics`: dynamic_uncertainty, tdds.
- :mod:`~robustprune.selection.methods.confident`: confident_filter (the confident-learning core of
  :mod:`robustprune.selection.core.confident_learning`, then uniform sampling).
- :mod:`~robustprune.selection.methods.kcenter`: kcenter_greedy.
- :mod:`~robustprune.selection.methods.cal`: cal.
- :mod:`~robustprune.selection.methods.contextual`: contextual_diversity.
- :mod:`~robustprune.selection.methods.herding`: herding.
- :mod:`~robustprune.selection.methods.submodular`: submodular (facility location, graph cut, log-determinant).
- :mod:`~robustprune.selection.methods.gradients`: craig, gradmatch, glister.
- :mod:`~robustprune.selection.methods.moderate`: moderate.
- :mod:`~robustprune.selection.methods.ccs`: ccs.
- :mod:`~robustprune.selection.methods.d2`: d2_pruning.
"""

from robustprune.selection.methods import (  # noqa: F401  (register)
    cal,
    ccs,
    confident,
    contextual,
    d2,
    dynamics,
    gradients,
    herding,
    kcenter,
    moderate,
    prune4rel,
    scores,
    submodular,
)
