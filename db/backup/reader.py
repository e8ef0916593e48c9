"""Reading an archive: it is untrusted input until it has been verified, and even then its parts are only
streamed: no part and no line is ever held whole in memory, and nothing decompresses past what the manifest says
(which itself must stay within ``Limits``)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from db.backup import sizes
from db.backup.disk import check_free_space, disk_full_as_error, read_chunks
from db.backup.manifest import FORMAT_VERSION, MANIFEST, MEMBER_NAME, Manifest, Part
from db.backup.sizes import (
    COPY_CHUNK,
    EXPANSION_ALLOWANCE,
    MAX_EXPANSION_RATIO,
    MAX_MANIFEST_BYTES,
    MAX_ROW_BYTES,
    ZSTD_MAGIC,
)
from db.backup.streams import PartReader, RowScan, row_too_long, unreadable_as_backup_error
from db.backup.tarwalk import members, open_tar
from db.errors import BackupError, ValidationError
from db.progress import SILENT, Advance, Progress


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

    First pass, nothing decompressed: a walk over the member headers (``tarwalk``: extended headers bounded,
    nothing kept) for member names and the manifest; then every part's stored size and SHA-256, only parts the
    manifest lists being accepted; then the expansion limits on the manifest's sizes; second pass: every compressed
    part decompressed (and thrown away), never past its recorded size, table parts scanned for their row count and
    longest row. The file stays open for the block, so replacing it under the same name changes nothing; its parts
    are hashed again as they are read (``VerifiedArchive.reader``), so changing it in place is caught too.
    """
    archive = Path(path)
    if not archive.is_file():
        raise BackupError(f"no backup archive at {archive}")
    with archive.open("rb") as raw:
        if raw.read(len(ZSTD_MAGIC)) == ZSTD_MAGIC:
            raise BackupError(f"{archive.name} is zstd-compressed: an archive of backup format 1 (.tar.zst), "
                              f"which this code no longer reads (it reads format {FORMAT_VERSION}, .tar)")
        manifest = _read_manifest(archive, raw)
        with open_tar(raw, archive.name) as tar:
            with unreadable_as_backup_error(archive.name), progress.track(
                    "verify", total=archive.stat().st_size) as advance:
                stored = _check_stored(archive, tar, manifest, advance)
            limits.check(manifest)
            verified = VerifiedArchive(archive, tar, stored, manifest, limits)
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
        source = PartReader(self.path.name, _member_file(self._tar, self._members[part.name]), part)
        with io.BufferedReader(source, COPY_CHUNK) as stream:
            yield stream

    def lines(self, part: Part) -> Iterator[bytes]:
        """A table part's rows, one JSON line at a time (each at most ``limits.max_row_bytes``)."""
        longest = self.limits.max_row_bytes
        with self.reader(part) as stream:
            while line := stream.readline(longest + 1):
                if len(line) > longest and not (len(line) == longest + 1 and line.endswith(b"\n")):
                    raise row_too_long(part, longest)
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
        scan = RowScan(part, self.limits.max_row_bytes) if part.name.startswith("tables/") else None
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



def _read_manifest(archive: Path, raw: BinaryIO) -> Manifest:
    """The first walk, over the member headers only (nothing hashed, nothing kept): every member's name and type
    on the whitelist, the manifest last; then the manifest, parsed and checked, and the number of parts against
    it. Whatever the archive holds, the walk keeps no more than one member and the manifest."""
    manifest: Manifest | None = None
    stored = 0
    with open_tar(raw, archive.name) as tar, unreadable_as_backup_error(archive.name):
        for member in members(tar, archive.name):
            _check_member(member, after_manifest=manifest is not None)
            if member.name == MANIFEST:
                manifest = _parse_manifest(tar, member)
            else:
                stored += 1
    if manifest is None:
        raise BackupError(f"{archive.name}: truncated or not a backup: the manifest is missing")
    if stored > len(manifest.parts):
        raise BackupError(f"{archive.name}: the archive holds {stored:,} parts, its manifest lists "
                          f"{len(manifest.parts):,}: a part not in the manifest, or stored twice, is refused")
    return manifest


def _parse_manifest(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Manifest:
    if member.size > MAX_MANIFEST_BYTES:
        raise BackupError("the archive's manifest is implausibly large")
    return Manifest.from_json(_member_file(tar, member).read())


def _check_stored(archive: Path, tar: tarfile.TarFile, manifest: Manifest, advance: Advance
                  ) -> dict[str, tarfile.TarInfo]:
    """The second walk, nothing decompressed: every member is a part the manifest lists, once; every listed part
    is there, with the stored size and SHA-256 the manifest gives (compared in name order, once all are hashed).
    Returns the parts' members (as many as the manifest lists, no more: anything else is refused when met)."""
    listed = {part.name: part for part in manifest.parts}
    found: dict[str, tarfile.TarInfo] = {}
    stored: dict[str, Part] = {}
    for member in members(tar, archive.name):
        _check_member(member, after_manifest=False)
        if member.name == MANIFEST:
            break
        if member.name not in listed:
            raise BackupError(f"{archive.name}: part {member.name} is not in the manifest")
        if member.name in found:
            raise BackupError(f"invalid archive: member {member.name!r} is duplicated")
        stored[member.name] = _hash_member(member, _member_file(tar, member), advance)
        found[member.name] = member
    for name in sorted(set(listed) - set(found)):
        raise BackupError(f"{archive.name}: part {name} is missing (truncated archive?)")
    for name, part in sorted(listed.items()):
        _check_part_stored(archive, part, stored[name])
    return found


def _check_part_stored(archive: Path, part: Part, stored: Part) -> None:
    if stored.size != part.size:
        raise BackupError(f"{archive.name}: part {part.name} has {stored.size} bytes, the manifest says {part.size}")
    if stored.sha256 != part.sha256:
        raise BackupError(f"{archive.name}: part {part.name} fails its SHA-256 check (corrupted)")


def _check_member(member: tarfile.TarInfo, *, after_manifest: bool) -> None:
    name = member.name
    if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/") or re.match(r"[A-Za-z]:", name):
        raise BackupError(f"unsafe archive: member {name!r} would escape the target directory")
    if not member.isreg():
        raise BackupError(f"unsafe archive: member {name!r} is a link, device or directory, not a file")
    if not MEMBER_NAME.fullmatch(name):
        raise BackupError(f"unsafe archive: unexpected member {name!r}")
    if after_manifest:
        raise BackupError(f"invalid archive: member {name!r} follows the manifest")


def _member_file(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    source = tar.extractfile(member)
    if source is None:  # pragma: no cover - a regular member always has a file object
        raise BackupError(f"unreadable member {member.name!r}")
    return source


def _hash_member(member: tarfile.TarInfo, source: IO[bytes], advance: Advance) -> Part:
    digest, size = hashlib.sha256(), 0
    for chunk in read_chunks(source, sizes.CHUNK):
        digest.update(chunk)
        size += len(chunk)
        advance(len(chunk))
    if size != member.size:
        raise BackupError(f"truncated archive: member {member.name} ends early")
    return Part(member.name, size, digest.hexdigest(), size)



__all__ = ["DEFAULT_LIMITS", "Limits", "VerifiedArchive", "open_archive", "unpack", "verify_archive"]
