"""robustprune: robust data pruning under label noise.

The selection layer works on arrays alone::

    import robustprune as rp
    sel = rp.select("prune4rel", labels=y, probs=p, features=h, fraction=0.2)
    sel.indices        # int64, in pick order

See ``rp.list_methods()`` for every method and ``rp.get_method(name).options`` for its options. With only
embeddings and noisy labels, ``rp.signals_from_embeddings(features, labels)`` adds out-of-sample ``probs``
from a cross-fitted linear probe.

The public names are loaded on first use (``import robustprune`` itself imports neither torch nor the
methods), so that the command line starts quickly; ``from robustprune import select`` works as usual.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from robustprune._version import __version__

#: Each public name and the module that defines it (loaded by :func:`__getattr__` on first use).
_EXPORTS = {
    "select": "robustprune.selection.api",
    "Selection": "robustprune.selection.result",
    "MethodOutput": "robustprune.selection.result",
    "MethodInfo": "robustprune.selection.registry",
    "list_methods": "robustprune.selection.registry",
    "get_method": "robustprune.selection.registry",
    "register": "robustprune.selection.registry",
    "class_quotas": "robustprune.selection.budget",
    "select_by_scores": "robustprune.selection.budget",
    "Signals": "robustprune.signals",
    "load_signals": "robustprune.signals",
    "save_signals": "robustprune.signals",
    "SCHEMA_VERSION": "robustprune.signals",
    "signals_from_embeddings": "robustprune.probe",
    "cross_fitted_probe": "robustprune.probe",
}

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

if TYPE_CHECKING:  # for type checkers and editors: the same names, imported eagerly
    from robustprune.probe import cross_fitted_probe, signals_from_embeddings
    from robustprune.selection.api import select
    from robustprune.selection.budget import class_quotas, select_by_scores
    from robustprune.selection.registry import MethodInfo, get_method, list_methods, register
    from robustprune.selection.result import MethodOutput, Selection
    from robustprune.signals import SCHEMA_VERSION, Signals, load_signals, save_signals


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:  # a subpackage used as an attribute (``rp.selection.registry``), as before it was lazy
        try:
            return import_module(f"robustprune.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"robustprune.{name}":
                raise
            raise AttributeError(f"module 'robustprune' has no attribute {name!r}") from None
    value = getattr(import_module(module), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return list(__all__)
