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
writer's transaction ends: audited writes are serialized, which is the price of a single linear chain. The head is
checked against the end of the log before anything is appended; a missing head (the migrations and a restore put
it there, the database refuses to remove it) or one that no log can have raises ``AuditTampered``: a new chain is
never started here.

**Keyed chain.** With an audit key (``Settings.audit_key``, default ``DBLAYER_AUDIT_KEY``) each new entry's hash is
``HMAC-SHA256(key, prev_hash + canonical content)`` and records the key's id (``key_id``, a fingerprint that does
not reveal the key), and the head row carries ``HMAC(key, seq and hash)``. Entries written before the key was set
keep their SHA-256 hashes; the first keyed entry's MAC covers the hash of the last unkeyed one, so the older
history is fixed from then on. Once the head is keyed, an append without that key raises ``AuditKeyError``
rather than continue the chain unkeyed. ``db.audit_verify`` checks all of it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from json.encoder import encode_basestring
from typing import Any

from sqlalchemy import Connection, event, exc, func, insert, inspect, select, update
from sqlalchemy.orm import Session, UOWTransaction

from db import dialects
from db.base import secret_columns
from db.errors import AuditKeyError, AuditTampered, ValidationError
from db.models.base import Audited, new_id, utcnow
from db.models.log_audit import GENESIS_HASH, KEY_ID_LENGTH, AuditChainHead, AuditCheckpoint, AuditEntry
from db.repositories.bulk import BATCH_ROWS, BulkInserter, batched
from db.settings import Settings

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


def entry_hash(prev_hash: str, content: Mapping[str, Any], key: ChainKey | None = None) -> str:
    """An entry's hash: SHA-256, or HMAC-SHA256 with ``key``, of its predecessor's hash and its canonical content."""
    return seal(f"{prev_hash}\n{canonical(content)}", key)


def row_hash(prev_hash: str, row: Mapping[str, Any], key: ChainKey | None = None) -> str:
    """``entry_hash(prev_hash, content_of(row), key)`` for an entry read back (verification): every text field str or
    None, ``seq`` an int, ``id`` a UUID (or its text) and ``created_at`` an aware datetime (or its ISO text), which
    the verification has checked; the same text as ``canonical``, without its walk over every value."""
    return seal(f"{prev_hash}\n{_content_json(row, str(row['id']), jsonable(row['created_at']))}", key)


def seal(message: str, key: ChainKey | None) -> str:
    # surrogatepass: a damaged value read back during verification hashes (to a mismatch) instead of raising.
    data = message.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest() if key is None else hmac.digest(key.secret, data, "sha256").hex()


def head_mac(seq: int, hash_: str, key: ChainKey) -> str:
    """The head row's MAC: only the key's holder can write a head, so a chain cut short cannot be re-headed."""
    return hmac.digest(key.secret, f"dblayer-audit-head\n{seq}\n{hash_}".encode(), "sha256").hex()


# --- the audit key -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainKey:
    """The audit key: its bytes (never shown: not in the repr) and its id, a fingerprint that does not reveal it."""

    secret: bytes = field(repr=False)
    id: str


@functools.lru_cache(maxsize=4)
def chain_key(text: str | None) -> ChainKey | None:
    """The key for ``Settings.audit_key`` (None: no key)."""
    if text is None:
        return None
    secret = text.encode("utf-8", "surrogatepass")
    return ChainKey(secret, hmac.digest(secret, b"dblayer-audit-key-id", "sha256").hex()[:KEY_ID_LENGTH])


def key_of(session: Session) -> ChainKey | None:
    """The audit key of the session's unit of work (its Database's settings)."""
    settings: Settings = session.info.get("settings") or Settings()
    return chain_key(settings.audit_key)


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


@dataclass(frozen=True, slots=True)
class _Head:
    seq: int
    hash: str
    key_id: str | None
    mac: str | None


