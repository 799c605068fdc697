"""Selection layer: pure, seeded functions of per-example signals and a budget.

Where things are, by path:

- the public face: :mod:`~robustprune.selection.api` (``select``), :mod:`~robustprune.selection.registry`
  (``register`` and the :class:`~robustprune.selection.registry.MethodInfo` record holding every fact about a
  method), :mod:`~robustprune.selection.result` (``Selection``, ``MethodOutput``) and
  :mod:`~robustprune.selection.budget` (the one place scores become indices, class quotas);
- :mod:`robustprune.selection.core`: machinery that methods share and that is not a method: greedy engines,
  the τ-graph (blocked and faiss builds), kNN, embedding geometry, the confident-learning core, per-example
  score functions;
- :mod:`robustprune.selection.methods`: one module per method family, each registering its methods;
  ``methods/prune4rel/`` holds Prune4ReL's objective, options and its own engines.

A method module imports from ``core`` and the public face only, never another method module (tests/test_layers.py
checks the rule). Importing this package registers every method, with numpy alone: torch and scipy are imported
inside the functions that use them (annotations name them under ``TYPE_CHECKING``), so that listing the methods
and reading their options (``robustprune methods``) starts quickly; tests/test_selection_startup.py checks it.
"""

from robustprune.selection import methods  # noqa: F401  (registers every method)
