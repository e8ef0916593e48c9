"""Verifying the audit log (``AuditRepository.verify_chain``): every row of its three tables is accounted for.

When verification passes, all of this holds:

- ``audit_chain_head`` has exactly one row (id 1), well-formed;
- every ``audit_checkpoint`` row is well-formed and below the head; the last one is confirmed by an
  ``audit.purged`` entry in the verified chain that records its columns, the earlier ones by the digest of their
  rows that this entry records (and each one by its own ``audit.purged`` entry while that is still in the chain);
- every ``audit_entry`` row is well-formed (its id a UUID, text as text, its time a time) and lies in the verified
  range, from the last checkpoint's seq + 1 (1 without a checkpoint) up to the head, with no gap; each
  ``prev_hash`` is the hash before it and each hash recomputes (SHA-256, or HMAC with the key its ``key_id``
  names); no unkeyed entry follows a keyed one;
- the log ends at the head (same seq and hash); a keyed head's MAC holds; with a key configured, the head is
  keyed;
- each purge archive found in the archive directory has the SHA-256 the chain recorded for it and holds exactly
  the purged entries, chained up to its checkpoint's hash;
- an exported head, if given, is still in the chain with the same hash (the entry at its seq, a checkpoint at its
  seq, or an entry of an archive that was checked): the history up to it is unchanged and the head extends it.

The first problem found ends the verification and is reported (seq, row id, reason). Damaged rows are reported,
never raised: rows are read as stored (``Dialect.raw_columns``) and decoded here, column by column.

The walk starts from an anchor (the last checkpoint's seq and hash). An incremental verification can start it from
a later anchor that it trusts, with nothing else changed.
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import hashlib
import json
import re
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Column, exc, func, select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.types import NullType

from db import audit, dialects
from db.audit import ChainKey, ChainReport, ExportedHead
from db.models.log_audit import GENESIS_HASH, AuditChainHead, AuditCheckpoint, AuditEntry
from db.repositories.bulk import BATCH_ROWS

CHUNK = BATCH_ROWS
MAX_ARCHIVE_LINE = 64 * 2**20  # the largest entry the layer writes is a bulk entry of 5,000 ids (about 200 KB)
PURGED = "audit.purged"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TEXT_FIELDS = ("kind", "action", "prev_hash", "hash")
_OPTIONAL_TEXT_FIELDS = ("entity_type", "entity_id", "actor", "ip", "user_agent", "request_id", "changes", "data",
                         "key_id")


def checkpoint_content(row: Mapping[str, Any]) -> dict[str, Any]:
    """What the chain records of a checkpoint row (``audit.purged`` entry), as plain JSON data."""
    fields = ("id", "up_to_seq", "hash", "entries", "archive", "archive_sha256", "created_at", "actor", "reason")
    return {name: audit.jsonable(row[name]) for name in fields}


def checkpoints_digest(checkpoints: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 of the canonical list of checkpoint rows (oldest first): recorded by each purge for those before it."""
    return hashlib.sha256(audit.canonical([checkpoint_content(row) for row in checkpoints]).encode()).hexdigest()


def verify(
    session: Session,
    *,
    key: ChainKey | None,
    archive_dir: Path | None = None,
    expected_head: ExportedHead | None = None,
) -> ChainReport:
    """Verify the audit log read through ``session`` (see the module docstring); never raises on damaged data."""
    return _Verification(session, key, archive_dir, expected_head).run()


class _Found(Exception):
    """The first problem: it ends the verification and becomes the report."""

    def __init__(self, seq: int | None, ident: str | None, reason: str) -> None:
        super().__init__(reason)
        self.seq, self.ident, self.reason = seq, ident, reason


# --- reading rows as stored ------------------------------------------------------------------------------------


_UNREADABLE = object()  # a stored value the driver cannot give: SQLite text that is not UTF-8
_KINDS = {int: "an integer", str: "text", uuid.UUID: "a UUID", dt.datetime: "a time"}


