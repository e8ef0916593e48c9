"""The audit log: changes to audited models and activity events, in one tamper-evident chain.

Each entry stores ``hash = sha256(prev_hash + canonical content)`` (``HMAC-SHA256`` with the audit key when one is
configured: ``key_id`` then names the key); ``prev_hash`` is the hash of the entry before it (by ``seq``), so
editing, deleting or reordering any entry breaks every hash after it. The chain head (the last ``seq`` and
``hash``, and on a keyed chain a MAC over both) lives in ``audit_chain_head``; appends lock it, so concurrent
writers never fork the chain. The database itself refuses UPDATE and DELETE on ``audit_entry``, and any ``seq`` that
is not above the chain head (CHECK constraints and triggers, see ``db.dialects``); the only removal path is a
retention purge that archives the oldest entries and records an ``AuditCheckpoint``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import LONG_TEXT, TABLE_OPTIONS, Base
from db.models.base import UUIDPrimaryKey

GENESIS_HASH = "0" * 64
KEY_ID_LENGTH = 16
# LONG_TEXT: a bulk entry lists up to 5,000 ids (about 200 KB), more than MariaDB's TEXT holds.


class AuditEntry(UUIDPrimaryKey, Base):
    __tablename__ = "audit_entry"
    __table_args__ = (
        Index("ix_audit_entry_entity", "entity_type", "entity_id", "seq"),
        Index("ix_audit_entry_actor_seq", "actor", "seq"),
        Index("ix_audit_entry_action_seq", "action", "seq"),
        Index("ix_audit_entry_created_at", "created_at"),
        # Login activity reports: one action over a time range, distinct users read from the index alone.
        Index("ix_audit_entry_action_created_at", "action", "created_at", "entity_id"),
        CheckConstraint("seq > 0", name="seq_positive"),
        TABLE_OPTIONS,
    )

    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "change" or "event"
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str | None] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    request_id: Mapped[str | None] = mapped_column(String(128))
    changes: Mapped[str | None] = mapped_column(LONG_TEXT)  # canonical JSON: {field: [old, new]} or {"ids": [...]}
    data: Mapped[str | None] = mapped_column(LONG_TEXT)  # canonical JSON of an event's details
    created_at: Mapped[dt.datetime]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(KEY_ID_LENGTH))  # None: hash is plain SHA-256


class AuditChainHead(Base):
    """One row (id 1): the last appended entry's ``seq`` and ``hash``; on a keyed chain, the key's id and
    ``mac = HMAC(key, seq and hash)``, which only the key's holder can write (a truncated chain cannot re-head
    itself)."""

    __tablename__ = "audit_chain_head"
    __table_args__ = (
        CheckConstraint("id = 1", name="single_row"),
        CheckConstraint("seq >= 0", name="seq_not_negative"),
        TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(KEY_ID_LENGTH))
    mac: Mapped[str | None] = mapped_column(String(64))


class AuditCheckpoint(UUIDPrimaryKey, Base):
    """A retention purge: entries up to ``up_to_seq`` were archived and removed; ``hash`` was the last one's."""

    __tablename__ = "audit_checkpoint"
    __table_args__ = (
        CheckConstraint("up_to_seq > 0", name="up_to_seq_positive"),
        CheckConstraint("entries > 0", name="entries_positive"),
        TABLE_OPTIONS,
    )

    up_to_seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    hash: Mapped[str] = mapped_column(String(64))
    entries: Mapped[int] = mapped_column(BigInteger)
    archive: Mapped[str] = mapped_column(String(500))
    archive_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    actor: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(500))
