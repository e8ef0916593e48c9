"""Run ``python -m db backup`` in a child process that stops at a chosen step until told to go on.

    python -m tests.integration.backup_worker STEP READY_FILE GO_FILE -- BACKUP ARGS...

At the start of progress step STEP (``database`` on SQLite: the snapshot is being compressed, its scratch folder
and the ``.partial`` archive exist; ``rows`` on a server) the child writes READY_FILE and waits until GO_FILE
exists, so that the test can kill it there or let it finish while it holds its files.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from db.cli import main
from db.progress import Advance


class WaitingProgress:
    def __init__(self, step: str, ready: Path, go: Path) -> None:
        self.step, self.ready, self.go = step, ready, go

    @contextlib.contextmanager
    def track(self, description: str, total: int | None = None) -> Iterator[Advance]:
        if description == self.step:
            self.ready.write_text("waiting")
            while not self.go.exists():
                time.sleep(0.05)
        yield lambda amount: None


def run(step: str, ready: Path, go: Path, arguments: list[str]) -> int:
    import db.cli.backup as command  # patched before the command runs

    @contextlib.contextmanager
    def bars() -> Iterator[WaitingProgress]:
        yield WaitingProgress(step, ready, go)

    command.progress_bars = bars  # type: ignore[assignment]
    return main(arguments)


if __name__ == "__main__":
    step, ready, go, separator, *rest = sys.argv[1:]
    assert separator == "--", "usage: backup_worker STEP READY_FILE GO_FILE -- BACKUP ARGS..."
    sys.exit(run(step, Path(ready), Path(go), rest))
