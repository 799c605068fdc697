"""Workers for tests/test_web_scale.py: the partitioned greedy under a gloo process group (started by
``torch.multiprocessing.spawn`` with the variables torchrun would set)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

#: Rows per block of the scans dealt to ranks in these tests (small, so that several ranks get blocks).
BLOCK = 500
PARTITIONS = ("cluster", "random")


def select_parts(kinds: tuple[str, ...] = PARTITIONS, shared=None, block: int | None = BLOCK) -> dict:
    """prune4rel_auto with 4 parts on the test data, per partition: (indices, gains, world) or 'handed off';
    the scans go by blocks of ``block`` rows (None: the library's default). ``out["probs_rows"][kind]``: the
    rows of ``probs`` (given as a row source) this process read, in order."""
    import numpy as np

    import robustprune as rp
    import robustprune.selection.core.partition as partition
    from robustprune.selection.core.graph import BuildHandedOff, SharedBuild
    from tests.test_web_scale import Recording, clustered

    x, p, y = clustered()
    out: dict = {"probs_rows": {}}
    default, partition.BLOCK = partition.BLOCK, block or partition.BLOCK
    try:
        for kind in kinds:
            probs = Recording([p[:1300], p[1300:]])
            try:
                share = None if shared is None else SharedBuild()
                sel = rp.select("prune4rel_auto", features=x, probs=probs, labels=y, budget=300, device="cpu",
                                parts=4, partition=kind, shared_build=share)  # fmt: skip
                out[kind] = (sel.indices, sel.gains, sel.params["world"])
            except BuildHandedOff:
                out[kind] = "handed off"
            out["probs_rows"][kind] = np.concatenate(probs.reads) if probs.reads else np.empty(0, np.int64)
    finally:
        partition.BLOCK = default
    return out


def dealt_check() -> tuple[str, list]:
    """check_rows of a row source with NaN in row 2345 (blocks of 500 rows): the error this rank raised and the
    rows it read."""
    import numpy as np

    import robustprune.selection.core.rows as rows
    from tests.test_web_scale import Recording, clustered

    x = clustered()[0].astype(np.float32)
    x[2345, 1] = np.nan
    source = Recording([x[:1000], x[1000:]])
    default, rows.CHUNK = rows.CHUNK, 500
    try:
        rows.check_rows(source, "features", 3000)
        message = "no error"
    except ValueError as exc:
        message = str(exc)
    finally:
        rows.CHUNK = default
    return message, [(int(r[0]), int(r[-1]) + 1) for r in source.reads]


def parts_worker(rank: int, world: int, port: int, out_dir: str, kinds: tuple[str, ...]) -> None:
    import torch.distributed as tdist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), OMP_NUM_THREADS="1")  # fmt: skip
    torch.set_num_threads(1)
    from robustprune import distributed as dist

    dist.init("cpu")
    result = select_parts(kinds, shared=True)
    result["check"] = dealt_check()
    torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    tdist.barrier()
    tdist.destroy_process_group()
