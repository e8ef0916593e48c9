"""Walking an untrusted tar without letting it decide how much memory the reader holds.

``tarfile`` reads a PAX extended header (or a GNU long name or long link) whole before the caller sees the member it
describes, follows a GNU sparse member's chain of extension blocks to its end, and keeps every member it has read
(``TarFile.members``): a crafted archive could make the reader hold as much memory as the archive is large. Here:

- every header block is read and checked before ``tarfile`` acts on it (``_GuardedTarInfo.fromtarfile``): an
  extended header larger than ``MAX_EXTENDED_HEADER`` bytes, more than ``MAX_EXTENDED_CHAIN`` of them in a row, a
  GNU sparse member and a negative size are refused (``BackupError``). The archives this code writes hold none of
  them (their member names fit the classic header), so the limits are small;
- ``members`` yields the members one at a time and leaves none in ``TarFile.members``.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import BinaryIO, Self, cast

from db.backup.streams import unreadable_as_backup_error
from db.errors import BackupError

MAX_EXTENDED_HEADER = 4 << 10  # bytes: a PAX header or GNU long name; a backup's member names are under 100 bytes
MAX_EXTENDED_CHAIN = 8  # extended headers in a row before a member
_EXTENDED = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                       tarfile.GNUTYPE_LONGLINK})


class _GuardedTarInfo(tarfile.TarInfo):
    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> Self:
        """``TarInfo.fromtarfile``, once the header block it is about to read has passed ``_check_header``."""
        kind = _check_header(_peek_block(tar))
        if kind not in _EXTENDED:
            return super().fromtarfile(tar)
        guarded = cast(_GuardedTarFile, tar)
        if guarded.extended_in_a_row >= MAX_EXTENDED_CHAIN:
            raise BackupError(f"unsafe archive: more than {MAX_EXTENDED_CHAIN} extended tar headers in a row")
        guarded.extended_in_a_row += 1
        try:
            return super().fromtarfile(tar)
        finally:
            guarded.extended_in_a_row -= 1


class _GuardedTarFile(tarfile.TarFile):
    tarinfo = _GuardedTarInfo
    members: list[tarfile.TarInfo]  # every member read so far (``tarfile``'s attribute; ``members`` empties it)
    extended_in_a_row = 0  # extended headers being read ahead of the current member


def _peek_block(tar: tarfile.TarFile) -> bytes:
    """The header block at the file's position; the position is left where it was."""
    source = cast(BinaryIO, tar.fileobj)
    start = source.tell()
    block = source.read(tarfile.BLOCKSIZE)
    source.seek(start)
    return block


def _check_header(block: bytes) -> bytes:
    """Refuse what ``tarfile`` would read without bound; return the header's type. Only the type and size fields
    are read (parsing the whole header here would double the walk's time): whether it is a valid header at all is
    ``tarfile``'s to say, next."""
    kind, size = block[156:157], _size_field(block[124:136])
    if size < 0:
        raise BackupError(f"corrupt archive: a tar header at a member gives a negative size ({size})")
    if kind == tarfile.GNUTYPE_SPARSE:
        raise BackupError("unsafe archive: a member is a sparse file, not a plain file")
    if kind in _EXTENDED and size > MAX_EXTENDED_HEADER:
        raise BackupError(f"unsafe archive: an extended tar header (PAX or GNU long name) of {size:,} bytes, "
                          f"more than the {MAX_EXTENDED_HEADER:,} a backup's member names need: refused unread")
    return kind


def _size_field(field: bytes) -> int:
    """A header's size as ``tarfile`` reads it: base-256 (GNU) if the first byte's high bit is set, else octal
    text; 0 for what ``tarfile`` will refuse anyway."""
    if not field:
        return 0
    if field[0] in (0o200, 0o377):
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[0] == 0o377 else value
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return 0


def open_tar(raw: BinaryIO, name: str) -> tarfile.TarFile:
    """A ``TarFile`` reading ``raw`` from its start, whose headers are checked before they are acted on."""
    raw.seek(0)
    with unreadable_as_backup_error(name):
        return _GuardedTarFile.open(fileobj=raw, mode="r:")


def members(tar: tarfile.TarFile, name: str) -> Iterator[tarfile.TarInfo]:
    """The tar's members one at a time (``name``, the archive's, for errors); the ``TarFile`` keeps none."""
    while True:
        with unreadable_as_backup_error(name):
            member = tar.next()
        cast(_GuardedTarFile, tar).members.clear()
        if member is None:
            return
        yield member


__all__ = ["MAX_EXTENDED_CHAIN", "MAX_EXTENDED_HEADER", "members", "open_tar"]
