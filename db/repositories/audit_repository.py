"""``uow.audit``: read, verify and (by retention only) purge the audit log.

Entries are written by ``db.audit`` (automatically for audited models, and for activity events), never through
this repository, which offers reads and the retention purge only (no create, update or delete), and the database
refuses UPDATE and DELETE too.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, func, select

from db import audit, audit_verify, dialects, settings
from db.audit import ChainReport, ExportedHead
from db.errors import Conflict, NotFound, ValidationError
from db.models.base import new_id, utcnow
from db.models.log_audit import AuditChainHead, AuditCheckpoint, AuditEntry
from db.repositories.base_repository import Page, ReadRepository, translated
from db.repositories.bulk import BATCH_ROWS

DEFAULT_ARCHIVE_DIR = settings.DEFAULT_AUDIT_ARCHIVE_DIR
_CHUNK = BATCH_ROWS


class AuditRepository(ReadRepository[AuditEntry]):
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
    def verify_chain(
        self, *, archive_dir: Path | None = DEFAULT_ARCHIVE_DIR, expected_head: ExportedHead | None = None
    ) -> ChainReport:
        """Verify the whole audit log and report the first problem (``db.audit_verify`` lists what is checked):
        every row of the entries, checkpoints and chain head accounted for, every hash (HMAC with the audit key
        of ``settings.audit_key``) recomputed, each purge archive found in ``archive_dir`` (None: archives are not
        read) checked against the chain, and ``expected_head`` (exported earlier) still in the chain unchanged.

        Damaged rows are reported, never raised. Where the session has not begun yet, the log is read in one
        snapshot (REPEATABLE READ on the servers). For a busy log on SQLite, verify in a plain
        ``database.session()``: a unit of work there would hold the write lock for the whole check.
        """
        self._begin_snapshot()
        key = audit.chain_key(self.settings.audit_key)
        return audit_verify.verify(self.session, key=key, archive_dir=archive_dir, expected_head=expected_head)

    def _begin_snapshot(self) -> None:
        bind = self.session.get_bind()
        level = dialects.dialect_of(bind).snapshot_isolation
        # Only on a session of its own that has not begun: an isolation level cannot change mid-transaction.
        if level and isinstance(bind, Engine) and not self.session.in_transaction():
            self.session.connection(execution_options={"isolation_level": level})

    @translated
    def head(self) -> ExportedHead:
        """The chain head as stored, to export (``python -m db audit head``): seq, hash, the time of the entry at
        the head and the key id; NotFound without a head row. It is not verified here: ``verify_chain`` does that."""
        head = self.session.get(AuditChainHead, audit.HEAD_ID, populate_existing=True)
        if head is None:
            raise NotFound("audit_chain_head", audit.HEAD_ID)
        created = self.session.scalar(select(AuditEntry.created_at).where(AuditEntry.seq == head.seq))
        return ExportedHead(head.seq, head.hash, None if created is None else created.isoformat(), head.key_id)

    def _entries_from(self, seq: int) -> Iterator[Any]:
        table = AuditEntry.__table__
        while True:
            statement = select(table).where(table.c.seq >= seq).order_by(table.c.seq).limit(_CHUNK)
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
        if not isinstance(before, dt.datetime) or before.tzinfo is None:
            raise ValidationError("before must be a timezone-aware datetime", field="before")
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
        report = self.verify_chain(archive_dir=None)
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
        earlier = [_columns(checkpoint) for checkpoint in
                   self.session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.up_to_seq))]
        connection = self.session.connection()
        dialect = dialects.dialect_of(connection)
        dialect.allow_audit_purge(connection)
        try:
            removed = connection.execute(delete(table).where(table.c.seq >= first, table.c.seq <= last)).rowcount
        finally:
            dialect.end_audit_purge(connection)
        checkpoint = AuditCheckpoint(
            id=new_id(), up_to_seq=last, hash=last_hash, entries=removed, archive=archive.name,
            archive_sha256=_sha256(archive), created_at=utcnow(), actor=audit.actor_of(self.session), reason=reason,
        )
        self.session.add(checkpoint)
        self.session.flush()
        # The entry records every column of the checkpoint and a digest of the ones before it: verification
        # accepts a checkpoint only as the chain recorded it.
        audit.record_event(
            self.session, "audit.purged", entity_type="audit_checkpoint", entity_id=checkpoint.id,
            data={
                "first_seq": first, "last_seq": last, "hash": last_hash, "entries": removed,
                "archive": archive.name, "archive_sha256": checkpoint.archive_sha256, "reason": reason,
                "created_at": checkpoint.created_at, "actor": checkpoint.actor,
                "checkpoints_before": len(earlier), "checkpoints_digest": audit_verify.checkpoints_digest(earlier),
            },
        )
        return checkpoint


def _columns(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    return {column.key: getattr(checkpoint, column.key) for column in AuditCheckpoint.__table__.columns}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
