"""Restore a backup archive (``create``) into a database on any engine, with its file blobs.

Decisions:

- Verify first, touch later (``reader.open_archive``): member names on a whitelist so nothing can escape, the
  manifest, every part's stored size and SHA-256, all before anything is decompressed; then the expansion limit
  on the manifest's sizes (a decompression bomb is refused before it expands, ``reader.Limits``); then every
  part decompressed once and thrown away (frame checksums, raw sizes, each table's row count, no row longer than
  ``sizes.MAX_ROW_BYTES``). The schema revision must be one this code knows. Only then is the target looked at.
  Parts are streamed from the archive, never extracted to a temporary directory, except a SQLite snapshot being
  restored into a server (its rows are read from it there).
- Room first: what the restore will write on local disks (the new SQLite file beside the target, a snapshot in
  the temporary directory, the blobs the storage root lacks) is checked against each file system's free space
  before anything is written (``DiskFull``). A disk that fills up all the same gives ``DiskFull`` too, and the
  target keeps its old data.
- The old data stays until the new data is complete and verified; then one swap (``db.dialects``, "restore"):
  SQLite builds a new file beside the target and copies its tables into the target in one transaction (no
  rename: connections that have the file open go on working and see the new data); PostgreSQL builds the new
  tables in a staging schema inside one transaction and moves them into place at its end; MariaDB builds them in
  a staging database and swaps them in with one ``RENAME TABLE``. Verified: every table holds the manifest's row
  count, the schema is at the head revision (an older backup is upgraded in the staging area), a SQLite file
  passes ``quick_check`` and ``foreign_key_check``, and every blob a restored row names is in the storage root.
  Interrupted or killed anywhere, the target holds the old data or the new, never a mix; what an interruption
  leaves (a staging file or database) is listed by ``check`` and removed by the next restore or by ``cleanup
  --apply`` (``leftovers``).
- Where a restore is (``RestoreStatus``, passed in by the caller) says what an interruption leaves: checking
  (nothing of the backup written yet), staging (the new data being built apart: the target holds its old data)
  or swapped (the swap has committed: the target holds the new data). The swap's commit and its record are one
  step for Ctrl-C (``interrupts``): an interrupt between them is held back until the record is made. The command
  line reads the status for its "interrupted:" line; ``KeyboardInterrupt`` also carries it as a note.
- A target that already has any of the application's tables (or an Alembic version table) is replaced only with
  ``yes=True`` or after ``confirm(message)`` returns True; the message names the target with its password hidden.
  Without either, ``ConfirmationRequired``. Tables that are not the application's are left alone; one that has a
  foreign key to an application table makes the restore refuse before anything is written (replacing the table
  would leave its rows dangling).
- Blobs are copied into the target's storage root straight from the archive (each checked against its hash;
  those already there are kept) after the rows are loaded and before the swap, so that no restored row ever
  names a missing blob. A restore that fails after that leaves them as blobs no row names, which harm nothing
  (``check`` warns; ``cleanup`` removes them). A root bound to another database, or holding blobs that neither
  the backup nor the target names, is refused before anything is touched (``db.storage_binding.prepare_restore``).
- The restored database keeps the target's identity (``database_identity``), or gets a new one if the target had
  none; never the backup's: a copy must not pass for the original, whose storage root it could then clean. The
  identity is written into the staging area before the swap, and the root is bound to it after.
- Rows: the staging schema is built by the migrations at the backup's revision, the rows the migrations seed
  (built-in roles, the audit chain's genesis head) are cleared, and the backup's rows are inserted with Core in
  foreign-key order, in batches of at most ``load.BATCH_ROWS`` rows and ``load.BATCH_BYTES`` bytes; then the staging
  schema is upgraded to the head. The audit log's rows, chain head and checkpoints are copied as they are, so
  ``verify_chain()`` holds afterwards.
- A SQLite snapshot restored into SQLite becomes the staging file itself (no rows are decoded); only the
  application's tables (and Alembic's) are taken from it, as from any backup.
"""


from __future__ import annotations

import enum
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util.exc import CommandError
from sqlalchemy import inspect

from db import dialects, storage_binding
from db.backup import leftovers
from db.backup.blobs import check_blobs_present, restore_blobs
from db.backup.disk import check_free_space
from db.backup.load import build
from db.backup.manifest import Manifest
from db.backup.reader import DEFAULT_LIMITS, Limits, VerifiedArchive, open_archive
from db.backup.sqlite_part import check_snapshot, extracted, snapshot_part
from db.backup.staging import Destination, MariadbDestination, SqliteDestination, destination_for, wanted_tables
from db.errors import BackupError, ConfirmationRequired, DatabaseError, DiskFull
from db.layer import Database
from db.migrations import runner
from db.progress import SILENT, Progress
from db.storage import LocalStorage

