"""The audit log under attack, on every engine.

The attacker has SQL access: INSERT rights only (the triggers and constraints stay), or everything (every audit
trigger dropped, CHECK constraints not enforced, columns altered), as in ``attack``. Each attack is raw SQL; what
is asserted is what an operator sees: ``verify_chain()`` names the first problem (seq, row, reason) and never
raises, ``python -m db check`` fails, the database refuses what it can, and audited writes that run into a foreign
row say that the log was tampered with.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update

from db import AuditTampered, Database, DatabaseError
from db import audit as audit_log
from db.audit import Entry, ExportedHead
from db.models.log_audit import GENESIS_HASH
from db.scripts import audit_db
from db.scripts.check_db import check
from tests.integration.audit_attacks import (
    CHECKPOINT,
    ENTRY,
    HEAD,
    NOW,
    Attacker,
    attack,
    entry_count,
    head_row,
    reason_of,
    seed,
    verify,
)
from tests.support import TestDatabases


@pytest.fixture
def chain(engine_name: str, test_databases: TestDatabases) -> Iterator[Database]:
    """A database of its own (the test commits), with five audit events: seq 1 to 5."""
    with test_databases.own(engine_name, "dblayer_tamper") as database:
        seed(database, 5)
        yield database


# --- the attack of the issue: an edit hidden behind a forged checkpoint ---------------------------------------------


@pytest.mark.parametrize("placement", ["seq 0", "a negative seq", "above the head", "above the head, head moved"])
def test_an_edit_hidden_behind_a_forged_checkpoint_and_purge_entry_is_reported_by_verify_and_check(
    chain: Database, placement: str
) -> None:
    head_before = head_row(chain)
    with attack(chain) as attacker:
        attacker.sql("UPDATE audit_entry SET action = 'pong' WHERE seq = 2")
        checkpoint = uuid.uuid4()
        attacker.connection.execute(insert(CHECKPOINT).values(
            id=checkpoint, up_to_seq=5, hash=head_before[1], entries=5, archive="forged.jsonl.gz",
            archive_sha256="0" * 64, created_at=NOW, actor=None, reason="retention"))
        data = json.dumps({"first_seq": 1, "last_seq": 5, "hash": head_before[1], "entries": 5,
                           "archive": "forged.jsonl.gz", "archive_sha256": "0" * 64, "reason": "retention"})
        seq = {"seq 0": 0, "a negative seq": -7}.get(placement, 6)
        purged = attacker.forge(seq, head_before[1], action="audit.purged", entity_type="audit_checkpoint",
                                entity_id=str(checkpoint), data=data)
        if placement == "above the head, head moved":
            attacker.move_head(6, purged)

    report = verify(chain)
    assert not report.ok and report.first_bad_seq is not None
    checked = check(chain, blobs=False)
    assert "audit chain" in [result.name for result in checked.failed]  # (on SQLite, integrity_check: seq 0)
    if placement != "above the head, head moved":
        assert head_row(chain) == head_before  # the head never moved: only the verification can tell


def test_with_insert_rights_only_the_database_refuses_a_checkpoint_and_every_impossible_seq(chain: Database) -> None:
    seq_head, hash_head = head_row(chain)
    attempts = {
        "a checkpoint at the head": lambda uow: uow.session.execute(insert(CHECKPOINT).values(
            id=uuid.uuid4(), up_to_seq=seq_head, hash=hash_head, entries=5, archive="x", archive_sha256="0" * 64,
            created_at=NOW, reason="forged")),
        "a checkpoint below the head": lambda uow: uow.session.execute(insert(CHECKPOINT).values(
            id=uuid.uuid4(), up_to_seq=2, hash=hash_head, entries=2, archive="x", archive_sha256="0" * 64,
            created_at=NOW, reason="forged")),
        **{f"an entry at seq {seq}": _entry_at(seq) for seq in (0, -1, -(2**62), 1, 3, seq_head)},
        "the head moved back": lambda uow: uow.session.execute(update(HEAD).values(seq=2)),
        "a second head row": lambda uow: uow.session.execute(insert(HEAD).values(id=2, seq=9, hash=hash_head)),
    }
    for name, attempt in attempts.items():
        with pytest.raises(DatabaseError), chain.unit_of_work() as uow:
            attempt(uow)
            pytest.fail(f"{name} was accepted")  # pragma: no cover - only reached if the database accepted it
    assert entry_count(chain) == 5 and head_row(chain) == (seq_head, hash_head)
    assert verify(chain).ok


def _entry_at(seq: int) -> Callable[[Any], Any]:
    def insert_it(uow: Any) -> Any:
        return uow.session.execute(insert(ENTRY).values(
            id=uuid.uuid4(), seq=seq, kind="event", action="forged", created_at=NOW, prev_hash="0" * 64,
            hash="0" * 64))

    return insert_it


# --- rows anywhere: every row of the three tables is accounted for ----------------------------------------------


def sql(*statements: str) -> Callable[[Attacker, str], None]:
    """An attack made of raw statements."""
    def run(attacker: Attacker, _head: str) -> None:
        for statement in statements:
            attacker.sql(statement)

    return run


def forged(seq: int, *, after_head: bool = False, move_head: bool = False) -> Callable[[Attacker, str], None]:
    """An entry inserted at ``seq``, chained after the head's hash (or the genesis hash)."""
    def run(attacker: Attacker, head: str) -> None:
        made = attacker.forge(seq, head if after_head else GENESIS_HASH)
        if move_head:
            attacker.move_head(seq, made)

    return run