class _Column:
    """How one column's stored value becomes its Python value, and what it must then be."""

    def __init__(self, column: Column[Any], dialect: Any) -> None:
        expected = column.type.python_type
        self.name = column.name
        self.nullable = bool(column.nullable)
        self.kind = _KINDS.get(expected, expected.__name__)
        self.process: Callable[[Any], Any] | None = column.type.dialect_impl(dialect).result_processor(dialect, None)
        self.fits = _fits_for(expected)

    def problem(self, value: Any) -> str:
        return f"its {self.name} holds {'NULL' if value is None else f'a value of type {type(value).__name__}'}, " \
               f"not {self.kind}"


def _fits_for(expected: type) -> Callable[[Any], bool]:
    if expected in (int, str):  # exactly: not a bool for an int, not bytes for text
        return lambda value: type(value) is expected
    if expected is dt.datetime:
        return lambda value: isinstance(value, dt.datetime) and value.tzinfo is not None
    return lambda value: isinstance(value, expected)


class _Reader:
    """One table's rows as stored, decoded column by column: a value that is not what its column holds is a
    problem (text), never an exception.

    Rows are selected with no type processing, and each column type's own result processor is then applied to one
    value at a time. SQLite's driver fails a whole fetch when one text value is not UTF-8: such a batch is read
    again as storage classes and bytes (``Dialect.raw_columns``), and the value is reported.
    """

    def __init__(self, session: Session, table: Any) -> None:
        self.session = session
        self.table = table
        dialect = session.get_bind().dialect
        self.engine = dialects.dialect_of(dialect)
        self.columns = [_Column(column, dialect) for column in table.columns]
        self.names = [column.name for column in self.columns]
        self._plain: list[ColumnElement[Any]] = [
            type_coerce(column, NullType()).label(column.name) for column in table.columns
        ]
        self._as_stored = self.engine.raw_columns(table)

    def rows(self, shape: Callable[[Select[Any]], Select[Any]]) -> list[tuple[Any, ...]]:
        """The raw values of the rows that ``shape`` (where, order, limit) selects from the table."""
        try:
            return [tuple(row) for row in self.session.execute(shape(select(*self._plain).select_from(self.table)))]
        except exc.OperationalError:
            if not self.engine.typeless_columns:
                raise
        stored = self.session.execute(shape(select(*self._as_stored).select_from(self.table)))
        return [tuple(_stored_value(self.engine, row._mapping, name) for name in self.names) for row in stored]

    def decode(self, raw: tuple[Any, ...]) -> dict[str, Any] | str:
        values: dict[str, Any] = {}
        for column, stored in zip(self.columns, raw, strict=True):
            if stored is _UNREADABLE:
                return f"its {column.name} cannot be read as {column.kind}"
            value = stored
            if stored is not None and column.process is not None:
                try:
                    value = column.process(stored)
                except (ValueError, TypeError, AttributeError, OverflowError):
                    return f"its {column.name} cannot be read as {column.kind}"
            if value is None:
                if not column.nullable:
                    return column.problem(value)
            elif not column.fits(value):
                return column.problem(value)
            values[column.name] = value
        return values

    def seq_and_id(self, raw: tuple[Any, ...], seq_column: str) -> tuple[int | None, str | None]:
        """The row's seq (if it is a number) and id (as printable text), to name a row that does not decode."""
        seq, ident = raw[self.names.index(seq_column)], raw[self.names.index("id")]
        readable = ident is not None and ident is not _UNREADABLE
        return (seq if type(seq) is int else None), (_printable(ident) if readable else None)


def _stored_value(engine: dialects.Dialect, mapping: Any, name: str) -> Any:
    try:
        return engine.raw_value(mapping, name)
    except ValueError:
        return _UNREADABLE


def _printable(value: Any) -> str:
    text = value.hex() if isinstance(value, bytes) else str(value)
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:80]


