"""The backup archive: a plain tar file of separately compressed parts, its manifest, and the engine-neutral
encoding of rows.

Layout (the only member names a valid archive may hold; anything else is refused):

    database.sqlite.zst        a SQLite backup: the file made by SQLite's backup API (a consistent snapshot)
    tables/<table>.jsonl.zst   a PostgreSQL or MariaDB backup: one JSON array per row, columns as in the manifest
    blobs/<sha256>             each file blob named by the snapshot's ``file_blob`` rows, once, stored as it is
    manifest.json              last: format version, engine, schema revision, created_at, per-table columns and
                               row counts, and for every part its stored size, the SHA-256 of its stored bytes
                               and its size once decompressed

Decisions:

- The tar itself is not compressed (``tar -tf`` and ``tarfile`` read it); each ``.zst`` part is a zstd stream of
  independent frames, one per ``CHUNK`` of input, each with its content checksum. Independent frames let the
  writer compress chunks on every core at once (``ArchiveWriter``), with at most two chunks per worker in flight,
  so memory stays flat whatever the database's size; concatenated frames are one valid zstd stream.
- Blobs are stored uncompressed: they are users' files, mostly compressed already (images, PDFs, office files),
  and a stored blob's SHA-256 is then its name, which the restore checks again when it stores it.
- The manifest comes last because a part's hash is known only once the part has been written. A reader first
  hashes every member's stored bytes and compares them with the manifest (cheap: nothing is decompressed yet),
  then decompresses each part, where zstd checks every frame's checksum and the reader each part's raw size. A
  missing manifest therefore also means a truncated archive.
- Member names are checked against the whitelist above (no absolute path, no ``..``, no link, device or
  directory, no duplicate, nothing after the manifest), so extraction can never write outside its directory
  whatever the archive says.
- Rows are typed by column: each column has a tag (``TAGS``) taken from the model's column type. In JSON lines,
  datetimes are ISO-8601 UTC strings, UUIDs their canonical text, Decimals text, bytes base64; other values are
  plain JSON. The same tags give the Core types that read a SQLite snapshot and write into any engine, so a
  backup restores into SQLite, PostgreSQL or MariaDB alike.
- The archive is written under a temporary name (``.<name>.partial``) in the target directory, fsynced and then
  renamed: a crashed backup never looks like a backup. The writer needs a seekable file: a part's tar header is
  written once its stored size is known.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import errno
import hashlib
import io
import json
import mmap
import os
import re
import shutil
import sqlite3
import tarfile
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import zstandard
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Uuid,
    create_engine,
)
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeEngine

from db.base import UTCDateTime
from db.errors import BackupError, DiskFull, ValidationError
from db.scripts.progress import SILENT, Advance, Progress

FORMAT = "dblayer-backup"
FORMAT_VERSION = 2  # 1: one zstd stream over the whole tar (no longer read)
SUFFIX = ".tar"
MANIFEST = "manifest.json"
COMPRESSED = ".zst"
SQLITE_PART = "database.sqlite.zst"
SQLITE_FILE = "database.sqlite"  # the snapshot as extracted
# Level 1: a SQLite file shrinks ~3.8x; level -1 is ~15 % faster but leaves the archive 1.5x larger
# (bench/bench_backup.py, RESULTS.md).
COMPRESSION_LEVEL = 1
CHUNK = 16 << 20  # input per zstd frame: large enough for a good ratio, small enough to spread over the cores
COPY_CHUNK = 1 << 20
_MAX_MANIFEST_BYTES = 256 << 20
MAX_EXPANSION_RATIO = 100.0  # a compressed part may decompress to this many times its stored size ...
EXPANSION_ALLOWANCE = 1 << 20  # ... plus this much (small parts, e.g. a nearly empty SQLite file, expand ~40x)
MAX_ROW_BYTES = 64 << 20  # one row: a JSON line, or a row of a SQLite snapshot; backups refuse larger rows
MAX_WINDOW = 1 << 24  # the largest zstd window accepted: a frame never needs more than its input (CHUNK)
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

_TABLE_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,62}"
_MEMBER = re.compile(
    rf"(?:manifest\.json|database\.sqlite\.zst|tables/{_TABLE_NAME}\.jsonl\.zst|blobs/[0-9a-f]{{64}})")
_TABLE = re.compile(_TABLE_NAME)
_SHA256 = re.compile(r"[0-9a-f]{64}")

Chunk = bytes | bytearray | memoryview


# --- column types ------------------------------------------------------------------------------------------------

TAGS: dict[str, Callable[[], TypeEngine[Any]]] = {
    "datetime": UTCDateTime,
    "uuid": Uuid,
    "bool": Boolean,
    "int": BigInteger,
    "float": Double,
    "decimal": lambda: Numeric(asdecimal=True),
    "json": JSON,
    "bytes": LargeBinary,
    "str": Text,
}


def type_tag(column_type: TypeEngine[Any]) -> str:
    """The tag of a column type; ``BackupError`` for a type this format cannot carry faithfully."""
    # Order matters: Double is a Float is a Numeric; UTCDateTime decorates DateTime.
    kinds: tuple[tuple[type[Any], str], ...] = (
        (UTCDateTime, "datetime"), (DateTime, "datetime"), (Uuid, "uuid"), (Boolean, "bool"), (Integer, "int"),
        (Float, "float"), (Numeric, "decimal"), (JSON, "json"), (LargeBinary, "bytes"), (String, "str"),
    )
    for kind, tag in kinds:
        if isinstance(column_type, kind):
            return tag
    raise BackupError(f"a column of type {type(column_type).__name__} cannot be backed up by this format")


def typed_table(name: str, columns: Sequence[tuple[str, str]], metadata: MetaData | None = None) -> Table:
    """A Core table with the manifest's columns and their tags' types: reads a snapshot, writes any engine."""
    return Table(name, metadata or MetaData(), *(Column(column, TAGS[tag]()) for column, tag in columns))


def _encode_datetime(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def _encode_bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": _encode_datetime, "uuid": str, "decimal": str, "bytes": _encode_bytes,
}
_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": dt.datetime.fromisoformat, "uuid": uuid.UUID, "decimal": Decimal, "bytes": base64.b64decode,
}


def row_encoder(tags: Sequence[str]) -> Callable[[Sequence[Any]], str]:
    """A function turning a row (values in column order) into one JSON line (without the newline)."""
    converters = [(index, _ENCODERS[tag]) for index, tag in enumerate(tags) if tag in _ENCODERS]
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def encode(row: Sequence[Any]) -> str:
        values = list(row)
        for index, convert in converters:
            if values[index] is not None:
                values[index] = convert(values[index])
        return dumps(values)

    return encode


def row_decoder(columns: Sequence[tuple[str, str]]) -> Callable[[str | bytes], dict[str, Any]]:
    """The inverse of ``row_encoder``: one JSON line into a mapping of column name to typed value."""
    names = [name for name, _ in columns]
    converters = [(index, _DECODERS[tag]) for index, (_, tag) in enumerate(columns) if tag in _DECODERS]

    def decode(line: str | bytes) -> dict[str, Any]:
        try:
            values = json.loads(line)
        except (ValueError, RecursionError):  # ValueError includes bad JSON and bad UTF-8
            raise BackupError("a row in the archive is not valid JSON") from None
        if not isinstance(values, list) or len(values) != len(names):
            raise BackupError("a row in the archive does not match its table's columns")
        try:
            for index, convert in converters:
                if values[index] is not None:
                    values[index] = convert(values[index])
        except (ValueError, TypeError, AttributeError, ArithmeticError):  # a malformed date, UUID, decimal, base64
            raise BackupError("a row in the archive holds a value its column's type cannot take") from None
        return dict(zip(names, values, strict=True))

    return decode


def snapshot_engine(path: Path, *, max_value_bytes: int = MAX_ROW_BYTES) -> Engine:
    """A read-only engine on a SQLite snapshot file that never changes it (``immutable``: no locks, no journal).

    A value longer than ``max_value_bytes`` is refused when read (SQLite's ``SQLITE_LIMIT_LENGTH``: "string or
    blob too big"), so a crafted snapshot cannot make a reader hold a huge value in memory."""
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro&immutable=1"

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max_value_bytes)
        return connection

    return create_engine("sqlite://", creator=connect, poolclass=NullPool)


