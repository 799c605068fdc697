"""``python -m robustprune``: the command line (also what ``torchrun -m robustprune ...`` starts on every rank).

Under torchrun only rank 0 prints to stdout (progress, the summary); every rank keeps stderr for errors.
"""

import os
import sys


def _main() -> None:
    if os.environ.get("RANK", "0") not in ("", "0"):
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    from robustprune.cli import main

    main()


if __name__ == "__main__":
    _main()