def _second_head(attacker: Attacker, head: str) -> None:
    attacker.connection.execute(insert(HEAD).values(id=2, seq=5, hash=head))


ROW_ATTACKS: dict[str, tuple[Callable[[Attacker, str], None], int | None, str]] = {
    # name: (attack, the seq named, words of the reason)
    "entry at seq 0": (forged(0), 0, "not positive"),
    "entry at a negative seq": (forged(-3), -3, "not positive"),
    "entry at the smallest seq": (forged(-(2**63)), -(2**63), "not positive"),
    "entry chained above the head": (forged(6, after_head=True), 6, "above the chain head"),
    "entry far above the head": (forged(2**62, after_head=True), 2**62, "above the chain head"),
    "entry above the head, head moved over a gap": (forged(7, after_head=True, move_head=True), 7,
                                                    "expected seq 6 here, found 7"),
    "entry removed from the middle": (sql("DELETE FROM audit_entry WHERE seq = 3"), 4, "expected seq 3 here, found 4"),
    "last entry removed": (sql("DELETE FROM audit_entry WHERE seq = 5"), 5, "ends at seq 4"),
    "every entry removed": (sql("DELETE FROM audit_entry"), 1, "ends at seq 0"),
    "two entries swapped": (sql("UPDATE audit_entry SET seq = 100 WHERE seq = 2",
                                "UPDATE audit_entry SET seq = 2 WHERE seq = 3",
                                "UPDATE audit_entry SET seq = 3 WHERE seq = 100"), 2, "prev_hash"),
    "head row removed": (sql("DELETE FROM audit_chain_head"), None, "head row is missing"),
    "second head row": (_second_head, None, "other than id 1"),
    "head moved back": (lambda a, head: a.move_head(3, a.row(3)["hash"]), 4, "above the chain head"),
    "head moved forward": (sql("UPDATE audit_chain_head SET seq = 9"), 9, "head row's seq was changed"),
    "head hash replaced": (lambda a, head: a.move_head(5, "ab" * 32), 5, "not the last entry's"),
    "head at a negative seq": (sql("UPDATE audit_chain_head SET seq = -1"), -1, "head row"),
    "checkpoint at the head": (lambda a, head: _checkpoint(a, 5, head), 5, "at or above the chain head"),
    "checkpoint above the head": (lambda a, head: _checkpoint(a, 50, head), 50, "at or above the chain head"),
    "checkpoint below the head": (lambda a, head: _checkpoint(a, 2, a.row(2)["hash"]), 1, "at or below the last"),
    "checkpoint at seq 0": (lambda a, head: _checkpoint(a, 0, GENESIS_HASH), 0, "not positive"),
}


def _checkpoint(attacker: Attacker, up_to_seq: int, hash_: str, archive: str = "forged.jsonl.gz") -> None:
    attacker.connection.execute(insert(CHECKPOINT).values(
        id=uuid.uuid4(), up_to_seq=up_to_seq, hash=hash_, entries=max(up_to_seq, 1), archive=archive,
        archive_sha256="0" * 64, created_at=NOW, actor=None, reason="retention"))


