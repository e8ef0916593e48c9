"""The keyed audit chain (HMAC-SHA256 with ``DBLAYER_AUDIT_KEY``) on every engine.

The attacker has full SQL access but not the key: whatever they forge, downgrade, cut or rewrite, verification
with the key reports it. Entries made before the key was set still verify; without the key, verification says
so; the key itself never shows.
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
from sqlalchemy import delete, insert, select

from db import AuditKeyError, Database, ValidationError
from db import audit as audit_log
from db.audit import ChainKey, chain_key
from db.models.log_audit import GENESIS_HASH
from db.scripts import audit_db
from db.scripts.backup_db import backup
from db.scripts.check_db import check
from db.scripts.restore_db import restore
from db.settings import Settings
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

KEY = "correct horse battery staple, 0123456789"
OTHER_KEY = "another key of the same proper length!!!"


def key_id(key: str) -> str:
    made = chain_key(key)
    assert made is not None
    return made.id


KEY_ID = key_id(KEY)


@pytest.fixture
def plain(engine_name: str, test_databases: TestDatabases) -> Iterator[Database]:
    """A database of its own, used without a key."""
    with test_databases.own(engine_name, "dblayer_keyed") as database:
        yield database


@contextmanager
def keyed_as(database: Database, key: str) -> Iterator[Database]:
    """The same database, used with ``key`` as its audit key."""
    other = Database(database.url, settings=dataclasses.replace(database.settings, audit_key=key))
    try:
        yield other
    finally:
        other.dispose()


@pytest.fixture
def keyed(plain: Database) -> Iterator[Database]:
    with keyed_as(plain, KEY) as database:
        yield database


@pytest.fixture
def mixed(plain: Database, keyed: Database) -> Database:
    """Three entries made before the key was set (seq 1-3), four after (seq 4-7); returns the keyed Database."""
    seed(plain, 3)
    seed(keyed, 4)
    return keyed


# --- what holds for an honest chain ---------------------------------------------------------------------------------


def test_entries_made_before_the_key_still_verify_once_the_chain_is_keyed(mixed: Database) -> None:
    report = verify(mixed)
    assert report.ok and report.checked == 7 and report.key_id == KEY_ID
    with mixed.engine.connect() as connection:
        keys = connection.execute(select(ENTRY.c.key_id).order_by(ENTRY.c.seq)).scalars().all()
        head = connection.execute(select(HEAD.c.key_id, HEAD.c.mac)).one()
    assert keys == [None] * 3 + [KEY_ID] * 4
    assert head.key_id == KEY_ID and head.mac is not None
    assert check(mixed, blobs=False).result("audit chain").ok


def test_a_key_set_after_the_last_entry_is_reported_until_the_chain_is_sealed(plain: Database,
                                                                              keyed: Database) -> None:
    seed(plain, 3)
    assert "audit seal" in reason_of(verify(keyed))
    sealed = audit_db.seal(keyed)
    assert sealed.seq == 4 and sealed.key_id == KEY_ID
    assert verify(keyed).ok


def test_verifying_a_keyed_chain_without_the_key_says_so_and_still_checks_its_links(mixed: Database,
                                                                                    plain: Database) -> None:
    report = verify(plain)
    assert report.first_bad_seq == 4 and "set DBLAYER_AUDIT_KEY" in reason_of(report)
    with attack(plain) as attacker:
        attacker.sql("DELETE FROM audit_entry WHERE seq = 5")
    assert "expected seq 5 here, found 6" in reason_of(verify(plain))


def test_verifying_with_another_key_names_both_key_ids(mixed: Database, plain: Database) -> None:
    with keyed_as(plain, OTHER_KEY) as other:
        reason = reason_of(verify(other))
    assert KEY_ID in reason and key_id(OTHER_KEY) in reason


@pytest.mark.parametrize("writer_key", [None, OTHER_KEY])
def test_an_audited_write_without_the_chains_key_is_refused_and_writes_nothing(mixed: Database, plain: Database,
                                                                               writer_key: str | None) -> None:
    before = head_row(mixed)
    with keyed_as(plain, writer_key) if writer_key else _same(plain) as writer:
        with pytest.raises(AuditKeyError, match=KEY_ID) as raised, writer.unit_of_work() as uow:
            audit_log.record_event(uow.session, "login.success")
        with pytest.raises(AuditKeyError), writer.unit_of_work() as uow:
            uow.users.create(email="ada@example.com", password="a long and unusual passphrase")
    assert KEY not in str(raised.value) and OTHER_KEY not in str(raised.value)
    assert head_row(mixed) == before and entry_count(mixed) == 7
    assert verify(mixed).ok


@contextmanager
def _same(database: Database) -> Iterator[Database]:
    yield database


def test_purges_of_a_keyed_chain_leave_checkpoints_and_archives_that_verify_with_the_key(
    mixed: Database, plain: Database, tmp_path: Path
) -> None:
    for _ in range(2):
        with mixed.unit_of_work(actor="ops") as uow:
            uow.audit.purge(before=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1), reason="retention",
                            archive_dir=tmp_path)
        seed(mixed, 2)
    report = verify(mixed, archive_dir=tmp_path)
    assert report.ok and report.archives_checked == 2 and report.key_id == KEY_ID
    assert not verify(plain, archive_dir=tmp_path).ok


# --- what someone without the key cannot do unnoticed -----------------------------------------------------------


def _cut_tail(attacker: Attacker, *, clear_key: bool) -> None:
    fifth = attacker.row(5)["hash"]
    attacker.sql("DELETE FROM audit_entry WHERE seq > 5")
    attacker.move_head(5, fifth, **({"key_id": None, "mac": None} if clear_key else {}))


def _forge_purge(attacker: Attacker) -> None:
    """Cut the oldest entries as a purge would, with a checkpoint and a purge entry chained with SHA-256."""
    third = attacker.row(3)["hash"]
    attacker.sql("DELETE FROM audit_entry WHERE seq <= 3")
    ident = uuid.uuid4()
    attacker.connection.execute(insert(CHECKPOINT).values(
        id=ident, up_to_seq=3, hash=third, entries=3, archive="forged.jsonl.gz", archive_sha256="0" * 64,
        created_at=NOW, actor="ops", reason="retention"))
    data = audit_log.canonical({"first_seq": 1, "last_seq": 3, "hash": third, "entries": 3,
                                "archive": "forged.jsonl.gz", "archive_sha256": "0" * 64, "reason": "retention"})
    head = attacker.row(7)["hash"]
    made = attacker.forge(8, head, action="audit.purged", entity_type="audit_checkpoint", entity_id=str(ident),
                          data=data)
    attacker.move_head(8, made)


def _forge_with_a_guessed_key(attacker: Attacker) -> None:
    guess = ChainKey(b"a guess at the key, of any length", KEY_ID)
    made = attacker.forge(8, attacker.row(7)["hash"], key=guess)
    attacker.move_head(8, made)


KEYED_ATTACKS: dict[str, tuple[Callable[[Attacker], Any], int, str]] = {
    "a keyed entry edited and the chain recomputed with SHA-256": (
        lambda a: (a.sql("UPDATE audit_entry SET action = 'pong' WHERE seq = 5"), a.rechain(start=5)), 5,
        "content does not match"),
    "every keyed entry rewritten as unkeyed (a downgrade)": (
        lambda a: a.rechain(start=4, downgrade=True), 7, "not keyed"),
    "the last keyed entries rewritten as unkeyed": (
        lambda a: a.rechain(start=6, downgrade=True), 6, "unkeyed entry after keyed ones"),
    "the tail cut and the head pointed back": (lambda a: _cut_tail(a, clear_key=False), 5, "MAC does not match"),
    "the tail cut and the head's key cleared": (lambda a: _cut_tail(a, clear_key=True), 5, "head is not keyed"),
    "history before the key rewritten and re-chained": (
        lambda a: (a.sql("UPDATE audit_entry SET action = 'pong' WHERE seq = 2"), a.rechain(start=2)), 4,
        "content does not match"),
    "a purge forged over the oldest entries": (_forge_purge, 8, "unkeyed entry after keyed ones"),
    "an entry appended with a guessed key": (_forge_with_a_guessed_key, 8, "content does not match"),
    "the head's MAC copied onto another head": (
        lambda a: a.move_head(6, a.row(6)["hash"]), 7, "above the chain head"),
    "the entries' key id cleared, hashes kept": (
        lambda a: a.sql("UPDATE audit_entry SET key_id = NULL"), 4, "content does not match"),
}


@pytest.mark.slow
def test_nothing_forged_without_the_key_verifies_with_it(mixed: Database) -> None:
    wrong = {}
    for name, (attack_with, seq, words) in KEYED_ATTACKS.items():
        with attack(mixed, commit=False) as attacker:
            attack_with(attacker)
            report, check_fails = attacker.report(), attacker.check_fails_on_the_chain()
        if report.ok or report.first_bad_seq != seq or words not in (report.reason or "") or not check_fails:
            wrong[name] = report
    assert wrong == {}
    assert verify(mixed).ok


def test_a_tail_cut_back_to_a_head_copied_earlier_is_caught_by_an_exported_head(mixed: Database) -> None:
    """The limit of the key alone: a head row read from the database earlier is a valid head for that shorter
    chain. A head exported afterwards (copied out of the attacker's reach) catches the cut."""
    with mixed.engine.connect() as connection:
        copied = dict(connection.execute(select(HEAD)).one()._mapping)
    seed(mixed, 2)
    exported = audit_db.head(mixed)
    with attack(mixed) as attacker:
        attacker.connection.execute(delete(ENTRY).where(ENTRY.c.seq > copied["seq"]))
        attacker.move_head(copied["seq"], copied["hash"], key_id=copied["key_id"], mac=copied["mac"])
    assert verify(mixed).ok
    report = verify(mixed, expected_head=exported)
    assert report.first_bad_seq == 9 and "beyond the chain head" in reason_of(report)


# --- the key itself ------------------------------------------------------------------------------------------------


def test_the_key_never_shows_in_reprs_reports_or_errors(mixed: Database, plain: Database) -> None:
    shown = [repr(mixed.settings), repr(mixed), repr(chain_key(KEY)), repr(verify(mixed)), repr(verify(plain)),
             repr(audit_db.head(mixed))]
    with pytest.raises(AuditKeyError) as raised, plain.unit_of_work() as uow:
        audit_log.record_event(uow.session, "ping")
    shown.append(str(raised.value))
    assert not [text for text in shown if KEY in text or KEY.encode().hex() in text]


@pytest.mark.parametrize("bad", ["too short a key", "", " " * 10])
def test_a_key_shorter_than_32_characters_is_refused_without_showing_it(bad: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBLAYER_AUDIT_KEY", bad)
    if not bad.strip():
        assert Settings.from_env().audit_key is None  # an empty or blank variable means no key
        return
    with pytest.raises(ValidationError, match="at least 32 characters") as raised:
        Settings(audit_key=bad)
    assert bad not in str(raised.value)
    with pytest.raises(ValidationError):
        Settings.from_env()


def test_the_key_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBLAYER_AUDIT_KEY", KEY)
    assert Settings.from_env().audit_key == KEY and KEY not in repr(Settings.from_env())
    assert Settings().audit_key is None and Settings.for_tests().audit_key is None  # explicit settings: as given


# --- a keyed chain travels with its backups --------------------------------------------------------------------


def test_a_keyed_purged_chain_restored_into_another_engine_verifies_with_its_key(
    mixed: Database, engine_name: str, test_databases: TestDatabases, tmp_path: Path
) -> None:
    with mixed.unit_of_work(actor="ops") as uow:
        uow.audit.purge(before=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1), reason="retention",
                        archive_dir=tmp_path / "archive")
    seed(mixed, 2)
    made = backup(mixed, directory=tmp_path / "backups")
    other_engine = "postgresql" if engine_name == "sqlite" else "sqlite"
    with test_databases.own(other_engine, "dblayer_keyed_copy") as target:
        restore(target, made.path, yes=True)
        with keyed_as(target, KEY) as restored:
            report = verify(restored, archive_dir=tmp_path / "archive")
            assert report.ok and report.archives_checked == 1 and report.head_seq == 10
            seed(restored, 1)  # and the copy goes on appending to the same keyed chain
            assert verify(restored).ok
        assert "set DBLAYER_AUDIT_KEY" in reason_of(verify(target))


def test_genesis_head_is_exportable(plain: Database) -> None:
    exported = audit_db.head(plain)
    assert (exported.seq, exported.hash, exported.key_id) == (0, GENESIS_HASH, None)
