"""Ctrl-C held back while a swap commits, so that what an interruption reports is what the target holds.

A swap commits (SQLite's one transaction, PostgreSQL's commit, MariaDB's ``RENAME TABLE``) and then records that it
did (``Destination.swapped``). A SIGINT between the two would raise ``KeyboardInterrupt`` with the new data in place
and the record still saying "not swapped". In ``interrupts_deferred()`` a SIGINT is only noted; when the block
ends, it is delivered again to the handler in place before (``signal.raise_signal``): the interrupt then happens,
with the record right.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back SIGINT until the block ends (only in the main thread: the only one that receives signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)


__all__ = ["interrupts_deferred"]
