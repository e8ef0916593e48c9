"""Writes that outlive the caller's transaction: transactions of their own, or replays after a rollback.

``independent_transactions(session)`` gives, where it can, short transactions that commit on their own beside the
caller's (login bookkeeping uses them, ``db.logins``):

- when the session has no transaction in progress and nothing pending, the session's own transactions: each
  commits at once (under ``Database.isolated()`` it is a SAVEPOINT of the test's outer transaction);
- when its transaction has only read so far (no write, no lock, nothing pending) and the session is bound to an
  engine, that transaction is ended first (committing a transaction that has written nothing changes nothing;
  the next read begins a new one, as under READ COMMITTED), then the session's own transactions. No second
  connection is needed, so callers that all read before logging in cannot exhaust the pool waiting for one;
- otherwise (the caller's transaction has written) None.

``transactions_beside(session)`` then gives, where the engine has row locks (not SQLite, whose single writer is
the caller), transactions on a second pooled connection for steps that touch rows the caller is unlikely to hold:
each waits at most ``BESIDE_LOCK_WAIT`` seconds for a lock (should the caller hold it, the wait would never end),
failing with a transient error the caller falls back from. The rest goes to ``autonomous_write`` below.

A failed login must be counted although the login raises, and the unit of work around it rolls back on that
exception. ``autonomous_write(session, write)`` calls ``write(session)`` at once, in the session's transaction,
so the rest of the transaction sees its effect. Then:

- if that transaction commits, that is all;
- if it is rolled back, ``write`` runs again right after the rollback, in a transaction of its own on the same
  session, committed at once. Everything else the caller did stays rolled back;
- if only a savepoint around the write is rolled back and the transaction goes on, ``write`` runs again just
  before that transaction commits (and again after the rollback, should it roll back instead).

It reuses the session's connection rather than opening another: on SQLite a second writer would wait for the
lock the caller's transaction holds, and under ``Database.isolated()`` (the test suites) it stays inside the
outer transaction. ``write`` must stand on its own: read what it needs (with ``FOR UPDATE`` when it computes from
a row) and not rely on objects or changes of the caller's transaction. A failure of the replay is logged and
never raised, so that it cannot hide the exception that caused the rollback.

Only explicit rollbacks are seen: units of work, ``Database.session()`` and ``run_in_transaction`` always roll
back explicitly. A bare session that is closed without a commit or a rollback loses the write.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, SessionTransaction

from db import audit, dialects

logger = logging.getLogger(__name__)

Write = Callable[[Session], None]
_LEDGER = "autonomous_writes"


@dataclass(slots=True)
class _Entry:
    write: Write
    made_in: SessionTransaction | None  # None: undone by a rollback, to be made again


Transactions = Callable[[], AbstractContextManager[Session]]


BESIDE_LOCK_WAIT = 3.0
REPLAY_ATTEMPTS = 4


def independent_transactions(session: Session) -> Transactions | None:
    """A factory of transactions that commit whatever becomes of ``session``'s, or None (see the module docstring)."""
    if session.new or session.dirty or session.deleted:
        return None
    if not session.in_transaction():
        return lambda: _own(session)
    bind = session.get_bind()
    if isinstance(bind, Engine) and not dialects.dialect_of(bind).has_written(session.connection()):
        session.commit()  # it has written nothing and holds no lock: ending it loses nothing
        return lambda: _own(session)
    return None


def transactions_beside(session: Session) -> Transactions | None:
    """Transactions on a second connection with a bounded lock wait, or None where the engine has a single writer
    or the session is bound to one connection (see the module docstring)."""
    bind = session.get_bind()
    if not isinstance(bind, Engine) or not dialects.dialect_of(bind).concurrent_writers:
        return None
    return lambda: _beside(session, bind)


@contextlib.contextmanager
def _own(session: Session) -> Iterator[Session]:
    with session.begin():
        yield session


@contextlib.contextmanager
def _beside(session: Session, engine: Engine) -> Iterator[Session]:
    info = {key: session.info[key] for key in ("actor", "context", "settings") if key in session.info}
    side = audit.AuditedSession(bind=engine, expire_on_commit=False, info=info)
    with side, side.begin(), dialects.dialect_of(engine).bounded_lock_wait(side.connection(), BESIDE_LOCK_WAIT):
        yield side


def autonomous_write(session: Session, write: Write) -> None:
    """Call ``write(session)`` now, and again in a transaction of its own if this transaction rolls back."""
    write(session)
    replay_on_rollback(session, write)


def replay_on_rollback(session: Session, write: Write) -> None:
    """``write``'s effect has just been made in the session's transaction: make it again if that is rolled back."""
    _ledger(session).append(_Entry(write, innermost(session)))


def _ledger(session: Session) -> list[_Entry]:
    if _LEDGER not in session.info:
        session.info[_LEDGER] = []
        event.listen(session, "after_soft_rollback", _after_rollback)
        event.listen(session, "before_commit", _before_commit)
        event.listen(session, "after_commit", _after_commit)
    return session.info[_LEDGER]  # type: ignore[no-any-return]


def innermost(session: Session) -> SessionTransaction | None:
    """The session's innermost transaction: its savepoint if it is in one (None outside any transaction)."""
    return session.get_nested_transaction() or session.get_transaction()


def within(transaction: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    """Whether ``transaction`` is ``ancestor`` or nested in it (a rollback of ``ancestor`` undid it)."""
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


def _after_rollback(session: Session, rolled_back: SessionTransaction) -> None:
    entries: list[_Entry] = session.info.get(_LEDGER, [])
    for entry in entries:
        if within(entry.made_in, rolled_back):
            entry.made_in = None
    if session.in_transaction():  # a savepoint: the transaction goes on, and _before_commit makes them again
        return
    undone = [entry.write for entry in entries if entry.made_in is None]
    entries.clear()
    if undone:
        _replay(session, undone)


def _replay(session: Session, writes: list[Write]) -> None:
    """Make ``writes`` again in a transaction of their own; a transient failure (a deadlock with the transactions of
    other callers doing the same) is retried."""
    for attempt in range(REPLAY_ATTEMPTS):
        try:
            for write in writes:
                write(session)
            session.commit()
            return
        except Exception as error:
            with contextlib.suppress(Exception):
                session.rollback()
            if not dialects.is_transient(error) or attempt + 1 == REPLAY_ATTEMPTS:
                logger.exception("%d write(s) meant to survive a rollback were lost", len(writes))
                return
            time.sleep(random.uniform(0, 0.05 * 2**attempt))


def _before_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint is released: the outer transaction decides
        return
    for entry in session.info.get(_LEDGER, []):
        if entry.made_in is None:
            entry.write(session)
            entry.made_in = innermost(session)


def _after_commit(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.get(_LEDGER, []).clear()


__all__ = ["Transactions", "autonomous_write", "independent_transactions", "innermost", "replay_on_rollback",
           "within"]
