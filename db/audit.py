"""The audit trail's mechanics: recording changes and events, the hash chain, and its verification.

The models live in ``db/models/log_audit.py``, the queries in ``db/repositories/audit_repository.py``.
Everything here writes in the caller's transaction, so a change that rolls back leaves no entry.

- Changes to models with the ``db.models.base.Audited`` mixin are recorded on flush (a session event), with
  per-field old and new values; secret columns are recorded as changed but redacted.
- ``record_event(session, "login.failure", ...)`` appends an activity event.
- ``record_bulk(...)`` is what the repositories' bulk paths call: one entry per batch, listing the ids.
- ``append_entries(session, entries)`` appends entries given in full (id, time, actor) in bulk: imports and
  generated sample data.

Appends lock the chain head row (``SELECT … FOR UPDATE``), so concurrent writers on PostgreSQL and MariaDB queue
up behind each other instead of forking the chain; SQLite serializes writers anyway. The lock is held until the
writer's transaction ends: audited writes are serialized, which is the price of a single linear chain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from json.encoder import encode_basestring
from typing import Any

from sqlalchemy import Connection, event, insert, inspect, select, update
from sqlalchemy.orm import Session, UOWTransaction

from db.base import secret_columns
from db.errors import ValidationError
from db.models.base import Audited, new_id, utcnow
from db.models.log_audit import GENESIS_HASH, AuditChainHead, AuditEntry
from db.repositories.bulk import BulkInserter, batched

REDACTED = "[redacted]"
HEAD_ID = 1
_NOT_AUDITED_ON_UPDATE = frozenset({"updated_at", "version", "created_at"})
_CONTENT_FIELDS = (
    "seq", "id", "kind", "action", "entity_type", "entity_id", "actor", "ip", "user_agent", "request_id",
    "changes", "data", "created_at",
)


# --- values and hashes -------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """A value as plain JSON data, the same way on every engine (datetimes in UTC, ids and decimals as text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    return str(value)


def canonical(value: Any) -> str:
    """Canonical JSON text: sorted keys, no spaces, UTF-8. Stored as text, so it reads back byte for byte."""
    return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    return hashlib.sha256(f"{prev_hash}\n{canonical(content)}".encode()).hexdigest()


def content_of(row: Any) -> dict[str, Any]:
    """What an entry's hash covers: every column but the hashes themselves."""
    getter = row.get if isinstance(row, Mapping) else lambda key: getattr(row, key)
    return {key: getter(key) for key in _CONTENT_FIELDS}


# --- appending ---------------------------------------------------------------------------------------------


def actor_of(session: Session) -> str | None:
    """The unit of work's actor as stored in the log: a user's id, or a label such as ``"system"``."""
    actor = session.info.get("actor")
    if actor is None:
        return None
    return str(getattr(actor, "id", actor))[:64]


@dataclass(frozen=True, slots=True)
class Record:
    kind: str
    action: str
    entity_type: str | None = None
    entity_id: str | None = None
    changes: Any = None
    data: Any = None


def _locked_head(connection: Connection) -> tuple[int, str]:
    """The chain head's seq and hash, its row locked until the transaction ends (created at genesis if missing)."""
    head: Any = AuditChainHead.__table__
    locked = select(head.c.seq, head.c.hash).where(head.c.id == HEAD_ID).with_for_update()
    current = connection.execute(locked).first()
    if current is None:
        connection.execute(insert(head).values(id=HEAD_ID, seq=0, hash=GENESIS_HASH))
        current = connection.execute(locked).one()
    return int(current.seq), str(current.hash)


def append(session: Session, records: Sequence[Record]) -> None:
    """Add ``records`` to the end of the chain, in the session's transaction."""
    if not records:
        return
    connection = session.connection()
    head: Any = AuditChainHead.__table__
    seq, prev = _locked_head(connection)
    context, actor, now = session.info.get("context") or {}, actor_of(session), utcnow()
    rows = []
    for record in records:
        seq += 1
        row: dict[str, Any] = {
            "seq": seq, "id": new_id(), "kind": record.kind, "action": record.action[:64],
            "entity_type": record.entity_type, "entity_id": record.entity_id, "actor": actor,
            "ip": _text(context.get("ip"), 45), "user_agent": _text(context.get("user_agent"), 512),
            "request_id": _text(context.get("request_id"), 128),
            "changes": None if record.changes is None else canonical(record.changes),
            "data": None if record.data is None else canonical(record.data),
            "created_at": now,
        }
        row["prev_hash"], row["hash"] = prev, entry_hash(prev, row)
        prev = row["hash"]
        rows.append(row)
    entries: Any = AuditEntry.__table__
    connection.execute(insert(entries), rows)
    connection.execute(update(head).where(head.c.id == HEAD_ID).values(seq=seq, hash=prev))


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs several times more, per entry
class Entry:
    """An entry given in full (its own id, time and actor), for ``append_entries``: imports, sample data.

    ``changes`` and ``data`` are Python data, stored as canonical JSON; ``created_at`` must be timezone-aware.
    """

    id: uuid.UUID
    created_at: dt.datetime
    kind: str
    action: str
    entity_type: str | None = None
    entity_id: str | None = None
    actor: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    changes: Any = None
    data: Any = None


def append_entries(session: Session, entries: Iterable[Entry], *, batch_size: int = 5_000) -> int:
    """Add ``entries`` to the end of the chain in the session's transaction, in batches; returns how many.

    The chain is extended exactly as ``append`` would extend it one entry at a time (same ``seq``, ``prev_hash``
    and ``hash``), so ``verify_chain`` holds afterwards; the head row is locked once and updated at the end.
    Rows go to the driver through the bulk insert path (``db.repositories.bulk``), a batch at a time.
    """
    connection = session.connection()
    head: Any = AuditChainHead.__table__
    seq, prev = _locked_head(connection)
    entries_table: Any = AuditEntry.__table__
    inserter = BulkInserter(entries_table, connection, "audit_entry")
    count = 0
    for batch in batched(entries, batch_size):
        rows = []
        for entry in batch:
            seq += 1
            row = _chained_row(seq, entry, prev)
            prev = row["hash"]
            rows.append(row)
        count += inserter.insert(rows)
    if count:
        connection.execute(update(head).where(head.c.id == HEAD_ID).values(seq=seq, hash=prev))
    return count


def _chained_row(seq: int, entry: Entry, prev_hash: str) -> dict[str, Any]:
    """The row ``append`` would write for ``entry`` after ``prev_hash``, with its hash."""
    created = entry.created_at
    if created.tzinfo is None or created.utcoffset() is None:
        raise ValidationError("audit_entry.created_at must be timezone-aware", field="created_at")
    created = created.astimezone(dt.UTC)
    row: dict[str, Any] = {
        "seq": seq, "id": entry.id, "kind": str(entry.kind), "action": str(entry.action)[:64],
        "entity_type": _ident(entry.entity_type), "entity_id": _ident(entry.entity_id), "actor": _ident(entry.actor),
        "ip": _plain_text(entry.ip, 45), "user_agent": _plain_text(entry.user_agent, 512),
        "request_id": _plain_text(entry.request_id, 128),
        "changes": _canonical_flat(entry.changes), "data": _canonical_flat(entry.data),
        "created_at": created, "prev_hash": prev_hash,
    }
    content = _content_json(row, str(entry.id), created.isoformat())
    row["hash"] = hashlib.sha256(f"{prev_hash}\n{content}".encode()).hexdigest()
    return row


def _content_json(row: Mapping[str, Any], ident: str, created: str) -> str:
    """``canonical(content_of(row))`` written out: the content fields in sorted order, every value text or None
    but ``seq`` (an int), which is what ``jsonable`` leaves as it is, so ``json.dumps`` would give this same text.
    A field added to ``_CONTENT_FIELDS`` must be added here too (the tests compare both against verify_chain).
    """
    q = encode_basestring
    actor, changes, data, entity_id, entity_type, ip, request_id, user_agent = [
        "null" if value is None else q(value)
        for value in (row["actor"], row["changes"], row["data"], row["entity_id"], row["entity_type"], row["ip"],
                      row["request_id"], row["user_agent"])
    ]
    return (
        f'{{"action":{q(row["action"])},"actor":{actor},"changes":{changes},"created_at":{q(created)},'
        f'"data":{data},"entity_id":{entity_id},"entity_type":{entity_type},"id":{q(ident)},"ip":{ip},'
        f'"kind":{q(row["kind"])},"request_id":{request_id},"seq":{int(row["seq"])},"user_agent":{user_agent}}}'
    )


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_PLAIN = frozenset({str, int, float, bool, type(None)})
_TEXT = frozenset({str})
def _canonical_flat(value: Any) -> str | None:
    """``canonical(value)``, without ``jsonable``'s walk when ``value`` is a flat dict of plain JSON values."""
    if value is None:
        return None
    if type(value) is dict and _TEXT.issuperset(map(type, value)) and _PLAIN.issuperset(map(type, value.values())):
        return _CANONICAL.encode(value)
    return canonical(value)


def _plain_text(value: Any, limit: int) -> str | None:
    """``_text`` without its per-character walk when the text is printable throughout (no surrogates then)."""
    if type(value) is str and value.isprintable():
        return value[:limit]
    return _text(value, limit)


def _text(value: Any, limit: int) -> str | None:
    """Request context as storable text: control characters and lone surrogates (which no engine stores) go."""
    if value is None:
        return None
    text = "".join(ch for ch in str(value) if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF)
    return text[:limit]


def record_event(
    session: Session,
    action: str,
    *,
    entity_type: str | None = None,
    entity_id: Any = None,
    data: Mapping[str, Any] | None = None,
    user_id: Any = None,
) -> None:
    """Append an activity event (``login.success``, ``admin.user.deactivate``, ...). ``data`` holds no secret."""
    details = dict(data or {})
    if user_id is not None:
        details["user_id"] = user_id
    append(session, [Record("event", action, entity_type, _ident(entity_id), None, details or None)])


def record_bulk(session: Session, table: str, action: str, ids: Sequence[Any], fields: Mapping[str, Any]) -> None:
    """One entry for a bulk create/update/delete of an audited model, listing every id it touched."""
    changes = {"ids": [str(ident) for ident in ids], "fields": dict(fields)}
    append(session, [Record("change", action, table, None, changes)])


def record_upsert(session: Session, instance: Any, fields: Mapping[str, Any]) -> None:
    """An upsert of an audited model: the values it set (redacted), on the row it inserted or updated."""
    table, ident = _entity(instance)
    append(session, [Record("change", "upsert", table, ident, {key: [None, value] for key, value in fields.items()})])


def _ident(value: Any) -> str | None:
    return None if value is None else str(value)[:64]


# --- automatic change capture ------------------------------------------------------------------------------


def is_audited(model: type[Any]) -> bool:
    return isinstance(model, type) and issubclass(model, Audited)


def redact(model: type[Any], values: Mapping[str, Any]) -> dict[str, Any]:
    secret = secret_columns(model)
    return {key: REDACTED if key in secret and value is not None else value for key, value in values.items()}


@event.listens_for(Session, "after_flush")
def _record_flushed_changes(session: Session, _context: UOWTransaction) -> None:
    records = [
        *(_created(obj) for obj in session.new if is_audited(type(obj))),
        *filter(None, (_updated(obj) for obj in session.dirty if is_audited(type(obj)))),
        *(_deleted(obj) for obj in session.deleted if is_audited(type(obj))),
    ]
    append(session, records)


@event.listens_for(Audited, "mapper_configured", propagate=True)
def _load_old_values_on_change(mapper: Any, cls: type[Any]) -> None:
    """Setting an expired attribute of an audited model loads its old value first, so the entry shows it."""
    for attribute in mapper.column_attrs:
        event.listen(getattr(cls, attribute.key), "set", _keep, active_history=True)


def _keep(_target: Any, value: Any, _old: Any, _initiator: Any) -> Any:
    return value


def _columns(obj: Any) -> Iterable[str]:
    excluded: frozenset[str] = getattr(type(obj), "__audit_exclude__", frozenset())
    return [attr.key for attr in inspect(type(obj)).column_attrs if attr.key not in excluded]


def _entity(obj: Any) -> tuple[str, str | None]:
    # Not inspect(obj).identity: during after_flush a new object has no identity key yet.
    key = inspect(type(obj)).primary_key_from_instance(obj)
    return str(type(obj).__tablename__), _ident(key[0] if len(key) == 1 else key)


def _created(obj: Any) -> Record:
    state = inspect(obj)
    values = {key: [None, state.dict.get(key)] for key in _columns(obj)}
    return Record("change", "create", *_entity(obj), _redacted_pairs(obj, values))


def _updated(obj: Any) -> Record | None:
    state = inspect(obj)
    changes: dict[str, list[Any]] = {}
    for key in _columns(obj):
        if key in _NOT_AUDITED_ON_UPDATE:
            continue
        history = state.attrs[key].history
        if history.added or history.deleted:
            old = history.deleted[0] if history.deleted else None
            new = history.added[0] if history.added else None
            if old != new:
                changes[key] = [old, new]
    if not changes:
        return None
    return Record("change", _update_action(changes), *_entity(obj), _redacted_pairs(obj, changes))


def _update_action(changes: Mapping[str, list[Any]]) -> str:
    if "deleted_at" in changes:
        old, new = changes["deleted_at"]
        if old is None and new is not None:
            return "delete"
        if old is not None and new is None:
            return "restore"
    return "update"


def _deleted(obj: Any) -> Record:
    state = inspect(obj)
    values = {key: [state.dict.get(key), None] for key in _columns(obj)}
    return Record("change", "delete", *_entity(obj), _redacted_pairs(obj, values), {"hard": True})


def _redacted_pairs(obj: Any, pairs: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
    secret = secret_columns(type(obj))
    return {
        key: [REDACTED if key in secret and value is not None else value for value in pair]
        for key, pair in pairs.items()
    }


# --- verification ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of ``verify_chain``: ``ok``, how many entries were checked, and where it first breaks."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    first_bad_id: str | None = None
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.ok