# --- the rows of the three tables ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Head:
    seq: int
    hash: str
    key_id: str | None
    mac: str | None


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    row: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.row["id"])

    @property
    def up_to_seq(self) -> int:
        return int(self.row["up_to_seq"])

    @property
    def hash(self) -> str:
        return str(self.row["hash"])

    @property
    def archive(self) -> str:
        return str(self.row["archive"])


@dataclass(frozen=True, slots=True)
class _Attestation:
    """An ``audit.purged`` entry in the verified chain: what it records of the checkpoint it names."""

    seq: int
    entry_id: str
    checkpoint_id: str
    data: dict[str, Any]


class _KeyState:
    """Which key each entry needs, in chain order: once an entry is keyed, every later one must be."""

    def __init__(self, key: ChainKey | None) -> None:
        self.key = key
        self.keyed_from: int | None = None
        self.unverifiable_from: int | None = None  # keyed entries met without a key: links checked, hashes not

    def hash_problem(self, seq: int, values: Mapping[str, Any], prev: str) -> str | None:
        key_id = values.get("key_id")
        if key_id is None:
            if self.keyed_from is not None:
                return (f"an unkeyed entry after keyed ones (keyed from seq {self.keyed_from}): keyed entries were "
                        "rewritten without the key")
            key = None
        else:
            if self.keyed_from is None:
                self.keyed_from = seq
            if self.key is None:
                self.unverifiable_from = self.unverifiable_from or seq
                return None
            if key_id != self.key.id:
                return f"it is keyed with another key (id {key_id}) than the configured one (id {self.key.id})"
            key = self.key
        if audit.row_hash(prev, values, key) != values["hash"]:
            return "its content does not match its hash"
        return None


# --- the verification ---------------------------------------------------------------------------------------------


