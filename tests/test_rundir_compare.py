"""Comparing a stored config with a new one: one function says which fields differ, for a run's resume, run
identities and a sweep's stale cells."""

import json

import pytest

from robustprune.runconfig import RunConfig
from robustprune.rundir import changed_fields, check_same_run, identity_differences


def test_changed_fields_names_every_field_that_differs_sorted():
    old = {"b": 1, "a": 2, "c": 3, "rounds": 4}
    new = {"a": 2, "b": 5, "d": 6, "rounds": 7}
    assert changed_fields(old, new) == ["b", "c", "d", "rounds"]
    assert changed_fields(old, new, ignore=("rounds",)) == ["b", "c", "d"]
    assert changed_fields(old, dict(old)) == []


def test_changed_fields_counts_a_missing_field_as_unset():
    # by default a field one side lacks equals None there (a config field added later with default None)
    assert changed_fields({"a": None}, {}) == []
    assert changed_fields({"a": None}, {}, unset="<unset>") == ["a"]


def test_identity_differences_say_what_changed():
    old = {"resolved": {"epochs": 2, "lr": 0.1}, "inputs": {"signals": "aa"}, "code": "0123456789"}
    new = {"resolved": {"epochs": 3, "seed": 0}, "inputs": {"signals": "bb"}, "code": "0123456789"}
    assert identity_differences(old, new) == [
        "epochs 2 -> 3",
        "lr 0.1 -> '<unset>'",
        "seed '<unset>' -> 0",
        "signals file changed",
    ]
    assert identity_differences(old, dict(old)) == []
    assert identity_differences(None, new) == ["no identity recorded (made by an older robustprune)"]
    changed_code = dict(old, code="fedcba9876")
    assert identity_differences(old, changed_code) == ["code changed (source 01234567 -> fedcba98)"]


def test_check_same_run_names_the_fields_that_differ(tmp_path):
    stored = RunConfig(dataset="digits", epochs=2, seed=0)
    (tmp_path / "config.json").write_text(json.dumps(stored.to_dict()))
    check_same_run(tmp_path, stored)  # the same run resumes
    with pytest.raises(ValueError, match=r"cannot resume .*: its run differs in epochs, seed; pass --force"):
        check_same_run(tmp_path, RunConfig(dataset="digits", epochs=3, seed=1))