# --- the manifest ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    name: str  # the member's name in the tar
    size: int  # stored bytes
    sha256: str  # of the stored bytes
    raw_size: int  # bytes once decompressed (= size for a part stored as it is)

    @property
    def is_compressed(self) -> bool:
        return self.name.endswith(COMPRESSED)

    @property
    def extracted_name(self) -> str:
        """Where ``unpack`` puts the part's content: ``tables/user.jsonl`` for ``tables/user.jsonl.zst``."""
        return self.name.removesuffix(COMPRESSED)


@dataclass(frozen=True, slots=True)
class TableDump:
    name: str
    rows: int
    columns: tuple[tuple[str, str], ...]  # (column, tag)


@dataclass(frozen=True, slots=True)
class Manifest:
    engine: str  # the engine the backup was taken on: sqlite, postgresql, mariadb
    revision: str  # the schema revision (db.migrations.runner)
    created_at: dt.datetime
    database: str  # the source's URL without its password
    tables: tuple[TableDump, ...]  # in foreign-key order
    parts: tuple[Part, ...] = ()
    format_version: int = FORMAT_VERSION

    @property
    def row_counts(self) -> dict[str, int]:
        return {table.name: table.rows for table in self.tables}

    @property
    def blob_parts(self) -> tuple[Part, ...]:
        return tuple(part for part in self.parts if part.name.startswith("blobs/"))

    @property
    def blob_count(self) -> int:
        return len(self.blob_parts)

    @property
    def blob_bytes(self) -> int:
        return sum(part.raw_size for part in self.blob_parts)

    @property
    def is_sqlite_snapshot(self) -> bool:
        return any(part.name == SQLITE_PART for part in self.parts)

    def to_json(self) -> bytes:
        document = {
            "format": FORMAT, "format_version": self.format_version, "engine": self.engine,
            "revision": self.revision, "created_at": self.created_at.isoformat(), "database": self.database,
            "tables": [{"name": t.name, "rows": t.rows, "columns": [list(c) for c in t.columns]} for t in self.tables],
            "parts": [{"name": p.name, "size": p.size, "sha256": p.sha256, "raw_size": p.raw_size}
                      for p in self.parts],
            "blobs": {"count": self.blob_count, "bytes": self.blob_bytes},
        }
        return json.dumps(document, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse and check a manifest; ``BackupError`` naming what is wrong."""
        try:
            document = json.loads(data)
            if not isinstance(document, dict) or document.get("format") != FORMAT:
                raise BackupError("not a backup archive of this database layer (no manifest of ours)")
            if document.get("format_version") != FORMAT_VERSION:
                raise BackupError(f"unsupported backup format version {document.get('format_version')!r} "
                                  f"(this code reads version {FORMAT_VERSION})")
            manifest = cls(
                engine=_text(document["engine"]), revision=_text(document["revision"]),
                created_at=dt.datetime.fromisoformat(_text(document["created_at"])),
                database=_text(document["database"]),
                tables=tuple(_table_dump(entry) for entry in document["tables"]),
                parts=tuple(_part(entry) for entry in document["parts"]),
            )
        except BackupError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise BackupError("the archive's manifest is malformed") from None
        manifest.check_consistent()
        return manifest

    def check_consistent(self) -> None:
        names = [part.name for part in self.parts]
        if len(set(names)) != len(names) or any(not _MEMBER.fullmatch(name) for name in names):
            raise BackupError("the archive's manifest lists a bad or duplicate part name")
        tables = {table.name for table in self.tables}
        dumps = {name.removeprefix("tables/").removesuffix(".jsonl.zst") for name in names
                 if name.startswith("tables/")}
        if not self.is_sqlite_snapshot and dumps != tables:
            raise BackupError("the archive's manifest does not list one data part per table")
        for part in self.blob_parts:
            if part.name.removeprefix("blobs/") != part.sha256 or part.raw_size != part.size:
                raise BackupError(f"the archive's manifest lists blob {part.name} under another hash or size")


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected text")
    return value


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError("expected a count")
    return value


def _table_dump(entry: Mapping[str, Any]) -> TableDump:
    name = _text(entry["name"])
    columns = tuple((_text(column), _text(tag)) for column, tag in entry["columns"])
    if not _TABLE.fullmatch(name) or any(tag not in TAGS or not _TABLE.fullmatch(column) for column, tag in columns):
        raise ValueError("bad table or column")
    return TableDump(name=name, rows=_count(entry["rows"]), columns=columns)


def _part(entry: Mapping[str, Any]) -> Part:
    sha256 = _text(entry["sha256"])
    if not _SHA256.fullmatch(sha256):
        raise ValueError("bad hash")
    return Part(name=_text(entry["name"]), size=_count(entry["size"]), sha256=sha256,
                raw_size=_count(entry["raw_size"]))


# --- writing -----------------------------------------------------------------------------------------------------


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
    size = size or CHUNK
    with path.open("rb") as source:
        length = os.fstat(source.fileno()).st_size
        if length == 0:
            return
        mapped = mmap.mmap(source.fileno(), 0, access=mmap.ACCESS_READ)
    for offset in range(0, length, size):
        with memoryview(mapped) as whole:
            yield whole[offset:offset + size]  # the slice keeps the mapping, not ``whole``, alive


def read_chunks(source: IO[bytes], size: int = COPY_CHUNK) -> Iterator[bytes]:
    while chunk := source.read(size):
        yield chunk


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


# --- reading: limits, verification, streaming -------------------------------------------------------------------
#
# An archive is untrusted input until it has been verified, and even then its parts are only streamed: no part and
# no line is ever held whole in memory, and nothing decompresses past what the manifest says (which itself must
# stay within ``Limits``).

@dataclass(frozen=True, slots=True)
class Limits:
    """What reading an archive may cost.

    ``max_ratio``: each compressed part may decompress to at most ``max_ratio`` times its stored size (plus
    ``EXPANSION_ALLOWANCE``), checked on the manifest before anything is decompressed; decompression then never
    goes past the size the manifest gives. Real backups stay below 10 (a nearly empty SQLite file is the
    exception the allowance covers); a crafted "bomb" expands thousands of times. ``max_row_bytes``: the longest
    row (JSON line) accepted.
    """

    max_ratio: float = MAX_EXPANSION_RATIO
    max_row_bytes: int = MAX_ROW_BYTES

    def __post_init__(self) -> None:
        ratio = self.max_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 1 <= ratio < float("inf"):
            raise ValidationError("max_ratio must be a finite number of at least 1", field="max_ratio")
        rows = self.max_row_bytes
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < COPY_CHUNK:
            raise ValidationError(f"max_row_bytes must be at least {COPY_CHUNK}", field="max_row_bytes")

    def allowed(self, part: Part) -> int:
        """The most a part may decompress to."""
        return EXPANSION_ALLOWANCE + int(part.size * self.max_ratio)

    def check(self, manifest: Manifest) -> None:
        for part in manifest.parts:
            if part.is_compressed and part.raw_size > self.allowed(part):
                ratio = part.raw_size / max(part.size, 1)
                raise BackupError(
                    f"part {part.name} would decompress from {part.size:,} to {part.raw_size:,} bytes "
                    f"({ratio:,.0f} times), more than the limit of {self.max_ratio:g} times (a decompression bomb?): "
                    "nothing was changed. If you trust this archive, raise the limit (--max-expansion-ratio)")


DEFAULT_LIMITS = Limits()


def verify_archive(path: str | os.PathLike[str], *, progress: Progress = SILENT, limits: Limits = DEFAULT_LIMITS
                   ) -> Manifest:
    """Check an archive without extracting it: member names, the manifest, every part's presence, stored size
    and SHA-256, the expansion limits, then every part's decompression (frame checksums, raw size; for a table,
    its row count and the length of each row). Returns the manifest; ``BackupError`` with the reason otherwise."""
    with open_archive(path, progress=progress, limits=limits) as verified:
        return verified.manifest


def unpack(path: str | os.PathLike[str], into: Path | None, *, progress: Progress = SILENT,
           limits: Limits = DEFAULT_LIMITS) -> Manifest:
    """Verify the archive at ``path`` and, if ``into`` is given, extract its parts there, decompressed, under
    their ``Part.extracted_name`` (never elsewhere), after checking that ``into``'s file system has room."""
    with open_archive(path, progress=progress, limits=limits) as verified:
        if into is not None:
            check_free_space({into: sum(part.raw_size for part in verified.manifest.parts)})
            with progress.track("extract", total=len(verified.manifest.parts)) as advance:
                for part in verified.manifest.parts:
                    verified.extract(part, into / part.extracted_name)
                    advance(1)
        return verified.manifest


