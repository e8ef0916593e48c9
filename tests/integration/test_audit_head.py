"""The audit chain head under attack, on every engine: it cannot be removed (revision 0007), the layer never starts a
new chain without it, and a head that the triggers let through but no log can have stops audited writes with
``AuditTampered`` and is reported by the verification as head damage.

Each attack is raw SQL, as someone with SQL access would write it: with the triggers in place (what the database
itself refuses or lets through), or with them dropped (``attack``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text

from db import AuditTampered, Database, DatabaseError
from db import audit as audit_log
from db.audit import Entry
from db.dialects import dialect_named
from db.scripts import audit_db
from db.scripts.check_db import check
from tests.integration.audit_attacks import ENTRY, NOW, attack, entry_count, head_row, reason_of, seed, verify
from tests.support import TestDatabases

KEY = "correct horse battery staple, 0123456789"
MAX_SEQ = 2**63 - 1


@pytest.fixture
def chain(engine_name: str, test_databases: TestDatabases) -> Iterator[Database]:
    """A database of its own (the tests commit), with five audit events: seq 1 to 5."""
    with test_databases.own(engine_name, "dblayer_head") as database:
        seed(database, 5)
        yield database


@pytest.fixture
def empty(engine_name: str, test_databases: TestDatabases) -> Iterator[Database]:
    """A database of its own, fresh from the migrations: the genesis head, no entry."""
    with test_databases.own(engine_name, "dblayer_head") as database:
        yield database


@contextmanager
def keyed_as(database: Database, key: str | None) -> Iterator[Database]:
    """The same database, used with ``key`` as its audit key (None: without one)."""
    other = Database(database.url, settings=dataclasses.replace(database.settings, audit_key=key))
    try:
        yield other
    finally:
        other.dispose()


def purge_all(database: Database, tmp_path: Path) -> None:
    """A retention purge of every entry so far: a checkpoint, and the purge's own entry above it."""
    with database.unit_of_work(actor="ops") as uow:
        assert uow.audit.purge(before=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1), reason="retention",
                               archive_dir=tmp_path / "archive")


def sql(database: Database, *statements: str) -> None:
    """Raw statements, committed, with every trigger in place."""
    with database.engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)


Write = Callable[[Any], Any]
WRITES: dict[str, Write] = {
    "event": lambda uow: audit_log.record_event(uow.session, "login.success"),
    "audited model": lambda uow: uow.users.create(email="ada@example.com", password="a long and unusual passphrase"),
    "bulk entries": lambda uow: audit_log.append_entries(uow.session, [Entry(uuid.uuid4(), NOW, "event", "import")]),
}


def refused_writes(database: Database, words: str) -> dict[str, str]:
    """Each kind of audited write, which must raise ``AuditTampered`` naming the chain head with ``words``; returns
    the writes that did something else (what they did)."""
    wrong = {}
    for name, write in WRITES.items():
        try:
            with database.unit_of_work(actor="app") as uow:
                write(uow)
        except AuditTampered as error:
            if "audit_chain_head" not in str(error) or words not in str(error):
                wrong[name] = str(error)
        except Exception as error:  # what else it raised is the finding
            wrong[name] = f"{type(error).__name__}: {error}"
        else:
            wrong[name] = "written"
    return wrong


# --- the database refuses to remove the head --------------------------------------------------------------------


@pytest.mark.parametrize("purged", [False, True], ids=["a chain", "a purged chain"])
def test_the_database_refuses_to_delete_the_chain_head(chain: Database, tmp_path: Path, purged: bool) -> None:
    if purged:
        purge_all(chain, tmp_path)
    before = head_row(chain)
    statements = ["DELETE FROM audit_chain_head", "DELETE FROM audit_chain_head WHERE id = 1"]
    if chain.backend == "postgresql":
        statements.append("TRUNCATE audit_chain_head")
    for statement in statements:
        with pytest.raises(DatabaseError, match="chain head cannot be removed"), chain.unit_of_work() as uow:
            uow.session.execute(text(statement))
    assert head_row(chain) == before
    assert verify(chain).ok


