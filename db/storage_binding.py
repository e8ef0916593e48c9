"""Which database a file storage root serves: one, named by its identity; nothing else may use the root.

Blobs are content-addressed, so two databases pointed at one root (the default one, say) cannot tell their blobs
apart, and one's cleanup would remove the other's. So a root is *bound* to one database: its marker
(``db.storage.MARKER``) records the identity of that database (``database_identity``, made with the schema) and
where it is (``database_location``: engine, host, port and database name, or a SQLite file's resolved path; never a
password), and the layer checks both before it uses the root:

    binding = inspect_binding(session, storage)       # read-only: what the root and this database are
    require_readable(session, storage)                # before a read
    require_writable(session, storage)                # before a listing of what a removal would take
    bind_for_writes(session, storage)                 # before a store or a removal: binds a free root

========================  =========================================================================================
the root                  what the layer does
========================  =========================================================================================
bound to this database    uses it
bound to another one      refuses everything (``StorageMismatch`` naming both databases)
bound to this identity    reads only; stores and removals are refused. The identity is copied with the data (``cp
elsewhere                 app.db copy.db``, ``pg_dump | psql``, ``CREATE DATABASE ... TEMPLATE``), so this database
                          is a copy of the one the marker names, or that one moved here: only an operator can tell,
                          and re-binds the root with ``python -m db storage --bind`` (asks first)
no marker, no blob        binds it to this database at its first store or removal (a new root)
no marker, only blobs     binds it (adopts it) likewise: a root from before markers, or whose marker was deleted,
this database names       that holds nothing another database could miss
no marker, blobs this     reads only; stores and removals are refused: the blobs may be another database's. An
database does not name    operator who knows better binds it: ``python -m db storage --bind`` (asks first)
========================  =========================================================================================

A database without its identity row is refused too (``python -m db storage --bind`` gives it a new identity). A
restored database keeps the target's identity, or gets a new one; it never takes the backup's (``db.scripts.
restore_db``), so a copy of a database never passes for the original and cannot clean the original's root. A copy
made outside the layer keeps the identity, but not the location: it cannot clean the original's root either.

The same database reached by another URL is the same location: a relative or an absolute SQLite path (or one through
a symbolic link), ``postgres://`` or ``postgresql+psycopg://``, another user or password, ``localhost`` or
``127.0.0.1``, the default port given or not. A marker from before locations were recorded is compared by the URL it
recorded, when that says where the database is (a server's, or a SQLite file's absolute path); one with a relative
SQLite path cannot be compared, and is treated as bound elsewhere until it is re-bound.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Set
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING

from sqlalchemy import URL, Connection, delete, insert, inspect, make_url, select
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session

from db import dialects
from db.errors import DatabaseUnavailable, StorageMismatch
from db.models.database_identity import DatabaseIdentity, identity_row
from db.models.file_blob import FileBlob
from db.repositories.bulk import batched
from db.storage import LocalStorage, Storage, StorageOwner

if TYPE_CHECKING:
    from db.session import Database


class BindingState(Enum):
    BOUND = "bound to this database"
    FOREIGN = "bound to another database"
    FREE = "not bound, holds no blob"
    ADOPTABLE = "not bound, holds only blobs this database names"
    UNCLAIMED = "not bound, holds blobs this database does not name"
    NO_IDENTITY = "this database has no identity"
    ELSEWHERE = "bound to this database's identity at another location: a copy of this database, or its old place"


def database_location(url: URL) -> str:
    """Where the database at ``url`` is, the same text for every URL that reaches it (``Dialect.location``)."""
    return dialects.dialect_of(url).location(url)


def recorded_location(owner: StorageOwner) -> str | None:
    """Where the database a marker names is; for a marker from before locations were recorded, from the URL it
    recorded, if that says where (not a relative SQLite path); None: it cannot be told."""
    if owner.location:
        return owner.location
    try:
        url = make_url(owner.database)
    except (ArgumentError, ValueError):
        return None
    try:
        dialect = dialects.dialect_of(url)
    except DatabaseUnavailable:  # an engine this layer does not know
        return None
    return dialect.location(url) if dialect.location_is_certain(url) else None


@dataclass(frozen=True, slots=True)
class StorageBinding:
    """A storage root as seen by one database."""

    location: str
    database_id: uuid.UUID | None  # None: the database has no identity row
    database: str  # the database's URL without password
    database_location: str  # where the database is (``database_location``)
    owner: StorageOwner | None  # what the root's marker names; None: no marker
    foreign_blobs: int = 0  # a root without a marker: blobs on it that this database does not name
    blobs: int = 0  # a root without a marker: blobs on it

    @property
    def state(self) -> BindingState:
        if self.database_id is None:
            return BindingState.NO_IDENTITY
        if self.owner is not None:
            if self.owner.database_id != str(self.database_id):
                return BindingState.FOREIGN
            here = recorded_location(self.owner) == self.database_location
            return BindingState.BOUND if here else BindingState.ELSEWHERE
        if self.foreign_blobs:
            return BindingState.UNCLAIMED
        return BindingState.ADOPTABLE if self.blobs else BindingState.FREE

    def describe(self) -> str:
        state = self.state
        if state is BindingState.FOREIGN:
            return f"bound to another database, {self.owner}"
        if state is BindingState.ELSEWHERE:
            return f"bound to this database's identity at another location, {self._owner_place()}"
        if state is BindingState.UNCLAIMED:
            return (f"not bound to any database, and {self.foreign_blobs:,} of its {self.blobs:,} blobs are not this "
                    "database's: they may be another database's")
        return str(state.value)

    def refusal(self) -> StorageMismatch:
        """The error for a use this binding does not allow."""
        this = f"{self.database}" + (f" (database {self.database_id})" if self.database_id else "")
        state = self.state
        if state is BindingState.NO_IDENTITY:
            text = (f"{self.database} has no identity (its database_identity row is missing), so it cannot tell "
                    f"whether the file storage at {self.location} is its own: nothing was read, stored or removed "
                    "there; give it a new identity with: python -m db storage --bind")
        elif state is BindingState.FOREIGN:
            text = (f"the file storage at {self.location} belongs to database {self.owner}, not to {this}: nothing "
                    "was read, stored or removed there; give each database its own storage root (--storage, "
                    "DBLAYER_STORAGE_ROOT, Settings.storage_root)")
        elif state is BindingState.ELSEWHERE:
            text = (f"the file storage at {self.location} is bound to the database at {self._owner_place()}, not to "
                    f"{this} at {self.database_location}: they have the same identity, so one is a copy of the other "
                    "(or the database moved), and removing blobs here could take the other's files; nothing was "
                    "stored or removed there. Give this database its own storage root (--storage, "
                    "DBLAYER_STORAGE_ROOT, Settings.storage_root), or, once you have confirmed that this database "
                    "owns the root (the other is gone or uses another root), re-bind it with: python -m db storage "
                    "--bind")
        else:
            text = (f"the file storage at {self.location} is not bound to any database and holds {self.foreign_blobs:,}"
                    f" blob(s) that {this} does not name: they may belong to another database, so nothing was "
                    "stored or removed there; give this database its own storage root, or, if the root is its own, "
                    "bind it with: python -m db storage --bind")
        return StorageMismatch(text, root=self.location, database_id=self.database_id,
                               bound_to=self.owner.database_id if self.owner else None)

    def _owner_place(self) -> str:
        assert self.owner is not None
        place = recorded_location(self.owner) or "a location its marker does not record"
        return f"{place} ({self.owner.database}, database {self.owner.database_id})"


# --- this database's identity -------------------------------------------------------------------------------------


def database_identity(session: Session | Connection) -> uuid.UUID | None:
    """The identity of the database ``session`` is connected to; None if its row is missing."""
    return session.scalar(select(DatabaseIdentity.id))


def existing_identity(connection: Connection) -> uuid.UUID | None:
    """``database_identity``, or None also when the table is missing (a database not yet, or never, migrated)."""
    if not inspect(connection).has_table(DatabaseIdentity.__tablename__):
        return None
    return database_identity(connection)


def stamp_identity(connection: Connection, identity: uuid.UUID) -> None:
    """Make ``identity`` the database's one identity row, whatever row it had (a restore loads the backup's)."""
    connection.execute(delete(DatabaseIdentity))
    connection.execute(insert(DatabaseIdentity), identity_row(identity))


def database_label(session: Session | Connection) -> str:
    """The database's URL without its password, for messages and the marker."""
    return _url_of(session).render_as_string(hide_password=True)


