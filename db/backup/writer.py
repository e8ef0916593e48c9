"""Writing an archive: parts into an uncompressed tar, each hashed as stored, ``.zst`` parts compressed on every
core in independent frames; the manifest last."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import mmap
import os
import tarfile
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import zstandard

from db.backup import sizes
from db.backup.disk import read_chunks
from db.backup.manifest import COMPRESSED, MANIFEST, Manifest, Part
from db.backup.sizes import COMPRESSION_LEVEL
from db.progress import Advance

Chunk = bytes | bytearray | memoryview


def default_workers() -> int:
    """The CPUs this process may run on."""
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _compress_frame(chunk: Chunk, level: int) -> bytes:
    # One compressor per call: a compressor is not thread-safe, and making one costs little next to 16 MiB.
    return zstandard.ZstdCompressor(level=level, write_checksum=True).compress(chunk)


def compressed_frames(chunks: Iterable[Chunk], *, level: int = COMPRESSION_LEVEL,
                      workers: int | None = None) -> Iterator[bytes]:
    """One zstd frame per chunk, in order, compressed by ``workers`` threads (zstd releases the GIL); at most two
    chunks per worker are in flight, so memory stays bounded whatever the input's length."""
    workers = workers or default_workers()
    with ThreadPoolExecutor(workers, thread_name_prefix="zstd") as pool:
        pending: deque[Future[bytes]] = deque()
        try:
            for chunk in chunks:
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
                pending.append(pool.submit(_compress_frame, chunk, level))
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def mapped_chunks(path: Path, size: int | None = None) -> Iterator[memoryview]:
    """A file's content as read-only views of its mapped pages: no copy, the compressing threads read the pages.

    The mapping is closed once the last view is gone (each view keeps it alive), so a consumer may hold views
    after the iterator ends."""
    size = size or sizes.CHUNK
    with path.open("rb") as source:
        length = os.fstat(source.fileno()).st_size
        if length == 0:
            return
        mapped = mmap.mmap(source.fileno(), 0, access=mmap.ACCESS_READ)
    for offset in range(0, length, size):
        with memoryview(mapped) as whole:
            yield whole[offset:offset + size]  # the slice keeps the mapping, not ``whole``, alive


class ArchiveWriter:
    """Writes parts to an uncompressed tar, each hashed as stored; a part named ``*.zst`` is compressed on the way
    (``compressed_frames``), any other is stored as it is. The manifest goes last (``close``).

    ``out`` must be seekable: a part's header is written when its stored size is known, in the GNU tar format,
    whose header is one 512-byte block for every size (PAX adds a block above 8 GiB)."""

    def __init__(self, out: BinaryIO, *, level: int = COMPRESSION_LEVEL, workers: int | None = None) -> None:
        self._out = out
        self._level = level
        self._workers = workers or default_workers()
        self._mtime = int(dt.datetime.now(dt.UTC).timestamp())
        self.parts: list[Part] = []

    def add(self, name: str, chunks: Iterable[Chunk], advance: Advance | None = None) -> Part:
        """Store the concatenated ``chunks`` as member ``name``."""
        raw = _Tally(chunks, advance)
        stored: Iterable[Chunk] = raw
        if name.endswith(COMPRESSED):
            stored = compressed_frames(raw, level=self._level, workers=self._workers)
        header_at = self._out.tell()
        self._out.write(bytes(tarfile.BLOCKSIZE))  # the header's place
        digest, size = hashlib.sha256(), 0
        for data in stored:
            digest.update(data)
            self._out.write(data)
            size += len(data)
        end = self._out.tell()
        self._out.seek(header_at)
        self._out.write(self._header(name, size))
        self._out.seek(end)
        self._pad(size)
        part = Part(name, size, digest.hexdigest(), raw.bytes)
        self.parts.append(part)
        return part

    def add_file(self, name: str, path: Path, advance: Advance | None = None) -> Part:
        if name.endswith(COMPRESSED):
            return self.add(name, mapped_chunks(path), advance)
        with path.open("rb") as source:
            return self.add(name, read_chunks(source), advance)

    def close(self, manifest: Manifest) -> None:
        """Write the manifest (which lists ``self.parts``) and the end of the archive; ``out`` stays open."""
        data = manifest.to_json()
        self._out.write(self._header(MANIFEST, len(data)))
        self._out.write(data)
        self._pad(len(data))
        self._out.write(bytes(2 * tarfile.BLOCKSIZE))

    def _header(self, name: str, size: int) -> bytes:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, self._mtime, 0o644
        header = info.tobuf(format=tarfile.GNU_FORMAT)
        assert len(header) == tarfile.BLOCKSIZE, "member names are short: one header block"
        return header

    def _pad(self, size: int) -> None:
        remainder = size % tarfile.BLOCKSIZE
        if remainder:
            self._out.write(bytes(tarfile.BLOCKSIZE - remainder))


class _Tally:
    """Passes chunks through, counting their bytes and reporting them to ``advance``."""

    def __init__(self, chunks: Iterable[Chunk], advance: Advance | None) -> None:
        self._chunks, self._advance, self.bytes = chunks, advance, 0

    def __iter__(self) -> Iterator[Chunk]:
        for chunk in self._chunks:
            self.bytes += len(chunk)
            if self._advance is not None:
                self._advance(len(chunk))
            yield chunk


__all__ = ["ArchiveWriter", "Chunk", "compressed_frames", "default_workers", "mapped_chunks"]
