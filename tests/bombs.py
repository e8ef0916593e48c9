"""Hostile archives for the restore's tests: decompression bombs, manifests that lie, and tar headers that would
make a reader hold memory in proportion to the archive (a huge extended header, a flood of members).

One zstd frame compressed once and repeated is a valid zstd stream, so a part that expands to gigabytes takes a
few hundred kilobytes and no time to make. Every archive here is a well-formed tar with a manifest whose hashes
and stored sizes are right (so that it gets past the first pass); what it says about raw sizes and rows is chosen
by the test.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import tarfile
from pathlib import Path

import zstandard

from db.backup.manifest import Manifest, Part, TableDump

MiB = 1 << 20
FRAME_INPUT = 16 * MiB


def frame(content: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=19, write_checksum=True).compress(content)


def write_archive(path: Path, parts: dict[str, tuple[bytes, int]], tables: tuple[TableDump, ...], *,
                  engine: str = "postgresql", revision: str = "0004_files_reports") -> Path:
    """A tar of ``parts`` (name -> (stored bytes, raw size the manifest gives)) and a manifest listing them."""
    listed = tuple(Part(name, len(stored), hashlib.sha256(stored).hexdigest(), raw)
                   for name, (stored, raw) in parts.items())
    manifest = Manifest(engine=engine, revision=revision, created_at=dt.datetime.now(dt.UTC), database="bomb",
                        tables=tables, parts=listed)
    with tarfile.open(path, "w") as tar:
        for name, data in [*((name, stored) for name, (stored, _) in parts.items()), ("manifest.json",
                                                                                      manifest.to_json())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def table_bomb(path: Path, line: bytes, frames: int, *, table: str = "account", raw_size: int | None = None,
               rows: int | None = None, revision: str = "0004_files_reports") -> Path:
    """A table part made of ``frames`` copies of one frame of ``FRAME_INPUT`` bytes of ``line`` repeated; the
    manifest gives ``raw_size`` and ``rows`` (default: the honest values)."""
    content = (line * (FRAME_INPUT // len(line) + 1))[:FRAME_INPUT]
    stored = frame(content) * frames
    honest_raw = FRAME_INPUT * frames
    honest_rows = content.count(b"\n") * frames + (0 if content.endswith(b"\n") else 1)
    dump = TableDump(table, honest_rows if rows is None else rows, (("id", "uuid"),))
    return write_archive(path, {f"tables/{table}.jsonl.zst": (stored, honest_raw if raw_size is None else raw_size)},
                         (dump,), revision=revision)


def one_line_bomb(path: Path, size: int = 4 << 30, *, revision: str = "0004_files_reports") -> Path:
    """The issue's bomb: a part that decompresses to ``size`` bytes of one line, with an honest manifest."""
    return table_bomb(path, b"a", size // FRAME_INPUT, revision=revision)


def header_block(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    """One tar header block (GNU format) for a member ``name`` of ``size`` bytes of type ``kind``."""
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info.tobuf(format=tarfile.GNU_FORMAT)


def huge_extended_header(path: Path, size: int, kind: bytes = tarfile.XHDTYPE) -> Path:
    """A tar that opens with an extended header (PAX by default) announcing ``size`` bytes, which follow as zeros:
    a sparse file, so that a 400 MB header costs no disk. ``tarfile`` alone reads it whole before any member."""
    with path.open("wb") as out:
        out.write(header_block("././@PaxHeader", size, kind))
        out.truncate(tarfile.BLOCKSIZE + size + 2 * tarfile.BLOCKSIZE)
    return path


def member_flood(path: Path, count: int) -> Path:
    """``count`` empty members validly named ``blobs/<sha256>``, and no manifest: ``count`` header blocks, made
    from one template whose name and checksum are patched (``tarfile`` would take seconds per 100,000)."""
    template = bytearray(header_block("blobs/" + "0" * 64, 0))
    with path.open("wb") as out:
        for number in range(count):
            block = template[:]
            block[6:70] = f"{number:064x}".encode()
            block[148:156] = b" " * 8
            block[148:156] = b"%06o\0 " % sum(block)
            out.write(block)
        out.write(bytes(2 * tarfile.BLOCKSIZE))
    return path