def _url_of(session: Session | Connection) -> URL:
    bind = session.get_bind() if isinstance(session, Session) else session
    return bind.engine.url


# --- checks -------------------------------------------------------------------------------------------------------


def inspect_binding(session: Session | Connection, storage: Storage, *, count: bool = True) -> StorageBinding:
    """The root as this database sees it; without a marker, ``count`` walks the root to count whose blobs it holds.
    Changes nothing."""
    identity, url, owner = database_identity(session), _url_of(session), storage.owner()
    binding = _binding(storage, identity, url, owner)
    if owner is not None or identity is None or not count:
        return binding
    blobs, foreign = _count_blobs(session, storage.keys())
    owner = storage.owner()  # a writer binds before it places a blob: one counted here may be from a binder since
    if owner is not None:    # then, whose uncommitted row this session cannot see; the marker decides, not the count
        return _binding(storage, identity, url, owner)
    return _binding(storage, identity, url, None, foreign_blobs=foreign, blobs=blobs)


def _binding(storage: Storage, identity: uuid.UUID | None, url: URL, owner: StorageOwner | None, *,
             foreign_blobs: int = 0, blobs: int = 0) -> StorageBinding:
    label, location = url.render_as_string(hide_password=True), database_location(url)
    return StorageBinding(storage.location, identity, label, location, owner, foreign_blobs, blobs)


