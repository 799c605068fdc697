"""Rough edges a new user hits, each with the command that showed it: bad files end in one line, piped output
is never wrapped inside a value."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from robustprune.cli import app


@pytest.mark.parametrize(
    "content, expected",
    [
        (bytes(range(256)) * 2, "is not a .npz file"),  # truncated or random bytes
        (b"x,y\n1,2\n", "is not a .npz file"),  # a text file
        (None, "lacks key 'x'"),  # a .npz without x
    ],
)
@pytest.mark.parametrize("how", ["--data-param", "--data-dir"])
def test_a_corrupt_arrays_file_gives_one_line(tmp_path, content, expected, how):
    bad = tmp_path / "bad.npz"
    if content is None:
        np.savez(bad, y=np.arange(4))
    else:
        bad.write_bytes(content)
    where = ["--data-param", f"path={bad}"] if how == "--data-param" else ["--data-dir", str(bad)]
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", "--dataset", "arrays", *where, "--out", str(out)])
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], r.output
    assert "Traceback" not in r.output and not out.exists()


def test_piped_output_is_never_wrapped_and_has_no_trailing_spaces():
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run([sys.executable, "-m", "robustprune", "methods"], capture_output=True, text=True,
                          env=env, check=True)  # fmt: skip
    lines = done.stdout.splitlines()
    assert not [x for x in lines if x != x.rstrip()]
    # every method's row holds its whole name and its whole description on one line
    import robustprune as rp

    for name in ("contextual_diversity", "prune4rel_auto"):
        row = next(x for x in lines if f" {name} " in x)
        assert " ".join(rp.get_method(name).description.split()) in " ".join(row.split())
    assert max(len(x) for x in lines) > 120  # wider than a terminal's 80 columns: nothing was folded
