"""Run ``python -m db restore`` in a child process that stops at a chosen point and waits to be signalled.

    python -m tests.integration.restore_worker POINT READY_FILE -- RESTORE ARGS...

POINT is where the restore waits (after writing READY_FILE), so that the test can deliver SIGINT or SIGKILL
exactly there:

- ``verify``: the archive is being verified, nothing else has happened (early);
- ``rows``: part of the rows are loaded into the staging area (mid-load; batches of 3 rows), or a SQLite
  snapshot restored into SQLite is being written as the staging file;
- ``swap``: the new data is complete, verified and its blobs stored; the swap is about to begin;
- ``swapped``: MariaDB only: the one ``RENAME TABLE`` has run, its triggers are not created yet;
- ``committed``: the swap has committed (SQLite's transaction, PostgreSQL's commit, MariaDB's rename) and has not
  yet been recorded as done: the window Ctrl-C is held back in. The pause ends by itself once the test has created
  READY_FILE + ``.go`` (a held-back SIGINT cannot end it);
- ``done``: the restore has returned; the command is about to print its result;
- ``never``: the restore runs to its end.

The command line is the real one (exit code 130 and a message on Ctrl-C); only its progress bars are replaced.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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

    def wait_for_go(self) -> None:
        """Pause until the test says go (READY_FILE.go); a SIGINT interrupts the pause unless it is held back."""
        self.ready.write_text("waiting")
        go = self.ready.with_name(self.ready.name + ".go")
        while not go.exists():
            time.sleep(0.05)


def _pause_after(function: Callable[..., Any], pause: Callable[[], None]) -> Callable[..., Any]:
    def paused(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        pause()
        return result

    return paused


def _pause_once_committed(pause: Callable[[], None]) -> None:
    """Pause right after each engine's swap commits, before the restore records it (see ``committed``)."""
    from sqlalchemy.engine import RootTransaction

    from db.dialects import mariadb, postgresql, sqlite

    sqlite.swap_tables = _pause_after(sqlite.swap_tables, pause)  # type: ignore[assignment]
    mariadb.rename_tables = _pause_after(mariadb.rename_tables, pause)  # type: ignore[assignment]
    swapping: list[bool] = []

    def schema_moved(*args: Any, **kwargs: Any) -> None:
        real_swap(*args, **kwargs)
        swapping.append(True)

    def commit(transaction: RootTransaction) -> None:
        real_commit(transaction)
        if swapping:
            pause()

    real_swap, real_commit = postgresql.swap_schema, RootTransaction.commit
    postgresql.swap_schema = schema_moved  # type: ignore[assignment]
    RootTransaction.commit = commit  # type: ignore[method-assign]


def run(point: str, ready: Path, arguments: list[str]) -> int:
    import db.cli.restore as command  # patched before the command runs

    load.BATCH_ROWS = 3  # several batches per table: "rows" stops half-way through the load

    @contextlib.contextmanager
    def bars() -> Iterator[PausingProgress]:
        yield PausingProgress(point, ready)

    command.progress_bars = bars  # type: ignore[assignment]
    pausing = PausingProgress(point, ready)
    if point == "committed":
        _pause_once_committed(pausing.wait_for_go)
    if point == "done":
        command.show_restore = _pause_after(lambda result: None, pausing.wait_for_go)  # type: ignore[assignment]
    return main(arguments)


if __name__ == "__main__":
    point, ready, separator, *rest = sys.argv[1:]
    assert separator == "--", "usage: restore_worker POINT READY_FILE -- RESTORE ARGS..."
    sys.exit(run(point, Path(ready), rest))