@pytest.mark.slow
def test_every_row_outside_the_verified_chain_is_reported_with_its_seq(chain: Database) -> None:
    head = head_row(chain)[1]
    wrong = {}
    for name, (attack_with, seq, words) in ROW_ATTACKS.items():
        with attack(chain, commit=False) as attacker:
            attack_with(attacker, head)
            report, check_fails = attacker.report(), attacker.check_fails_on_the_chain()
        if report.ok or report.first_bad_seq != seq or words not in (report.reason or "") or not check_fails:
            wrong[name] = report
    assert wrong == {}
    assert verify(chain).ok  # every attack was rolled back


def test_a_foreign_row_is_reported_by_check_and_status_too(chain: Database) -> None:
    with attack(chain) as attacker:
        attacker.forge(0, GENESIS_HASH)
    checked = check(chain, blobs=False)
    assert "audit chain" in [result.name for result in checked.failed]
    assert "seq 0 is not positive" in checked.result("audit chain").problems[0]


# --- damaged values: reported, never raised ---------------------------------------------------------------------


Tamper = Callable[[Attacker], Any]
COMMON_DAMAGE: dict[str, tuple[Tamper, int | None, str]] = {
    "id replaced by another UUID": (lambda a: a.connection.execute(
        update(ENTRY).where(ENTRY.c.seq == 3).values(id=uuid.uuid4())), 3, "content does not match"),
    "data that is not JSON": (lambda a: a.sql("UPDATE audit_entry SET data = '{not json' WHERE seq = 3"), 3,
                              "content does not match"),
    "created_at a second later": (lambda a: a.connection.execute(update(ENTRY).where(ENTRY.c.seq == 3).values(
        created_at=a.row(3)["created_at"] + dt.timedelta(seconds=1))), 3, "content does not match"),
    "prev_hash replaced": (lambda a: a.sql("UPDATE audit_entry SET prev_hash = :h WHERE seq = 3", h="1" * 64), 3,
                           "prev_hash"),
    "hash replaced": (lambda a: a.sql("UPDATE audit_entry SET hash = 'not a hash' WHERE seq = 3"), 3,
                      "content does not match"),
    "an unknown key id": (lambda a: a.sql("UPDATE audit_entry SET key_id = 'ffffffffffffffff' WHERE seq = 3"), 4,
                          "unkeyed entry after keyed ones"),
    "an unknown key id on the last entry": (
        lambda a: a.sql("UPDATE audit_entry SET key_id = 'ffffffffffffffff' WHERE seq = 5"), 5, "head is not keyed"),
    "a purge entry whose data is not JSON": (lambda a: a.sql(
        "UPDATE audit_entry SET action = 'audit.purged', entity_type = 'audit_checkpoint', data = 'x' WHERE seq = 3"),
        3, "content does not match"),
}
ENGINE_DAMAGE: dict[str, dict[str, tuple[Tamper, int | None, str]]] = {
    "sqlite": {  # SQLite stores any value in any column
        "id that is not a UUID": (lambda a: a.sql("UPDATE audit_entry SET id = 'not-a-uuid' WHERE seq = 3"), 3,
                                  "its id cannot be read as a UUID"),
        "id that is a number": (lambda a: a.sql("UPDATE audit_entry SET id = 42 WHERE seq = 3"), 3, "its id"),
        "seq that is text": (lambda a: a.sql("UPDATE audit_entry SET seq = 'three' WHERE seq = 3"), 4,
                             "expected seq 3 here, found 4"),
        "seq that is a fraction": (lambda a: a.sql("UPDATE audit_entry SET seq = 3.5 WHERE seq = 3"), None,
                                   "its seq holds a value of type float"),
        "action that is a blob": (lambda a: a.sql("UPDATE audit_entry SET action = X'00FF' WHERE seq = 3"), 3,
                                  "its action holds a value of type bytes"),
        "action that is not UTF-8": (lambda a: a.sql(
            "UPDATE audit_entry SET action = CAST(X'FFFE41' AS TEXT) WHERE seq = 3"), 3, "its action cannot be read"),
        "created_at that is not a time": (lambda a: a.sql(
            "UPDATE audit_entry SET created_at = 'yesterday' WHERE seq = 3"), 3, "its created_at cannot be read"),
        "created_at that is a number": (lambda a: a.sql("UPDATE audit_entry SET created_at = 42 WHERE seq = 3"), 3,
                                        "its created_at"),
        "hash that is a blob": (lambda a: a.sql("UPDATE audit_entry SET hash = X'AB' WHERE seq = 3"), 3, "its hash"),
        "head seq that is text": (lambda a: a.sql("UPDATE audit_chain_head SET seq = 'five'"), None,
                                  "head row is damaged"),
    },
    "postgresql": {
        "NULL head hash": (lambda a: (a.sql("ALTER TABLE audit_chain_head ALTER COLUMN hash DROP NOT NULL"),
                                      a.sql("UPDATE audit_chain_head SET hash = NULL")), None, "head row is damaged"),
    },
    "mariadb": {
        "zero created_at": (lambda a: (a.sql("SET SESSION sql_mode = ''"), a.sql(
            "UPDATE audit_entry SET created_at = '0000-00-00 00:00:00' WHERE seq = 3")), 3, "its created_at"),
    },
}


