"""Prune4ReL: its objective and options (:mod:`.objective`, which registers prune4rel and prune4rel_auto) and
its own greedy engines (:mod:`.engines`)."""

from robustprune.selection.methods.prune4rel.objective import (
    CONFIDENCES,
    RECOMMENDED,
    confidence_scores,
    prune4rel,
    prune4rel_auto,
    prune4rel_objective,
)

__all__ = ["prune4rel", "prune4rel_auto", "RECOMMENDED", "CONFIDENCES", "confidence_scores", "prune4rel_objective"]
