"""A stored blob: content-addressed bytes, one row per distinct content however many files refer to it.

The key is the SHA-256 of the bytes (64 lowercase hex digits); the bytes themselves live in the storage backend
(``db.storage``) under that key. ``file.sha256`` refers here (``ON DELETE RESTRICT``): the database refuses to drop
a blob row that a file row, deleted softly or not, still names. ``FileService`` keeps rows and bytes in step.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.models.base import utcnow


class FileBlob(Base):
    __tablename__ = "file_blob"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


__all__ = ["FileBlob"]
