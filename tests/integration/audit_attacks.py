"""The attacker of the audit tests: raw SQL with every audit trigger dropped and CHECK constraints off."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, insert, select, text, update
from sqlalchemy.orm import Session

from db import Database
from db import audit as audit_log
from db.audit import ChainReport
from db.dialects import dialect_named
from db.models.log_audit import GENESIS_HASH, AuditChainHead, AuditCheckpoint, AuditEntry
from db.repositories.audit_repository import AuditRepository
from db.scripts.check_db import check

ENTRY: Any = AuditEntry.__table__
HEAD: Any = AuditChainHead.__table__
CHECKPOINT: Any = AuditCheckpoint.__table__
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def seed(database: Database, count: int, action: str = "ping") -> None:
    with database.unit_of_work(actor="ada") as uow:
        for i in range(count):
            audit_log.record_event(uow.session, action, data={"i": i})


def verify(database: Database, **options: Any) -> ChainReport:
    options.setdefault("archive_dir", None)
    with database.session() as session:
        return AuditRepository(session).verify_chain(**options)


def head_row(database: Database) -> tuple[int, str]:
    with database.engine.connect() as connection:
        row = connection.execute(select(HEAD.c.seq, HEAD.c.hash)).one()
    return int(row.seq), str(row.hash)


def entry_count(database: Database) -> int:
    with database.engine.connect() as connection:
        return len(connection.execute(select(ENTRY.c.seq)).all())


class Attacker:
    """Raw SQL on a connection of its own, with the audit triggers dropped and CHECK constraints off."""

    def __init__(self, database: Database, connection: Connection) -> None:
        self.database = database
        self.connection = connection

    def sql(self, statement: str, **params: Any) -> None:
        self.connection.execute(text(statement), params)

    def uuid(self, value: uuid.UUID) -> str:
        """A UUID in the form the engine stores it, for raw SQL."""
        return value.hex if self.database.backend == "sqlite" else str(value)

    def row(self, seq: int) -> dict[str, Any]:
        return dict(self.connection.execute(select(ENTRY).where(ENTRY.c.seq == seq)).one()._mapping)

    def forge(self, seq: int, prev: str, *, action: str = "forged", key: audit_log.ChainKey | None = None,
              **fields: Any) -> str:
        """Insert an entry at ``seq`` chained after ``prev`` as the layer would chain it; return its hash."""
        row: dict[str, Any] = {
            "seq": seq, "id": uuid.uuid4(), "kind": "event", "action": action, "entity_type": None,
            "entity_id": None, "actor": "mallory", "ip": None, "user_agent": None, "request_id": None,
            "changes": None, "data": None, "created_at": NOW, "prev_hash": prev, "key_id": key.id if key else None,
        } | fields
        row["hash"] = audit_log.entry_hash(prev, audit_log.content_of(row), key)
        self.connection.execute(insert(ENTRY).values(**row))
        return str(row["hash"])

    def move_head(self, seq: int, hash_: str, **fields: Any) -> None:
        self.connection.execute(update(HEAD).values(seq=seq, hash=hash_, **fields))

    def rechain(self, *, start: int, downgrade: bool = False, move_head: bool = True) -> None:
        """Recompute with plain SHA-256 (no key) every entry from ``start``: what someone without the key can do
        after editing; ``downgrade`` also marks them unkeyed, and the head too."""
        rows = [dict(row._mapping) for row in self.connection.execute(select(ENTRY).order_by(ENTRY.c.seq))]
        prev = next((row["hash"] for row in reversed(rows) if row["seq"] < start), None)
        if prev is None:
            checkpoint = self.connection.execute(select(CHECKPOINT.c.hash).order_by(CHECKPOINT.c.up_to_seq.desc()))
            prev = checkpoint.scalar() or GENESIS_HASH
        for row in (row for row in rows if row["seq"] >= start):
            key_id = None if downgrade else row["key_id"]
            row_hash = audit_log.entry_hash(prev, audit_log.content_of(row))
            self.connection.execute(update(ENTRY).where(ENTRY.c.seq == row["seq"]).values(
                prev_hash=prev, hash=row_hash, key_id=key_id))
            prev = row_hash
        if move_head:
            extra = {"key_id": None, "mac": None} if downgrade else {}
            self.move_head(rows[-1]["seq"], prev, **extra)

    def report(self, **options: Any) -> ChainReport:
        """``verify_chain`` as the layer runs it, inside the attacker's transaction (before any rollback)."""
        options.setdefault("archive_dir", None)
        with Session(bind=self.connection) as session:
            session.info["settings"] = self.database.settings
            return AuditRepository(session).verify_chain(**options)

    def check_fails_on_the_chain(self) -> bool:
        """``python -m db check`` (without blobs) on what the attacker sees, fails its audit chain check."""
        return check(self.database, blobs=False).result("audit chain").ok is False


@contextmanager
def attack(database: Database, *, commit: bool = True) -> Iterator[Attacker]:
    """Everything lifted as someone with full SQL access would lift it; the triggers come back afterwards.

    With ``commit=False`` the attack runs inside ``database.isolated()`` and is rolled back, so that one chain serves
    several attacks; ``attacker.database`` then sees the attack (``check(attacker.database)`` does).
    """
    backend, engine = database.backend, dialect_named(database.backend)
    with database.engine.begin() as connection:
        for ddl in [*engine.drop_append_only_ddl(), *engine.drop_seq_guard_ddl(), *engine.drop_head_guard_ddl()]:
            connection.exec_driver_sql(ddl)
    try:
        if commit:
            with database.engine.connect() as connection, connection.begin(), _unchecked(connection, backend):
                yield Attacker(database, connection)
        else:
            with database.isolated() as view, view.session() as session, _unchecked(session.connection(), backend):
                yield Attacker(view, session.connection())
    finally:
        with database.engine.begin() as connection:
            for ddl in [*engine.append_only_ddl(), *engine.seq_guard_ddl(), *engine.head_guard_ddl()]:
                connection.exec_driver_sql(ddl)


@contextmanager
def _unchecked(connection: Connection, backend: str) -> Iterator[None]:
    _checks(connection, backend, enforced=False)
    try:
        yield
    finally:
        _checks(connection, backend, enforced=True)


def _checks(connection: Connection, backend: str, *, enforced: bool) -> None:
    if backend == "sqlite":
        connection.exec_driver_sql(f"PRAGMA ignore_check_constraints = {'OFF' if enforced else 'ON'}")
    elif backend == "postgresql":
        if not enforced:
            for table, name in (("audit_entry", "seq_positive"), ("audit_chain_head", "single_row"),
                                ("audit_chain_head", "seq_not_negative"), ("audit_checkpoint", "up_to_seq_positive")):
                connection.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS ck_{table}_{name}")
    else:
        connection.exec_driver_sql(f"SET SESSION check_constraint_checks = {int(enforced)}")


def reason_of(report: ChainReport) -> str:
    assert not report.ok, "the chain verified"
    return report.reason or ""