class _Verification:
    def __init__(self, session: Session, key: ChainKey | None, archive_dir: Path | None,
                 expected: ExportedHead | None) -> None:
        self.session = session
        self.key = key
        self.archive_dir = archive_dir
        self.expected = expected
        self.checked = 0
        self.archives_checked = 0
        self.warnings: list[str] = []
        self.head: _Head | None = None
        self.attestations: list[_Attestation] = []
        self.hash_at_expected: str | None = None
        self.keys = _KeyState(key)
        self.last_key_id: str | None = None  # the key id of the last entry walked

    def run(self) -> ChainReport:
        try:
            self._verify()
        except _Found as found:
            return self._report(False, found.seq, found.ident, found.reason)
        return self._report(True)

    def _report(self, ok: bool, seq: int | None = None, ident: str | None = None,
                reason: str | None = None) -> ChainReport:
        head = self.head
        return ChainReport(
            ok, self.checked, seq, ident, reason, head_seq=head.seq if head else None,
            head_hash=head.hash if head else None, key_id=head.key_id if head else None,
            archives_checked=self.archives_checked, warnings=tuple(self.warnings),
        )

    def _verify(self) -> None:
        checkpoints = self._checkpoints()
        self.head = self._read_head()
        self._checkpoints_below_head(checkpoints)
        anchor = (checkpoints[-1].up_to_seq, checkpoints[-1].hash) if checkpoints else (0, GENESIS_HASH)
        end = self._walk(*anchor)
        self._ends_at_head(end)
        self._head_keyed()
        self._checkpoints_attested(checkpoints)
        self._archives(checkpoints)
        self._expected_head(checkpoints)

    # --- the head ----------------------------------------------------------------------------------------------

    def _read_head(self) -> _Head:
        table: Any = AuditChainHead.__table__
        reader = _Reader(self.session, table)
        rows = reader.rows(lambda statement: statement.limit(3))
        if not rows:
            raise _Found(None, None, "the chain head row is missing: it was removed (since revision 0007 only with a "
                                     "trigger dropped), and the log cannot be extended without it")
        values = reader.decode(rows[0])
        if isinstance(values, str):
            raise _Found(None, None, f"the chain head row is damaged: {values}")
        if len(rows) > 1 or values["id"] != audit.HEAD_ID:
            raise _Found(None, None, "audit_chain_head holds a row other than id 1: there is one chain head only")
        head = _Head(values["seq"], values["hash"], values["key_id"], values["mac"])
        if head.seq < 0 or (head.seq == 0) != (head.hash == GENESIS_HASH) or not _HEX64.fullmatch(head.hash):
            raise _Found(head.seq, None, "the chain head row is damaged: its seq and hash are not a head's")
        if head.seq == 0 and head.key_id is not None:
            raise _Found(0, None, "the chain head row is damaged: the genesis head carries a key id")
        return head

    # --- checkpoints -------------------------------------------------------------------------------------------

    def _checkpoints(self) -> list[_Checkpoint]:
        table: Any = AuditCheckpoint.__table__
        reader = _Reader(self.session, table)
        checkpoints = []
        for row in reader.rows(lambda statement: statement.order_by(table.c.up_to_seq)):
            values = reader.decode(row)
            if isinstance(values, str):
                raise _Found(*reader.seq_and_id(row, "up_to_seq"), f"a checkpoint row is damaged: {values}")
            checkpoint = _Checkpoint(values)
            problem = _checkpoint_problem(values)
            if problem:
                raise _Found(checkpoint.up_to_seq, checkpoint.id, f"a checkpoint row is damaged: {problem}")
            checkpoints.append(checkpoint)
        return checkpoints

    def _checkpoints_below_head(self, checkpoints: Sequence[_Checkpoint]) -> None:
        assert self.head is not None
        if checkpoints and self.head.seq == 0:
            raise _Found(0, None, f"the chain head is back at genesis (seq 0) though the log was purged up to seq "
                                  f"{checkpoints[-1].up_to_seq}: the head row was removed or replaced")
        for checkpoint in checkpoints:
            if checkpoint.up_to_seq >= self.head.seq:
                raise _Found(checkpoint.up_to_seq, checkpoint.id,
                             f"a checkpoint at or above the chain head (seq {self.head.seq}): a purge always leaves "
                             "its own entry above its checkpoint, so no purge made this one")

    def _checkpoints_attested(self, checkpoints: Sequence[_Checkpoint]) -> None:
        by_id = {checkpoint.id: (index, checkpoint) for index, checkpoint in enumerate(checkpoints)}
        for attestation in self.attestations:
            if attestation.checkpoint_id not in by_id:
                raise _Found(attestation.seq, attestation.entry_id,
                             f"this audit.purged entry names checkpoint {attestation.checkpoint_id}, which is not "
                             "in audit_checkpoint: the checkpoint was removed")
            index, checkpoint = by_id[attestation.checkpoint_id]
            previous = checkpoints[index - 1].up_to_seq if index else 0
            mismatch = _attestation_mismatch(checkpoint, attestation.data, previous)
            if mismatch:
                raise _Found(checkpoint.up_to_seq, checkpoint.id,
                             f"the checkpoint is not what the chain recorded for it at seq {attestation.seq} "
                             f"({mismatch} differs): the checkpoint row was changed")
        if checkpoints:
            self._last_checkpoint_attested(checkpoints)

    def _last_checkpoint_attested(self, checkpoints: Sequence[_Checkpoint]) -> None:
        last, earlier = checkpoints[-1], checkpoints[:-1]
        attested = [item for item in self.attestations if item.checkpoint_id == last.id]
        if not attested:
            raise _Found(last.up_to_seq, last.id,
                         "the last checkpoint is not confirmed by an audit.purged entry in the verified chain: no "
                         "purge made it")
        data = attested[0].data
        if "checkpoints_digest" not in data:  # recorded by purges since revision 0005
            if earlier:
                self.warnings.append(f"{len(earlier)} checkpoint(s) before seq {last.up_to_seq} were made before "
                                     "revision 0005 and are not confirmed by the chain")
            return
        rows = [checkpoint.row for checkpoint in earlier]
        if data.get("checkpoints_before") != len(earlier) or data["checkpoints_digest"] != checkpoints_digest(rows):
            raise _Found(last.up_to_seq, last.id,
                         f"the checkpoints before this one are not those the chain recorded (it recorded "
                         f"{data.get('checkpoints_before')}, audit_checkpoint holds {len(earlier)}): checkpoint rows "
                         "were added or changed")

    # --- entries -----------------------------------------------------------------------------------------------

    def _walk(self, anchor_seq: int, anchor_hash: str) -> tuple[int, str]:
        """Check every entry in seq order from the anchor; return the seq and hash the log ends with."""
        table: Any = AuditEntry.__table__
        reader = _Reader(self.session, table)
        total = int(self.session.scalar(select(func.count()).select_from(table)) or 0)
        expected, prev, seen, after = anchor_seq + 1, anchor_hash, 0, None
        while True:
            rows = reader.rows(functools.partial(_next_chunk, table, after))
            for row in rows:
                seen += 1
                values = reader.decode(row)
                if isinstance(values, str):
                    raise _Found(*reader.seq_and_id(row, "seq"), values)
                seq = values["seq"]
                problem = self._placement(seq, expected, anchor_seq) or _link_problem(values, prev, self.keys)
                if problem:
                    raise _Found(seq, str(values["id"]), problem)
                self._note(seq, values)
                prev, expected, after = values["hash"], seq + 1, seq
                self.last_key_id = values["key_id"]
                self.checked += 1
            if len(rows) < CHUNK:
                break
        if seen < total:
            raise _Found(None, None, f"{total - seen} row(s) of audit_entry have no seq (NULL): rows the chain does "
                                     "not account for")
        return expected - 1, prev

    def _placement(self, seq: int, expected: int, anchor_seq: int) -> str | None:
        assert self.head is not None
        if seq <= 0:
            return f"seq {seq} is not positive: no entry is ever written there"
        if seq <= anchor_seq:
            return (f"seq {seq} is at or below the last checkpoint (seq {anchor_seq}): that part of the log was "
                    "purged, yet this row is there")
        if seq > self.head.seq:
            self.head = self._read_head()  # appends committed since the head was read (READ COMMITTED)
        if seq > self.head.seq:
            return f"seq {seq} is above the chain head (seq {self.head.seq}): a row the chain does not account for"
        if seq != expected:
            return f"expected seq {expected} here, found {seq}: entries are missing"
        return None

    def _note(self, seq: int, values: Mapping[str, Any]) -> None:
        if self.expected is not None and seq == self.expected.seq:
            self.hash_at_expected = values["hash"]
        if values["action"] != PURGED or values["kind"] != "event" or values["entity_type"] != "audit_checkpoint":
            return
        data = _json_object(values["data"])
        if data is None:
            raise _Found(seq, str(values["id"]),
                         "this audit.purged entry's data is not the JSON object a purge records")
        self.attestations.append(_Attestation(seq, str(values["id"]), str(values["entity_id"]), data))

    def _ends_at_head(self, end: tuple[int, str]) -> None:
        head = self.head
        assert head is not None
        if end[0] < head.seq and end[1] == head.hash:
            raise _Found(head.seq, None, f"the chain head says seq {head.seq} but holds the hash of the last entry "
                                         f"(seq {end[0]}): the head row's seq was changed")
        if end[0] < head.seq:
            raise _Found(end[0] + 1, None, f"the log ends at seq {end[0]} but the chain head says seq {head.seq}: "
                                           "entries at its end were removed")
        if end[1] != head.hash:
            raise _Found(head.seq, None, "the chain head's hash is not the last entry's: the head row was rewritten")

    def _head_keyed(self) -> None:
        head, keys = self.head, self.keys
        assert head is not None
        if head.key_id is None and keys.keyed_from is not None:
            raise _Found(head.seq, None, f"the chain head is not keyed though entries from seq {keys.keyed_from} are: "
                                         "the head row was rewritten without the key")
        if head.key_id is not None and self.checked and head.key_id != self.last_key_id:
            raise _Found(head.seq, None, f"the chain head's key id ({head.key_id}) is not that of the last entry "
                                         f"({self.last_key_id or 'none: unkeyed'}): the head row was changed")
        if head.key_id is None and self.key is not None:
            raise _Found(head.seq, None,
                         f"an audit key is configured (id {self.key.id}) but the chain is not keyed: no entry was "
                         "appended since the key was set (python -m db audit seal appends one), or keyed entries "
                         "were rewritten without the key")
        if head.key_id is not None and self.key is None:
            raise _Found(keys.unverifiable_from or head.seq, None,
                         f"the chain is keyed (key id {head.key_id}) from seq {keys.keyed_from or head.seq} on: set "
                         "DBLAYER_AUDIT_KEY to verify it (without the key only the order and links of its entries "
                         "were checked)")
        if self.key is not None and head.key_id is not None:
            if head.key_id != self.key.id:
                raise _Found(head.seq, None, f"the chain head is keyed with another key (id {head.key_id}) than the "
                                             f"configured one (id {self.key.id})")
            if head.mac != audit.head_mac(head.seq, head.hash, self.key):
                raise _Found(head.seq, None, "the chain head's MAC does not match: the head row was written without "
                                             "the key (the chain was cut short or re-headed)")

    # --- archives and the exported head --------------------------------------------------------------------------

    def _archives(self, checkpoints: Sequence[_Checkpoint]) -> None:
        if self.archive_dir is None:
            return
        previous = (0, GENESIS_HASH)
        for checkpoint in checkpoints:
            path = self.archive_dir / checkpoint.archive
            if not path.is_file():
                self.warnings.append(f"archive {checkpoint.archive} of the checkpoint at seq {checkpoint.up_to_seq} "
                                     f"is not in {self.archive_dir}: not checked")
            else:
                problem = self._archive_problem(path, checkpoint, previous)
                if problem:
                    raise _Found(checkpoint.up_to_seq, checkpoint.id, f"archive {checkpoint.archive}: {problem}")
                self.archives_checked += 1
            previous = (checkpoint.up_to_seq, checkpoint.hash)

    def _archive_problem(self, path: Path, checkpoint: _Checkpoint, previous: tuple[int, str]) -> str | None:
        if _file_sha256(path) != checkpoint.row["archive_sha256"]:
            return "its SHA-256 is not the one recorded for it: the archive was changed"
        expected, prev = previous[0] + 1, previous[1]
        keys, count = _KeyState(self.key), 0
        try:
            with gzip.open(path, "rb") as stream:
                while line := stream.readline(MAX_ARCHIVE_LINE + 1):
                    count += 1
                    values = _archived_entry(line)
                    if isinstance(values, str):
                        return f"line {count}: {values}"
                    seq = values["seq"]
                    problem = (f"expected seq {expected}, found {seq}" if seq != expected
                               else _link_problem(values, prev, keys))
                    if problem:
                        return f"line {count} (seq {seq}): {problem}"
                    if self.expected is not None and seq == self.expected.seq:
                        self.hash_at_expected = values["hash"]
                    prev, expected = values["hash"], seq + 1
        except (OSError, EOFError, zlib.error) as error:
            return f"it cannot be read ({type(error).__name__})"
        if (expected - 1, prev, count) != (checkpoint.up_to_seq, checkpoint.hash, checkpoint.row["entries"]):
            return (f"it holds {count} entries up to seq {expected - 1}; the checkpoint covers "
                    f"{checkpoint.row['entries']} up to seq {checkpoint.up_to_seq} with another hash")
        if keys.unverifiable_from is not None:
            self.warnings.append(f"archive {checkpoint.archive}: entries from seq {keys.unverifiable_from} are keyed "
                                 "and no key is configured: their hashes were not checked")
        return None

    def _expected_head(self, checkpoints: Sequence[_Checkpoint]) -> None:
        exported, head = self.expected, self.head
        if exported is None or head is None:
            return
        if exported.seq > head.seq:
            raise _Found(exported.seq, None, f"the exported head (seq {exported.seq}) is beyond the chain head (seq "
                                             f"{head.seq}): entries were removed since it was exported")
        known = {0: GENESIS_HASH, **{checkpoint.up_to_seq: checkpoint.hash for checkpoint in checkpoints}}
        actual = self.hash_at_expected or known.get(exported.seq)
        if actual is None:
            archive = next((item.archive for item in checkpoints if item.up_to_seq > exported.seq), "?")
            raise _Found(exported.seq, None, f"seq {exported.seq} was purged into archive {archive}, which was not "
                                             "checked (give the directory that holds it): cannot compare the exported "
                                             "head")
        if actual != exported.hash:
            raise _Found(exported.seq, None, f"the chain holds another hash at seq {exported.seq} than the exported "
                                             "head: the history up to it was rewritten")


