"""How long-running scripts report progress, without depending on a terminal library.

A script takes ``progress: Progress = SILENT`` and reports through it:

    with progress.track("users", total=100_000) as advance:
        for batch in batches:
            write(batch)
            advance(len(batch))

The command line passes a Rich progress bar (``db.cli``); tests and library callers pass nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

Advance = Callable[[int], None]


class Progress(Protocol):
    def track(self, description: str, total: int | None = None) -> AbstractContextManager[Advance]:
        """A task named ``description`` of ``total`` units (None: unknown); the block calls ``advance(n)``."""
        ...


class Silent:
    """Reports nothing."""

    @contextmanager
    def track(self, description: str, total: int | None = None) -> Iterator[Advance]:
        yield _ignore


def _ignore(_: int) -> None:
    return None


SILENT: Progress = Silent()


if __name__ == "__main__":
    from db.cli import run_library

    run_library(__spec__.name if __spec__ else __name__)