def test_damage_in_any_column_is_reported_with_the_row_and_never_raised(chain: Database) -> None:
    wrong = {}
    for name, (tamper, seq, words) in {**COMMON_DAMAGE, **ENGINE_DAMAGE[chain.backend]}.items():
        with attack(chain, commit=False) as attacker:
            tamper(attacker)
            report, check_fails = attacker.report(), attacker.check_fails_on_the_chain()
        if report.ok or report.first_bad_seq != seq or words not in (report.reason or "") or not check_fails:
            wrong[name] = report
    assert wrong == {}


NULLABLE = {  # how someone with full access lets a NOT NULL column take NULL, on each engine
    "postgresql": "ALTER TABLE audit_entry ALTER COLUMN {column} DROP NOT NULL",
    "mariadb": "ALTER TABLE audit_entry MODIFY {column} {mariadb} NULL",
    # SQLite has no such ALTER: the attacker rewrites the schema text itself.
    "sqlite": "UPDATE sqlite_master SET sql = replace(sql, '{column} {sqlite} NOT NULL', '{column} {sqlite}') "
              "WHERE name = 'audit_entry'",
}


@pytest.mark.parametrize(("column", "types", "target", "seq", "words"), [
    ("seq", ("BIGINT", "BIGINT"), 5, None, "its seq holds NULL"),
    ("action", ("VARCHAR(64)", "VARCHAR(64)"), 3, 3, "its action holds NULL"),
    ("created_at", ("DATETIME(6)", "DATETIME"), 3, 3, "its created_at holds NULL"),
    ("hash", ("VARCHAR(64)", "VARCHAR(64)"), 3, 3, "its hash holds NULL"),
])
def test_a_null_in_a_column_made_nullable_is_reported_and_fails_check(
    chain: Database, column: str, types: tuple[str, str], target: int, seq: int | None, words: str
) -> None:
    make_nullable = NULLABLE[chain.backend].format(column=column, mariadb=types[0], sqlite=types[1])
    with attack(chain) as attacker:
        if chain.backend == "sqlite":
            version = int(attacker.connection.exec_driver_sql("PRAGMA schema_version").scalar() or 0)
            attacker.sql("PRAGMA writable_schema = ON")
            attacker.sql(make_nullable)
            attacker.sql(f"PRAGMA schema_version = {version + 1}")
            attacker.sql("PRAGMA writable_schema = OFF")
        else:
            attacker.sql(make_nullable)
        attacker.sql(f"UPDATE audit_entry SET {column} = NULL WHERE seq = {target}")
    chain.dispose()  # SQLite: no connection keeps the old schema text
    report = verify(chain)
    assert (report.first_bad_seq, words in reason_of(report)) == (seq, True)
    assert check(chain, blobs=False).result("audit chain").ok is False


def test_a_row_whose_id_is_not_a_uuid_is_named_by_its_id(chain: Database) -> None:
    if chain.backend != "sqlite":  # the servers' UUID columns hold UUIDs only: replace it with another
        other = uuid.uuid4()
        with attack(chain) as attacker:
            attacker.connection.execute(update(ENTRY).where(ENTRY.c.seq == 2).values(id=other))
        assert (verify(chain).first_bad_seq, verify(chain).first_bad_id) == (2, str(other))
        return
    with attack(chain) as attacker:
        attacker.sql("UPDATE audit_entry SET id = :id WHERE seq = 2", id="évil\x00id")
    report = verify(chain)
    assert (report.first_bad_seq, report.first_bad_id) == (2, "évil?id")
    assert check(chain, blobs=False).result("audit chain").ok is False


# --- a foreign row above the head: audited writes stop, and say why ------------------------------------------------


