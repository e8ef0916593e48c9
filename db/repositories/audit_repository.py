"""``uow.audit``: read, verify and (by retention only) purge the audit log.

Entries are written by ``db.audit`` (automatically for audited models, and for activity events), never through
this repository: its generic write methods refuse, and the database refuses UPDATE and DELETE too.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import delete, func, select

from db import audit, dialects
from db.audit import ChainReport
from db.errors import Conflict, ValidationError
from db.models.base import new_id, utcnow
from db.models.log_audit import GENESIS_HASH, AuditChainHead, AuditCheckpoint, AuditEntry
from db.repositories.base_repository import BaseRepository, Page, translated

DEFAULT_ARCHIVE_DIR = Path(__file__).resolve().parents[1] / "data" / "audit_archive"
_CHUNK = 5_000


class AuditRepository(BaseRepository[AuditEntry]):
    model = AuditEntry
    filterable = frozenset(
        {"seq", "kind", "action", "entity_type", "entity_id", "actor", "request_id", "ip", "created_at"}
    )
    sortable = frozenset({"seq", "created_at"})

    # --- queries (keyset-paged, newest first unless asked otherwise) -------------------------------------------

    def for_entity(self, entity_type: str, entity_id: Any, **paging: Any) -> Page[AuditEntry]:
        return self._history({"entity_type": entity_type, "entity_id": str(entity_id)}, **paging)

    def by_actor(self, actor: Any, **paging: Any) -> Page[AuditEntry]:
        return self._history({"actor": str(getattr(actor, "id", actor))}, **paging)

    def by_action(self, action: str, **paging: Any) -> Page[AuditEntry]:
        return self._history({"action": action}, **paging)

    def between(self, start: dt.datetime, end: dt.datetime, **paging: Any) -> Page[AuditEntry]:
        """Entries with ``start <= created_at < end``."""
        return self._history({"created_at__gte": start, "created_at__lt": end}, **paging)

    def events(self, **paging: Any) -> Page[AuditEntry]:
        """Activity events (logins, tokens, privileged operations), beside the change log."""
        return self._history({"kind": "event"}, **paging)

    def _history(
        self, filters: Mapping[str, Any], *, size: int = 50, after: str | None = None, oldest_first: bool = False
    ) -> Page[AuditEntry]:
        order = ["seq"] if oldest_first else ["-seq"]
        return self.page(filters=filters, order_by=order, size=size, after=after)

    @staticmethod
    def details(entry: AuditEntry) -> dict[str, Any]:
        """An entry's ``changes`` and ``data`` as Python data."""
        return {
            "changes": json.loads(entry.changes) if entry.changes else None,
            "data": json.loads(entry.data) if entry.data else None,
        }

    # --- verification ------------------------------------------------------------------------------------------

    @translated
    def verify_chain(self) -> ChainReport:
        """Recompute every hash from the last checkpoint up to the chain head; report where the chain breaks.

        The head is read first and only entries up to it are checked, so appends committed meanwhile (under
        READ COMMITTED) are not mistaken for tampering. For a consistent view of a busy log on SQLite, verify in
        a plain ``database.session()``: a unit of work there would hold the write lock for the whole check.
        """
        head = self.session.get(AuditChainHead, audit.HEAD_ID, populate_existing=True)
        if head is None:
            return ChainReport(False, 0, None, None, "the chain head row is missing")
        checkpoint = self._last_checkpoint()
        prev = checkpoint.hash if checkpoint else GENESIS_HASH
        expected = (checkpoint.up_to_seq if checkpoint else 0) + 1
        checked = 0
        for row in self._entries_from(expected, up_to=head.seq):
            problem = _problem(row, expected, prev)
            if problem:
                return ChainReport(False, checked, row.seq, str(row.id), problem)
            prev, expected, checked = row.hash, expected + 1, checked + 1
        if (head.seq, head.hash) != (expected - 1, prev):
            reason = f"the chain head says seq {head.seq} but the log ends at seq {expected - 1}"
            return ChainReport(False, checked, expected, None, reason)
        if checkpoint is not None and not self._corroborated(checkpoint):
            reason = "the last checkpoint is not confirmed by an audit.purged entry in the chain"
            return ChainReport(False, checked, checkpoint.up_to_seq, str(checkpoint.id), reason)
        return ChainReport(True, checked)

    def _corroborated(self, checkpoint: AuditCheckpoint) -> bool:
        """A checkpoint counts only if the (verified) chain recorded the purge that made it, with its hash.

        Without this, inserting a forged checkpoint at the head would make any earlier edit unverifiable.
        """
        table = AuditEntry.__table__
        statement = select(table.c.data).where(
            table.c.action == "audit.purged",
            table.c.entity_type == "audit_checkpoint",
            table.c.entity_id == str(checkpoint.id),
        )
        for text in self.session.scalars(statement):
            data = json.loads(text or "{}")
            if data.get("last_seq") == checkpoint.up_to_seq and data.get("hash") == checkpoint.hash:
                return True
        return False

    def _entries_from(self, seq: int, *, up_to: int | None = None) -> Iterator[Any]:
        table = AuditEntry.__table__
        bound = [] if up_to is None else [table.c.seq <= up_to]
        while True:
            statement = select(table).where(table.c.seq >= seq, *bound).order_by(table.c.seq).limit(_CHUNK)
            rows = self.session.execute(statement).all()
            yield from rows
            if len(rows) < _CHUNK:
                return
            seq = rows[-1].seq + 1

    def _last_checkpoint(self) -> AuditCheckpoint | None:
        statement = select(AuditCheckpoint).order_by(AuditCheckpoint.up_to_seq.desc()).limit(1)
        return self.session.scalars(statement).first()

    # --- retention ---------------------------------------------------------------------------------------------

    @translated
    def purgeable(self, *, before: dt.datetime) -> tuple[int, int] | None:
        """The first and last seq that ``purge(before=before)`` would remove now, or None when nothing would go."""
        if before.tzinfo is None:
            raise ValidationError("before must be timezone-aware", field="before")
        table = AuditEntry.__table__
        last = self.session.scalar(select(func.max(table.c.seq)).where(table.c.created_at < before))
        start = self._last_checkpoint()
        first = (start.up_to_seq if start else 0) + 1
        return None if last is None or last < first else (first, last)

    @translated
    def purge(
        self, *, before: dt.datetime, reason: str, archive_dir: Path | None = None, up_to_seq: int | None = None
    ) -> AuditCheckpoint | None:
        """Archive, then remove, the oldest entries: the chain's prefix up to the last entry older than ``before``
        (and no further than ``up_to_seq``, when given: the range a cleanup plan listed).

        The archive (gzipped JSON lines, fsynced) is written before anything is deleted; a checkpoint keeps the
        last removed entry's seq and hash, so ``verify_chain`` still holds afterwards. Returns the checkpoint, or
        None when nothing is old enough.
        """
        if not reason or not reason.strip():
            raise ValidationError("a purge needs a reason", field="reason", rule="required")
        span = self.purgeable(before=before)
        if span is None:
            return None
        first, last = span[0], span[1] if up_to_seq is None else min(span[1], up_to_seq)
        if last < first:
            return None
        report = self.verify_chain()
        if not report.ok:  # purging would destroy the evidence
            raise Conflict(f"audit chain broken at seq {report.first_bad_seq} ({report.reason}): not purging")
        archive = self._archive(first, last, archive_dir or DEFAULT_ARCHIVE_DIR)
        return self._remove(first, last, archive, reason.strip())

    def _archive(self, first: int, last: int, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"audit-{first:012d}-{last:012d}-{utcnow():%Y%m%dT%H%M%S%f}.jsonl.gz"
        partial = path.with_suffix(".partial")
        # Owner-only: the archived entries may name people and record what they did.
        raw = os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
        with raw, gzip.open(raw, "wt", encoding="utf-8") as archive:
            for row in self._entries_from(first):
                if row.seq > last:
                    break
                archive.write(audit.canonical(dict(row._mapping)) + "\n")
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        partial.rename(path)
        return path

    def _remove(self, first: int, last: int, archive: Path, reason: str) -> AuditCheckpoint:
        table: Any = AuditEntry.__table__
        last_hash = self.session.scalar(select(table.c.hash).where(table.c.seq == last))
        connection = self.session.connection()
        dialects.allow_audit_purge(connection)
        try:
            removed = connection.execute(delete(table).where(table.c.seq >= first, table.c.seq <= last)).rowcount
        finally:
            dialects.end_audit_purge(connection)
        checkpoint = AuditCheckpoint(
            id=new_id(), up_to_seq=last, hash=last_hash, entries=removed, archive=archive.name,
            archive_sha256=_sha256(archive), created_at=utcnow(), actor=audit.actor_of(self.session), reason=reason,
        )
        self.session.add(checkpoint)
        self.session.flush()
        audit.record_event(
            self.session, "audit.purged", entity_type="audit_checkpoint", entity_id=checkpoint.id,
            data={
                "first_seq": first, "last_seq": last, "hash": last_hash, "entries": removed,
                "archive": archive.name, "archive_sha256": checkpoint.archive_sha256, "reason": reason,
            },
        )
        return checkpoint

    # --- the log is append-only --------------------------------------------------------------------------------

    def create(self, **fields: Any) -> NoReturn:
        _append_only()

    def create_many(self, *args: Any, **kwargs: Any) -> NoReturn:
        _append_only()

    def update(self, *args: Any, **kwargs: Any) -> NoReturn:
        _append_only()

    def update_many(self, *args: Any, **kwargs: Any) -> NoReturn:
        _append_only()

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        _append_only()

    def delete_many(self, *args: Any, **kwargs: Any) -> NoReturn:
        _append_only()

    def upsert(self, *args: Any, **kwargs: Any) -> NoReturn:
        _append_only()

    def get_or_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        _append_only()


def _append_only() -> NoReturn:
    message = "the audit log is append-only: entries are recorded by the layer, never edited"
    raise Conflict(message, entity="audit_entry")


def _problem(row: Any, expected_seq: int, prev: str) -> str | None:
    if row.seq != expected_seq:
        return f"expected seq {expected_seq} here, found {row.seq}: entries are missing or reordered"
    if row.prev_hash != prev:
        return "its prev_hash does not match the entry before it"
    if audit.entry_hash(prev, audit.content_of(row._mapping)) != row.hash:
        return "its content does not match its hash"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
