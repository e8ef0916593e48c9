"""The backup archive: one zstd-compressed tar file, its manifest, and the engine-neutral encoding of rows.

Layout (the only member names a valid archive may hold; anything else is refused):

    database.sqlite          a SQLite backup: the file made by SQLite's backup API (a consistent snapshot)
    tables/<table>.jsonl     a PostgreSQL or MariaDB backup: one JSON array per row, columns as in the manifest
    blobs/<sha256>           each file blob named by the snapshot's ``file_blob`` rows, once
    manifest.json            last: format version, engine, schema revision, created_at, per-table columns and row
                             counts, every part's size and SHA-256 (of the bytes as restored), blob count and bytes

Decisions:

- The manifest comes last because a part's hash is known only once the part has been written; a reader hashes
  every member as it streams past and compares at the end. A missing manifest therefore also means a truncated
  archive.
- Member names are checked against the whitelist above (no absolute path, no ``..``, no link, device or
  directory, no duplicate), so extraction can never write outside its directory whatever the archive says.
- Rows are typed by column: each column has a tag (``TAGS``) taken from the model's column type. In JSON lines,
  datetimes are ISO-8601 UTC strings, UUIDs their canonical text, Decimals text, bytes base64; other values are
  plain JSON. The same tags give the Core types that read a SQLite snapshot and write into any engine, so a
  backup restores into SQLite, PostgreSQL or MariaDB alike.
- The archive is written under a temporary name (``.<name>.partial``) in the target directory, fsynced and then
  renamed: a crashed backup never looks like a backup.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import mmap
import os
import re
import sqlite3
import tarfile
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, BinaryIO

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
from db.errors import BackupError
from db.scripts.progress import Advance

FORMAT = "dblayer-backup"
FORMAT_VERSION = 1
SUFFIX = ".tar.zst"
MANIFEST = "manifest.json"
SQLITE_PART = "database.sqlite"
# Level 1 (with the frame checksum): a SQLite file shrinks ~3.7x, at about two thirds of level 3's cost; the
# negative levels are only ~15 % faster and leave the archive ~1.6x larger (bench/bench_backup.py, RESULTS.md).
COMPRESSION_LEVEL = 1
CHUNK = 1 << 20
MAP_THRESHOLD = 16 << 20  # larger files are mapped and hashed in parallel with their compression
MAP_CHUNK = 8 << 20
_MAX_MANIFEST_BYTES = 256 << 20

_TABLE_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,62}"
_MEMBER = re.compile(rf"(?:manifest\.json|database\.sqlite|tables/{_TABLE_NAME}\.jsonl|blobs/[0-9a-f]{{64}})")
_TABLE = re.compile(_TABLE_NAME)
_SHA256 = re.compile(r"[0-9a-f]{64}")


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


def row_decoder(columns: Sequence[tuple[str, str]]) -> Callable[[str], dict[str, Any]]:
    """The inverse of ``row_encoder``: one JSON line into a mapping of column name to typed value."""
    names = [name for name, _ in columns]
    converters = [(index, _DECODERS[tag]) for index, (_, tag) in enumerate(columns) if tag in _DECODERS]

    def decode(line: str) -> dict[str, Any]:
        values = json.loads(line)
        if not isinstance(values, list) or len(values) != len(names):
            raise BackupError("a row in the archive does not match its table's columns")
        for index, convert in converters:
            if values[index] is not None:
                values[index] = convert(values[index])
        return dict(zip(names, values, strict=True))

    return decode


def snapshot_engine(path: Path) -> Engine:
    """A read-only engine on a SQLite snapshot file that never changes it (``immutable``: no locks, no journal)."""
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro&immutable=1"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    return create_engine("sqlite://", creator=connect, poolclass=NullPool)


# --- the manifest ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    size: int
    sha256: str


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
        return sum(part.size for part in self.blob_parts)

    @property
    def is_sqlite_snapshot(self) -> bool:
        return any(part.name == SQLITE_PART for part in self.parts)

    def to_json(self) -> bytes:
        document = {
            "format": FORMAT, "format_version": self.format_version, "engine": self.engine,
            "revision": self.revision, "created_at": self.created_at.isoformat(), "database": self.database,
            "tables": [{"name": t.name, "rows": t.rows, "columns": [list(c) for c in t.columns]} for t in self.tables],
            "parts": [{"name": p.name, "size": p.size, "sha256": p.sha256} for p in self.parts],
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
                raise BackupError(f"unsupported backup format version {document.get('format_version')!r}")
            manifest = cls(
                engine=_text(document["engine"]), revision=_text(document["revision"]),
                created_at=dt.datetime.fromisoformat(_text(document["created_at"])),
                database=_text(document["database"]),
                tables=tuple(_table_dump(entry) for entry in document["tables"]),
                parts=tuple(_part(entry) for entry in document["parts"]),
            )
        except BackupError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BackupError("the archive's manifest is malformed") from None
        manifest.check_consistent()
        return manifest

    def check_consistent(self) -> None:
        names = [part.name for part in self.parts]
        if len(set(names)) != len(names) or any(not _MEMBER.fullmatch(name) for name in names):
            raise BackupError("the archive's manifest lists a bad or duplicate part name")
        tables = {table.name for table in self.tables}
        dumps = {name.removeprefix("tables/").removesuffix(".jsonl") for name in names if name.startswith("tables/")}
        if not self.is_sqlite_snapshot and dumps != tables:
            raise BackupError("the archive's manifest does not list one data part per table")
        for part in self.blob_parts:
            if part.name.removeprefix("blobs/") != part.sha256:
                raise BackupError(f"the archive's manifest lists blob {part.name} under another hash")


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
    return Part(name=_text(entry["name"]), size=_count(entry["size"]), sha256=sha256)


# --- writing -----------------------------------------------------------------------------------------------------


def _sha256_hex(data: memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


class ArchiveWriter:
    """Writes members to a zstd-compressed tar stream, hashing each; the manifest goes last (``close``).

    The tar headers and padding are written here (POSIX ustar/pax, as ``tarfile`` makes them) so that data is
    copied in 1 MiB chunks rather than ``tarfile``'s 16 KiB.
    """

    def __init__(self, out: BinaryIO, *, level: int = COMPRESSION_LEVEL) -> None:
        compressor = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=-1)
        self._stream = compressor.stream_writer(out, closefd=False)
        self.parts: list[Part] = []
        self._mtime = int(dt.datetime.now(dt.UTC).timestamp())

    def add(self, name: str, size: int, source: IO[bytes], advance: Advance | None = None) -> Part:
        """Copy ``size`` bytes of ``source`` as member ``name``; ``BackupError`` if the source changes size."""
        self._header(name, size)
        digest, written = hashlib.sha256(), 0
        while written < size:
            chunk = source.read(min(CHUNK, size - written))
            if not chunk:
                raise BackupError(f"{name} shrank while it was being archived")
            digest.update(chunk)
            self._stream.write(chunk)
            written += len(chunk)
            if advance is not None:
                advance(len(chunk))
        self._pad(size)
        part = Part(name, size, digest.hexdigest())
        self.parts.append(part)
        return part

    def add_file(self, name: str, path: Path, advance: Advance | None = None) -> Part:
        with path.open("rb") as source:
            size = os.fstat(source.fileno()).st_size
            if size < MAP_THRESHOLD:
                return self.add(name, size, source, advance)
            with mmap.mmap(source.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return self._add_mapped(name, mapped, advance)

    def _add_mapped(self, name: str, mapped: mmap.mmap, advance: Advance | None) -> Part:
        """A large file: hashed in a second thread while it is compressed, both reading the same mapped pages
        (hashlib releases the GIL), so a part costs about max(hash, compress) rather than their sum."""
        size = len(mapped)
        self._header(name, size)
        with memoryview(mapped) as view, ThreadPoolExecutor(1, thread_name_prefix="sha256") as pool:
            digest = pool.submit(_sha256_hex, view)
            for offset in range(0, size, MAP_CHUNK):
                self._stream.write(view[offset:offset + MAP_CHUNK])
                if advance is not None:
                    advance(min(MAP_CHUNK, size - offset))
            sha256 = digest.result()
        self._pad(size)
        part = Part(name, size, sha256)
        self.parts.append(part)
        return part

    def close(self, manifest: Manifest) -> None:
        """Write the manifest (which lists ``self.parts``) and the end of the archive; flush the compressor."""
        data = manifest.to_json()
        self._header(MANIFEST, len(data))
        self._stream.write(data)
        self._pad(len(data))
        self._stream.write(bytes(2 * tarfile.BLOCKSIZE))
        self._stream.flush(zstandard.FLUSH_FRAME)  # ends the frame (with its checksum); ``out`` stays open

    def _header(self, name: str, size: int) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, self._mtime, 0o644
        self._stream.write(info.tobuf(format=tarfile.PAX_FORMAT))

    def _pad(self, size: int) -> None:
        remainder = size % tarfile.BLOCKSIZE
        if remainder:
            self._stream.write(bytes(tarfile.BLOCKSIZE - remainder))


# --- reading and verifying ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Seen:
    parts: dict[str, Part] = field(default_factory=dict)
    manifest: Manifest | None = None


def verify_archive(path: str | os.PathLike[str], *, progress_advance: Advance | None = None) -> Manifest:
    """Check an archive without extracting it: the manifest, every part's presence, size and SHA-256, member
    names, and a complete stream. Returns the manifest; ``BackupError`` with the reason otherwise."""
    return unpack(path, None, progress_advance=progress_advance)


def unpack(path: str | os.PathLike[str], into: Path | None, *, progress_advance: Advance | None = None) -> Manifest:
    """Verify the archive at ``path`` and, if ``into`` is given, extract its parts there (never elsewhere).

    Everything is checked: only what ``verify_archive`` accepts is left in ``into``, and the caller must not use
    ``into`` unless this returns.
    """
    archive = Path(path)
    if not archive.is_file():
        raise BackupError(f"no backup archive at {archive}")
    seen = _Seen()
    try:
        with archive.open("rb") as raw, _counting(raw, progress_advance) as counted:
            reader = zstandard.ZstdDecompressor().stream_reader(counted, read_across_frames=True)
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                for member in tar:
                    _take(tar, member, into, seen)
    except BackupError:
        raise
    except (tarfile.TarError, zstandard.ZstdError, EOFError, UnicodeDecodeError) as error:
        raise BackupError(f"{archive.name}: corrupt or truncated archive ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else 'unreadable'})") from None
    return _complete(archive, seen)


def _take(tar: tarfile.TarFile, member: tarfile.TarInfo, into: Path | None, seen: _Seen) -> None:
    name = member.name
    if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/") or re.match(r"[A-Za-z]:", name):
        raise BackupError(f"unsafe archive: member {name!r} would escape the target directory")
    if not member.isreg():
        raise BackupError(f"unsafe archive: member {name!r} is a link, device or directory, not a file")
    if not _MEMBER.fullmatch(name):
        raise BackupError(f"unsafe archive: unexpected member {name!r}")
    if name in seen.parts or seen.manifest is not None:
        raise BackupError(f"invalid archive: member {name!r} is duplicated or follows the manifest")
    source = tar.extractfile(member)
    if source is None:  # pragma: no cover - a regular member always has a file object
        raise BackupError(f"unreadable member {name!r}")
    if name == MANIFEST:
        if member.size > _MAX_MANIFEST_BYTES:
            raise BackupError("the archive's manifest is implausibly large")
        seen.manifest = Manifest.from_json(source.read())
        return
    target = None if into is None else into / name
    seen.parts[name] = _copy_hashed(name, source, member.size, target)


def _copy_hashed(name: str, source: IO[bytes], size: int, target: Path | None) -> Part:
    digest, copied = hashlib.sha256(), 0
    with contextlib.ExitStack() as stack:
        out = None
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context(target.open("xb"))
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            copied += len(chunk)
            if out is not None:
                out.write(chunk)
    if copied != size:
        raise BackupError(f"truncated archive: member {name} ends early")
    return Part(name, size, digest.hexdigest())


def _complete(archive: Path, seen: _Seen) -> Manifest:
    manifest = seen.manifest
    if manifest is None:
        raise BackupError(f"{archive.name}: truncated or not a backup: the manifest is missing")
    listed = {part.name: part for part in manifest.parts}
    for name in sorted(set(listed) - set(seen.parts)):
        raise BackupError(f"{archive.name}: part {name} is missing (truncated archive?)")
    for name in sorted(set(seen.parts) - set(listed)):
        raise BackupError(f"{archive.name}: part {name} is not in the manifest")
    for name, part in sorted(listed.items()):
        found = seen.parts[name]
        if found.size != part.size:
            raise BackupError(f"{archive.name}: part {name} has {found.size} bytes, the manifest says {part.size}")
        if found.sha256 != part.sha256:
            raise BackupError(f"{archive.name}: part {name} fails its SHA-256 check (corrupted)")
    return manifest


@contextlib.contextmanager
def _counting(raw: BinaryIO, advance: Advance | None) -> Iterator[BinaryIO]:
    """``raw``, reporting how many compressed bytes have been read (for a progress bar)."""
    if advance is None:
        yield raw
        return
    yield _CountingReader(raw, advance)  # type: ignore[misc]


class _CountingReader:
    def __init__(self, raw: BinaryIO, advance: Advance) -> None:
        self._raw, self._advance = raw, advance

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._advance(len(data))
        return data


__all__ = [
    "COMPRESSION_LEVEL", "FORMAT_VERSION", "MANIFEST", "SQLITE_PART", "SUFFIX", "TAGS",
    "ArchiveWriter", "Manifest", "Part", "TableDump",
    "row_decoder", "row_encoder", "snapshot_engine", "type_tag", "typed_table", "unpack", "verify_archive",
]
