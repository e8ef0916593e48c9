"""Checking a user's password: each attempt is counted *before* the password is verified.

An attempt goes in three steps:

1. **Reserve** (a short transaction, committed at once): lock the user's row, refuse at once if the account is
   locked, inactive or has no password, otherwise count the attempt as a failure in advance. The attempt that
   takes the last slot (the ``lockout_threshold``-th consecutive one) also sets the lock, provisionally.
2. **Verify** the password, outside any transaction: argon2 never runs while a row or SQLite's write lock is held,
   and a refused attempt costs what a verification with the current parameters costs
   (``passwords.verify_evenly``).
3. **Record** the outcome (a second short transaction). A success resets the count and lifts the provisional lock
   this attempt set, but only if nothing decided otherwise meanwhile: the row still has the hash that was
   verified, the user is still active, and the account is not locked (or locked by this very attempt). A lock
   decided by a concurrent failure is never undone by a racing success. A failure needs no write: it was
   counted in step 1. Both log their events (``login.success``, ``login.failure``, ``user.locked``).

So at most ``lockout_threshold`` wrong passwords are ever verified against a user's hash between two successes,
however many attempts run at once: the others are refused at step 1 without touching the hash. An attempt
killed between steps 1 and 3 stays counted as a failure (and, if it took the last slot, the account stays
locked for the lockout period): the safe side.

Where the steps run (``Bookkeeping``):

- normally in the unit of work's own session, in transactions of their own (``autonomous.independent_transactions``:
  a unit of work that has only read is ended first, which loses nothing);
- when the unit of work has already written, on PostgreSQL and MariaDB: the row steps (reserve, reset) in
  transactions on a second connection (``autonomous.transactions_beside``), so the count is committed before the
  password is verified, as above; the events go into the caller's transaction, and are made again should it roll
  back. Should the caller hold the user's row itself (it changed that user), the second connection's lock wait
  ends after a few seconds and the attempt falls back to the last case;
- on SQLite after a write (the caller holds the single write lock), or on a session bound to one connection: the
  three steps run in the caller's transaction, and a failure is counted and logged again after a rollback
  (``db.autonomous``). Concurrent attempts are then serialized by the caller's lock, so the bound still holds, but
  argon2 runs while that lock is held: call ``authenticate`` before writing anything to avoid that.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, CursorResult, case, exc, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from db import audit, autonomous, dialects, passwords
from db.models.base import utcnow
from db.models.user import User
from db.settings import Settings

T = TypeVar("T")

UNKNOWN, NO_PASSWORD, LOCKED, INACTIVE, BAD_PASSWORD = (
    "unknown_email", "no_password", "locked", "inactive", "bad_password"
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """A reserved attempt: the user, why it is refused without a verification (None: verify), what to verify."""

    user_id: uuid.UUID | None
    refusal: str | None
    stored_hash: str | None = None
    provisional_lock: dt.datetime | None = None  # the lock this attempt set by taking the last slot
    reserved_count: int = 0  # the failure count once this attempt was counted in advance


class Bookkeeping:
    """Runs the steps of attempts in transactions of their own where it can (see the module docstring)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._own = autonomous.independent_transactions(session)
        self._beside = None if self._own is not None else autonomous.transactions_beside(session)

    @property
    def in_caller_transaction(self) -> bool:
        """Whether every step runs in the caller's transaction (the last case of the module docstring)."""
        return self._own is None and self._beside is None

    @property
    def events_follow_rows(self) -> bool:
        """Whether a row step's transaction may also log the events (the row steps run beside the caller's
        transaction only when that transaction holds the audit chain, having written)."""
        return self._beside is None

    def rows(self, step: Callable[[Session], T]) -> T:
        """A step that locks and writes the user's row, nothing else."""
        if self._own is not None:
            with self._own() as session:
                return step(session)
        if self._beside is not None:
            try:
                with self._beside() as session:
                    return step(session)
            except exc.DBAPIError as error:
                if not dialects.is_transient(error):
                    raise
                self._beside = None  # the caller holds the row: the rest of the attempt runs in its transaction
        return step(self.session)

    def events(self, step: Callable[[Session], None]) -> None:
        """A step that logs audit events: made again after a rollback when it runs in the caller's transaction."""
        if self._own is not None:
            with self._own() as session:
                step(session)
            return
        step(self.session)
        autonomous.replay_on_rollback(self.session, step)