@contextlib.contextmanager
def open_archive(path: str | os.PathLike[str], *, progress: Progress = SILENT, limits: Limits = DEFAULT_LIMITS
                 ) -> Iterator[VerifiedArchive]:
    """Verify the archive at ``path`` (as ``verify_archive``) and, only if it passes, give access to its parts.

    First pass, nothing decompressed: member names, the manifest, every part's stored size and SHA-256; then the
    expansion limits on the manifest's sizes; second pass: every compressed part decompressed (and thrown away),
    never past its recorded size, table parts scanned for their row count and longest row. The file stays open
    for the block, so replacing it under the same name changes nothing; its parts are hashed again as they are
    read (``VerifiedArchive.reader``), so changing it in place is caught too.
    """
    archive = Path(path)
    if not archive.is_file():
        raise BackupError(f"no backup archive at {archive}")
    with archive.open("rb") as raw:
        if raw.read(len(_ZSTD_MAGIC)) == _ZSTD_MAGIC:
            raise BackupError(f"{archive.name} is zstd-compressed: an archive of backup format 1 (.tar.zst), "
                              f"which this code no longer reads (it reads format {FORMAT_VERSION}, .tar)")
        raw.seek(0)
        with _open_tar(raw, archive.name) as tar:
            with _unreadable_as_backup_error(archive.name), progress.track(
                    "verify", total=archive.stat().st_size) as advance:
                members, manifest = _check_stored(archive, tar, advance)
            limits.check(manifest)
            verified = VerifiedArchive(archive, tar, members, manifest, limits)
            verified.check_parts(progress)
            yield verified