@pytest.mark.parametrize("write", ["event", "audited model", "bulk entries"])
def test_a_row_inserted_above_the_head_with_insert_rights_only_stops_audited_writes_naming_the_tampering(
    chain: Database, write: str
) -> None:
    seq_head, hash_head = head_row(chain)
    with chain.engine.begin() as connection:  # triggers and constraints in place: INSERT is all it takes
        connection.execute(insert(ENTRY).values(
            id=uuid.uuid4(), seq=seq_head + 1, kind="event", action="blocker", created_at=NOW,
            prev_hash=hash_head, hash="0" * 64))

    with pytest.raises(AuditTampered, match="does not account for") as raised, chain.unit_of_work() as uow:
        if write == "event":
            audit_log.record_event(uow.session, "login.success")
        elif write == "audited model":
            uow.users.create(email="ada@example.com", password="a long and unusual passphrase")
        else:
            audit_log.append_entries(uow.session, [Entry(uuid.uuid4(), NOW, "event", "import")])

    assert "audit verify" in str(raised.value)
    assert entry_count(chain) == 6 and head_row(chain) == (seq_head, hash_head)  # nothing written
    report = verify(chain)
    assert report.first_bad_seq == seq_head + 1 and "above the chain head" in reason_of(report)


# --- checkpoints and purge archives ------------------------------------------------------------------------------


@pytest.fixture
def purged(chain: Database, tmp_path: Path) -> Database:
    """Three purges (archives under tmp_path/archive), then two more entries: checkpoints at seq 5, 8 and 11."""
    for _ in range(3):
        with chain.unit_of_work(actor="ops") as uow:
            assert uow.audit.purge(before=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1), reason="retention",
                                   archive_dir=tmp_path / "archive")
        seed(chain, 2)
    return chain


def checkpoints(database: Database) -> list[dict[str, Any]]:
    with database.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(CHECKPOINT).order_by(CHECKPOINT.c.up_to_seq))]


def test_purges_leave_checkpoints_and_archives_that_all_verify(purged: Database, tmp_path: Path) -> None:
    assert [checkpoint["up_to_seq"] for checkpoint in checkpoints(purged)] == [5, 8, 11]
    report = verify(purged, archive_dir=tmp_path / "archive")
    assert report.ok and report.archives_checked == 3 and report.warnings == ()
    assert report.checked == 3 and report.head_seq == 14
    elsewhere = verify(purged, archive_dir=tmp_path / "nowhere")
    assert elsewhere.ok and elsewhere.archives_checked == 0 and len(elsewhere.warnings) == 3


def test_with_insert_rights_only_no_checkpoint_goes_in_after_purges_either(purged: Database) -> None:
    seq_head, hash_head = head_row(purged)
    for up_to_seq in (2, 6, 8, 11, 12, seq_head):  # below, between, at and above the checkpoints; at the head
        with pytest.raises(DatabaseError, match="checkpoint"), purged.unit_of_work() as uow:
            uow.session.execute(insert(CHECKPOINT).values(
                id=uuid.uuid4(), up_to_seq=up_to_seq, hash=hash_head, entries=1, archive="x", archive_sha256="0" * 64,
                created_at=NOW, reason="forged"))
    assert [checkpoint["up_to_seq"] for checkpoint in checkpoints(purged)] == [5, 8, 11]


