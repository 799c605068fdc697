"""A run-config field is one declaration (``runconfig.opt``) with its constraint: every declared constraint is
applied when a config is made, with one message naming the field."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest

from robustprune.runconfig import Check, RunConfig, integer, one_of, share

#: Values at least one of which breaks each kind of constraint declared on RunConfig's fields.
CANDIDATES = (-1, 0, 1, 1.5, "", "x", True, {1: 2}, 2.0)


@pytest.mark.parametrize("name", [f.name for f in fields(RunConfig) if f.metadata.get("check") is not None])
def test_each_declared_constraint_refuses_a_bad_value_naming_its_field(name):
    check = next(f for f in fields(RunConfig) if f.name == name).metadata["check"]
    bad = [v for v in CANDIDATES if not check.test(v)]
    assert bad, f"no candidate breaks the constraint of {name} ({check.phrase})"
    for value in bad:
        with pytest.raises(ValueError, match="^" + re.escape(f"{name} must be {check.phrase}, got ")):
            RunConfig(**{name: value})


def test_the_constraint_helpers_say_what_they_accept():
    assert integer(2).test(2) and not integer(2).test(1) and not integer().test(True) and not integer().test(2.0)
    frac = share(closed_low=False, closed_high=True)
    assert frac.test(1) and frac.test(0.5) and not frac.test(0) and not frac.test(True) and frac.phrase == "in (0, 1]"
    assert one_of("clean", "strong").phrase == "'clean' or 'strong'"
    with pytest.raises(ValueError, match=r"^eval_every must be an integer >= 1, got 0$"):
        RunConfig(eval_every=0)
    assert Check(lambda v: v > 0, "positive")("x", None) is None  # None means "from the protocol": never checked


def test_the_docstring_lists_every_field_from_its_declaration():
    for f in fields(RunConfig):
        assert f"    {f.name} : {f.metadata['section']}\n" in RunConfig.__doc__
