"""``python -m robustprune``: the command line (also what ``torchrun -m robustprune ...`` starts on every rank).

Under torchrun only rank 0 prints to stdout (progress, the summary); every rank keeps stderr for errors. At
the end every rank waits for the others (rank 0 may still be writing files), leaves a note in the job's store
saying why it leaves (read by a peer that is still waiting on it, to name it in its message) and leaves the
process group, so that no rank exits while a peer still holds a connection to it.
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
        _leave(code)


#: Why a rank leaves, by its exit code (any other code: an error).
_REASONS = {0: "done", None: "done", 130: "interrupted", 143: "terminated"}


def _leave(code: object) -> None:
    """Leave the process group if one was joined: after a barrier when this rank succeeded (a failed rank
    does not wait for peers that may never arrive), with a note saying why. A peer lost at that barrier is
    one line and exit code 1 (this rank's work was done). A command that never imported torch joined none."""
    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as tdist

    if not (tdist.is_available() and tdist.is_initialized()):
        return
    from robustprune import distributed as dist

    reason = _REASONS.get(code, "error") if isinstance(code, (int, type(None))) else "error"
    try:
        if reason == "done":
            dist.barrier()
    except dist.PeerFailure as exc:
        print(f"error: {exc} (after this rank had finished)", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        dist.leave(reason)


if __name__ == "__main__":
    _main()
