"""Remove what retention says may go: finished tokens, old soft-deleted rows, old audit entries, orphaned blobs.

    from db.scripts.cleanup_db import RetentionPolicy, apply, cleanup, plan

    listed = plan(database)                                   # what would go; changes nothing
    result = apply(database, listed, archive_dir=Path("audit_archive"))      # removes exactly what was listed
    run = cleanup(database, apply=True, policy=RetentionPolicy(audit_after=None))   # both in one call

**What goes** (``RetentionPolicy``; each age may be ``None``: keep forever):

- ``token``: ``user_token`` rows that expired, were used or were revoked more than ``tokens_after`` (7 days) ago.
- ``soft-deleted``: ``file``, ``account`` and ``user`` rows soft-deleted more than ``deleted_after`` (30 days)
  ago. An account that still has files (other than files going in the same plan) is kept and named in
  ``plan.kept``: its files' foreign key forbids removing it. Removing a user or an account also removes its
  memberships, role grants and tokens (``ON DELETE CASCADE``); files a removed user uploaded stay, without owner.
- ``audit``: audit entries older than ``audit_after`` (365 days): one item for the range of ``seq`` that goes. They
  are archived first (gzipped JSON lines under ``archive_dir``, default ``db/data/audit_archive``) and a checkpoint
  keeps the chain verifiable (``AuditRepository.purge``). A broken chain is never purged (``Conflict``).
- ``blob``: stored bytes that no file row names: blob rows without a file, bytes without a blob row (left by a
  crash), and the blobs that the purged files were the last to name. Only from a storage root that is this
  database's (``db.storage_binding``): a root bound to another database, or holding blobs this database does not
  name and no marker, is refused (``StorageMismatch``) by ``plan``, before anything is removed.
- leftovers (``plan.leftovers``, ``db.backup.leftovers``): what killed backups left in the backup directory
  (``.partial`` archives, ``.backup-*`` scratch folders) and what interrupted restores into this database left
  (a staging file beside a SQLite file, a staging database on MariaDB; a restore whose swap was interrupted is
  finished). Whatever a running backup or restore holds is listed as in use and never touched.

**Plan, then apply.** ``plan`` reads only. ``apply`` removes the plan's items by id (by ``seq`` range for the audit
log), never a fresh query with a later ``now``: an item restored or named again in between stays (a restored row
is no longer soft-deleted; a blob named again is kept when its release re-checks it under its lock). Rows go in one
unit of work acting as ``SYSTEM`` (all or nothing; the audit archive is written before it and may outlive a
failure); blobs are released right after its commit, each in a short transaction of its own. Each removal leaves
the audit entries the layer writes for it: ``audit.purged``; ``admin.purge`` plus the bulk delete's change entry
for accounts and users; the change entry for files; a ``token.purged`` event. Afterwards the space is given back:
SQLite ``VACUUM`` + ``ANALYZE``, PostgreSQL ``VACUUM (ANALYZE)`` of the tables touched, MariaDB ``OPTIMIZE TABLE``
(``Dialect.reclaim_space``).

A second run with the same ``now`` finds nothing; with a later ``now`` it may find the audit entries the first
run wrote, once they are older than ``audit_after``. Items carry ids, keys and dates, never a secret.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from db import storage_binding
from db.admin_catalog import SYSTEM
from db.backup import leftovers
from db.backup.create import DEFAULT_DIRECTORY as DEFAULT_BACKUP_DIRECTORY
from db.backup.leftovers import Leftover
from db.errors import ValidationError
from db.layer import Database, UnitOfWork
from db.models.account import Account
from db.models.base import utcnow
from db.models.file_object import StoredFile
from db.models.user import User
from db.progress import SILENT, Progress
from db.repositories.bulk import batched
from db.scripts.retention import RetentionPolicy
from db.session import require_existing

TOKEN, SOFT_DELETED, AUDIT, BLOB = "token", "soft-deleted", "audit", "blob"
KINDS = (AUDIT, TOKEN, SOFT_DELETED, BLOB)
REASON = "retention cleanup (db.scripts.cleanup_db)"
DEFAULT_POLICY = RetentionPolicy()



@dataclass(frozen=True, slots=True)
class CleanupItem:
    kind: str  # token, soft-deleted, audit or blob
    table: str
    key: str  # the row's id, the blob's SHA-256, or the audit range "first-last"
    description: str
    count: int = 1  # rows it stands for (an audit range stands for many)


@dataclass(frozen=True, slots=True)
class CleanupPlan:
    now: dt.datetime
    policy: RetentionPolicy
    items: tuple[CleanupItem, ...]
    kept: tuple[str, ...] = ()  # what retention would remove but cannot go yet, and why
    leftovers: tuple[Leftover, ...] = ()  # of killed backups and restores (those in use are listed, never removed)

    def __bool__(self) -> bool:
        return bool(self.items) or any(leftover.removable for leftover in self.leftovers)

    def keys(self, kind: str, table: str | None = None) -> list[str]:
        return [item.key for item in self.items if item.kind == kind and table in (None, item.table)]

    def groups(self) -> list[tuple[str, str, int]]:
        """(kind, table, rows) for each kind and table, in the order they are removed."""
        counts: Counter[tuple[str, str]] = Counter()
        for item in self.items:
            counts[item.kind, item.table] += item.count
        order = {kind: index for index, kind in enumerate(KINDS)}
        return [(kind, table, rows) for (kind, table), rows in sorted(counts.items(), key=lambda g: order[g[0][0]])]

    @property
    def audit_range(self) -> tuple[int, int] | None:
        keys = self.keys(AUDIT)
        if not keys:
            return None
        first, _, last = keys[0].partition("-")
        return int(first), int(last)


@dataclass(frozen=True, slots=True)
class CleanupResult:
    removed: tuple[tuple[str, str, int], ...]  # (kind, table, rows actually removed)
    archive: str | None  # the audit archive's file name
    compacted: tuple[str, ...]  # tables whose space was given back (SQLite: the whole file)
    seconds: float
    leftovers: tuple[Leftover, ...] = ()  # removed (or, for an interrupted swap, finished)

    @property
    def total(self) -> int:
        return sum(rows for _, _, rows in self.removed)


@dataclass(frozen=True, slots=True)
class CleanupRun:
    plan: CleanupPlan
    result: CleanupResult | None  # None for a dry run


# --- plan ------------------------------------------------------------------------------------------------------


def plan(database: Database, *, policy: RetentionPolicy = DEFAULT_POLICY, now: dt.datetime | None = None,
         progress: Progress = SILENT, backup_dir: Path | None = None) -> CleanupPlan:
    """What ``apply`` would remove, as of ``now`` (default: the current time), with the leftovers of killed backups
    in ``backup_dir`` (default: ``db.backup.create.DEFAULT_DIRECTORY``) and of restores into ``database``. Changes
    nothing."""
    moment = _aware(now or utcnow())
    require_existing(database)
    items: list[CleanupItem] = []
    kept: list[str] = []
    with progress.track("planning", total=4) as advance, database.unit_of_work(actor=SYSTEM) as uow:
        if policy.audit_after is not None:
            items.extend(_audit_items(uow, moment - policy.audit_after))
        advance(1)
        if policy.tokens_after is not None:
            items.extend(_token_items(uow, moment - policy.tokens_after))
        advance(1)
        if policy.deleted_after is not None:
            items.extend(_soft_deleted_items(uow, moment - policy.deleted_after, kept))
        advance(1)
        purged_files = [item.key for item in items if item.table == StoredFile.__tablename__]
        if policy.blobs or purged_files:  # both remove blobs: refused up front for a root of another database
            uow.files.require_removable()
        if policy.blobs:
            items.extend(_blob_items(uow, purged_files))
        advance(1)
    return CleanupPlan(moment, policy, tuple(items), tuple(kept), _leftovers(database, backup_dir))


def _leftovers(database: Database, backup_dir: Path | None) -> tuple[Leftover, ...]:
    found = leftovers.backup_leftovers(backup_dir or DEFAULT_BACKUP_DIRECTORY)
    return tuple(found + leftovers.restore_leftovers(database))


def _audit_items(uow: UnitOfWork, before: dt.datetime) -> list[CleanupItem]:
    span = uow.audit.purgeable(before=before)
    if span is None:
        return []
    first, last = span
    text = f"entries {first}-{last}, older than {before:%Y-%m-%d %H:%M} UTC: archived, then removed"
    return [CleanupItem(AUDIT, "audit_entry", f"{first}-{last}", text, last - first + 1)]


def _token_items(uow: UnitOfWork, before: dt.datetime) -> Iterator[CleanupItem]:
    for token in uow.users.stale_tokens(before):
        state, when = _token_end(token.expires_at, token.used_at, token.revoked_at)
        yield CleanupItem(TOKEN, "user_token", str(token.id), f"{token.purpose} token, {state} {when:%Y-%m-%d}")


def _token_end(expires_at: dt.datetime, used_at: dt.datetime | None,
               revoked_at: dt.datetime | None) -> tuple[str, dt.datetime]:
    ends = [("used", used_at), ("revoked", revoked_at), ("expired", expires_at)]
    return min(((state, when) for state, when in ends if when is not None), key=lambda end: end[1])


def _soft_deleted_items(uow: UnitOfWork, before: dt.datetime, kept: list[str]) -> list[CleanupItem]:
    files, going = _file_items(uow, before)
    accounts = []
    for ident, deleted_at in uow.admin.soft_deleted_before(Account, before):
        remaining = uow.files.count({"account_id": ident}, include_deleted=True) - going[ident]
        if remaining:
            kept.append(f"account {ident}: soft-deleted {deleted_at:%Y-%m-%d} but still has {remaining} file(s)")
            continue
        accounts.append(CleanupItem(SOFT_DELETED, "account", str(ident), f"soft-deleted {deleted_at:%Y-%m-%d}"))
    users = [
        CleanupItem(SOFT_DELETED, "user", str(ident), f"soft-deleted {deleted_at:%Y-%m-%d}")
        for ident, deleted_at in uow.admin.soft_deleted_before(User, before)
    ]
    return [*files, *accounts, *users]


def _file_items(uow: UnitOfWork, before: dt.datetime) -> tuple[list[CleanupItem], Counter[uuid.UUID]]:
    """The files that go, and how many of them each account loses."""
    ids = [ident for ident, _ in uow.admin.soft_deleted_before(StoredFile, before)]
    items, per_account = [], Counter[uuid.UUID]()
    for chunk in batched(ids, 1_000):
        for stored in uow.files.get_many(chunk, include_deleted=True):
            deleted = f"{stored.deleted_at:%Y-%m-%d}" if stored.deleted_at else "?"
            text = f"{stored.filename} ({stored.size} bytes), soft-deleted {deleted}"
            items.append(CleanupItem(SOFT_DELETED, "file", str(stored.id), text))
            per_account[stored.account_id] += 1
    return items, per_account


def _blob_items(uow: UnitOfWork, purged_file_ids: list[str]) -> list[CleanupItem]:
    items = [
        CleanupItem(BLOB, "file_blob", key, "no file names it" if size is not None else "bytes without a blob row")
        for key, size in uow.files.orphan_blobs()
    ]
    named_by_purged: Counter[str] = Counter()
    sizes: dict[str, int] = {}
    for chunk in batched(purged_file_ids, 1_000):
        for stored in uow.files.get_many(chunk, include_deleted=True):
            named_by_purged[stored.sha256] += 1
            sizes[stored.sha256] = stored.size
    for sha256, count in sorted(named_by_purged.items()):
        if uow.files.count({"sha256": sha256}, include_deleted=True) == count:
            items.append(CleanupItem(BLOB, "file_blob", sha256, f"{sizes[sha256]} bytes, freed by the purged files"))
    return items


# --- apply -----------------------------------------------------------------------------------------------------


def apply(database: Database, plan: CleanupPlan, *, archive_dir: Path | None = None, compact: bool = True,
          progress: Progress = SILENT) -> CleanupResult:
    """Remove exactly the plan's items (see the module docstring); then give the space back unless not ``compact``."""
    started = time.perf_counter()
    if not plan:
        return CleanupResult((), None, (), time.perf_counter() - started)
    removed_leftovers = tuple(leftovers.remove(database, plan.leftovers))
    if not plan.items:
        return CleanupResult((), None, (), time.perf_counter() - started, removed_leftovers)
    removed: list[tuple[str, str, int]] = []
    archive: str | None = None
    blob_keys = plan.keys(BLOB)
    with progress.track("removing", total=len(plan.items)) as advance:
        with database.unit_of_work(actor=SYSTEM) as uow:
            audit_range = plan.audit_range
            if audit_range is not None and plan.policy.audit_after is not None:
                checkpoint = uow.audit.purge(before=plan.now - plan.policy.audit_after, reason=REASON,
                                             archive_dir=archive_dir, up_to_seq=audit_range[1])
                archive = checkpoint.archive if checkpoint else None
                removed.append((AUDIT, "audit_entry", checkpoint.entries if checkpoint else 0))
                advance(1)
            _remove_rows(uow, plan, removed, advance)
            uow.files.release_blobs(blob_keys)
        # released after the commit, each in a transaction of its own: what is still there was kept
        storage = storage_binding.local_storage(database)
        if blob_keys:
            removed.append((BLOB, "file_blob", sum(not storage.exists(key) for key in blob_keys)))
        advance(len(blob_keys))
    tables = tuple(table for kind, table, rows in removed if rows)
    if compact and tables:
        database.dialect.reclaim_space(database.engine, tables)
    return CleanupResult(tuple(removed), archive, tables if compact else (), time.perf_counter() - started,
                         removed_leftovers)