Confirm = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class RestoreResult:
    target: str  # the target's URL without its password
    archive: Path
    manifest: Manifest
    rows: dict[str, int]  # rows restored per table
    blobs: int  # blobs the archive holds, all present in the target's storage afterwards
    replaced: bool  # the target held the application's tables before
    revision: str | None  # the target's schema revision afterwards (head)
    seconds: float


class RestorePhase(enum.Enum):
    CHECKING = "checking"  # the archive and the target are checked: nothing of the backup written yet
    STAGING = "staging"  # the new data is built apart: the target holds its old data
    SWAPPED = "swapped"  # the swap has committed: the target holds the new data


@dataclass
class RestoreStatus:
    """Where a restore is, for whoever must say what an interruption left (``restore_backup(status=...)``)."""

    target: str = ""  # the target's URL without its password, once known
    phase: RestorePhase = RestorePhase.CHECKING
    _destination: Destination | None = field(default=None, repr=False)

    def follow(self, target: str, destination: Destination) -> None:
        self.target, self.phase, self._destination = target, RestorePhase.CHECKING, destination

    @property
    def swapped(self) -> bool:
        return self.phase is RestorePhase.SWAPPED or bool(self._destination and self._destination.swapped)

    def interruption(self) -> str:
        """What an interruption now leaves, in one sentence."""
        target = self.target or "the target"
        if self.swapped:
            return f"the restore into {target} was stopped after its swap had committed: {target} {_HOLDS_NEW}"
        when = "before its swap" if self.phase is RestorePhase.STAGING else "while checking the archive and target"
        return f"the restore into {target} was stopped {when}: {target} {_HOLDS_OLD} (nothing was replaced)"


_HOLDS_NEW = "holds the restored data"
_HOLDS_OLD = "still holds its previous data"


def restore_backup(
    database: Database,
    archive_path: str | os.PathLike[str],
    *,
    yes: bool = False,
    confirm: Confirm | None = None,
    progress: Progress = SILENT,
    limits: Limits = DEFAULT_LIMITS,
    status: RestoreStatus | None = None,
) -> RestoreResult:
    """Restore the backup at ``archive_path`` into ``database`` and its storage root; see the module docstring.
    ``status``, if given, follows the restore's phase (``RestoreStatus``)."""
    started = time.perf_counter()
    path = Path(archive_path)
    status = status if status is not None else RestoreStatus()
    target = database.url.render_as_string(hide_password=True)
    destination = destination_for(database)
    status.follow(target, destination)
    try:
        manifest, rows, replaced = _restore_verified(database, destination, path, yes=yes, confirm=confirm,
                                                     progress=progress, limits=limits, status=status)
    except KeyboardInterrupt as stop:
        stop.add_note(status.interruption())
        raise
    status.phase = RestorePhase.SWAPPED
    return RestoreResult(
        target=target, archive=path, manifest=manifest, rows=rows, blobs=manifest.blob_count,
        replaced=replaced, revision=runner.current_revision(database), seconds=time.perf_counter() - started,
    )


def _restore_verified(database: Database, destination: Destination, path: Path, *, yes: bool,
                      confirm: Confirm | None, progress: Progress, limits: Limits, status: RestoreStatus
                      ) -> tuple[Manifest, dict[str, int], bool]:
    target = database.url.render_as_string(hide_password=True)
    existing = destination.app_tables()
    if path.is_file() and existing and not yes and confirm is None:  # say so before reading the archive
        raise ConfirmationRequired(f"{target} already holds data: restoring would replace it; confirm with --yes")
    with open_archive(path, progress=progress, limits=limits) as verified:
        manifest = verified.manifest
        _check_revision(manifest.revision)
        if existing:
            _confirm(target, manifest, len(existing), yes=yes, confirm=confirm)
            _refuse_foreign_references(database)
        storage = storage_binding.local_storage(database)
        identity = storage_binding.prepare_restore(database, storage, {part.sha256 for part in manifest.blob_parts},
                                                   exists=bool(existing) or destination.exists())
        leftovers.remove(database, leftovers.restore_leftovers(database))
        check_free_space(_space_needed(destination, verified, storage))
        status.phase = RestorePhase.STAGING
        try:
            rows = _restore(destination, verified, storage, identity, progress)
        except (ConfirmationRequired, DiskFull) as failure:
            raise type(failure)(f"{failure} ({target} {_state(destination)})") from None
        except Exception as failure:
            raise _failed(target, destination, failure) from None
    return manifest, rows, bool(existing)


