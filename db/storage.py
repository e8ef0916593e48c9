"""Content-addressed blob storage: the ``Storage`` interface, ``LocalStorage`` (a directory), content sniffing.

A blob's key is the SHA-256 of its bytes as 64 lowercase hex digits, and nothing else: keys are never made from a
filename or anything else a user sends. A key that is not 64 hex digits is refused (``ValidationError``) before any
path is built, so no key can reach outside the storage root. ``LocalStorage`` shards keys into two levels of
directories, ``root/ab/cd/abcd…``, so no directory grows past a few thousand entries.

Writing is done in two steps, so that a caller can decide between them whether to keep the blob::

    with storage.stage(stream, max_size=limit) as staged:   # read in chunks, hashed while written to a temp file
        staged.sha256, staged.size, staged.head           # the hash, the size, the first bytes (for sniffing)
        staged.commit()                                   # move it under its key; without this it is discarded

The temporary file is in ``root/.tmp`` (the same file system, so the rename is atomic), fsynced before it is
renamed, and the directory is fsynced after: a crash leaves a whole blob under its key or a temporary file that
``remove_temporaries`` deletes, never half a blob under its final name. Memory use is one chunk, whatever the size.
A full disk (or quota) raises ``DiskFull`` and leaves no temporary file behind.

A root serves one database: ``owner()`` reads the marker (``root/.dblayer-database.json``) that names the database
it is bound to, ``bind()`` writes it, atomically and only if there is none (``db.storage_binding`` decides when).
"""

from __future__ import annotations

import codecs
import contextlib
import datetime as dt
import errno
import hashlib
import io
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol, Self

import filetype

from db.errors import DiskFull, NotFound, StorageMismatch, ValidationError

KEY_PATTERN = re.compile(r"[0-9a-f]{64}")
SNIFF_BYTES = 8192  # what the magic-number detection needs
DEFAULT_CHUNK_SIZE = 2**20
OCTET_STREAM = "application/octet-stream"
TEMPORARY_DIR = ".tmp"
MARKER = ".dblayer-database.json"
MARKER_FORMAT = 1
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass(frozen=True, slots=True)
class StorageOwner:
    """The database a storage root is bound to, as its marker records it."""

    database_id: str  # the database's identity (``database_identity.id``), a UUID as text
    database: str  # its URL without password when it was bound: for messages
    bound_at: str  # ISO 8601, UTC
    location: str = ""  # where the database is (``storage_binding.database_location``); "": a marker from before

    @classmethod
    def of(cls, database_id: object, database: str, location: str) -> StorageOwner:
        return cls(str(database_id), database, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), location)

    def __str__(self) -> str:
        return f"{self.database_id} ({self.database})"


class Readable(Protocol):
    """Anything with ``read(n) -> bytes``: an open file, ``io.BytesIO``, a socket file, a request body."""

    def read(self, size: int = ..., /) -> bytes: ...