def _remove_rows(uow: UnitOfWork, plan: CleanupPlan, removed: list[tuple[str, str, int]],
                 advance: Callable[[int], None]) -> None:
    """Tokens, then files (whose removal frees accounts), then accounts and users: by the ids the plan lists."""
    tokens = plan.keys(TOKEN)
    if tokens:
        removed.append((TOKEN, "user_token", uow.users.delete_tokens(_uuids(tokens))))
        advance(len(tokens))
    if plan.policy.deleted_after is None:
        return
    cutoff = plan.now - plan.policy.deleted_after  # a row deleted again since the plan is not old enough
    files = plan.keys(SOFT_DELETED, "file")
    if files:
        count = sum(uow.files.purge(ids=chunk, deleted_before=cutoff).files for chunk in batched(files, 1_000))
        removed.append((SOFT_DELETED, "file", count))
        advance(len(files))
    for model in (Account, User):
        ids = plan.keys(SOFT_DELETED, model.__tablename__)
        if ids:
            count = uow.admin.purge_deleted_rows(model, _uuids(ids), deleted_before=cutoff, reason=REASON)
            removed.append((SOFT_DELETED, model.__tablename__, count))
            advance(len(ids))


def cleanup(database: Database, *, apply: bool = False, policy: RetentionPolicy = DEFAULT_POLICY,
            now: dt.datetime | None = None, archive_dir: Path | None = None,
            progress: Progress = SILENT, backup_dir: Path | None = None) -> CleanupRun:
    """``plan``, and with ``apply=True`` also ``apply`` it: the work of ``python -m db cleanup``."""
    listed = plan(database, policy=policy, now=now, progress=progress, backup_dir=backup_dir)
    if not apply:
        return CleanupRun(listed, None)
    return CleanupRun(listed, _apply_plan(database, listed, archive_dir=archive_dir, progress=progress))


_apply_plan = apply  # ``cleanup``'s ``apply`` flag hides the function there


def _uuids(keys: Iterable[str]) -> list[uuid.UUID]:
    return [uuid.UUID(key) for key in keys]


def _aware(moment: dt.datetime) -> dt.datetime:
    if not isinstance(moment, dt.datetime) or moment.utcoffset() is None:
        raise ValidationError("now must be a timezone-aware datetime", field="now")
    return moment.astimezone(dt.UTC)


if __name__ == "__main__":
    from db.cli import run_script

    run_script("cleanup")