def test_the_genesis_head_of_an_empty_log_can_go_and_then_nothing_is_appended(empty: Database) -> None:
    """What a restore does (it clears the head the migrations seeded, then loads the backup's); done by anyone else,
    the layer refuses to append rather than start a chain, and the verification names the missing row."""
    assert head_row(empty) == (0, "0" * 64) and entry_count(empty) == 0
    sql(empty, "DELETE FROM audit_chain_head")
    assert refused_writes(empty, "head row is missing") == {}
    assert entry_count(empty) == 0
    assert "head row is missing" in reason_of(verify(empty))
    assert check(empty, blobs=False).result("audit chain").ok is False


def test_the_head_cannot_go_once_an_entry_is_there_though_it_still_says_genesis(empty: Database) -> None:
    """With INSERT rights alone: an entry above the genesis head, then the head removed, would start the log over."""
    sql(empty, "INSERT INTO audit_entry (id, seq, kind, action, created_at, prev_hash, hash) VALUES "
               f"('{uuid.uuid4().hex if empty.backend == 'sqlite' else uuid.uuid4()}', 1, 'event', 'forged', "
               f"'2026-01-01 00:00:00', '{'0' * 64}', '{'0' * 64}')")
    with pytest.raises(DatabaseError, match="chain head cannot be removed"), empty.unit_of_work() as uow:
        uow.session.execute(text("DELETE FROM audit_chain_head"))
    assert head_row(empty)[0] == 0


def test_check_reports_a_dropped_head_trigger(chain: Database) -> None:
    engine = dialect_named(chain.backend)
    sql(chain, *engine.drop_head_guard_ddl())
    try:
        problems = check(chain, blobs=False).result("schema").problems
    finally:
        sql(chain, *engine.head_guard_ddl())
    expected = {"missing trigger: audit_chain_head_no_delete"}
    if chain.backend == "postgresql":
        expected.add("missing trigger: audit_chain_head_no_truncate")
    assert set(problems) >= expected
    assert check(chain, blobs=False).result("schema").ok


# --- the head removed with the trigger dropped: the layer never starts a new chain -----------------------------------


def test_a_head_removed_after_a_purge_stops_every_audited_write(chain: Database, tmp_path: Path) -> None:
    purge_all(chain, tmp_path)
    entries = entry_count(chain)
    with attack(chain) as attacker:
        attacker.sql("DELETE FROM audit_chain_head")
    assert refused_writes(chain, "head row is missing") == {}
    assert entry_count(chain) == entries  # nothing at seq 1 with the genesis hash, below the checkpoint
    report = verify(chain, archive_dir=tmp_path / "archive")
    assert "the chain head row is missing" in reason_of(report) and "checkpoint" not in reason_of(report)


def test_on_a_keyed_chain_a_removed_head_does_not_let_a_write_without_the_key_through(chain: Database) -> None:
    with keyed_as(chain, KEY) as keyed:
        seed(keyed, 2)
    with attack(chain) as attacker:
        attacker.sql("DELETE FROM audit_chain_head")
    assert refused_writes(chain, "head row is missing") == {}  # chain has no key: before, this began a new chain
    with keyed_as(chain, KEY) as keyed:
        assert refused_writes(keyed, "head row is missing") == {}
        assert "head row is missing" in reason_of(verify(keyed))


def test_a_keyed_log_wiped_with_its_head_is_not_continued_as_a_new_chain(chain: Database, tmp_path: Path) -> None:
    """The attack of the review: without the key, drop the triggers, delete every entry and the head, put the
    triggers back. Before, the next audited write began a new keyed chain at seq 1 that verified."""
    with keyed_as(chain, KEY) as keyed:
        seed(keyed, 3)
        exported = audit_db.head(keyed)
    with attack(chain) as attacker:
        attacker.sql("DELETE FROM audit_entry")
        attacker.sql("DELETE FROM audit_chain_head")
    assert not check(chain, blobs=False).result("schema").problems  # the triggers are back: only the chain tells
    with keyed_as(chain, KEY) as keyed:
        assert refused_writes(keyed, "head row is missing") == {}
        assert entry_count(keyed) == 0
        assert "the chain head row is missing" in reason_of(verify(keyed))
        assert check(keyed, blobs=False).result("audit chain").ok is False

        # Someone who also writes a genesis head back gets a log that looks new; an exported head tells.
        with attack(keyed) as attacker:
            attacker.sql(f"INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, 0, '{'0' * 64}')")
        seed(keyed, 1)
        report = verify(keyed, expected_head=exported)
        assert report.first_bad_seq == exported.seq and "beyond the chain head" in reason_of(report)