class Staged(Protocol):
    """A blob written to a temporary place and hashed, not yet stored under its key."""

    sha256: str
    size: int
    head: bytes  # the first SNIFF_BYTES bytes

    def commit(self) -> bool:
        """Store the blob under its key; False if a whole blob was already there (this copy is then dropped)."""
        ...

    def discard(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        """Discard the blob unless it was committed."""
        ...


class Storage(Protocol):
    """Where blobs live. Keys are SHA-256 hex digests; every method refuses anything else (``ValidationError``)."""

    @property
    def location(self) -> str:
        """Where the blobs are, for messages (a directory, a bucket)."""
        ...

    def owner(self) -> StorageOwner | None:
        """The database this storage is bound to; None if it has no marker. A damaged marker: ``StorageMismatch``."""
        ...

    def bind(self, owner: StorageOwner, *, replace: bool = False) -> StorageOwner:
        """Record ``owner`` unless a marker exists (``replace``: overwrite it); return the owner now recorded."""
        ...

    def stage(self, stream: Readable | bytes, *, max_size: int | None = None) -> Staged: ...

    def put(self, stream: Readable | bytes, *, max_size: int | None = None) -> tuple[str, int]:
        """Stage and commit: the blob's key (its SHA-256) and size."""
        ...

    def open(self, key: str) -> BinaryIO:
        """The blob for reading; ``NotFound`` if there is none."""
        ...

    def delete(self, key: str) -> bool:
        """Remove the blob; False if there was none."""
        ...

    def exists(self, key: str) -> bool: ...

    def keys(self) -> Iterator[str]:
        """Every stored key (temporary files excluded)."""
        ...

    def remove_temporaries(self, older_than: dt.timedelta) -> int:
        """Delete temporary files untouched for ``older_than`` (left by crashed or abandoned uploads)."""
        ...


def check_key(key: object) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise ValidationError("a storage key must be a SHA-256 digest: 64 lowercase hex digits", field="key",
                              rule="format")
    return key


def hash_stream(stream: Readable, chunk_size: int = DEFAULT_CHUNK_SIZE) -> tuple[str, int]:
    """The SHA-256 (hex) and size of what ``stream`` yields, read in chunks."""
    digest, size = hashlib.sha256(), 0
    while chunk := _chunk(stream, chunk_size):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


class LocalStorage:
    """Blobs as files under ``root`` (created on demand); see the module docstring."""

    def __init__(self, root: str | os.PathLike[str], *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if chunk_size < 1:
            raise ValidationError("chunk_size must be at least 1", field="chunk_size")
        self.root = Path(root).expanduser().absolute()
        self.chunk_size = chunk_size

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    @property
    def location(self) -> str:
        return printable(self.root)

    # --- the database this root serves ---------------------------------------------------------------------------

    def owner(self) -> StorageOwner | None:
        try:
            text = (self.root / MARKER).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except IsADirectoryError:
            text = b""
        try:
            fields = json.loads(text)
            if fields.pop("format") != MARKER_FORMAT:
                raise ValueError("unknown format")
            named = {name: str(fields[name]) for name in ("database_id", "database", "bound_at")}
            return StorageOwner(**named, location=str(fields.get("location", "")))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise StorageMismatch(f"the file storage at {self.location} has a damaged marker ({MARKER}): it cannot "
                                  "tell which database it serves, so nothing was read, stored or removed there; "
                                  "bind it again with: python -m db storage --bind", root=self.location) from None

    def bind(self, owner: StorageOwner, *, replace: bool = False) -> StorageOwner:
        marker = self.root / MARKER
        temporary_dir = self.root / TEMPORARY_DIR
        with _disk_full_is_reported(self):
            _make_dirs(temporary_dir)
            handle, name = tempfile.mkstemp(dir=temporary_dir, prefix="marker-", suffix=".part")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(json.dumps({"format": MARKER_FORMAT, **asdict(owner)}, indent=1).encode() + b"\n")
                    out.flush()
                    os.fsync(out.fileno())
                if replace:
                    os.replace(name, marker)
                else:
                    _link_unless_exists(Path(name), marker)
            finally:
                Path(name).unlink(missing_ok=True)
            _fsync_dir(self.root)
        recorded = self.owner()
        assert recorded is not None, "a marker was just written"
        return recorded

    # --- blobs ---------------------------------------------------------------------------------------------------

    def path_of(self, key: str) -> Path:
        key = check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def stage(self, stream: Readable | bytes, *, max_size: int | None = None) -> LocalStaged:
        source: Readable = io.BytesIO(stream) if isinstance(stream, bytes | bytearray | memoryview) else stream
        temporary_dir = self.root / TEMPORARY_DIR
        with _disk_full_is_reported(self):
            _make_dirs(temporary_dir)
            handle, name = tempfile.mkstemp(dir=temporary_dir, prefix="upload-", suffix=".part")
        digest, size, head = hashlib.sha256(), 0, bytearray()
        try:
            with _disk_full_is_reported(self), os.fdopen(handle, "wb") as out:
                while chunk := _chunk(source, self.chunk_size):
                    size += len(chunk)
                    if max_size is not None and size > max_size:
                        raise ValidationError(f"file: larger than the maximum of {max_size} bytes", field="size",
                                              rule="max_size")
                    digest.update(chunk)
                    out.write(chunk)
                    if len(head) < SNIFF_BYTES:
                        head += chunk[: SNIFF_BYTES - len(head)]
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return LocalStaged(self, Path(name), digest.hexdigest(), size, bytes(head))

    def put(self, stream: Readable | bytes, *, max_size: int | None = None) -> tuple[str, int]:
        with self.stage(stream, max_size=max_size) as staged:
            staged.commit()
            return staged.sha256, staged.size

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path_of(key).open("rb")
        except FileNotFoundError:
            raise NotFound("blob", key) from None

    def delete(self, key: str) -> bool:
        path = self.path_of(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def exists(self, key: str) -> bool:
        return self.path_of(key).is_file()

    def keys(self) -> Iterator[str]:
        shard = re.compile(r"[0-9a-f]{2}")
        for first in _sorted_dirs(self.root, shard):
            for second in _sorted_dirs(first, shard):
                for entry in sorted(second.iterdir()):
                    name = entry.name
                    if KEY_PATTERN.fullmatch(name) and name[:2] == first.name and name[2:4] == second.name:
                        yield name

    def remove_temporaries(self, older_than: dt.timedelta) -> int:
        directory = self.root / TEMPORARY_DIR
        if not directory.is_dir():
            return 0
        cutoff, removed = time.time() - older_than.total_seconds(), 0
        for entry in directory.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed += 1
        return removed


class LocalStaged:
    """A blob in ``root/.tmp``, hashed; ``commit`` renames it under its key."""

    def __init__(self, storage: LocalStorage, path: Path, sha256: str, size: int, head: bytes) -> None:
        self.storage, self.path, self.sha256, self.size, self.head = storage, path, sha256, size, head
        self.done = False

    def commit(self) -> bool:
        if self.done:
            raise ValidationError("this staged blob was already committed or discarded")
        final = self.storage.path_of(self.sha256)
        with contextlib.suppress(FileNotFoundError):
            if final.stat().st_size == self.size:  # the same bytes are there already (a damaged copy is replaced)
                self.discard()
                return False
        with _disk_full_is_reported(self.storage):
            _make_dirs(final.parent)
            os.replace(self.path, final)
        _fsync_dir(final.parent)
        self.done = True
        return True

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.done = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if not self.done:
            self.discard()


# --- content types ---------------------------------------------------------------------------------------------

_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_TEXT_APPLICATION_TYPES = frozenset({
    "application/json", "application/xml", "application/javascript", "application/x-ndjson", "application/yaml",
    "application/x-yaml", "application/sql", "application/csv", "application/toml",
})
_BINARY_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")  # tab, newlines, form feed and escape are text


def normalise_content_type(value: object) -> str | None:
    """A declared content type as its lower-case essence (``Text/HTML; charset=utf-8`` → ``text/html``)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError("file.content_type must be text", field="content_type", rule="type")
    essence = value.split(";", 1)[0].strip().lower()
    if not essence:
        return None
    if len(essence) > 127 or not _MEDIA_TYPE.fullmatch(essence):
        raise ValidationError("file.content_type must be a media type such as 'text/plain'", field="content_type",
                              rule="format")
    return essence


def sniff_content_type(head: bytes, *, complete: bool, declared: str | None = None) -> str:
    """The content type of bytes beginning with ``head`` (``complete``: ``head`` is all of them).

    A known file signature decides (so a program declared as ``image/png`` is not stored as one); else UTF-8 text
    is ``text/plain``, or the declared type when that is a text type (``text/csv``, ``application/json``); else the
    declared type; else ``application/octet-stream``. An empty file has no evidence either way.
    """
    if not head:
        return declared or OCTET_STREAM
    kind = filetype.guess(head)
    if kind is not None:
        return str(kind.mime)
    if _is_text(head, complete=complete):
        return declared if declared is not None and _is_text_type(declared) else "text/plain"
    return declared or OCTET_STREAM


def _is_text(head: bytes, *, complete: bool) -> bool:
    try:  # a multi-byte character cut at the end of an incomplete head is not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return False
    return not _BINARY_CONTROLS.search(text)


def _is_text_type(media_type: str) -> bool:
    return (media_type.startswith("text/") or media_type in _TEXT_APPLICATION_TYPES
            or media_type.endswith(("+json", "+xml")))


# --- files and directories -------------------------------------------------------------------------------------


def printable(path: Path) -> str:
    """A path as text that can always be printed (bytes that are not UTF-8 shown as escapes)."""
    return str(path).encode("utf-8", "backslashreplace").decode("utf-8")


@contextlib.contextmanager
def _disk_full_is_reported(storage: LocalStorage) -> Iterator[None]:
    """A full disk or an exceeded disk quota leaves as ``DiskFull`` naming the storage; other errors unchanged."""
    try:
        yield
    except OSError as error:
        if error.errno not in _DISK_FULL:
            raise
        raise DiskFull(f"the file storage at {storage.location} is full ({os.strerror(error.errno)}): nothing was "
                       "stored; free space and try again") from None


def _chunk(stream: Readable, size: int) -> bytes:
    chunk: object = stream.read(size)
    if chunk is None:  # a non-blocking stream with nothing yet is not supported: treated as its end
        return b""
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, bytearray | memoryview):
        return bytes(chunk)
    raise ValidationError("file: the stream must yield bytes (open files in binary mode)", field="stream",
                          rule="type")


def _link_unless_exists(source: Path, target: Path) -> None:
    """Give ``source``'s whole content the name ``target`` unless that exists: a hard link, atomic, and refused if
    ``target`` exists (two databases binding one root at once: one wins). Where links are not supported, an
    exclusive create and a copy (a crash may then leave a partial marker, which is refused as damaged)."""
    try:
        os.link(source, target)
    except FileExistsError:
        return
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        try:
            handle = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return
        with os.fdopen(handle, "wb") as out:
            out.write(source.read_bytes())
            out.flush()
            os.fsync(out.fileno())


def _make_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each made durable (fsync of the directory that holds it)."""
    if path.is_dir():
        return
    _make_dirs(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir()
        _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:  # a platform that cannot open directories (Windows): its renames are durable without it
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _sorted_dirs(path: Path, pattern: re.Pattern[str]) -> list[Path]:
    if not path.is_dir():
        return []
    return sorted(entry for entry in path.iterdir() if pattern.fullmatch(entry.name) and entry.is_dir())


__all__ = [
    "DEFAULT_CHUNK_SIZE", "KEY_PATTERN", "MARKER", "OCTET_STREAM", "SNIFF_BYTES",
    "LocalStaged", "LocalStorage", "Readable", "Staged", "Storage", "StorageOwner",
    "check_key", "hash_stream", "normalise_content_type", "printable", "sniff_content_type",
]