MAX_SEQ = 2**63 - 1  # BIGINT: no log ever gets there, but a head moved there must not overflow an append


def _locked_head(connection: Connection) -> _Head:
    """The chain head, its row locked until the transaction ends, checked against the end of the log.

    A missing head is never re-created here (the migrations and a restore put it there): starting a new chain
    would quietly drop the history. A missing or impossible head raises ``AuditTampered``.
    """
    head: Any = AuditChainHead.__table__
    locked = select(head.c.seq, head.c.hash, head.c.key_id, head.c.mac).where(head.c.id == HEAD_ID).with_for_update()
    current = connection.execute(locked).first()
    if current is None:
        raise _tampered_head("the chain head row is missing (someone removed it); the layer never starts a new chain")
    found = _Head(current.seq, current.hash, current.key_id, current.mac)
    problem = _head_problem(connection, found)
    if problem:
        raise _tampered_head(problem)
    return found


def _head_problem(connection: Connection, head: _Head) -> str | None:
    """Why ``head`` cannot be the head of the log as stored: it must be the genesis head of a log never purged, or
    name the last entry (its seq, hash and key id), or the last checkpoint (inside a purge that removed every entry).
    """
    if type(head.seq) is not int or not isinstance(head.hash, str) or not isinstance(head.key_id, str | None):
        return "the chain head row is damaged (its seq, hash or key id is not of its type)"
    if head.seq <= 0:
        return _genesis_problem(connection, head)
    entries: Any = AuditEntry.__table__
    # The latest committed rows, as the locked head is (a REPEATABLE READ snapshot may predate the entry at its seq).
    latest = dialects.dialect_of(connection).latest_committed
    last = connection.execute(latest(select(entries.c.hash, entries.c.key_id).where(entries.c.seq == head.seq))).first()
    if last is None:
        checkpoints: Any = AuditCheckpoint.__table__
        at = connection.scalar(latest(select(checkpoints.c.hash).where(checkpoints.c.up_to_seq == head.seq)))
        return None if at is not None and at == head.hash else f"no entry holds the chain head's seq ({head.seq})"
    if last.hash != head.hash:
        return f"the chain head's hash is not that of the entry at its seq ({head.seq})"
    if last.key_id != head.key_id:
        return (f"the chain head's key id ({head.key_id or 'none'}) is not that of the entry at its seq "
                f"({last.key_id or 'none'})")
    return None


def _genesis_problem(connection: Connection, head: _Head) -> str | None:
    if (head.seq, head.hash, head.key_id) != (0, GENESIS_HASH, None):
        return f"the chain head (seq {head.seq}) is not a head any log has"
    checkpoints: Any = AuditCheckpoint.__table__
    purged = connection.scalar(select(func.max(checkpoints.c.up_to_seq)))
    if purged is not None:
        return f"the chain head is back at genesis (seq 0) though the log was purged up to seq {purged}"
    return None


def _tampered_head(problem: str) -> AuditTampered:
    return AuditTampered(
        f"audit_chain_head: {problem}: the chain head was changed past the layer. Nothing was written; python -m db "
        "audit verify reports the damage (keep a copy of the database as evidence, then restore from a backup)"
    )


def _check_room(head_seq: int, count: int) -> None:
    """``count`` more entries fit below ``MAX_SEQ``; a head so near it was put there past the layer."""
    if head_seq > MAX_SEQ - count:
        raise _tampered_head(f"the chain head is at seq {head_seq}, where no log gets: {count} more entries would "
                             "overflow its seq")


def _writing_key(session: Session, head: _Head) -> ChainKey | None:
    """The key to extend the chain with: the session's, which must be the head's once the head is keyed (and then the
    head's MAC must hold: a head re-written without the key is not extended, which would seal it)."""
    key = key_of(session)
    if head.key_id is not None and (key is None or key.id != head.key_id):
        have = "no audit key is configured" if key is None else f"the configured key has id {key.id}"
        raise AuditKeyError(
            f"the audit chain is keyed with the key of id {head.key_id} and {have}: set DBLAYER_AUDIT_KEY (or "
            "Settings.audit_key) to that key; nothing was written"
        )
    if key is not None and head.key_id is not None and head.mac != head_mac(head.seq, head.hash, key):
        raise _tampered_head("the chain head's MAC does not match: the head row was written without the audit key")
    return key


