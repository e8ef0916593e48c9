"""Driver and SQLAlchemy errors as ``db.errors`` errors; programming errors let through unchanged.

Each driver error is classified by the engine whose driver raised it (``Dialect.is_transient`` and the rest),
by its codes, never by searching message text that may contain the caller's values. A message never repeats
bound values.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from sqlalchemy import exc
from sqlalchemy.orm import exc as orm_exc

from db import errors
from db.dialects import audit_sql
from db.dialects.base import Dialect, for_driver_error

# Errors a driver raises itself, not as a DBAPI error, for a value it cannot send: a lone surrogate, an integer beyond
# 64 bits (sqlite3), a type it cannot adapt. Translated only when raised inside the driver's call.
_DRIVER_VALUE_ERRORS = (ValueError, TypeError, OverflowError)
_DRIVER_CALLS = frozenset({"do_execute", "do_executemany", "do_execute_no_params"})
_OS_FULL = {errno.ENOSPC, errno.EDQUOT}


def domain_error(error: BaseException, *, entity: str) -> errors.DatabaseError | None:
    """The ``db.errors`` error a failure inside the layer becomes, or None to let it through unchanged.

    Only what the database, its driver or SQLAlchemy refused is translated. A programming error (a wrong call, a
    bug in the layer, a misuse of SQLAlchemy such as an ``ArgumentError``) leaves as it is, so it can be found.
    Raise the result ``from None`` when the failure came from the driver: a driver's message may quote the
    statement's values (PostgreSQL's DETAIL, MariaDB's "Duplicate entry"), which could be a hash or a token.
    """
    if is_disk_full(error):
        return errors.DiskFull(f"{entity}: the disk is full (no room for the database or its files); nothing was "
                               "written: free some space and try again")
    if isinstance(error, exc.SQLAlchemyError):
        return translate(error, entity=entity)
    if isinstance(error, _DRIVER_VALUE_ERRORS) and raised_by_driver(error):
        return errors.ValidationError(f"{entity}: the database driver cannot take a value (wrong type or out of "
                                      "range)", rule="type")
    return None


def raised_by_driver(error: BaseException) -> bool:
    """Whether ``error`` was raised inside the DBAPI driver's execute call (rather than by code around it)."""
    frame = error.__traceback__
    while frame is not None:
        code, module = frame.tb_frame.f_code, str(frame.tb_frame.f_globals.get("__name__", ""))
        if code.co_name in _DRIVER_CALLS and module.startswith("sqlalchemy."):
            return True
        frame = frame.tb_next
    return False


def translate(error: exc.SQLAlchemyError, *, entity: str) -> errors.DatabaseError | None:
    """A driver error, or a value SQLAlchemy refused, as a ``db.errors`` error; None for a programming error."""
    if isinstance(error, orm_exc.StaleDataError):
        return errors.StaleVersion(entity, "row")
    if isinstance(error, orm_exc.ObjectDeletedError):  # another transaction deleted the row this one had loaded
        return errors.NotFound(entity, "row")
    if isinstance(error, exc.DBAPIError):
        return _translate_driver_error(error, entity)
    if isinstance(error, exc.StatementError) and isinstance(error.orig, (*_DRIVER_VALUE_ERRORS, AttributeError)):
        # A column type's bind processor refused the value (values the layer checks never get here).
        return errors.ValidationError(f"{entity}: a value has the wrong type or is out of range", rule="type")
    if isinstance(error, exc.TimeoutError):
        return errors.TransientError(f"{entity}: no database connection became free within the pool's timeout")
    if isinstance(error, exc.DisconnectionError):
        return errors.DatabaseUnavailable(f"{entity}: the database connection was lost")
    return None


def _translate_driver_error(error: exc.DBAPIError, entity: str) -> errors.DatabaseError:
    original = error.orig
    engine = for_driver_error(original) or Dialect()
    if is_transient(error):
        return errors.TransientError(f"{entity}: transient database error ({type(original).__name__})")
    refusal = audit_sql.REFUSALS.get(engine.raised_message(original) or "")
    if refusal is not None:
        return errors.Conflict(f"{entity}: {refusal}", entity=entity)
    if engine.is_missing_value(original):
        return errors.ValidationError(f"{entity}: a required field is missing", rule="required")
    if engine.is_integrity(error):
        return _integrity_conflict(error, entity, engine)
    if isinstance(error, exc.DataError) or engine.is_refused_value(original):
        return errors.ValidationError(f"{entity}: a value was refused by the database (out of range or wrong type)")
    if engine.is_unreachable(error):
        return errors.DatabaseUnavailable(f"{entity}: the database is unavailable ({type(original).__name__})")
    if engine.is_undefined(original):
        return errors.SchemaMissing(
            f"{entity}: a table or column the statement needs does not exist: the schema is missing or older than "
            "the code (run python -m db create, or python -m db migrate upgrade; a table of your own needs a migration)"
        )
    return errors.DatabaseError(f"{entity}: {type(original).__name__} from the database")


def _integrity_conflict(error: exc.DBAPIError, entity: str, engine: Dialect) -> errors.Conflict:
    name = engine.constraint_name(error)
    foreign = engine.is_foreign_key(error.orig)
    kind = "refers to a missing row or is still referred to" if foreign else "already exists"
    where = f" ({name})" if name else ""
    return errors.Conflict(f"{entity}{where}: {kind}", entity=entity, constraint=name)


def constraint_name(error: exc.DBAPIError) -> str | None:
    """The violated constraint's name where the driver tells it apart from the values, else None."""
    engine = for_driver_error(error.orig)
    return engine.constraint_name(error) if engine is not None else None


def is_transient(error: BaseException) -> bool:
    """Serialization failures, deadlocks, lock timeouts and a busy SQLite file: a retry may succeed.

    The exception's context is searched too: on MariaDB a deadlock rolls back the whole transaction, so the
    ``ROLLBACK TO SAVEPOINT`` that follows fails (1305) and that error replaces the deadlock.
    """
    return _in_chain(error, _is_transient_one)


def is_disk_full(error: BaseException) -> bool:
    """Whether a full disk (or quota) caused ``error``, here or in its context.

    The context is searched: after SQLite's "database or disk is full" the transaction is gone, so the rollback of
    the savepoint that follows fails too, and that error replaces the first.
    """
    return _in_chain(error, _is_disk_full_one)


def _in_chain(error: BaseException, test: Callable[[BaseException], bool]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if test(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_transient_one(error: BaseException) -> bool:
    if isinstance(error, errors.TransientError):
        return True
    original = error.orig if isinstance(error, exc.DBAPIError) else error
    engine = for_driver_error(original)
    return engine is not None and engine.is_transient(original)


def _is_disk_full_one(error: BaseException) -> bool:
    if isinstance(error, errors.DiskFull):
        return True
    original = error.orig if isinstance(error, exc.DBAPIError) else error
    if isinstance(original, OSError) and original.errno in _OS_FULL:
        return True
    engine = for_driver_error(original)
    return engine is not None and engine.is_disk_full(original)


def is_audit_seq_clash(error: exc.DBAPIError) -> bool:
    """An INSERT into audit_entry met a row that already holds one of its seqs (the unique key on seq)."""
    return isinstance(error, exc.IntegrityError) and constraint_name(error) in ("uq_audit_entry_seq", "audit_entry.seq")