# --- helpers -----------------------------------------------------------------------------------------------------


def _next_chunk(table: Any, after: int | None, statement: Select[Any]) -> Select[Any]:
    """The next entries in seq order (keyset paging: after the last seq seen)."""
    bounded = statement if after is None else statement.where(table.c.seq > after)
    return bounded.order_by(table.c.seq).limit(CHUNK)


def _link_problem(values: Mapping[str, Any], prev: str, keys: _KeyState) -> str | None:
    if values["prev_hash"] != prev:
        return "its prev_hash does not match the entry before it"
    return keys.hash_problem(values["seq"], values, prev)


def _checkpoint_problem(values: Mapping[str, Any]) -> str | None:
    archive = values["archive"]
    if values["up_to_seq"] <= 0 or values["entries"] <= 0:
        return "its seq or entry count is not positive"
    if not _HEX64.fullmatch(values["hash"]) or not _HEX64.fullmatch(values["archive_sha256"]):
        return "its hash or archive SHA-256 is not 64 hex digits"
    if archive in ("", ".", "..") or Path(archive).name != archive or "\\" in archive or "\x00" in archive:
        return "its archive is not a plain file name"
    return None


def _attestation_mismatch(checkpoint: _Checkpoint, data: Mapping[str, Any], previous_seq: int) -> str | None:
    """The first field in which the checkpoint row differs from what its ``audit.purged`` entry recorded."""
    row = checkpoint_content(checkpoint.row)
    recorded = {"last_seq": "up_to_seq", "hash": "hash", "entries": "entries", "archive": "archive",
                "archive_sha256": "archive_sha256", "reason": "reason"}
    if "checkpoints_digest" in data:  # purges since revision 0005 record every column
        recorded |= {"created_at": "created_at", "actor": "actor"}
    for key, column in recorded.items():
        if key not in data or data[key] != row[column]:
            return column
    if data.get("first_seq") != previous_seq + 1:
        return "first_seq"
    return None


def _json_object(text: Any) -> dict[str, Any] | None:
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _archived_entry(line: bytes) -> dict[str, Any] | str:
    """An archive line as the entry it records, or what is wrong with it."""
    try:
        values = json.loads(line)
    except ValueError:
        return "not a JSON line"
    if not isinstance(values, dict):
        return "not a JSON object"
    values.setdefault("key_id", None)  # archives written before revision 0005
    if type(values.get("seq")) is not int or not isinstance(values.get("created_at"), str):
        return "its seq or created_at is missing or of the wrong type"
    try:
        uuid.UUID(values.get("id"))
    except (TypeError, ValueError, AttributeError):
        return "its id is not a UUID"
    if any(type(values.get(name)) is not str for name in _TEXT_FIELDS):
        return "a required text field is missing or of the wrong type"
    if any(values.get(name) is not None and type(values[name]) is not str for name in _OPTIONAL_TEXT_FIELDS):
        return "a text field holds a value of the wrong type"
    return values


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
