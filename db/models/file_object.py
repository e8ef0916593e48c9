"""A stored file: an account's named reference to a content-addressed blob (``db/models/file_blob.py``).

The display ``filename`` is sanitised on every ORM write (``sanitise_filename``), so it is safe to show, to put in
a ``Content-Disposition`` header, and to save under on Windows, macOS or Linux. It is never used as a storage path:
the bytes are kept under their SHA-256. ``content_type`` is sniffed from the bytes; ``declared_type`` is what the
uploader claimed, kept beside it. ``size`` and ``sha256`` are those of the bytes.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, validates

from db.base import TABLE_OPTIONS, Base
from db.errors import ValidationError
from db.models.base import Audited, SoftDelete, Timestamps, UUIDPrimaryKey

FILENAME_MAX_LENGTH = 255
UNNAMED = "unnamed"
_MAX_EXTENSION = 32  # a longer "extension" is just the end of a long name, and is cut like the rest

# "/" and "\", and look-alikes that a later Unicode normalisation (NFKC) would turn into them.
_SEPARATORS = re.compile(r"[/\\\uff0f\uff3c\u2215\u2044\u29f8\u29f9]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_NOT_ON_WINDOWS = re.compile(r'[<>:"|?*]')
_LEADING = re.compile(r"^\s+")
_TRAILING = re.compile(r"[\s.]+$")
# Device names Windows reserves whatever the extension ("CON.txt" too), compared without trailing spaces.
_RESERVED = re.compile(r"(CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|COM[0-9¹²³]|LPT[0-9¹²³])", re.IGNORECASE)
# Bidirectional overrides and other invisible formatting that can make "gpj.exe" display as "exe.jpg".
_INVISIBLE = frozenset("\u061c\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")
_DROPPED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})  # control characters, lone surrogates, line breaks


def sanitise_filename(name: Any) -> str:
    """A display name that is safe everywhere, from whatever the uploader sent.

    Path components go (``../../etc/passwd`` → ``passwd``, ``C:\\x`` → ``x``), as do NUL, control and
    invisible direction-changing characters; characters Windows forbids become ``_``; a Windows device name
    gets a ``_`` prefix (``CON.txt`` → ``_CON.txt``); trailing dots and spaces go; the result is cut to 255
    characters keeping its extension; nothing left (or None) gives ``unnamed``. Applying it twice changes nothing.
    """
    if name is None:
        return UNNAMED
    if not isinstance(name, str):
        raise ValidationError("file.filename must be text", field="filename", rule="type")
    kept = (char for char in name if char not in _INVISIBLE and unicodedata.category(char) not in _DROPPED_CATEGORIES)
    text = unicodedata.normalize("NFC", "".join(kept))
    # The last path component that leaves a name once cleaned ("..", "." and "" leave none).
    base = next(filter(None, map(_cleaned, reversed(_SEPARATORS.split(text)))), "")
    if _RESERVED.fullmatch(base.split(".")[0].rstrip()):
        base = "_" + base
    return _shortened(base) or UNNAMED


def _cleaned(component: str) -> str:
    return _TRAILING.sub("", _LEADING.sub("", _NOT_ON_WINDOWS.sub("_", _DRIVE.sub("", component))))


def _shortened(base: str) -> str:
    if len(base) <= FILENAME_MAX_LENGTH:
        return base
    dot = base.rfind(".")
    extension = base[dot:] if dot > 0 and len(base) - dot <= _MAX_EXTENSION else ""
    stem = _TRAILING.sub("", base[: FILENAME_MAX_LENGTH - len(extension)])
    return (stem or UNNAMED) + extension


class StoredFile(UUIDPrimaryKey, Timestamps, SoftDelete, Audited, Base):
    """A file of an account. Made by ``FileRepository.store``; its content columns never change afterwards."""

    __tablename__ = "file"
    __table_args__ = (
        Index("ix_file_account_id_created_at", "account_id", "created_at"),
        Index("ix_file_owner_id_created_at", "owner_id", "created_at"),
        Index("ix_file_content_type", "content_type"),
        Index("ix_file_sha256", "sha256"),
        TABLE_OPTIONS,
    )

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("account.id", ondelete="RESTRICT"))
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    filename: Mapped[str] = mapped_column(String(FILENAME_MAX_LENGTH))
    content_type: Mapped[str] = mapped_column(String(127))
    declared_type: Mapped[str | None] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), ForeignKey("file_blob.sha256", ondelete="RESTRICT"))

    @validates("filename")
    def _sanitise(self, _key: str, value: Any) -> str:
        return sanitise_filename(value)


__all__ = ["FILENAME_MAX_LENGTH", "UNNAMED", "StoredFile", "sanitise_filename"]