def check(
    session: Session, criterion: ColumnElement[bool] | None, password: Any, settings: Settings, *, login: bool
) -> User | None:
    """The user matched by ``criterion`` if ``password`` is theirs; None (the attempt logged and counted) if not.

    ``login`` records a ``login.success`` and the time; otherwise (a password change) a success only resets the
    count.
    """
    book = Bookkeeping(session)
    attempt = book.rows(lambda s: reserve(s, criterion, settings))
    matches = passwords.verify_evenly(password, attempt.stored_hash, settings)
    if not matches:
        _refuse(book, attempt, attempt.refusal or BAD_PASSWORD, settings)
        return None
    assert attempt.user_id is not None and attempt.stored_hash is not None
    new_hash = _rehashed(password, attempt.stored_hash, settings) if login else None

    def accept_and_load(step_session: Session) -> tuple[str | None, User | None]:
        refusal = accept(step_session, attempt, new_hash, login=login)
        if refusal is None and login and book.events_follow_rows:
            log_success(step_session, attempt, new_hash)
        if refusal is None and step_session is session:  # loaded now, the caller's session stays idle
            return None, step_session.get(User, attempt.user_id, populate_existing=True)
        return refusal, None

    refusal, user = book.rows(accept_and_load)
    if refusal is not None:
        _refuse(book, attempt, refusal, settings)
        return None
    if login and not book.events_follow_rows:
        book.events(lambda s: log_success(s, attempt, new_hash))
    return user or session.get(User, attempt.user_id, populate_existing=True)


def reserve(session: Session, criterion: ColumnElement[bool] | None, settings: Settings) -> Attempt:
    """Step 1: lock the row; refuse, or count the attempt as a failure in advance (and lock at the last slot)."""
    row = None if criterion is None else session.execute(
        select(User.id, User.password_hash, User.is_active, User.failed_login_count, User.locked_until)
        .where(criterion, User.deleted_at.is_(None)).with_for_update()
    ).first()
    if row is None:
        return Attempt(None, UNKNOWN)
    now = utcnow()
    refusal = _refusal(row, now)
    if refusal is not None:
        return Attempt(row.id, refusal)
    count = 1 if row.locked_until is not None else row.failed_login_count + 1  # an expired lock starts afresh
    lock = now + settings.lockout_period if 0 < settings.lockout_threshold <= count else None
    write_login_fields(session, row.id, {"failed_login_count": count, "locked_until": lock})
    return Attempt(row.id, None, row.password_hash, lock, count)


def accept(session: Session, attempt: Attempt, new_hash: str | None, *, login: bool) -> str | None:
    """Step 3 of a verified password: reset the count, unless something decided otherwise; the refusal, or None."""
    now = utcnow()
    mine = [User.locked_until.is_(None), User.locked_until <= now]
    if attempt.provisional_lock is not None:
        mine.append(User.locked_until == attempt.provisional_lock)
    values: dict[str, Any] = {"locked_until": None}
    if login:
        values["last_login_at"] = now
    if new_hash is not None:
        values["password_hash"] = new_hash
    statement = (
        update(User)
        .where(User.id == attempt.user_id, User.password_hash == attempt.stored_hash, User.is_active.is_(True),
               User.deleted_at.is_(None), or_(*mine))
        .values(**values, failed_login_count=_failures_after(attempt), updated_at=User.updated_at)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], session.execute(statement)).rowcount != 1:
        return _why_not(session, attempt, now)
    remaining = session.scalar(select(User.failed_login_count).where(User.id == attempt.user_id))  # row locked
    _follow(session, attempt.user_id, {**values, "failed_login_count": remaining})
    return None


