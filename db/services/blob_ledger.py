"""When blobs go: a ledger of the blobs a transaction placed or unnamed, settled once the transaction has ended.

Bytes are written before the rows that name them and removed only once no row names them, by one procedure
(``release_blob``): claim the blob row (an upsert that inserts it when missing and locks it either way, so uploads
and removals of the same bytes queue up on every engine), check with a locking read that no file row names it,
delete the blob row, remove the bytes, commit. Removal never happens inside a caller's transaction, whose rollback
could bring back rows naming removed bytes: it runs in short transactions of its own, on the same session, as soon
as the unit of work has ended:

- after a **rollback**: the bytes its uploads put in place (a committed row naming the same bytes keeps them);
- after a **commit**: blobs that a purge, a hard delete or a reclaim left unnamed, and uploads undone by a
  rolled-back savepoint.

A crash in between leaves bytes without rows, never rows without bytes; ``FileService.reclaim_orphans`` removes
those. Only explicit commits and rollbacks are seen (units of work, ``Database.session()``, ``run_in_transaction``).

    note(session, storage, sha256, placed=True)     # store(): these bytes were put in place
    note(session, storage, sha256, placed=False)    # a row naming them went: check them after the commit
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from db.autonomous import innermost, within
from db.repositories.file_blob_repository import FileBlobRepository
from db.repositories.file_repository import FileRepository
from db.storage import Storage

logger = logging.getLogger(__name__)

_LEDGER = "file_blobs"


def release_blob(session: Session, storage: Storage, sha256: str) -> bool:
    """In the session's transaction: claim the blob; if no file row names it, delete its row and its bytes.

    Returns whether it was removed. The caller commits at once: see the module docstring for why the bytes may go
    before the commit (nothing can name them while the claim is held).
    """
    blobs = FileBlobRepository(session)
    blobs.claim(sha256)
    if FileRepository(session).is_named(sha256, locking=True):
        return False
    blobs.remove(sha256)
    storage.delete(sha256)
    return True


def note(session: Session, storage: Storage, sha256: str, *, placed: bool) -> None:
    """Remember a blob whose fate the end of this transaction decides: ``placed``, its bytes were put in place;
    else a row naming it went."""
    _ledger(session).entries.append(_Entry(storage, sha256, placed, innermost(session)))


@dataclass(slots=True)
class _Entry:
    storage: Storage
    sha256: str
    placed: bool  # True: its bytes were put in place; False: a row naming it went
    made_in: SessionTransaction | None  # None once that (sub)transaction was rolled back


@dataclass(slots=True)
class _Ledger:
    entries: list[_Entry] = field(default_factory=list)
    committed: bool = False
    settling: bool = False


def _ledger(session: Session) -> _Ledger:
    ledger: _Ledger | None = session.info.get(_LEDGER)
    if ledger is None:
        ledger = session.info[_LEDGER] = _Ledger()
        _listen(session)
    return ledger


def _listen(session: Session) -> None:
    event.listen(session, "after_soft_rollback", _after_soft_rollback)
    event.listen(session, "after_commit", _after_commit)
    event.listen(session, "after_transaction_end", _after_transaction_end)


def _after_soft_rollback(session: Session, rolled_back: SessionTransaction) -> None:
    ledger = _ledger(session)
    if ledger.settling:
        return
    for entry in ledger.entries:
        if within(entry.made_in, rolled_back):
            entry.made_in = None
    if rolled_back.parent is None:  # the whole transaction: the bytes it put in place may now be unnamed
        _settle(session, [entry for entry in ledger.entries if entry.placed])


def _after_commit(session: Session) -> None:
    ledger = _ledger(session)
    if not ledger.settling and not session.in_nested_transaction():
        ledger.committed = True


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    ledger = _ledger(session)
    if transaction.parent is not None or ledger.settling:
        return
    committed, ledger.committed = ledger.committed, False
    if committed:  # rows named by committed uploads stay; what lost its last row, or was undone, is checked
        _settle(session, [entry for entry in ledger.entries if not entry.placed or entry.made_in is None])
    # after a rollback, _after_soft_rollback (which follows this event) settles


def _settle(session: Session, entries: Iterable[_Entry]) -> None:
    """Release each blob in a short transaction of its own; a failure is logged (``reclaim_orphans`` finishes)."""
    ledger = _ledger(session)
    todo = {(entry.sha256, id(entry.storage)): entry.storage for entry in entries}
    ledger.entries.clear()
    ledger.settling = True
    try:
        for (sha256, _), storage in sorted(todo.items(), key=lambda item: item[0][0]):
            try:
                release_blob(session, storage, sha256)
                session.commit()
            except Exception:
                logger.exception("blob %s could not be released now; reclaim_orphans() will", sha256)
                _rollback_quietly(session)
    finally:
        ledger.settling = False


def _rollback_quietly(session: Session) -> None:
    try:
        session.rollback()
    except Exception:
        logger.exception("rollback after a failed blob release failed")


__all__ = ["note", "release_blob"]