CHECKPOINT_ATTACKS: dict[str, tuple[Callable[[Attacker, list[dict[str, Any]]], Any], int, str]] = {
    "an extra checkpoint between two": (lambda a, cps: _checkpoint(a, 6, cps[0]["hash"]), 11,
                                        "checkpoint rows were added or changed"),
    "an extra checkpoint above the last": (lambda a, cps: _checkpoint(a, 12, a.row(12)["hash"]), 12,
                                           "at or below the last checkpoint"),
    "the first checkpoint removed": (lambda a, cps: a.connection.execute(
        delete(CHECKPOINT).where(CHECKPOINT.c.up_to_seq == 5)), 11, "checkpoint rows were added or changed"),
    "the last checkpoint removed": (lambda a, cps: a.connection.execute(
        delete(CHECKPOINT).where(CHECKPOINT.c.up_to_seq == 11)), 12, "expected seq 9 here, found 12"),
    "an earlier checkpoint's reason edited": (lambda a, cps: a.connection.execute(update(CHECKPOINT).where(
        CHECKPOINT.c.up_to_seq == 8).values(reason="forgotten")), 11, "checkpoint rows were added or changed"),
    "the last checkpoint's hash edited": (lambda a, cps: a.connection.execute(update(CHECKPOINT).where(
        CHECKPOINT.c.up_to_seq == 11).values(hash="ab" * 32)), 12, "prev_hash"),
    "the last checkpoint's archive SHA-256 edited": (lambda a, cps: a.connection.execute(update(CHECKPOINT).where(
        CHECKPOINT.c.up_to_seq == 11).values(archive_sha256="ab" * 32)), 11, "archive_sha256 differs"),
    "the last checkpoint's archive renamed to a path": (lambda a, cps: a.connection.execute(update(CHECKPOINT).where(
        CHECKPOINT.c.up_to_seq == 11).values(archive="../../etc/passwd")), 11, "not a plain file name"),
    "the purge entry edited": (lambda a, cps: a.sql("UPDATE audit_entry SET data = '{}' WHERE seq = 12"), 12,
                               "content does not match"),
    "the purge entry removed and the chain re-linked": (lambda a, cps: (
        a.sql("DELETE FROM audit_entry WHERE seq = 12"),
        a.sql("UPDATE audit_entry SET seq = 12 WHERE seq = 13"),
        a.sql("UPDATE audit_entry SET seq = 13 WHERE seq = 14"), a.rechain(start=12)), 11,
        "not confirmed by an audit.purged entry"),
}


@pytest.mark.slow
def test_a_checkpoint_is_accepted_only_as_the_chain_recorded_it(purged: Database) -> None:
    cps = checkpoints(purged)
    wrong = {}
    for name, (attack_with, seq, words) in CHECKPOINT_ATTACKS.items():
        with attack(purged, commit=False) as attacker:
            attack_with(attacker, cps)
            report, check_fails = attacker.report(), attacker.check_fails_on_the_chain()
        if report.ok or report.first_bad_seq != seq or words not in (report.reason or "") or not check_fails:
            wrong[name] = report
    assert wrong == {}


def _archive_of(database: Database, tmp_path: Path, up_to_seq: int) -> Path:
    name = next(cp["archive"] for cp in checkpoints(database) if cp["up_to_seq"] == up_to_seq)
    return tmp_path / "archive" / name


