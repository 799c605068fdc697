"""Signal-based baselines; importing this module registers every one of them.

- :mod:`~robustprune.selection.scores`: uniform, full, small_loss, uncertainty, el2n, grand, forgetting, aum
  (score methods; the shared budget function keeps the registered end).
- :mod:`~robustprune.selection.kcenter`: kcenter_greedy (greedy, with per-pick gains).
- :mod:`~robustprune.selection.moderate`: moderate (middle quantile band of class-median distances).
- :mod:`~robustprune.selection.ccs`: ccs (cutoff plus stratified sampling).
- :mod:`~robustprune.selection.confident`: confident_filter (confident learning's label-error filter, then
  uniform sampling of the rest).
"""

from __future__ import annotations

from robustprune.selection import ccs, confident, kcenter, moderate, scores

__all__ = ["ccs", "confident", "kcenter", "moderate", "scores"]