def _failures_after(attempt: Attempt) -> ColumnElement[int]:
    """The count a success leaves: the failures counted after this attempt's own reservation (attempts still being
    verified, which a success must not forgive), none of those before it."""
    return case((User.failed_login_count > attempt.reserved_count,
                 User.failed_login_count - attempt.reserved_count), else_=0)


def log_success(session: Session, attempt: Attempt, new_hash: str | None) -> None:
    """Step 3 of an accepted login: the event."""
    audit.record_event(session, "login.success", entity_type="user", entity_id=attempt.user_id,
                       user_id=attempt.user_id, data={"rehashed": True} if new_hash else None)


def log_failure(session: Session, attempt: Attempt, reason: str, settings: Settings) -> None:
    """Step 3 of a refusal: the events. The count was taken in step 1."""
    user_id = attempt.user_id
    audit.record_event(session, "login.failure", entity_type="user", entity_id=user_id, user_id=user_id,
                       data={"reason": reason})
    if attempt.provisional_lock is not None and reason == BAD_PASSWORD:
        audit.record_event(session, "user.locked", entity_type="user", entity_id=user_id, user_id=user_id,
                           data={"until": attempt.provisional_lock.isoformat(),
                                 "failures": settings.lockout_threshold})


def write_login_fields(session: Session, user_id: uuid.UUID, values: dict[str, Any]) -> None:
    """Login bookkeeping: one UPDATE that leaves ``version`` and ``updated_at`` alone; the loaded user follows."""
    statement = update(User).where(User.id == user_id).values(**values, updated_at=User.updated_at)
    session.execute(statement.execution_options(synchronize_session=False))
    _follow(session, user_id, values)


def _refuse(book: Bookkeeping, attempt: Attempt, reason: str, settings: Settings) -> None:
    if not book.in_caller_transaction:  # the count is committed already: only the events remain
        book.events(lambda s: log_failure(s, attempt, reason, settings))
        return
    log_failure(book.session, attempt, reason, settings)
    autonomous.replay_on_rollback(book.session, lambda s: _replay_failure(s, attempt, reason, settings))


def _replay_failure(session: Session, attempt: Attempt, reason: str, settings: Settings) -> None:
    """A refusal made in the caller's transaction, made again after it rolled back: count it anew, log it."""
    if attempt.user_id is not None and reason == BAD_PASSWORD:
        recount = reserve(session, User.id == attempt.user_id, settings)
        attempt = recount if recount.refusal is None else attempt
    log_failure(session, attempt, reason, settings)


def _refusal(row: Any, now: dt.datetime) -> str | None:
    if row.password_hash is None:
        return NO_PASSWORD
    if row.locked_until is not None and row.locked_until > now:
        return LOCKED
    if not row.is_active:
        return INACTIVE
    return None


def _why_not(session: Session, attempt: Attempt, now: dt.datetime) -> str:
    """Why a verified password was refused at step 3 (the row changed after step 1)."""
    row = session.execute(
        select(User.id, User.password_hash, User.is_active, User.failed_login_count, User.locked_until)
        .where(User.id == attempt.user_id, User.deleted_at.is_(None))
    ).first()
    if row is None:
        return UNKNOWN
    if row.password_hash != attempt.stored_hash:
        return "password_changed"
    return _refusal(row, now) or LOCKED


def _rehashed(password: str, stored_hash: str, settings: Settings) -> str | None:
    """A fresh hash when the stored one was made with other parameters (made here, outside any transaction)."""
    return passwords.hash_password(password, settings) if passwords.needs_rehash(stored_hash, settings) else None


def _follow(session: Session, user_id: uuid.UUID | None, values: dict[str, Any]) -> None:
    loaded = session.identity_map.get(session.identity_key(User, user_id))
    if loaded is not None:
        for key, value in values.items():
            set_committed_value(loaded, key, value)


__all__ = ["Attempt", "Bookkeeping", "accept", "check", "log_failure", "log_success", "reserve",
           "write_login_fields"]
