"""A fault-injection point for tests/test_rank_death.py, outside the library: this folder goes first on the
``PYTHONPATH`` of a test's ``torchrun`` job, so Python imports this module as each process starts.

``ROBUSTPRUNE_TEST_PAUSE=RANK:POINT`` makes the worker of rank RANK stop at POINT, write its pid to the file
``ROBUSTPRUNE_TEST_PAUSE_FILE`` + ``.RANK`` and sleep, so that the test can SIGKILL it there while the other
ranks wait for it in a collective (or, when they pause too, sleep in Python). Several ``RANK:POINT`` are
separated by commas. POINT is

* ``train:E:S`` - after optimisation step S of epoch E (both from 1) of the training on the subset: the
  other ranks wait in DDP's gradient all-reduce of the next step;
* ``graph`` - once this rank has built its tiles of Prune4ReL's τ-graph (a shared build across ranks): the
  other ranks wait to gather the edges.

Nothing happens without the variable, in any other process, or at any other point.
"""

import os
import time

_SPEC = os.environ.get("ROBUSTPRUNE_TEST_PAUSE", "")


def _pause() -> None:
    path = f"{os.environ['ROBUSTPRUNE_TEST_PAUSE_FILE']}.{os.environ['RANK']}"
    with open(path + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(300)  # the test kills this process long before


def _install(point: str) -> None:
    if point.startswith("train:"):
        from robustprune.train import engine

        epoch, step = (int(v) for v in point.split(":")[1:])
        step_end = engine.EpochContext.step_end

        def paused_step_end(self, loss):  # noqa: ANN001, ANN202
            step_end(self, loss)
            if self.stage == "train" and self.epoch + 1 == epoch and self.step == step:
                _pause()

        engine.EpochContext.step_end = paused_step_end
    elif point == "graph":
        import importlib

        for name in ("robustprune.selection.core.graph", "robustprune.selection.graph"):
            try:
                graph = importlib.import_module(name)
                break
            except ImportError:
                continue
        upper_edges = graph._upper_edges

        def paused_upper_edges(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            out = upper_edges(*args, **kwargs)
            if kwargs.get("tiles") is not None:  # this rank's share of a shared build
                _pause()
            return out

        graph._upper_edges = paused_upper_edges
    else:
        raise ValueError(f"ROBUSTPRUNE_TEST_PAUSE: unknown point {point!r}")


for _item in filter(None, _SPEC.split(",")):
    _rank, _, _point = _item.partition(":")
    if os.environ.get("RANK") == _rank:
        _install(_point)
