"""Adding a method is one file and its registration: everything a run, a sweep and torchrun do for a method
is read from its registry entry (facts for metrics.json and the summary, a shared τ-graph build, a fixed
fraction, needing no warm-up), never from a list kept in another module."""

from __future__ import annotations

import numpy as np
import pytest

from robustprune.bench import build_spec, expand
from robustprune.cli.run import _method_rows
from robustprune.pipeline import run
from robustprune.runconfig import RunConfig
from robustprune.selection.core.graph import SharedBuild, rescaled_cosine_graph
from robustprune.selection.registry import Fact, get_method, list_methods, register, unregister
from robustprune.selection.result import MethodOutput
from robustprune.stages import RunMetrics

TINY = dict(dataset="digits", subset=200, warmup_epochs=1, epochs=1, device="cpu")


@pytest.fixture
def plugins():
    """Three methods registered by a test, as a user's own module would, and removed afterwards."""

    @register(
        "plugin_cover",
        kind="greedy",
        requires=("features",),
        description="test-only: the best-connected examples of a τ-graph",
        facts=(Fact("edges", "{} edges", row="plugin graph"), Fact("tau", " at τ {:.2f}", row="plugin graph")),
    )
    def plugin_cover(*, features, budget: int, tau: float = 0.9, shared_build: SharedBuild | None = None):
        g = rescaled_cosine_graph(features, tau, device="cpu", shared=shared_build)
        order = np.argsort(-np.diff(g.indptr), kind="stable")[:budget]
        return MethodOutput(indices=order, info={"edges": int(g.nnz)})

    @register("plugin_labels", kind="score", requires=("labels",), keep="high", description="test-only")
    def plugin_labels(*, labels):
        return -np.asarray(labels, dtype=np.float64)

    @register("plugin_all", kind="score", keep="high", description="test-only: keeps all", fixed_fraction=1.0)
    def plugin_all(*, n: int):
        return np.zeros(n)

    yield
    for name in ("plugin_cover", "plugin_labels", "plugin_all"):
        unregister(name)


def test_the_registry_entry_says_what_the_run_needs(plugins):
    cover, labels_only, keep_all = (get_method(m) for m in ("plugin_cover", "plugin_labels", "plugin_all"))
    assert cover.shares_graph and not labels_only.shares_graph
    assert labels_only.labels_only and keep_all.labels_only and not cover.labels_only
    assert keep_all.fixed_fraction == 1.0 and cover.fixed_fraction is None
    # the built-in methods: the τ-graph methods share their build, the label-free ones need no warm-up
    shared = {m for m in list_methods() if get_method(m).shares_graph}
    assert {"prune4rel", "prune4rel_auto", "submodular"} <= shared and "kcenter_greedy" not in shared
    assert {m for m in list_methods() if get_method(m).labels_only} >= {"uniform", "full"}
    assert get_method("prune4rel").labels_only is False and get_method("full").fixed_fraction == 1.0


def test_a_plugin_methods_facts_reach_metrics_and_the_summary(plugins):
    res = run(RunConfig(method="plugin_cover", fraction=0.3, params={"tau": 0.8}, **TINY))
    assert set(res.metrics) <= set(RunMetrics.__annotations__)  # metrics.json holds only declared keys
    facts = res.metrics["selection"]
    assert facts["edges"] == res.selection.params["edges"] > 200 and facts["tau"] == 0.8
    assert _method_rows("plugin_cover", facts) == [("plugin graph", f"{facts['edges']} edges at τ 0.80")]


def test_prune4rels_summary_rows_come_from_its_facts():
    rows = dict(
        get_method("prune4rel_auto").summary_rows(
            {
                "tau": 0.93,
                "target_degree": 12.0,
                "mean_degree": 11.94,
                "eta": 0.5,
                "coverage": 0.8,
                "flagged": 3,
                "topped_up": 0,
                "gain": "exact",
            }  # fmt: skip
        )
    )
    assert rows == {
        "neighbourhoods": "τ 0.93 (auto, for mean degree 12), mean degree 11.9, η 0.5; the subset covers 80.0% of "
        "all examples",
        "label filter": "3 examples flagged as likely label errors",  # topped_up 0 is not printed
    }
    assert _method_rows("a-selection-file.npy", {"tau": 0.9}) == []  # a file's selection has no registry entry


def test_a_labels_only_plugin_runs_without_a_warm_up(plugins):
    res = run(RunConfig(method="plugin_labels", fraction=0.5, **{**TINY, "warmup_epochs": 0}))
    assert res.signals.probs is None and res.metrics["timings"]["warmup"] == 0.0
    picked = res.selection.indices
    assert picked.shape == (100,) and (res.signals.labels[picked] <= np.median(res.signals.labels)).all()


def test_a_sweep_runs_a_fixed_fraction_method_once(plugins):
    spec = build_spec(
        {
            "datasets": ["digits"],
            "noises": ["sym:0.2"],
            "learners": ["ce"],
            "methods": ["plugin_all", "uniform"],
            "fractions": [0.2, 0.5],
            "seeds": [0],
        }  # fmt: skip
    )
    _, cells = expand(spec)
    fractions = sorted((c.config.method, c.config.fraction) for c in cells)
    assert fractions == [("plugin_all", 1.0), ("uniform", 0.2), ("uniform", 0.5)]


def test_a_learner_is_one_class_and_its_registration():
    from robustprune.runconfig import resolve_config
    from robustprune.train.learners import CELearner, build_learner, list_learners
    from robustprune.train.learners.registry import _LEARNERS, register_learner

    @register_learner("plain")
    class PlainLearner(CELearner):
        name = "plain_ce"

    try:
        assert "plain_ce" in list_learners()
        assert resolve_config(RunConfig(dataset="digits", learner="PLAIN", device="cpu")).learner == "plain_ce"
        with pytest.raises(ValueError, match="learner 'plain_ce' has no option 'lr_u'; valid: none"):
            resolve_config(RunConfig(dataset="digits", learner="plain", learner_params={"lr_u": 1.0}))
        learner = build_learner("plain_ce", lambda: __import__("torch").nn.Linear(4, 3), 3, 10)
        assert isinstance(learner, PlainLearner)
    finally:
        _LEARNERS.remove("plain_ce")


def test_the_run_summary_reads_only_declared_metrics():
    import re
    from pathlib import Path

    import robustprune.cli.run as cli_run

    read = set(re.findall(r"\bm(?:\[|\.get\()\"(\w+)\"", Path(cli_run.__file__).read_text()))
    assert len(read) > 10 and read <= set(RunMetrics.__annotations__), read - set(RunMetrics.__annotations__)
