"""The backup archive's format: a plain tar file of separately compressed parts, and its manifest.

Layout (the only member names a valid archive may hold; anything else is refused):

    database.sqlite.zst        a SQLite backup: the file made by SQLite's backup API (a consistent snapshot)
    tables/<table>.jsonl.zst   a PostgreSQL or MariaDB backup: one JSON array per row, columns as in the manifest
    blobs/<sha256>             each file blob named by the snapshot's ``file_blob`` rows, once, stored as it is
    manifest.json              last: format version, engine, schema revision, created_at, per-table columns and
                               row counts, and for every part its stored size, the SHA-256 of its stored bytes
                               and its size once decompressed

Decisions:

- The tar itself is not compressed (``tar -tf`` and ``tarfile`` read it); each ``.zst`` part is a zstd stream of
  independent frames, one per ``sizes.CHUNK`` of input, each with its content checksum. Independent frames let the
  writer compress chunks on every core at once (``writer.ArchiveWriter``), with at most two chunks per worker in
  flight, so memory stays flat whatever the database's size; concatenated frames are one valid zstd stream.
- Blobs are stored uncompressed: they are users' files, mostly compressed already (images, PDFs, office files),
  and a stored blob's SHA-256 is then its name, which the restore checks again when it stores it.
- The manifest comes last because a part's hash is known only once the part has been written. A reader first
  hashes every member's stored bytes and compares them with the manifest (cheap: nothing is decompressed yet),
  then decompresses each part, where zstd checks every frame's checksum and the reader each part's raw size. A
  missing manifest therefore also means a truncated archive.
- Member names are checked against the whitelist above (no absolute path, no ``..``, no link, device or
  directory, no duplicate, nothing after the manifest), so extraction can never write outside its directory
  whatever the archive says (``reader``).
- Rows are typed by column (``codec``), so a backup restores into SQLite, PostgreSQL or MariaDB alike.
- The archive is written under a temporary name (``.<name>.partial``) in the target directory, fsynced and then
  renamed: a crashed backup never looks like a backup. The writer needs a seekable file: a part's tar header is
  written once its stored size is known.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from db.backup.codec import TAGS
from db.errors import BackupError

FORMAT = "dblayer-backup"
FORMAT_VERSION = 2  # 1: one zstd stream over the whole tar (no longer read)
SUFFIX = ".tar"
MANIFEST = "manifest.json"
COMPRESSED = ".zst"
SQLITE_PART = "database.sqlite.zst"
SQLITE_FILE = "database.sqlite"  # the snapshot as extracted

_TABLE_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,62}"
MEMBER_NAME = re.compile(
    rf"(?:manifest\.json|database\.sqlite\.zst|tables/{_TABLE_NAME}\.jsonl\.zst|blobs/[0-9a-f]{{64}})")
_TABLE = re.compile(_TABLE_NAME)
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
        if len(set(names)) != len(names) or any(not MEMBER_NAME.fullmatch(name) for name in names):
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



__all__ = [
    "COMPRESSED", "FORMAT_VERSION", "MANIFEST", "MEMBER_NAME", "SQLITE_FILE", "SQLITE_PART", "SUFFIX", "Manifest",
    "Part", "TableDump",
]