def require_readable(session: Session | Connection, storage: Storage) -> None:
    """Refuse to read a root bound to another database (or when this one has no identity). A copy of the database
    the root is bound to (``ELSEWHERE``) may read: reading changes nothing."""
    binding = inspect_binding(session, storage, count=False)
    if binding.state in (BindingState.FOREIGN, BindingState.NO_IDENTITY):
        raise binding.refusal()


def require_writable(session: Session | Connection, storage: Storage) -> StorageBinding:
    """Refuse unless this database may store into and remove from the root (see the module docstring). Changes
    nothing: a free root is bound by ``bind_for_writes``."""
    binding = inspect_binding(session, storage)
    if binding.state not in (BindingState.BOUND, BindingState.FREE, BindingState.ADOPTABLE):
        raise binding.refusal()
    return binding


def bind_for_writes(session: Session | Connection, storage: Storage) -> None:
    """``require_writable``, then bind a root without a marker to this database. Two databases binding one root at
    the same moment: one wins, the other is refused."""
    binding = require_writable(session, storage)
    if binding.owner is not None:
        return
    _require_bound(replace(binding, owner=storage.bind(owner_record(binding))))


def _require_bound(binding: StorageBinding) -> None:
    """After a bind that only writes a marker if there is none: refused if another database's came first."""
    if binding.state is not BindingState.BOUND:
        raise binding.refusal()


def owner_record(binding: StorageBinding) -> StorageOwner:
    """What a marker binding the root to the database of ``binding`` records."""
    return StorageOwner.of(binding.database_id, binding.database, binding.database_location)


# --- for the scripts: a Database's LocalStorage, checked ------------------------------------------------------------