Rows = list[dict[str, Any]]


def _insert_entries(insert_rows: Callable[[Rows], Any], rows: Rows, head: _Head) -> None:
    """Insert ``rows``; a clash on seq means a row above the head that the chain does not account for."""
    try:
        insert_rows(rows)
    except exc.IntegrityError as error:
        if dialects.is_audit_seq_clash(error):
            raise AuditTampered(
                f"audit_entry: a row the hash chain does not account for already holds a seq above the chain head "
                f"(seq {head.seq}): someone wrote to the audit log past the layer. Nothing was written; "
                "python -m db audit verify names the row"
            ) from None
        raise


def _move_head(connection: Connection, seq: int, hash_: str, key: ChainKey | None) -> None:
    head: Any = AuditChainHead.__table__
    signed = {"key_id": key.id, "mac": head_mac(seq, hash_, key)} if key else {"key_id": None, "mac": None}
    connection.execute(update(head).where(head.c.id == HEAD_ID).values(seq=seq, hash=hash_, **signed))


def append(session: Session, records: Sequence[Record]) -> None:
    """Add ``records`` to the end of the chain, in the session's transaction."""
    if not records:
        return
    connection = session.connection()
    head = _locked_head(connection)
    key = _writing_key(session, head)
    _check_room(head.seq, len(records))
    key_id = key.id if key else None
    seq, prev = head.seq, head.hash
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
            "created_at": now, "key_id": key_id,
        }
        row["prev_hash"], row["hash"] = prev, entry_hash(prev, content_of(row), key)
        prev = row["hash"]
        rows.append(row)
    entries: Any = AuditEntry.__table__
    _insert_entries(lambda batch: connection.execute(insert(entries), batch), rows, head)
    _move_head(connection, seq, prev, key)


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


def append_entries(session: Session, entries: Iterable[Entry], *, batch_size: int = BATCH_ROWS) -> int:
    """Add ``entries`` to the end of the chain in the session's transaction, in batches; returns how many.

    The chain is extended exactly as ``append`` would extend it one entry at a time (same ``seq``, ``prev_hash``
    and ``hash``), so ``verify_chain`` holds afterwards; the head row is locked once and updated at the end.
    Rows go to the driver through the bulk insert path (``db.repositories.bulk``), a batch at a time.
    """
    connection = session.connection()
    head = _locked_head(connection)
    key = _writing_key(session, head)
    digest = functools.partial(seal, key=key)
    seq, prev = head.seq, head.hash
    entries_table: Any = AuditEntry.__table__
    per_statement = dialects.dialect_of(connection).audit_rows_per_statement(len(entries_table.columns))
    inserter = BulkInserter(entries_table, connection, "audit_entry", rows_per_statement=per_statement)
    count = 0
    for batch in batched(entries, batch_size):
        _check_room(seq, len(batch))
        rows = []
        for entry in batch:
            seq += 1
            row = _chained_row(seq, entry, prev, digest)
            row["key_id"] = key.id if key else None
            prev = row["hash"]
            rows.append(row)
        _insert_entries(inserter.insert, rows, head)
        count += len(rows)
    if count:
        _move_head(connection, seq, prev, key)
    return count


def _chained_row(seq: int, entry: Entry, prev_hash: str, digest: Callable[[str], str]) -> dict[str, Any]:
    """The row ``append`` would write for ``entry`` after ``prev_hash``, with its hash (``digest`` of the text)."""
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
    row["hash"] = digest(f"{prev_hash}\n{content}")
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


