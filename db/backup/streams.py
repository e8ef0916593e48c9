"""One part of an archive as it is read back: decompressed (with a bounded window) or as stored, never past the
manifest's size, its stored bytes hashed again on the way; and the scan that counts a table part's rows."""

from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile
from collections.abc import Iterator
from typing import IO, Any, cast

import zstandard

from db.backup.manifest import Part
from db.backup.sizes import COPY_CHUNK, MAX_WINDOW
from db.errors import BackupError


class RowScan:
    """Counts the rows (lines) of a table part and refuses one longer than ``longest``, chunk by chunk. A chunk
    is never longer than ``longest``, so only a row spanning chunks can be too long."""

    def __init__(self, part: Part, longest: int) -> None:
        self.part, self.longest, self.rows, self._open = part, longest, 0, 0

    def feed(self, chunk: bytes) -> None:
        first = chunk.find(b"\n")
        if first == -1:
            self._open += len(chunk)
        else:
            if self._open + first > self.longest:
                raise row_too_long(self.part, self.longest)
            self.rows += chunk.count(b"\n")
            self._open = len(chunk) - chunk.rfind(b"\n") - 1
        if self._open > self.longest:
            raise row_too_long(self.part, self.longest)

    @property
    def complete(self) -> int:
        return self.rows + (1 if self._open else 0)


def row_too_long(part: Part, longest: int) -> BackupError:
    return BackupError(f"part {part.name} has a row longer than {longest:,} bytes (the limit): refused")


class PartReader(io.RawIOBase):
    """One part's content for ``io.BufferedReader``: decompressed (zstd, with a bounded window) or as stored; the
    stored bytes hashed on the way. Reading past the manifest's raw size, a short part, or stored bytes whose hash
    has changed since the first pass raise ``BackupError``."""

    def __init__(self, archive_name: str, member: IO[bytes], part: Part) -> None:
        super().__init__()
        self._archive, self._part, self.produced = archive_name, part, 0
        self._stored = _HashingReader(member)
        self._source: IO[bytes] | _HashingReader = self._stored
        if part.is_compressed:
            decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
            self._source = decompressor.stream_reader(cast(IO[bytes], self._stored), read_size=COPY_CHUNK,
                                                      read_across_frames=True)
        self._finished = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._finished:
            return 0
        with unreadable_as_backup_error(self._archive):
            data = self._source.read(len(buffer))
        if not data:
            self._finish()
            return 0
        self.produced += len(data)
        if self.produced > self._part.raw_size:
            raise BackupError(f"part {self._part.name} decompresses to more than {self._part.raw_size} bytes, "
                              "the size the manifest gives")
        buffer[:len(data)] = data
        return len(data)

    def _finish(self) -> None:
        self._finished = True
        if self.produced != self._part.raw_size:
            raise BackupError(f"part {self._part.name} decompresses to {self.produced} bytes, the manifest says "
                              f"{self._part.raw_size}")
        with unreadable_as_backup_error(self._archive):
            self._stored.drain()
        if self._stored.size != self._part.size or self._stored.hexdigest() != self._part.sha256:
            raise BackupError(f"{self._archive}: part {self._part.name} changed while it was being read "
                              "(it no longer matches its SHA-256)")


class _HashingReader:
    """A file's bytes, hashed as they are read."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source, self._digest, self.size = source, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._digest.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(COPY_CHUNK):
            pass

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


@contextlib.contextmanager
def unreadable_as_backup_error(name: str) -> Iterator[None]:
    try:
        yield
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as error:
        first = str(error).splitlines()[0] if str(error) else "unreadable"
        raise BackupError(f"{name}: corrupt or truncated archive ({type(error).__name__}: {first})") from None


__all__ = ["PartReader", "RowScan", "row_too_long", "unreadable_as_backup_error"]