@pytest.mark.parametrize("edit", ["a flipped byte", "an edited entry, re-compressed", "cut short", "emptied"])
def test_an_edited_purge_archive_is_reported(purged: Database, tmp_path: Path, edit: str) -> None:
    path = _archive_of(purged, tmp_path, 8)
    data = path.read_bytes()
    if edit == "a flipped byte":
        data = data[:40] + bytes([data[40] ^ 0x01]) + data[41:]
    elif edit == "an edited entry, re-compressed":
        lines = gzip.decompress(data).decode().splitlines()
        lines[1] = lines[1].replace('"ping"', '"pong"')
        data = gzip.compress(("\n".join(lines) + "\n").encode())
    elif edit == "cut short":
        data = data[: len(data) // 2]
    else:
        data = b""
    path.write_bytes(data)

    report = verify(purged, archive_dir=tmp_path / "archive")
    assert report.first_bad_seq == 8 and "was changed" in reason_of(report) and path.name in reason_of(report)
    checked = check(purged, blobs=False, archive_dir=tmp_path / "archive")
    assert [result.name for result in checked.failed] == ["audit chain"]


def test_a_missing_archive_is_a_warning_not_a_failure(purged: Database, tmp_path: Path) -> None:
    _archive_of(purged, tmp_path, 8).unlink()
    report = verify(purged, archive_dir=tmp_path / "archive")
    assert report.ok and report.archives_checked == 2
    assert len(report.warnings) == 1 and "not checked" in report.warnings[0]
    checked = check(purged, blobs=False, archive_dir=tmp_path / "archive")
    assert checked.ok and checked.result("audit chain").warnings == report.warnings


# --- exported heads ----------------------------------------------------------------------------------------------


def test_a_head_exported_earlier_is_found_unchanged_in_the_grown_chain(chain: Database) -> None:
    exported = audit_db.head(chain)
    seed(chain, 3)
    assert verify(chain, expected_head=exported).ok
    assert verify(chain, expected_head=ExportedHead.parse(exported.token)).ok
    assert verify(chain, expected_head=ExportedHead(0, GENESIS_HASH)).ok


def test_a_rewrite_without_the_key_verifies_alone_but_not_against_an_exported_head(chain: Database) -> None:
    """The limit of an unkeyed chain: whoever can rewrite everything can make it verify. An export catches it."""
    exported = audit_db.head(chain)
    with attack(chain) as attacker:
        attacker.sql("UPDATE audit_entry SET action = 'pong' WHERE seq = 2")
        attacker.rechain(start=2)
    assert verify(chain).ok
    report = verify(chain, expected_head=exported)
    assert report.first_bad_seq == 5 and "rewritten" in reason_of(report)


def test_a_tail_cut_off_without_the_key_is_caught_by_an_exported_head(chain: Database) -> None:
    exported = audit_db.head(chain)
    with attack(chain) as attacker:
        third = attacker.row(3)["hash"]
        attacker.sql("DELETE FROM audit_entry WHERE seq > 3")
        attacker.move_head(3, third)
    assert verify(chain).ok  # a shorter chain is still a chain: only the export knows it was longer
    report = verify(chain, expected_head=exported)
    assert report.first_bad_seq == 5 and "beyond the chain head" in reason_of(report)


def test_a_purged_exported_head_is_confirmed_by_its_checkpoint_or_its_archive(purged: Database,
                                                                             tmp_path: Path) -> None:
    at_checkpoint = ExportedHead(8, checkpoints(purged)[1]["hash"])
    assert verify(purged, expected_head=at_checkpoint).ok
    with gzip.open(_archive_of(purged, tmp_path, 8), "rt") as archive:
        inside = json.loads(archive.readlines()[1])  # seq 7
    exported = ExportedHead(inside["seq"], inside["hash"])
    assert verify(purged, expected_head=exported, archive_dir=tmp_path / "archive").ok
    forged = dataclasses.replace(exported, hash="ab" * 32)
    assert "rewritten" in reason_of(verify(purged, expected_head=forged, archive_dir=tmp_path / "archive"))
    unseen = verify(purged, expected_head=exported, archive_dir=tmp_path / "nowhere")
    assert "was not checked" in reason_of(unseen) and unseen.first_bad_seq == 7


@pytest.mark.parametrize("text_form", ["token", "json", "padded token"])
def test_an_exported_head_reads_back_from_its_printed_forms(text_form: str) -> None:
    head = ExportedHead(12, "ab" * 32, "2026-06-01T12:00:00+00:00", "0123456789abcdef")
    printed = {"token": head.token, "json": json.dumps(head.as_json()), "padded token": f"  {head.token}\n"}[text_form]
    parsed = ExportedHead.parse(printed)
    assert (parsed.seq, parsed.hash) == (12, "ab" * 32)


@pytest.mark.parametrize("printed", ["", "12", "12:abc", "-1:" + "ab" * 32, "12:" + "AB" * 32, "[]", '{"seq": 1}',
                                     '{"seq": true, "hash": "' + "ab" * 32 + '"}', "9" * 30 + ":" + "ab" * 32])
def test_anything_else_is_not_an_exported_head(printed: str) -> None:
    from db import ValidationError

    with pytest.raises(ValidationError, match="not an exported audit head"):
        ExportedHead.parse(printed)


# --- verification while others write ---------------------------------------------------------------------------------


def test_verification_while_others_append_reports_no_false_problem(chain: Database) -> None:
    writers, each, reports = 3, 15, []
    done = threading.Event()
    failures: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(each):
                chain.run_in_transaction(
                    lambda uow, i=i: audit_log.record_event(uow.session, "ping", data={"w": n, "i": i}), attempts=50)
        except BaseException as error:
            failures.append(error)

    def wait() -> None:
        for thread in threads:
            thread.join()
        done.set()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    watcher = threading.Thread(target=wait)
    watcher.start()
    while not done.is_set():
        reports.append(verify(chain))
    watcher.join()
    assert failures == []
    assert [report for report in reports if not report.ok] == []
    assert verify(chain).checked == 5 + writers * each


# --- the triggers themselves ----------------------------------------------------------------------------------------


def test_an_audit_trigger_dropped_and_not_put_back_fails_the_schema_check(chain: Database) -> None:
    guard = "DROP TRIGGER audit_entry_above_head" + (" ON audit_entry" if chain.backend == "postgresql" else "")
    with chain.engine.begin() as connection:
        connection.exec_driver_sql(guard)
    report = check(chain, blobs=False)
    assert [result.name for result in report.failed] == ["schema"]
    assert report.result("schema").problems == ("missing trigger: audit_entry_above_head",)