def test_a_head_put_back_at_genesis_after_a_purge_stops_writes_and_is_blamed(chain: Database, tmp_path: Path) -> None:
    purge_all(chain, tmp_path)
    with attack(chain) as attacker:
        attacker.sql("DELETE FROM audit_chain_head")
        attacker.sql(f"INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, 0, '{'0' * 64}')")
    assert refused_writes(chain, "back at genesis") == {}
    report = verify(chain, archive_dir=tmp_path / "archive")
    assert report.first_bad_seq == 0 and "head is back at genesis" in reason_of(report)


# --- a head the triggers let through, that no log can have ----------------------------------------------------------


def _head_update(assignments: str) -> Callable[[Database], None]:
    return lambda database: sql(database, f"UPDATE audit_chain_head SET {assignments}")


def _forged_entry_at_the_last_seq(database: Database) -> None:
    """With INSERT and UPDATE rights only: an entry at the largest seq (above the head: let in), then the head moved
    forward onto it (forward: let through), so that the head names an entry."""
    with database.engine.begin() as connection:
        connection.execute(insert(ENTRY).values(
            id=uuid.uuid4(), seq=MAX_SEQ, kind="event", action="forged", created_at=NOW, prev_hash="0" * 64,
            hash="ab" * 32))
        connection.exec_driver_sql(f"UPDATE audit_chain_head SET seq = {MAX_SEQ}, hash = '{'ab' * 32}'")


IMPOSSIBLE_HEADS: dict[str, tuple[Callable[[Database], None], str, int, str]] = {
    # name: (attack, words of AuditTampered, the seq verify names, words of its reason)
    "seq at the largest BIGINT": (_head_update(f"seq = {MAX_SEQ}"), f"seq ({MAX_SEQ})", MAX_SEQ,
                                  "head row's seq was changed"),
    "seq moved one forward": (_head_update("seq = 6"), "no entry holds", 6, "head row's seq was changed"),
    "a key id on an unkeyed chain": (_head_update("key_id = 'ffffffffffffffff'"), "key id (ffffffffffffffff)", 5,
                                     "key id (ffffffffffffffff) is not that of the last entry"),
    "another hash": (_head_update(f"hash = '{'ab' * 32}'"), "hash is not that of the entry", 5,
                     "not the last entry's"),
    "moved onto a forged entry at the largest seq": (_forged_entry_at_the_last_seq, "overflow", MAX_SEQ,
                                                     "expected seq 6 here"),
}


@pytest.mark.parametrize("name", IMPOSSIBLE_HEADS)
def test_an_impossible_head_stops_audited_writes_with_audit_tampered_and_verify_blames_the_head(
    chain: Database, name: str
) -> None:
    tamper, words, seq, reason = IMPOSSIBLE_HEADS[name]
    tamper(chain)  # every trigger in place: the database lets these through
    before = head_row(chain), entry_count(chain)
    assert refused_writes(chain, words) == {}
    assert (head_row(chain), entry_count(chain)) == before  # nothing written
    report = verify(chain)
    assert (report.first_bad_seq, reason in reason_of(report)) == (seq, True), report
    assert check(chain, blobs=False).result("audit chain").ok is False


KEYED_HEADS: dict[str, tuple[str, str, str]] = {
    # name: (assignments, words of AuditTampered, words of the verification's reason)
    "its MAC replaced": (f"mac = '{'0' * 64}'", "MAC does not match", "MAC does not match"),
    "another key id": ("key_id = 'ffffffffffffffff'", "key id (ffffffffffffffff)", "is not that of the last entry"),
    "its key id cleared": ("key_id = NULL, mac = NULL", "key id (none)", "head is not keyed"),
}


@pytest.mark.parametrize("name", KEYED_HEADS)
def test_a_keyed_head_changed_without_the_key_is_not_extended(chain: Database, name: str) -> None:
    """Appending would write a valid MAC over the damage: the head is checked first."""
    assignments, words, reason = KEYED_HEADS[name]
    with keyed_as(chain, KEY) as keyed:
        seed(keyed, 2)
        sql(keyed, f"UPDATE audit_chain_head SET {assignments}")
        before = head_row(keyed), entry_count(keyed)
        assert refused_writes(keyed, words) == {}
        assert (head_row(keyed), entry_count(keyed)) == before
        assert reason in reason_of(verify(keyed))
