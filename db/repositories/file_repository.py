"""``FileRepository``: the ``file`` rows, each an account's named reference to a blob (``FileBlobRepository``).

Data access only. Storing, opening, purging and the rest of what ``uow.files`` offers are ``db.services.files``'s
(``FileService``), which writes each row with the bytes it names: a row made here directly names bytes someone else
must have stored (the sample generator stores them first).

What this repository keeps is the row's own invariant: its content columns (``account_id``, ``content_type``,
``declared_type``, ``size``, ``sha256``) describe bytes that never change, so no update sets them; ``deleted_at``
changes by ``delete`` and ``restore`` only; and an update's ``filename`` must be sanitised already
(``sanitise_filename``), as every ORM write makes it. ``create_many`` writes rows as given, like any bulk path.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, Row, exists, func, select

from db.errors import ValidationError
from db.models.file_object import StoredFile, sanitise_filename
from db.repositories.base_repository import WriteRepository, translated

_SET_BY_STORE = frozenset({"account_id", "content_type", "declared_type", "size", "sha256", "deleted_at"})


class FileRepository(WriteRepository[StoredFile]):
    model = StoredFile
    filterable = frozenset(
        {"id", "account_id", "owner_id", "filename", "content_type", "declared_type", "size", "sha256", "created_at"}
    )
    sortable = frozenset({"created_at", "filename", "size", "content_type"})

    @translated
    def resolve(self, instance_or_id: Any, *, include_deleted: bool = False) -> StoredFile:
        """The file given as itself or by its id; ``NotFound`` if it is missing (or deleted, unless
        ``include_deleted``)."""
        found: StoredFile = self._resolve(instance_or_id, include_deleted=include_deleted)
        return found

    @translated
    def restore(self, instance_or_id: Any) -> StoredFile:
        """Undo a soft delete of the row (a deleted row is found too)."""
        stored = self.resolve(instance_or_id, include_deleted=True)
        stored.deleted_at = None
        return stored

    # --- queries -----------------------------------------------------------------------------------------------

    @translated
    def named_blobs(self, filters: Mapping[str, Any], *, include_deleted: bool = False) -> set[str]:
        """The blobs the rows matching ``filters`` name (filters are required, as for a bulk change)."""
        criteria = self._where(self._required(filters), include_deleted)
        return set(self.session.scalars(select(StoredFile.sha256).where(*criteria).distinct()))

    @translated
    def is_named(self, sha256: str, *, locking: bool = False) -> bool:
        """Whether a row, deleted softly or not, names the blob ``sha256``. ``locking``: with a locking read of the
        row found, which sees the latest committed rows on every engine and keeps that row until the transaction
        ends."""
        if locking:
            named = select(StoredFile.id).where(StoredFile.sha256 == sha256).limit(1).with_for_update(read=True)
            return self.session.scalar(named) is not None
        return self.session.scalar(select(exists().where(StoredFile.sha256 == sha256))) is True

    @translated
    def used_bytes(self, account_id: uuid.UUID) -> int:
        """The sizes of the account's files that are not deleted, summed as latest committed (a locking read where
        a plain one could see an older snapshot)."""
        used = select(func.coalesce(func.sum(StoredFile.size), 0)).where(
            StoredFile.account_id == account_id, StoredFile.deleted_at.is_(None)
        )
        return int(self.session.scalar(self._dialect.latest_committed(used)) or 0)

    @translated
    def lock_deleted(
        self, *, account_id: uuid.UUID | None = None, deleted_before: dt.datetime | None = None,
        ids: Iterable[uuid.UUID] | None = None,
    ) -> list[Row[uuid.UUID, str]]:
        """(id, sha256) of the soft-deleted rows of ``account_id``, deleted before ``deleted_before``, among ``ids``
        (each when given), locked until the transaction ends."""
        criteria: list[ColumnElement[bool]] = [StoredFile.deleted_at.is_not(None)]
        if ids is not None:
            criteria.append(StoredFile.id.in_(list(ids)))
        if account_id is not None:
            criteria.append(StoredFile.account_id == account_id)
        if deleted_before is not None:
            criteria.append(StoredFile.deleted_at < deleted_before)
        statement = select(StoredFile.id, StoredFile.sha256).where(*criteria).with_for_update()
        return list(self.session.execute(statement).all())

    # --- the row's invariant -------------------------------------------------------------------------------------

    def _check_update(self, instance: Any, fields: dict[str, Any]) -> None:
        _check_changeable(fields)
        super()._check_update(instance, fields)

    def _check_bulk_update(self, fields: Mapping[str, Any]) -> None:
        _check_changeable(fields)
        super()._check_bulk_update(fields)


def _check_changeable(fields: Mapping[str, Any]) -> None:
    for key in fields:
        if key in _SET_BY_STORE:
            message = f"file.{key} cannot be set here: use store(), delete() or restore()"
            raise ValidationError(message, field=key, rule="immutable")
    if "filename" in fields and fields["filename"] != sanitise_filename(fields["filename"]):
        raise ValidationError("file.filename is not a sanitised name: use rename()", field="filename",
                              rule="sanitised")


__all__ = ["FileRepository"]