def verify_backup(archive_path: str | os.PathLike[str], *, progress: Progress = SILENT,
                  limits: Limits = DEFAULT_LIMITS) -> Manifest:
    """``reader.verify_archive``, and for a SQLite snapshot also what a restore checks before writing anything:
    the snapshot is sound and holds the manifest's tables with the manifest's row counts (it is extracted to the
    temporary directory for that). Returns the manifest; ``BackupError`` otherwise."""
    with open_archive(archive_path, progress=progress, limits=limits) as verified:
        snapshot = snapshot_part(verified.manifest)
        if snapshot is not None:
            check_free_space({Path(tempfile.gettempdir()): snapshot.raw_size})
            with extracted(verified, snapshot) as path:
                check_snapshot(path, verified.manifest)
        return verified.manifest


def _state(destination: Destination) -> str:
    return _HOLDS_NEW if destination.swapped else _HOLDS_OLD


def _failed(target: str, destination: Destination, failure: Exception) -> DatabaseError:
    if dialects.is_disk_full(failure):
        return DiskFull(f"the disk filled up during the restore into {target}: free some space and try again "
                        f"({target} {_state(destination)})")
    reason = failure if isinstance(failure, BackupError) else _describe(failure)
    return BackupError(f"restore into {target} failed ({reason}); {target} {_state(destination)}")


def _describe(failure: BaseException) -> str:
    translated = dialects.domain_error(failure, entity="restore")
    return str(translated or f"{type(failure).__name__}: {failure}")


def _check_revision(revision: str) -> None:
    scripts = ScriptDirectory.from_config(runner.alembic_config())
    try:
        known = scripts.get_revision(revision) is not None
    except (ResolutionError, CommandError):
        known = False
    if not known:
        raise BackupError(f"the backup is at schema revision {revision!r}, which this code does not know (the newest "
                          f"it knows is {scripts.get_current_head()}): restore it with the code that made it")


def _confirm(target: str, manifest: Manifest, tables: int, *, yes: bool, confirm: Confirm | None) -> None:
    if yes:
        return
    question = (f"{target} already holds data ({tables} tables of this application): replace it with the backup of "
                f"{manifest.database} taken {manifest.created_at:%Y-%m-%d %H:%M:%S} UTC?")
    if confirm is None:
        raise ConfirmationRequired(f"{target} already holds data ({tables} tables): restoring would replace it; "
                                   "confirm with --yes")
    if not confirm(question):
        raise ConfirmationRequired(f"restore into {target} not confirmed: nothing was changed")


def _refuse_foreign_references(database: Database) -> None:
    """Refuse a target where a table that is not the application's has a foreign key to one of its tables."""
    wanted = set(wanted_tables())
    with database.engine.connect() as connection:
        inspector = inspect(connection)
        for table in sorted(set(inspector.get_table_names()) - wanted):
            for key in inspector.get_foreign_keys(table):
                if key.get("referred_schema") is None and key["referred_table"] in wanted:
                    raise BackupError(f"table {table} (not this application's) has a foreign key to "
                                      f"{key['referred_table']}, which a restore replaces: drop that foreign key or "
                                      "restore elsewhere (nothing was changed)")


def _space_needed(destination: Destination, verified: VerifiedArchive, storage: LocalStorage) -> dict[Path, int]:
    manifest = verified.manifest
    needs = destination.space_needed(manifest)
    snapshot = snapshot_part(manifest)
    if snapshot is not None and not isinstance(destination, SqliteDestination):
        scratch = Path(tempfile.gettempdir())
        needs[scratch] = needs.get(scratch, 0) + snapshot.raw_size
    missing = sum(part.size for part in manifest.blob_parts if not storage.exists(part.sha256))
    needs[storage.root] = needs.get(storage.root, 0) + missing
    return needs


def _restore(destination: Destination, verified: VerifiedArchive, storage: LocalStorage, identity: uuid.UUID,
             progress: Progress) -> dict[str, int]:
    with destination.staging() as staging:
        rows = build(staging, verified, progress)
        with staging.connection() as connection:
            storage_binding.stamp_identity(connection, identity)  # the target's identity, never the backup's
            staging.keep(connection)
        restore_blobs(storage, verified, progress)
        with staging.connection() as connection:
            check_blobs_present(connection, storage)
        with progress.track("swap", total=2 if isinstance(destination, MariadbDestination) else 1) as advance:
            staging.swap(wanted_tables(), advance)
    storage_binding.finish_restore(destination.database, storage, identity)
    return rows



__all__ = ["Confirm", "RestorePhase", "RestoreResult", "RestoreStatus", "restore_backup", "verify_backup"]
