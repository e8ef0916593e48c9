"""Run ``python -m db restore`` in a child process that stops at a chosen point and waits to be signalled.

    python -m tests.integration.restore_worker POINT READY_FILE -- RESTORE ARGS...

POINT is where the restore waits (after writing READY_FILE), so that the test can deliver SIGINT or SIGKILL
exactly there:

- ``verify``: the archive is being verified, nothing else has happened (early);
- ``rows``: part of the rows are loaded into the staging area (mid-load; batches of 3 rows), or a SQLite
  snapshot restored into SQLite is being written as the staging file;
- ``swap``: the new data is complete, verified and its blobs stored; the swap is about to begin;
- ``swapped``: MariaDB only: the one ``RENAME TABLE`` has run, its triggers are not created yet;
- ``never``: the restore runs to its end.

The command line is the real one (exit code 130 and a message on Ctrl-C); only its progress bars are replaced.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from db.backup import load
from db.cli import main
from db.progress import Advance

_TRACKED = {"verify": "verify", "rows": "rows", "swap": "swap", "swapped": "swap"}


class PausingProgress:
    def __init__(self, point: str, ready: Path) -> None:
        self.point, self.ready = point, ready

    @contextlib.contextmanager
    def track(self, description: str, total: int | None = None) -> Iterator[Advance]:
        done = 0
        if _TRACKED.get(self.point) == description and self.point in ("verify", "swap"):
            self._wait()

        def advance(amount: int) -> None:
            nonlocal done
            done += amount
            loading = self.point == "rows" and (
                (description == "rows" and total and 0 < done < total) or description == "database")
            if loading or (self.point == "swapped" and description == "swap" and done == 1):
                self._wait()

        yield advance

    def _wait(self) -> None:
        self.ready.write_text("waiting")
        while True:
            time.sleep(1)


def run(point: str, ready: Path, arguments: list[str]) -> int:
    import db.cli.restore as command  # patched before the command runs

    load.BATCH_ROWS = 3  # several batches per table: "rows" stops half-way through the load

    @contextlib.contextmanager
    def bars() -> Iterator[PausingProgress]:
        yield PausingProgress(point, ready)

    command.progress_bars = bars  # type: ignore[assignment]
    return main(arguments)


if __name__ == "__main__":
    point, ready, separator, *rest = sys.argv[1:]
    assert separator == "--", "usage: restore_worker POINT READY_FILE -- RESTORE ARGS..."
    sys.exit(run(point, Path(ready), rest))