class AuditedSession(Session):
    """The layer's sessions (``Database.session()``, ``unit_of_work()``): they record the changes of audited models
    they flush. The hook is on this class, registered once, never on SQLAlchemy's ``Session`` class, so an
    application's own sessions are left as they are."""


def _record_flushed_changes(session: Session, _context: UOWTransaction) -> None:
    records = [
        *(_created(obj) for obj in session.new if is_audited(type(obj))),
        *filter(None, (_updated(obj) for obj in session.dirty if is_audited(type(obj)))),
        *(_deleted(obj) for obj in session.deleted if is_audited(type(obj))),
    ]
    append(session, records)


event.listen(AuditedSession, "after_flush", _record_flushed_changes)


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


# --- verification: what it reports, and the exported head it compares with ------------------------------------


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of ``verify_chain`` (``db.audit_verify``): ``ok``, how many entries were checked, and the first
    problem: its seq (an entry's, or a checkpoint's ``up_to_seq``), the id of the row it concerns and the reason.

    ``head_seq``/``head_hash``: the head that was verified (what ``python -m db audit head`` exports); ``key_id``:
    the key the head is keyed with (None: an unkeyed chain); ``archives_checked``: purge archives found and checked;
    ``warnings``: what could not be checked but does not break the chain (an archive that is not there).
    """

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    first_bad_id: str | None = None
    reason: str | None = None
    head_seq: int | None = None
    head_hash: str | None = None
    key_id: str | None = None
    archives_checked: int = 0
    warnings: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.ok

    @property
    def problem(self) -> str | None:
        """The problem in one line, e.g. ``seq 3 (entry 0192…): its content does not match its hash``."""
        if self.ok:
            return None
        where = "" if self.first_bad_seq is None else f"seq {self.first_bad_seq}"
        if self.first_bad_id:
            where += f" (row {self.first_bad_id})" if where else f"row {self.first_bad_id}"
        return f"{where}: {self.reason}" if where else str(self.reason)


_HEX64 = re.compile(r"[0-9a-f]{64}")
_TOKEN = re.compile(r"\s*(\d{1,19})\s*:\s*([0-9a-f]{64})\s*")
_NOT_A_HEAD = (
    "not an exported audit head: expected SEQ:HASH as printed by python -m db audit head (or its --json output)"
)


@dataclass(frozen=True, slots=True)
class ExportedHead:
    """A chain head copied out of the database (``python -m db audit head``), to check later that the chain still
    holds it unchanged: ``verify_chain(expected_head=...)``, ``python -m db audit verify --head SEQ:HASH``."""

    seq: int
    hash: str
    created_at: str | None = None  # the head entry's time (ISO 8601), for the reader only
    key_id: str | None = None

    @property
    def token(self) -> str:
        """``SEQ:HASH``: all that verification needs."""
        return f"{self.seq}:{self.hash}"

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "created_at": self.created_at, "keyed": self.key_id is not None,
                "key_id": self.key_id}

    @classmethod
    def parse(cls, text: str) -> ExportedHead:
        """``SEQ:HASH`` or the JSON object of ``as_json``; ``ValidationError`` for anything else."""
        token = _TOKEN.fullmatch(text)
        if token and int(token.group(1)) < 2**63:
            return cls(int(token.group(1)), token.group(2))
        try:
            data = json.loads(text)
        except ValueError:
            raise ValidationError(_NOT_A_HEAD, field="head") from None
        seq, hash_ = (data.get("seq"), data.get("hash")) if isinstance(data, dict) else (None, None)
        if type(seq) is not int or not 0 <= seq < 2**63 or not isinstance(hash_, str) or not _HEX64.fullmatch(hash_):
            raise ValidationError(_NOT_A_HEAD, field="head")
        created, key_id = data.get("created_at"), data.get("key_id")
        return cls(seq, hash_, created if isinstance(created, str) else None,
                   key_id if isinstance(key_id, str) else None)
