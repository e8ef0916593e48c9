"""What a command has committed, for the one line printed when Ctrl-C interrupts it.

While the command line runs, a ``Ledger`` listens to every engine's transactions (SQLAlchemy's connection events):
it counts the rows each transaction adds, changes and removes (INSERT, UPDATE, DELETE), takes back what a
rolled-back savepoint did, and moves a transaction's counts to "committed" when it commits. SIGINT first records the
ledger as it is at that instant, then raises ``KeyboardInterrupt`` as usual: the units of work roll back on the way
out, and the line says what had been committed before the interrupt and what the transaction in progress had done
that is not kept. A command that knows better what an interrupt left (``restore``: which data the target holds,
whatever transactions ran) raises ``Interrupted`` with its own line instead.

The listeners are added when a command opens its database (``follow_engines``, called by ``common.open_database``),
not when the command line starts: ``--help`` does not import SQLAlchemy.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

_KIND = {"INSERT": "added", "REPLACE": "added", "MERGE": "added", "UPDATE": "changed", "DELETE": "removed"}
_SCHEMA = ("CREATE", "DROP", "ALTER", "TRUNCATE", "RENAME")
_EVENTS = {  # SQLAlchemy connection event → the Ledger method that handles it
    "begin": "_on_begin", "after_cursor_execute": "_on_execute", "commit": "_on_commit",
    "rollback": "_on_rollback", "savepoint": "_on_savepoint", "rollback_savepoint": "_on_rollback_savepoint",
    "release_savepoint": "_on_release_savepoint",
}


_WATCHING: list[Ledger] = []  # the ledgers of the command lines running, innermost last


def follow_engines() -> None:
    """Let the running command line's ledger count every engine's transactions from now on (no ledger: nothing)."""
    if _WATCHING:
        _WATCHING[-1].listen()


class Interrupted(Exception):
    """Raised by a command on Ctrl-C when it can say better than the ledger what was left: its message is the
    "interrupted:" line (exit 130)."""


@dataclass(frozen=True, slots=True)
class Rows:
    """Rows added, changed and removed, and schema statements run."""

    added: int = 0
    changed: int = 0
    removed: int = 0
    schema: int = 0

    def __add__(self, other: Rows) -> Rows:
        return Rows(self.added + other.added, self.changed + other.changed, self.removed + other.removed,
                    self.schema + other.schema)

    def __bool__(self) -> bool:
        return any((self.added, self.changed, self.removed, self.schema))

    def __str__(self) -> str:
        parts = [f"{count:,} {'row' if count == 1 else 'rows'} {kind}"
                 for kind, count in (("added", self.added), ("changed", self.changed), ("removed", self.removed))
                 if count]
        if self.schema:
            parts.append(f"{self.schema:,} schema change{'' if self.schema == 1 else 's'}")
        return ", ".join(parts) or "no rows"


@dataclass
class _Open:
    """A transaction in progress on one connection, and its counts when each of its open savepoints began."""

    transactional_ddl: bool
    rows: Rows = Rows()
    savepoints: list[Rows] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Snapshot:
    committed_transactions: int
    committed: Rows
    in_progress: Rows
    schema_kept_by_mariadb: bool  # MariaDB commits DDL at once: a rollback does not take it back


@dataclass
class Ledger:
    committed_transactions: int = 0
    committed: Rows = Rows()
    at_interrupt: Snapshot | None = None
    explained: str | None = None  # a command's own interrupt line (``Interrupted``), said instead of the counts
    _open: dict[int, _Open] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listening: bool = False

    # --- the events --------------------------------------------------------------------------------------------

    def _transaction(self, connection: Connection) -> _Open:
        return self._open.setdefault(id(connection), _opened(connection))

    def _on_begin(self, connection: Connection) -> None:
        with self._lock:
            self._open[id(connection)] = _opened(connection)

    def _on_execute(self, connection: Connection, cursor: Any, statement: str, *_: Any) -> None:
        words = statement.split(None, 1)
        verb = words[0].upper() if words else ""
        with self._lock:
            opened = self._transaction(connection)
            if verb in _KIND:
                count = max(int(getattr(cursor, "rowcount", 0) or 0), 0)
                opened.rows = opened.rows + Rows(**{_KIND[verb]: count})
            elif verb in _SCHEMA:
                opened.rows = opened.rows + Rows(schema=1)

    def _on_commit(self, connection: Connection) -> None:
        with self._lock:
            done = self._open.pop(id(connection), None)
            if done is not None and done.rows:
                self.committed_transactions += 1
                self.committed = self.committed + done.rows

    def _on_rollback(self, connection: Connection) -> None:
        with self._lock:
            self._open.pop(id(connection), None)

    def _on_savepoint(self, connection: Connection, name: str) -> None:
        with self._lock:
            opened = self._transaction(connection)
            opened.savepoints.append(opened.rows)

    def _on_rollback_savepoint(self, connection: Connection, name: str, context: Any) -> None:
        with self._lock:
            opened = self._transaction(connection)
            if opened.savepoints:
                opened.rows = opened.savepoints.pop()

    def _on_release_savepoint(self, connection: Connection, name: str, context: Any) -> None:
        with self._lock:
            opened = self._transaction(connection)
            if opened.savepoints:
                opened.savepoints.pop()

    @contextmanager
    def watching(self) -> Iterator[Ledger]:
        """Record the ledger at a SIGINT while the block runs, and count every engine's transactions from
        ``follow_engines`` on."""
        previous = self._catch_interrupt()
        _WATCHING.append(self)
        try:
            yield self
        finally:
            _WATCHING.remove(self)
            self._stop_listening()
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def listen(self) -> None:
        """Count every engine's transactions (once; ``watching`` stops it)."""
        from sqlalchemy import Engine, event

        if not self._listening:
            for name, method in _EVENTS.items():
                event.listen(Engine, name, getattr(self, method))
            for logger in _pool_loggers():
                logger.addFilter(_not_the_interrupt)
            self._listening = True

    def _stop_listening(self) -> None:
        if self._listening:
            from sqlalchemy import Engine, event

            for name, method in _EVENTS.items():
                event.remove(Engine, name, getattr(self, method))
            for logger in _pool_loggers():
                logger.removeFilter(_not_the_interrupt)
            self._listening = False

    def _catch_interrupt(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return None  # only the main thread receives signals

        def interrupted(signum: int, frame: FrameType | None) -> None:
            if self.at_interrupt is None:
                self.at_interrupt = self.snapshot()
            raise KeyboardInterrupt

        return signal.signal(signal.SIGINT, interrupted)

    # --- what to say -------------------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        with self._lock:
            in_progress = Rows()
            for opened in self._open.values():
                in_progress = in_progress + opened.rows
            kept_schema = any(opened.rows.schema and not opened.transactional_ddl
                              for opened in self._open.values())
            return Snapshot(self.committed_transactions, replace(self.committed), in_progress, kept_schema)

    def interrupt_line(self) -> str:
        """What was committed before the interrupt, and what was rolled back (the CLI prefixes "interrupted:"); or
        the command's own line (``Interrupted``)."""
        if self.explained is not None:
            return self.explained
        state = self.at_interrupt or self.snapshot()
        if state.committed_transactions:
            count = state.committed_transactions
            kept = f"{count:,} transaction{'' if count == 1 else 's'} had been committed ({state.committed}: kept)"
        else:
            kept = "nothing had been committed"
        if state.in_progress:
            lost = f"the transaction in progress was rolled back ({state.in_progress}: not kept)"
            if state.schema_kept_by_mariadb:
                lost += "; MariaDB had already committed its schema changes: see `python -m db migrate current`"
        else:
            lost = "no transaction with changes was in progress"
        return f"{kept}; {lost}"


def _opened(connection: Connection) -> _Open:
    from db import dialects

    return _Open(dialects.dialect_of(connection).transactional_ddl)


def _pool_loggers() -> list[logging.Logger]:
    """The loggers SQLAlchemy's pools write to (one per pool class, named after it)."""
    from sqlalchemy.pool import Pool, impl

    pools = [kind for kind in vars(impl).values() if isinstance(kind, type) and issubclass(kind, Pool)]
    return [logging.getLogger(f"{kind.__module__}.{kind.__name__}") for kind in pools]


def _not_the_interrupt(record: logging.LogRecord) -> bool:
    """Drop the pool's report of the ``KeyboardInterrupt`` that Ctrl-C raised while it reset a returned connection:
    the pool logs it with a traceback, then re-raises it, and the command line says what the interrupt left. Every
    other record, a reset that failed for another reason included, passes."""
    return not (record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt))
