"""``FileBlobRepository``: the ``file_blob`` rows, one per distinct content that file rows name.

Data access only: claiming a row (the lock that queues up uploads and removals of the same bytes), removing one,
and the look-ups that find blobs nothing names. The bytes, and when a blob may go, are ``db.services.files``'s and
``db.services.blob_ledger``'s business.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, exists, select

from db.models.base import utcnow
from db.models.file_blob import FileBlob
from db.models.file_object import StoredFile
from db.repositories.base_repository import WriteRepository, translated


class FileBlobRepository(WriteRepository[FileBlob]):
    model = FileBlob

    @translated
    def claim(self, sha256: str, size: int = 0) -> None:
        """Lock the blob row of ``sha256`` until the transaction ends, inserting it if missing (with ``size``).

        An upsert whose update changes nothing: it locks an existing row, and an insert racing another insert of
        the same key waits for it, on every engine, where ``SELECT … FOR UPDATE`` of a missing row would lock
        nothing.
        """
        table: Any = FileBlob.__table__
        statement = self._dialect.upsert(
            table, {"sha256": sha256, "size": size, "created_at": utcnow()}, ["sha256"], {"size": table.c.size}
        )
        self.session.execute(statement)

    @translated
    def remove(self, sha256: str) -> None:
        """Delete the blob row of ``sha256`` (the database refuses while a file row names it)."""
        statement = delete(FileBlob).where(FileBlob.sha256 == sha256)
        self.session.execute(statement.execution_options(synchronize_session=False))

    @translated
    def unnamed(self) -> list[tuple[str, int]]:
        """(key, size) of the blob rows no file row names, deleted softly or not."""
        statement = select(FileBlob.sha256, FileBlob.size).where(~exists().where(StoredFile.sha256 == FileBlob.sha256))
        return [(row.sha256, row.size) for row in self.session.execute(statement)]

    @translated
    def known(self, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` that have a blob row (give them a chunk at a time: each is a bound parameter)."""
        return set(self.session.scalars(select(FileBlob.sha256).where(FileBlob.sha256.in_(list(keys)))))


__all__ = ["FileBlobRepository"]
