"""``FileService`` (``uow.files``): the files of accounts, kept as content-addressed blobs.

    with database.unit_of_work(actor=ada) as uow:
        stored = uow.files.store(account=acme, owner=ada, filename="Q3 report.pdf", stream=upload,
                                 content_type="application/pdf")          # the declared type; the bytes decide
        with uow.files.open(stored.id, user=bob) as stream:               # NotFound unless bob is in acme
            ...
        uow.files.page(filters={"account_id": acme.id, "content_type": "application/pdf"}, order_by=["-created_at"])
        uow.files.rename(stored, "Q3 report (final).pdf")
        uow.files.delete(stored)                                          # soft; restore(stored) undoes it
        uow.files.purge(deleted_before=a_month_ago)                       # soft-deleted rows go for good
        uow.files.verify(stored.id)                                       # VerifyResult: re-hashes the bytes
        uow.files.reclaim_orphans()                                       # bytes and blob rows nothing names

A file row is made by ``store`` only, with the bytes it names: the service offers no other way to make one.

**Rows and bytes.** A ``file`` row names a ``file_blob`` row (its SHA-256), whose bytes the storage backend keeps
under that hash: identical bytes are stored once, however many files name them. Bytes are written before the rows
that name them and removed only once no row names them, in short transactions of their own after the unit of work
has ended (``db.services.blob_ledger``): after a rollback, the bytes its uploads put in place; after a commit, the
blobs that ``purge``, a hard ``delete`` or ``reclaim_orphans`` left unnamed, and uploads undone by a rolled-back
savepoint. A crash in between leaves bytes without rows, never rows without bytes; ``reclaim_orphans`` removes
those.

**One database per storage root.** The storage root is bound to this database (``db.storage_binding``): a root
bound to another database is refused for everything (``StorageMismatch``), and a root without a marker is bound at
the first store or removal if it holds nothing another database could miss. Every unit of work checks it once,
before it first uses the storage.

**No lock while bytes flow.** ``store`` reads, hashes and writes the stream to a temporary file before its first
statement, so no lock is held (and on SQLite no writer waits) while an upload is read: call it first in its unit of
work. A full disk raises ``DiskFull`` and leaves nothing behind.

**Quota.** ``store`` locks the account row (``SELECT … FOR UPDATE``) and then sums the sizes of its files that are
not deleted, with a locking read on MariaDB (whose REPEATABLE READ snapshot could predate a concurrent upload): two
uploads to one account are serialized and cannot together exceed the quota. Soft-deleted files do not count, so
``restore`` checks the quota again. Sizes are per file: a file whose bytes another file shares still counts.

**Access.** ``open(file_id, user=...)`` is for members of the file's account (any role). For a non-member it
raises the same ``NotFound`` as for a missing or deleted file: whether a file exists is not told to outsiders.
``store`` needs an ``owner`` (the uploading user) who is a member of the account, viewers excepted, or no owner (a
system upload); the stream is read before this is checked (see above), and a refused upload leaves nothing behind.
Other reads (``get_by_id``, ``list``, ``page``) check nothing: callers authorise them.

**Lock order.** ``store`` locks the account row, then the blob row, then (as every audited write does) the audit
chain head. Call it before other audited writes in a unit of work, or run it in ``run_in_transaction``, whose
retries absorb the deadlocks a different order can cause.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from db import audit, storage_binding
from db.errors import NotFound, PermissionDenied, QuotaExceeded, ValidationError
from db.models.file_object import StoredFile, sanitise_filename
from db.repositories.account_repository import AccountRepository
from db.repositories.base_repository import translated
from db.repositories.bulk import batched
from db.repositories.file_blob_repository import FileBlobRepository
from db.repositories.file_repository import FileRepository
from db.repositories.values import id_of
from db.services.base import EntityService
from db.services.blob_ledger import note
from db.storage import (
    LocalStorage,
    Readable,
    Storage,
    check_key,
    hash_stream,
    normalise_content_type,
    sniff_content_type,
)

UPLOADER_ROLES = frozenset({"owner", "admin", "member"})


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """``verify``'s answer: ``ok`` when the stored bytes still hash to the file's SHA-256 and size."""

    file_id: uuid.UUID
    ok: bool
    expected_sha256: str
    expected_size: int
    actual_sha256: str | None  # None: the bytes are missing
    actual_size: int | None

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True, slots=True)
class PurgeResult:
    files: int  # rows removed
    blobs: int  # blobs this transaction sees no row naming any more: removed when the unit of work commits


@dataclass(frozen=True, slots=True)
class ReclaimResult:
    blob_rows: int  # blob rows no file row names
    loose_blobs: int  # stored bytes without a blob row
    temporaries: int  # abandoned temporary files, removed at once

    @property
    def blobs(self) -> int:
        """Blobs to remove when the unit of work commits (each checked once more then)."""
        return self.blob_rows + self.loose_blobs


class FileService(EntityService[StoredFile]):
    entity = "file"

    @functools.cached_property
    def repository(self) -> FileRepository:
        return FileRepository(self.session)

    @functools.cached_property
    def _blobs(self) -> FileBlobRepository:
        return FileBlobRepository(self.session)

    @functools.cached_property
    def _accounts(self) -> AccountRepository:
        return AccountRepository(self.session)

    def backend(self) -> Storage:
        """The blob store: ``LocalStorage`` at ``settings.storage_root``. A subclass may return another backend."""
        return LocalStorage(self.settings.storage_root, chunk_size=self.settings.storage_chunk_size)

    @functools.cached_property
    def storage(self) -> Storage:
        """The blob store, bound to this database, for storing and removing: a root without a marker is bound now if
        it may be (see ``db.storage_binding``); ``StorageMismatch`` if it belongs, or may belong, to another one."""
        storage_binding.bind_for_writes(self.session, self._blob_store)
        return self._blob_store

    @functools.cached_property
    def _readable_storage(self) -> Storage:
        """The blob store for reading: refused if bound to another database."""
        if "storage" not in self.__dict__:
            storage_binding.require_readable(self.session, self._blob_store)
        return self._blob_store

    @functools.cached_property
    def _blob_store(self) -> Storage:
        return self.backend()

    # --- upload and download -----------------------------------------------------------------------------------

    @translated
    def store(
        self, *, account: Any, owner: Any, filename: str | None, stream: Readable | bytes,
        content_type: str | None = None,
    ) -> StoredFile:
        """Store ``stream`` (read in chunks: memory stays flat) as a file of ``account`` uploaded by ``owner``.

        ``filename`` is sanitised; ``content_type`` is the declared type, kept beside the sniffed one. Larger than
        ``settings.max_file_size``: ``ValidationError``; over the account's quota: ``QuotaExceeded``; a full disk:
        ``DiskFull``; a storage root of another database: ``StorageMismatch``. Either way, and on any other failure,
        nothing is left behind.
        """
        name, declared = sanitise_filename(filename), normalise_content_type(content_type)
        account_id = id_of(account, "account")
        owner_id = None if owner is None else id_of(owner, "owner")
        # The slow part first, before any statement: no lock is held while the bytes are read, hashed and written.
        with self._blob_store.stage(stream, max_size=self.settings.max_file_size) as staged:
            sniffed = sniff_content_type(staged.head, complete=staged.size == len(staged.head), declared=declared)
            self._check_uploader(account_id, owner_id)
            storage = self.storage
            with self.session.begin_nested():
                self._check_quota(account_id, staged.size)
                self._blobs.claim(staged.sha256, staged.size)
                note(self.session, storage, staged.sha256, placed=True)
                staged.commit()
                stored = self.repository.create(
                    account_id=account_id, owner_id=owner_id, filename=name, content_type=sniffed,
                    declared_type=declared, size=staged.size, sha256=staged.sha256,
                )
                self._event("file.uploaded", stored, user_id=owner_id)
        return stored

    @translated
    def open(self, file_id: Any, *, user: Any) -> BinaryIO:
        """The file's bytes, for a member of its account; ``NotFound`` for anyone else (see the module docstring)."""
        stored = self.get_by_id(file_id)
        user_id = id_of(user, "user")
        if stored is None or self._role(stored.account_id, user_id) is None:
            raise NotFound(self.entity, file_id)
        stream = self._readable_storage.open(stored.sha256)
        try:
            self._event("file.downloaded", stored, user_id=user_id)
        except BaseException:
            stream.close()
            raise
        return stream

    # --- changes -----------------------------------------------------------------------------------------------

    def rename(self, instance_or_id: Any, filename: str | None) -> StoredFile:
        return self.update(instance_or_id, filename=sanitise_filename(filename))

    def update(self, instance_or_id: Any, **fields: Any) -> StoredFile:
        """Change the file's other columns (``filename``, sanitised already; ``owner_id``): its content columns and
        ``deleted_at`` are refused (``ValidationError``)."""
        return self.repository.update(instance_or_id, **fields)

    def update_many(self, filters: Mapping[str, Any], **fields: Any) -> int:
        return self.repository.update_many(filters, **fields)

    @translated
    def delete(self, instance_or_id: Any, *, hard: bool = False) -> None:
        """Soft-delete the file (its bytes stay until ``purge``); ``hard`` removes the row now."""
        stored = self.repository.resolve(instance_or_id, include_deleted=hard)
        self.repository.delete(stored, hard=hard)
        if hard:
            note(self.session, self.storage, stored.sha256, placed=False)
        self._event("file.deleted", stored, hard=hard)

    @translated
    def delete_many(self, filters: Mapping[str, Any], *, hard: bool = False, include_deleted: bool = False) -> int:
        """The generic bulk delete (recorded as audit change entries listing the ids, not as ``file.deleted``
        events); a hard one frees the blobs its rows named, removed after the commit unless still named."""
        if not hard:
            return self.repository.delete_many(filters, hard=hard, include_deleted=include_deleted)
        named = self.repository.named_blobs(filters, include_deleted=include_deleted)
        count = self.repository.delete_many(filters, hard=True, include_deleted=include_deleted)
        for sha256 in sorted(named):
            note(self.session, self.storage, sha256, placed=False)
        return count

    @translated
    def restore(self, instance_or_id: Any) -> StoredFile:
        """Undo a soft delete; the file counts against its account's quota again (``QuotaExceeded``)."""
        # By id: an instance from an earlier unit of work is not this session's, and may be stale.
        stored = self.repository.resolve(id_of(instance_or_id, "file"), include_deleted=True)
        if stored.deleted_at is not None:
            with self.session.begin_nested():
                self._check_quota(stored.account_id, stored.size)
                self.repository.restore(stored)
        return stored

    @translated
    def purge(
        self, *, account: Any = None, deleted_before: dt.datetime | None = None, ids: Iterable[Any] | None = None
    ) -> PurgeResult:
        """Remove soft-deleted files for good (of ``account``, deleted before ``deleted_before``, among ``ids``,
        when given).

        Their blobs that no other row names are removed when the unit of work commits; shared blobs stay.
        """
        file_ids = None if ids is None else [id_of(ident, "id") for ident in ids]
        account_id = None if account is None else id_of(account, "account")
        if deleted_before is not None and (
            not isinstance(deleted_before, dt.datetime) or deleted_before.utcoffset() is None
        ):
            raise ValidationError("deleted_before must be a timezone-aware datetime", field="deleted_before")
        rows = self.repository.lock_deleted(account_id=account_id, deleted_before=deleted_before, ids=file_ids)
        for chunk in batched(rows, 5_000):
            self.repository.delete_many({"id__in": [row.id for row in chunk]}, hard=True, include_deleted=True)
        named = sorted({row.sha256 for row in rows})
        for sha256 in named:  # each checked again under its lock after the commit: a concurrent purge may free it
            note(self.session, self.storage, sha256, placed=False)
        return PurgeResult(files=len(rows), blobs=sum(not self.repository.is_named(sha256) for sha256 in named))

    # --- integrity ---------------------------------------------------------------------------------------------

    @translated
    def verify(self, file_id: Any) -> VerifyResult:
        """Re-hash the file's bytes (a deleted file's too) and compare them with its SHA-256 and size."""
        stored = self.get_by_id(file_id, include_deleted=True)
        if stored is None:
            raise NotFound(self.entity, file_id)
        actual: tuple[str | None, int | None] = (None, None)
        try:
            with self._readable_storage.open(stored.sha256) as stream:
                actual = hash_stream(stream, self.settings.storage_chunk_size)
        except NotFound:
            pass
        ok = actual == (stored.sha256, stored.size)
        return VerifyResult(stored.id, ok, stored.sha256, stored.size, *actual)

    @translated
    def reclaim_orphans(self, *, temporaries_older_than: dt.timedelta = dt.timedelta(days=1)) -> ReclaimResult:
        """Find blobs no file row names (blob rows, and stored bytes without a blob row): they are removed when the
        unit of work commits, each checked once more under its lock. Temporary files of uploads that have not been
        written to for ``temporaries_older_than`` are removed at once."""
        storage = self.storage
        candidates = {key for key, _ in self._blobs.unnamed()}
        loose = self._loose_keys(storage)
        candidates.update(loose)
        for sha256 in sorted(candidates):
            note(self.session, storage, sha256, placed=False)
        return ReclaimResult(len(candidates) - len(loose), len(loose),
                             storage.remove_temporaries(temporaries_older_than))

    @translated
    def binding(self) -> storage_binding.StorageBinding:
        """The storage root as this database sees it: bound to it, to another database, or to none (and then
        whose blobs it holds). Changes nothing."""
        return storage_binding.inspect_binding(self.session, self._blob_store)

    @translated
    def require_removable(self) -> None:
        """Refuse (``StorageMismatch``) unless this database may remove blobs from its storage root. Changes
        nothing: the root is bound when something is removed."""
        if "storage" not in self.__dict__:
            storage_binding.require_writable(self.session, self._blob_store)

    @translated
    def orphan_blobs(self) -> list[tuple[str, int | None]]:
        """What ``reclaim_orphans`` would find, changing nothing: (key, size) of blob rows no file row names, and
        (key, None) of stored bytes without a blob row; sorted by key. Refused where ``reclaim_orphans`` would be."""
        self.require_removable()
        found: dict[str, int | None] = dict(self._blobs.unnamed())
        found.update((key, None) for key in self._loose_keys(self._blob_store))
        return sorted(found.items())

    @translated
    def release_blobs(self, keys: Iterable[str]) -> int:
        """Remove these blobs when the unit of work commits, each checked once more under its lock then (a blob a
        file row names by then stays). Returns how many were noted."""
        noted = 0
        for key in keys:
            note(self.session, self.storage, check_key(key), placed=False)
            noted += 1
        return noted

    # --- helpers -----------------------------------------------------------------------------------------------

    def _loose_keys(self, storage: Storage) -> list[str]:
        """The keys of stored bytes without a blob row."""
        loose: list[str] = []
        for chunk in batched(storage.keys(), 1_000):
            known = self._blobs.known(chunk)
            loose += [key for key in chunk if key not in known]
        return loose

    def _check_uploader(self, account_id: uuid.UUID, owner_id: uuid.UUID | None) -> None:
        live, role = self._accounts.live_with_role_of(account_id, owner_id)
        if not live:
            raise NotFound("account", account_id)
        if owner_id is not None and role not in UPLOADER_ROLES:
            raise PermissionDenied("files.upload", owner_id)

    def _check_quota(self, account_id: uuid.UUID, size: int) -> None:
        """Lock the account row, then refuse ``size`` more bytes beyond its quota. Call inside a savepoint."""
        quota = self._accounts.locked(account_id).storage_quota_bytes
        used = self.repository.used_bytes(account_id)
        if used + size > quota:
            raise QuotaExceeded(account_id, quota=int(quota), used=used, size=size)

    def _role(self, account_id: uuid.UUID, user_id: uuid.UUID) -> str | None:
        return self._accounts.live_with_role_of(account_id, user_id)[1]

    def _event(self, action: str, stored: StoredFile, **extra: Any) -> None:
        user_id = extra.pop("user_id", None)
        data = {
            "file_id": str(stored.id), "account_id": str(stored.account_id), "size": stored.size,
            "content_type": stored.content_type, **extra,
        }
        audit.record_event(self.session, action, entity_type=self.entity, entity_id=stored.id, data=data,
                           user_id=None if user_id is None else str(user_id))


__all__ = ["UPLOADER_ROLES", "FileService", "PurgeResult", "ReclaimResult", "VerifyResult"]
