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

FILENAME_MAX_LENGTH = 255  # the column, in characters; a name is also cut to FILENAME_MAX_BYTES
FILENAME_MAX_BYTES = 255  # of UTF-8: what Linux and macOS allow for a file name (Windows: 255 UTF-16 units, fewer)
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
_MARKS = frozenset({"Mn", "Mc", "Me"})  # combining marks (variation selectors among them): part of the character before
_ZWJ = "\u200d"


def sanitise_filename(name: Any) -> str:
    """A display name that is safe everywhere, from whatever the uploader sent.

    Path components go (``../../etc/passwd`` → ``passwd``, ``C:\\x`` → ``x``), as do NUL, control and
    invisible direction-changing characters; characters Windows forbids become ``_``; a Windows device name
    gets a ``_`` prefix (``CON.txt`` → ``_CON.txt``); trailing dots and spaces go; the result is cut to 255 bytes
    of UTF-8 (NFC), keeping its extension and never splitting what shows as one character (an accent from its
    letter, an emoji sequence); nothing left (or None) gives ``unnamed``. Applying it twice changes nothing.
    """
    if name is None:
        return UNNAMED
    if not isinstance(name, str):
        raise ValidationError("file.filename must be text", field="filename", rule="type")
    kept = (char for char in name if char not in _INVISIBLE and unicodedata.category(char) not in _DROPPED_CATEGORIES)
    text = unicodedata.normalize("NFC", "".join(kept))
    # The last path component that leaves a name once cleaned ("..", "." and "" leave none).
    base = next(filter(None, map(_cleaned, reversed(_SEPARATORS.split(text)))), "")
    return _not_a_device(_shortened(base)) or UNNAMED


def _cleaned(component: str) -> str:
    return _TRAILING.sub("", _LEADING.sub("", _NOT_ON_WINDOWS.sub("_", _DRIVE.sub("", component))))


def _not_a_device(base: str) -> str:
    """Checked after shortening, which may leave a device name ("CON" and spaces cut after it)."""
    return _shortened("_" + base) if _RESERVED.fullmatch(base.split(".", maxsplit=1)[0].rstrip()) else base


def _shortened(base: str) -> str:
    if _size(base) <= FILENAME_MAX_BYTES:
        return base
    dot = base.rfind(".")
    extension = base[dot:] if dot > 0 and len(base) - dot <= _MAX_EXTENSION else ""
    stem = _TRAILING.sub("", _cut(base[: len(base) - len(extension)], FILENAME_MAX_BYTES - _size(extension)))
    return (stem or UNNAMED) + extension


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut(text: str, budget: int) -> str:
    """The longest start of ``text`` within ``budget`` bytes of UTF-8 that ends between two displayed characters
    (a cluster longer than the budget, a pathological pile of accents, is cut anyway)."""
    end = used = 0
    for char in text:
        used += _size(char)
        if used > budget:
            break
        end += 1
    whole = end
    while 0 < whole < len(text) and _continues(text, whole):
        whole -= 1
    return text[: whole or end]


def _continues(text: str, index: int) -> bool:
    """Whether ``text[index]`` shows as part of the same character as ``text[index - 1]``: a combining mark or
    variation selector, an emoji skin tone or tag, either side of a zero-width joiner, the second of a flag's
    two regional indicators."""
    char, before = text[index], text[index - 1]
    if _ZWJ in (char, before) or unicodedata.category(char) in _MARKS:
        return True
    if "\U0001f3fb" <= char <= "\U0001f3ff" or "\U000e0020" <= char <= "\U000e007f":
        return True
    if _regional(char) and _regional(before):
        run = 0
        while index - run - 1 >= 0 and _regional(text[index - run - 1]):
            run += 1
        return run % 2 == 1  # an odd number of indicators before it: it completes a pair
    return False


def _regional(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


class StoredFile(UUIDPrimaryKey, Timestamps, SoftDelete, Audited, Base):
    """A file of an account. Made by ``uow.files.store`` (``FileService``); its content columns never change."""

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


__all__ = ["FILENAME_MAX_BYTES", "FILENAME_MAX_LENGTH", "UNNAMED", "StoredFile", "sanitise_filename"]
