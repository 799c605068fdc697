"""Selection layer: pure, seeded functions of per-example signals and a budget.

Importing the package registers every method: each module below decorates its functions with
:func:`~robustprune.selection.registry.register`, and the registry itself imports none of them (no cycle).

- :mod:`~robustprune.selection.prune4rel`: prune4rel, prune4rel_auto (objective and options; the greedy
  engines are in :mod:`~robustprune.selection.greedy`, the geometry in :mod:`~robustprune.selection.geometry`).
- :mod:`~robustprune.selection.scores`: uniform, full, small_loss, uncertainty, el2n, grand, forgetting, aum,
  deepfool (score methods; the shared budget function keeps the registered end).
- :mod:`~robustprune.selection.dynamics`: dynamic_uncertainty (windowed std of the label's probability), tdds
  (decayed windowed variability of the per-epoch change of the softmax output).
- :mod:`~robustprune.selection.confident`: confident_filter (confident learning, then uniform sampling).
- :mod:`~robustprune.selection.kcenter`: kcenter_greedy (greedy, with per-pick gains).
- :mod:`~robustprune.selection.cal`: cal (mean symmetric KL to the nearest neighbours, largest kept).
- :mod:`~robustprune.selection.contextual`: contextual_diversity (k-center on predictions in symmetric KL).
- :mod:`~robustprune.selection.herding`: herding (running mean tracking the mean embedding).
- :mod:`~robustprune.selection.submodular`: submodular (facility location / graph cut; naive, lazy or
  stochastic greedy).
- :mod:`~robustprune.selection.gradients`: craig, gradmatch, glister (per-example last-layer gradients, in
  factored form; craig and gradmatch return per-example weights).
- :mod:`~robustprune.selection.moderate`: moderate (middle quantile band of class-median distances).
- :mod:`~robustprune.selection.ccs`: ccs (cutoff plus stratified sampling).
- :mod:`~robustprune.selection.d2`: d2_pruning (difficulty passed over a kNN graph, greedy with reverse passing).
"""

from robustprune.selection import (  # noqa: F401  (register)
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
