"""``python -m robustprune``: the command line (also what ``torchrun -m robustprune ...`` starts on every rank).

Under torchrun only rank 0 prints to stdout (progress, the summary); every rank keeps stderr for errors. At
the end every rank waits for the others (rank 0 may still be writing files) and leaves the process group, so
that no rank exits while a peer still holds a connection to it.
"""

import os
import sys


def _main() -> None:
    if os.environ.get("RANK", "0") not in ("", "0"):
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    from robustprune.cli import main

    code: object = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
        raise
    except BaseException:
        code = 1
        raise
    finally:
        _leave(code in (0, None))


def _leave(ok: bool) -> None:
    """Leave the process group if one was joined: after a barrier when this rank succeeded (a failed rank
    does not wait for peers that may never arrive). A command that never imported torch joined none."""
    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as tdist

    if not (tdist.is_available() and tdist.is_initialized()):
        return
    try:
        if ok:
            tdist.barrier()
    finally:
        tdist.destroy_process_group()


if __name__ == "__main__":
    _main()
