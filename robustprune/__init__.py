"""robustprune: robust data pruning under label noise.

The selection layer works on arrays alone::

    import robustprune as rp
    sel = rp.select("prune4rel", labels=y, probs=p, features=h, fraction=0.2)
    sel.indices        # int64, in pick order

See ``rp.list_methods()`` for every method and ``rp.get_method(name).options`` for its options. With only
embeddings and noisy labels, ``rp.signals_from_embeddings(features, labels)`` adds out-of-sample ``probs``
from a cross-fitted linear probe.
"""

from robustprune._version import __version__
from robustprune.probe import cross_fitted_probe, signals_from_embeddings
from robustprune.selection.api import select
from robustprune.selection.budget import class_quotas, select_by_scores
from robustprune.selection.registry import MethodInfo, get_method, list_methods, register
from robustprune.selection.result import MethodOutput, Selection
from robustprune.signals import SCHEMA_VERSION, Signals, load_signals, save_signals

__all__ = [
    "__version__",
    "select",
    "Selection",
    "MethodOutput",
    "MethodInfo",
    "list_methods",
    "get_method",
    "register",
    "class_quotas",
    "select_by_scores",
    "Signals",
    "load_signals",
    "save_signals",
    "SCHEMA_VERSION",
    "signals_from_embeddings",
    "cross_fitted_probe",
]