def local_storage(database: Database) -> LocalStorage:
    """The database's ``LocalStorage`` (``settings.storage_root``), not checked."""
    return LocalStorage(database.settings.storage_root, chunk_size=database.settings.storage_chunk_size)


def writable_storage(database: Database) -> LocalStorage:
    """The database's storage, bound to it for storing and removing (``bind_for_writes``, in a session of its own)."""
    storage = local_storage(database)
    with database.session() as session:
        bind_for_writes(session, storage)
    return storage


def readable_storage(database: Database) -> LocalStorage:
    """The database's storage for reading its blobs (a backup): refused only if its marker names another database.
    A database without an identity (not migrated yet) has nothing to compare, and reading changes nothing."""
    storage = local_storage(database)
    with database.engine.connect() as connection:
        identity, owner = existing_identity(connection), storage.owner()
        if identity is not None and owner is not None and owner.database_id != str(identity):
            raise _binding(storage, identity, database.url, owner).refusal()
    return storage


def prepare_restore(
    database: Database, storage: Storage, restored_blobs: Set[str], *, exists: bool = True
) -> uuid.UUID:
    """Before a restore touches anything: the identity the restored database will have (the target's own, or a new
    one: never the backup's), once the root is known to be free for it. Refused (``StorageMismatch``) if the root is
    bound to another database, or holds blobs that neither the backup nor the target names. ``exists`` False: the
    target does not exist yet (a SQLite file is not created to look inside)."""
    if exists:
        with database.engine.connect() as connection:
            current = existing_identity(connection)
            binding = _restore_binding(storage, current, database.url, restored_blobs, connection)
    else:
        binding = _restore_binding(storage, None, database.url, restored_blobs, None)
    if binding.state not in (BindingState.BOUND, BindingState.FREE, BindingState.ADOPTABLE):
        raise binding.refusal()
    assert binding.database_id is not None  # the target's identity or a new one, never None
    return binding.database_id


def _restore_binding(storage: Storage, current: uuid.UUID | None, url: URL, restored_blobs: Set[str],
                     connection: Connection | None) -> StorageBinding:
    identity, owner = current or uuid.uuid4(), storage.owner()
    if owner is not None:
        return _binding(storage, identity, url, owner)
    look_up = connection is not None and current is not None
    blobs, foreign = _count_blobs(connection, storage.keys(), also_named=restored_blobs, look_up=look_up)
    return _binding(storage, identity, url, None, foreign_blobs=foreign, blobs=blobs)


def finish_restore(database: Database, storage: Storage, identity: uuid.UUID) -> None:
    """After the swap (the restored data already holds ``identity``, from ``prepare_restore``, written into it
    before): the root is bound to it if it was not."""
    if storage.owner() is None:
        binding = _binding(storage, identity, database.url, None)
        _require_bound(replace(binding, owner=storage.bind(owner_record(binding))))


def _count_blobs(session: Session | Connection | None, keys: Iterable[str], *, also_named: Set[str] = frozenset(),
                 look_up: bool = True) -> tuple[int, int]:
    """(blobs, blobs that are neither in ``also_named`` nor, if ``look_up``, named by a ``file_blob`` row)."""
    total = foreign = 0
    for chunk in batched(keys, 1_000):
        unknown = [key for key in chunk if key not in also_named]
        if look_up and unknown and session is not None:
            known = set(session.scalars(select(FileBlob.sha256).where(FileBlob.sha256.in_(unknown))))
            unknown = [key for key in unknown if key not in known]
        total += len(chunk)
        foreign += len(unknown)
    return total, foreign


__all__ = [
    "BindingState", "StorageBinding", "bind_for_writes", "database_identity", "database_label", "database_location",
    "existing_identity", "finish_restore", "inspect_binding", "local_storage", "owner_record", "prepare_restore",
    "readable_storage", "recorded_location", "require_readable", "require_writable", "stamp_identity",
    "writable_storage",
]
