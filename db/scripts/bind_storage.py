"""Show which database the file storage root serves, and bind it explicitly: the work of ``python -m db storage``.

    from db.scripts.bind_storage import bind, describe

    describe(database)                        # StorageBinding: this database, the root, the database its marker names
    bind(database)                            # bind a free root, or one holding only this database's blobs
    bind(database, yes=True)                  # also take over a root of another database, or with blobs not its own

The layer binds a root by itself at the first store or removal when that is safe (``db.storage_binding``). This is
for the rest, which only an operator can decide:

- a root without a marker that holds blobs this database does not name (two databases once shared it, or an
  upload crashed before its row was written): binding it makes those blobs this database's orphans, which cleanup
  removes;
- a root whose marker names another database (the database was restored into a new one, which has a new
  identity, and should take over the old root): the other database can no longer use it;
- a root whose marker names this database's identity at another location (the database moved, or this database is
  a copy of the one there and takes the root over): the database there can no longer store or remove blobs in it;
- a database whose identity row is missing: it gets a new identity first (a root bound to the old one is then
  another database's, as above).

The first three need ``yes=True`` or ``confirm(question)`` returning True; the question names the root, both
databases and how many blobs this database does not name. Without either: ``ConfirmationRequired``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import Connection, insert, inspect

from db import storage_binding
from db.errors import ConfirmationRequired, StorageMismatch
from db.layer import Database
from db.models.database_identity import DatabaseIdentity, identity_row
from db.session import require_existing
from db.storage import StorageOwner
from db.storage_binding import BindingState, StorageBinding

Confirm = Callable[[str], bool]
_FREE = (BindingState.FREE, BindingState.ADOPTABLE)


@dataclass(frozen=True, slots=True)
class BindResult:
    before: StorageBinding  # the root and this database before (``before.state``)
    owner: StorageOwner  # what the root's marker names now
    new_identity: bool  # the database had no identity row and got one

    @property
    def changed(self) -> bool:
        return self.new_identity or self.before.state is not BindingState.BOUND


def describe(database: Database) -> StorageBinding:
    """The storage root as this database sees it (counting whose blobs it holds when it has no marker)."""
    require_existing(database)
    storage = storage_binding.local_storage(database)
    with database.engine.connect() as connection:
        _require_identity_table(connection, storage.location)
        return storage_binding.inspect_binding(connection, storage)


def bind(database: Database, *, yes: bool = False, confirm: Confirm | None = None) -> BindResult:
    """Bind the storage root to ``database``; see the module docstring for what needs a confirmation."""
    require_existing(database)  # connecting would create an empty SQLite file for a mistyped path
    storage = storage_binding.local_storage(database)
    new_identity = _ensure_identity(database, storage.location)
    before = describe(database)
    state = before.state
    if state is BindingState.BOUND:
        assert before.owner is not None
        return BindResult(before, before.owner, new_identity)
    owner = storage_binding.owner_record(before)
    if state in _FREE:
        recorded = storage.bind(owner)
        if replace(before, owner=recorded).state is not BindingState.BOUND:  # another database bound it just now
            raise replace(before, owner=recorded).refusal()
        return BindResult(before, recorded, new_identity)
    _confirm(before, yes=yes, confirm=confirm)
    return BindResult(before, storage.bind(owner, replace=True), new_identity)


def _confirm(before: StorageBinding, *, yes: bool, confirm: Confirm | None) -> None:
    if yes:
        return
    if before.state is BindingState.FOREIGN:
        what = f"is bound to database {before.owner}; that database will no longer be able to use it"
    elif before.state is BindingState.ELSEWHERE:
        what = (f"is {before.describe()}: the same identity as this database, so one is a copy of the other (or "
                "this database moved). Bind it only if this database owns the root: the other will no longer be able "
                "to store or remove there")
    else:
        what = (f"holds {before.foreign_blobs:,} blob(s) that this database does not name; cleanup will then remove "
                "them")
    question = (f"The file storage at {before.location} {what}. Bind it to {before.database} (database "
                f"{before.database_id})?")
    if confirm is None:
        raise ConfirmationRequired(f"{question.removesuffix('?')}: confirm with --yes")
    if not confirm(question):
        raise ConfirmationRequired(f"the file storage at {before.location} was not bound: nothing was changed")


def _ensure_identity(database: Database, location: str) -> bool:
    """Give the database an identity if its row is missing; whether it did."""
    with database.engine.begin() as connection:
        _require_identity_table(connection, location)
        if storage_binding.database_identity(connection) is not None:
            return False
        connection.execute(insert(DatabaseIdentity), identity_row())
        return True


def _require_identity_table(connection: Connection, location: str) -> None:
    if not inspect(connection).has_table(DatabaseIdentity.__tablename__):
        raise StorageMismatch("the database has no identity table (its schema is older than this code): run "
                              "python -m db migrate first", root=location)


__all__ = ["BindResult", "bind", "describe"]


if __name__ == "__main__":
    from db.cli import run_script

    run_script("storage")
