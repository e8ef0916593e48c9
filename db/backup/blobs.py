"""File blobs into and out of an archive, each checked against its hash (``blobs/<sha256>``, stored as it is).

- Backup: each blob the snapshot's ``file_blob`` rows name, read from the storage root: a missing or damaged blob
  fails the backup (``BackupError`` naming the blob) rather than producing an incomplete backup. Only a
  concurrent purge of a blob that the snapshot still names can fail a backup, and running it again succeeds.
- Restore: copied into the target's storage root straight from the archive (those already there are kept), and
  afterwards every blob a restored row names must be there.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, inspect, select

from db.backup.disk import disk_full_as_error
from db.backup.reader import VerifiedArchive
from db.backup.writer import ArchiveWriter
from db.errors import BackupError
from db.models.file_blob import FileBlob
from db.progress import Progress
from db.storage import KEY_PATTERN, LocalStorage


def blob_keys(connection: Connection) -> list[str]:
    """The blobs the snapshot names (``file_blob``), each once."""
    if not inspect(connection).has_table(FileBlob.__tablename__):
        return []
    keys = list(connection.scalars(select(FileBlob.sha256).order_by(FileBlob.sha256)))
    for key in keys:
        if not KEY_PATTERN.fullmatch(key):
            raise BackupError("a file_blob row has a key that is not a SHA-256 digest: run python -m db check")
    return keys


def archive_blobs(storage: LocalStorage, keys: Sequence[str], writer: ArchiveWriter, progress: Progress) -> None:
    with progress.track("blobs", total=len(keys)) as advance:
        for key in keys:
            try:
                part = writer.add_file(f"blobs/{key}", storage.path_of(key))
            except FileNotFoundError:
                raise BackupError(f"blob {key} is named by the database but missing from {storage.root} "
                                  "(run python -m db check; a concurrent purge? then back up again)") from None
            if part.sha256 != key:
                raise BackupError(f"blob {key} in {storage.root} is damaged: its bytes no longer match its hash")
            advance(1)


def restore_blobs(storage: LocalStorage, verified: VerifiedArchive, progress: Progress) -> None:
    manifest = verified.manifest
    with progress.track("blobs", total=manifest.blob_count) as advance:
        for part in manifest.blob_parts:
            if not storage.exists(part.sha256):
                with verified.reader(part) as stream, disk_full_as_error(str(storage.root)):
                    key, _size = storage.put(stream)
                if key != part.sha256:  # pragma: no cover - the archive was verified and is re-hashed on reading
                    raise BackupError(f"blob {part.sha256} changed while it was being restored")
            advance(1)


def check_blobs_present(connection: Connection, storage: LocalStorage) -> None:
    """Every blob a restored ``file_blob`` row names (read on ``connection``, the staging area) is in the storage
    root."""
    if not inspect(connection).has_table(FileBlob.__tablename__):
        return
    for key in connection.scalars(select(FileBlob.sha256).order_by(FileBlob.sha256)):
        if not storage.exists(key):
            raise BackupError(f"the backup names blob {key} but holds no such blob, and the storage root has none")


__all__ = ["archive_blobs", "blob_keys", "check_blobs_present", "restore_blobs"]