class VerifiedArchive:
    """An archive that passed verification (``open_archive``): its manifest, and its parts to stream again."""

    def __init__(self, path: Path, tar: tarfile.TarFile, members: Mapping[str, tarfile.TarInfo], manifest: Manifest,
                 limits: Limits) -> None:
        self.path, self.manifest, self.limits = path, manifest, limits
        self._tar, self._members = tar, members

    @contextlib.contextmanager
    def reader(self, part: Part) -> Iterator[BinaryIO]:
        """The part's content, decompressed, read again from the archive: never more than the manifest's size,
        and at its end its stored bytes must still hash to the manifest's SHA-256 (``BackupError`` otherwise)."""
        source = _PartReader(self.path.name, _member_file(self._tar, self._members[part.name]), part)
        with io.BufferedReader(source, COPY_CHUNK) as stream:
            yield stream

    def lines(self, part: Part) -> Iterator[bytes]:
        """A table part's rows, one JSON line at a time (each at most ``limits.max_row_bytes``)."""
        longest = self.limits.max_row_bytes
        with self.reader(part) as stream:
            while line := stream.readline(longest + 1):
                if len(line) > longest and not (len(line) == longest + 1 and line.endswith(b"\n")):
                    raise _row_too_long(part, longest)
                yield line

    def extract(self, part: Part, target: Path) -> None:
        """Write the part's content to a new file ``target`` (``DiskFull`` if the disk fills up)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        with self.reader(part) as stream, disk_full_as_error(str(target.parent)), target.open("xb") as out:
            while chunk := stream.read(COPY_CHUNK):
                out.write(chunk)

    def check_parts(self, progress: Progress) -> None:
        """The second pass of verification: every compressed part decompressed, nothing kept."""
        compressed = [part for part in self.manifest.parts if part.is_compressed]
        with progress.track("decompress", total=sum(part.raw_size for part in compressed)) as advance:
            for part in compressed:
                self._check_part(part, advance)

    def _check_part(self, part: Part, advance: Advance) -> None:
        scan = _RowScan(part, self.limits.max_row_bytes) if part.name.startswith("tables/") else None
        with self.reader(part) as stream:
            while chunk := stream.read(min(COPY_CHUNK, self.limits.max_row_bytes)):
                if scan is not None:
                    scan.feed(chunk)
                advance(len(chunk))
        if scan is not None:
            table = part.extracted_name.removeprefix("tables/").removesuffix(".jsonl")
            expected = self.manifest.row_counts.get(table)
            if scan.complete != expected:
                raise BackupError(f"part {part.name} holds {scan.complete:,} rows, the manifest says {expected:,}")


class _RowScan:
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
                raise _row_too_long(self.part, self.longest)
            self.rows += chunk.count(b"\n")
            self._open = len(chunk) - chunk.rfind(b"\n") - 1
        if self._open > self.longest:
            raise _row_too_long(self.part, self.longest)

    @property
    def complete(self) -> int:
        return self.rows + (1 if self._open else 0)


def _row_too_long(part: Part, longest: int) -> BackupError:
    return BackupError(f"part {part.name} has a row longer than {longest:,} bytes (the limit): refused")


class _PartReader(io.RawIOBase):
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
        with _unreadable_as_backup_error(self._archive):
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
        with _unreadable_as_backup_error(self._archive):
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


def _open_tar(raw: BinaryIO, name: str) -> tarfile.TarFile:
    with _unreadable_as_backup_error(name):
        return tarfile.open(fileobj=raw, mode="r:")


@contextlib.contextmanager
def _unreadable_as_backup_error(name: str) -> Iterator[None]:
    try:
        yield
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as error:
        first = str(error).splitlines()[0] if str(error) else "unreadable"
        raise BackupError(f"{name}: corrupt or truncated archive ({type(error).__name__}: {first})") from None


def _check_stored(archive: Path, tar: tarfile.TarFile, advance: Advance
                  ) -> tuple[dict[str, tarfile.TarInfo], Manifest]:
    """First pass, nothing decompressed: safe member names, the manifest last, every listed part present with the
    stored size and SHA-256 the manifest gives."""
    members: dict[str, tarfile.TarInfo] = {}
    found: dict[str, Part] = {}
    manifest: Manifest | None = None
    for member in tar:
        _check_member(member, seen=members, after_manifest=manifest is not None)
        members[member.name] = member
        source = _member_file(tar, member)
        if member.name == MANIFEST:
            if member.size > _MAX_MANIFEST_BYTES:
                raise BackupError("the archive's manifest is implausibly large")
            manifest = Manifest.from_json(source.read())
        else:
            found[member.name] = _hash_member(member, source, advance)
    if manifest is None:
        raise BackupError(f"{archive.name}: truncated or not a backup: the manifest is missing")
    listed = {part.name: part for part in manifest.parts}
    for name in sorted(set(listed) - set(found)):
        raise BackupError(f"{archive.name}: part {name} is missing (truncated archive?)")
    for name in sorted(set(found) - set(listed)):
        raise BackupError(f"{archive.name}: part {name} is not in the manifest")
    for name, part in sorted(listed.items()):
        if found[name].size != part.size:
            raise BackupError(f"{archive.name}: part {name} has {found[name].size} bytes, "
                              f"the manifest says {part.size}")
        if found[name].sha256 != part.sha256:
            raise BackupError(f"{archive.name}: part {name} fails its SHA-256 check (corrupted)")
    return members, manifest


def _check_member(member: tarfile.TarInfo, *, seen: Mapping[str, tarfile.TarInfo], after_manifest: bool) -> None:
    name = member.name
    if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/") or re.match(r"[A-Za-z]:", name):
        raise BackupError(f"unsafe archive: member {name!r} would escape the target directory")
    if not member.isreg():
        raise BackupError(f"unsafe archive: member {name!r} is a link, device or directory, not a file")
    if not _MEMBER.fullmatch(name):
        raise BackupError(f"unsafe archive: unexpected member {name!r}")
    if name in seen or after_manifest:
        raise BackupError(f"invalid archive: member {name!r} is duplicated or follows the manifest")


def _member_file(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    source = tar.extractfile(member)
    if source is None:  # pragma: no cover - a regular member always has a file object
        raise BackupError(f"unreadable member {member.name!r}")
    return source


def _hash_member(member: tarfile.TarInfo, source: IO[bytes], advance: Advance) -> Part:
    digest, size = hashlib.sha256(), 0
    for chunk in read_chunks(source, CHUNK):
        digest.update(chunk)
        size += len(chunk)
        advance(len(chunk))
    if size != member.size:
        raise BackupError(f"truncated archive: member {member.name} ends early")
    return Part(member.name, size, digest.hexdigest(), size)


# --- disk space ----------------------------------------------------------------------------------------------------


def check_free_space(needs: Mapping[Path, int]) -> None:
    """``DiskFull`` unless every file system can take what is to be written on it: ``needs`` maps a path (which
    need not exist yet) to the bytes to be written there; paths on one file system add up."""
    by_device: dict[int, tuple[Path, int]] = {}
    for path, size in needs.items():
        where = _nearest_existing(path)
        device = where.stat().st_dev
        known, total = by_device.get(device, (where, 0))
        by_device[device] = (known, total + size)
    for where, size in by_device.values():
        free = shutil.disk_usage(where).free
        if size > free:
            raise DiskFull(f"the restore needs {_mib(size)} on the file system of {where}, which has {_mib(free)} "
                           "free: free some space and try again (nothing was changed)")


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


def is_disk_full(error: BaseException) -> bool:
    """An ``OSError`` saying that the disk (or the user's quota) is full."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def disk_full_as_error(where: str) -> Iterator[None]:
    """A full disk while writing in the block becomes ``DiskFull`` naming ``where``."""
    try:
        yield
    except OSError as error:
        if not is_disk_full(error):
            raise
        raise DiskFull(f"the disk holding {where} is full: free some space and try again") from None


__all__ = [
    "CHUNK", "COMPRESSION_LEVEL", "DEFAULT_LIMITS", "FORMAT_VERSION", "MANIFEST", "MAX_EXPANSION_RATIO",
    "MAX_ROW_BYTES", "SQLITE_FILE", "SQLITE_PART", "SUFFIX", "TAGS",
    "ArchiveWriter", "Limits", "Manifest", "Part", "TableDump", "VerifiedArchive",
    "check_free_space", "compressed_frames", "default_workers", "disk_full_as_error", "is_disk_full",
    "mapped_chunks", "open_archive", "read_chunks", "row_decoder", "row_encoder", "snapshot_engine", "type_tag",
    "typed_table", "unpack", "verify_archive",
]


if __name__ == "__main__":
    from db.cli import run_library

    run_library(__spec__.name if __spec__ else __name__)
