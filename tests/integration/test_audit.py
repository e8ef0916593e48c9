"""The audit log on every engine: automatic change capture, events, the hash chain, append-only, retention."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from db import BaseRepository, Conflict, Database, UnitOfWork, ValidationError, dialects
from db import audit as audit_log
from db.models.log_audit import AuditEntry
from db.scripts.create_db import create_database
from db.settings import Settings
from tests.models import Note, TestBase
from tests.support import TestDatabases


class NoteRepository(BaseRepository[Note]):
    model = Note


def notes(uow: UnitOfWork) -> NoteRepository:
    return uow.repository(NoteRepository)


def entries(uow: UnitOfWork, **filters: Any) -> list[AuditEntry]:
    return uow.audit.list(filters=filters, order_by=["seq"])


def changes(entry: AuditEntry) -> Any:
    return json.loads(entry.changes or "null")


# --- change capture ----------------------------------------------------------------------------------------


def test_an_applications_own_session_is_not_audited_and_the_layers_sessions_are(tmp_path: Path) -> None:
    """The change hook belongs to the layer's session factory, not to SQLAlchemy's Session class (no global hook).
    (A database of its own: an application's session beside the test's isolated transaction would wait on it.)"""
    database = Database(f"sqlite:///{tmp_path / 'own.db'}", settings=Settings.for_tests(storage_root=tmp_path))
    try:
        create_database(database)
        TestBase.metadata.create_all(database.engine, tables=[Note.__table__])
        with Session(database.engine) as own:  # an application's own session
            own.add(Note(title="outside the layer", body=""))
            own.commit()
        with database.unit_of_work() as uow:
            notes(uow).create(title="inside the layer")
        with database.unit_of_work() as uow:
            assert [e.action for e in entries(uow, entity_type="note")] == ["create"]
            assert uow.session.scalar(select(func.count()).select_from(Note)) == 2
    finally:
        database.dispose()


def test_create_update_and_delete_are_recorded_with_old_and_new_values(database: Database) -> None:
    with database.unit_of_work(actor="ada") as uow:
        uow.context.update(ip="203.0.113.7", user_agent="pytest", request_id="req-1")
        note = notes(uow).create(title="first", body="hello")
    with database.unit_of_work(actor="bob") as uow:
        notes(uow).update(note.id, title="second")
    with database.unit_of_work(actor="bob") as uow:
        notes(uow).delete(note.id)
    with database.unit_of_work() as uow:
        created, updated, deleted = entries(uow, entity_type="note", entity_id=str(note.id))
    assert [created.action, updated.action, deleted.action] == ["create", "update", "delete"]
    assert changes(created)["title"] == [None, "first"] and changes(created)["body"] == [None, "hello"]
    assert changes(updated) == {"title": ["first", "second"]}
    assert changes(deleted)["deleted_at"][0] is None
    assert (created.actor, created.ip, created.user_agent, created.request_id) == ("ada", "203.0.113.7", "pytest",
                                                                                  "req-1")
    assert updated.actor == "bob"
    assert created.created_at.tzinfo is not None


def test_a_rolled_back_change_leaves_no_entry(database: Database) -> None:
    with pytest.raises(RuntimeError), database.unit_of_work() as uow:
        notes(uow).create(title="doomed")
        raise RuntimeError
    with database.unit_of_work() as uow:
        assert entries(uow, entity_type="note") == []
        assert uow.audit.verify_chain().ok


def test_a_failed_write_inside_a_unit_of_work_leaves_no_entry(database: Database) -> None:
    with database.unit_of_work() as uow:
        notes(uow).create(title="kept")
        with pytest.raises(Exception):  # noqa: B017 - NOT NULL violation, whichever error the engine raises
            notes(uow).create(title=None)
    with database.unit_of_work() as uow:
        assert [e.action for e in entries(uow, entity_type="note")] == ["create"]


def test_secrets_are_redacted_and_never_stored(database: Database) -> None:
    with database.unit_of_work() as uow:
        note = notes(uow).create(title="t", pin="4242-SECRET")
        notes(uow).update(note, pin="9999-SECRET")
    with database.unit_of_work() as uow:
        recorded = entries(uow, entity_type="note")
    assert changes(recorded[0])["pin"] == [None, audit_log.REDACTED]
    assert changes(recorded[1])["pin"] == [audit_log.REDACTED, audit_log.REDACTED]
    assert all("SECRET" not in (e.changes or "") + (e.data or "") for e in recorded)


def test_excluded_fields_are_not_recorded(database: Database) -> None:
    with database.unit_of_work() as uow:
        note = notes(uow).create(title="t")
        notes(uow).update(note, views=10)
    with database.unit_of_work() as uow:
        recorded = entries(uow, entity_type="note")
    assert [e.action for e in recorded] == ["create"]
    assert "views" not in changes(recorded[0])


def test_hard_delete_and_restore_are_recorded(database: Database) -> None:
    with database.unit_of_work() as uow:
        note = notes(uow).create(title="t")
        notes(uow).delete(note)
        restored = notes(uow).get_by_id(note.id, include_deleted=True)
        assert restored is not None
        uow.session.add(restored)
        restored.deleted_at = None
        uow.flush()
        notes(uow).delete(note, hard=True)
    with database.unit_of_work() as uow:
        recorded = entries(uow, entity_type="note")
    assert [e.action for e in recorded] == ["create", "delete", "restore", "delete"]
    assert json.loads(recorded[-1].data or "{}") == {"hard": True}


def test_bulk_paths_record_one_entry_per_batch_listing_every_id(database: Database) -> None:
    class SmallBatches(NoteRepository):
        batch_size = 4

    with database.unit_of_work() as uow:
        made = uow.repository(SmallBatches).create_many(({"title": f"n{i}"} for i in range(10)), returning=True)
        made_ids = sorted(str(m.id) for m in made)
        assert uow.repository(SmallBatches).update_many({"title__startswith": "n"}, body="bulk") == 10
        assert uow.repository(SmallBatches).delete_many({"title__in": ["n1", "n2"]}) == 2
    with database.unit_of_work() as uow:
        recorded = entries(uow, entity_type="note")
    created = [e for e in recorded if e.action == "create_many"]
    assert len(created) == 3
    assert sorted(i for e in created for i in changes(e)["ids"]) == made_ids
    (updated,) = [e for e in recorded if e.action == "update_many"]
    assert len(changes(updated)["ids"]) == 10 and changes(updated)["fields"] == {"body": "bulk"}
    (deleted,) = [e for e in recorded if e.action == "delete_many"]
    assert len(changes(deleted)["ids"]) == 2


def test_activity_events_are_queryable_beside_the_change_log(database: Database) -> None:
    with database.unit_of_work(actor="ada") as uow:
        audit_log.record_event(uow.session, "login.failure", entity_type="user", entity_id="u1", data={"n": 1})
        notes(uow).create(title="t")
    with database.unit_of_work() as uow:
        events = uow.audit.events().items
        assert [(e.action, e.entity_id, e.kind) for e in events] == [("login.failure", "u1", "event")]
        assert uow.audit.by_actor("ada").items[0].action == "create"
        assert [e.action for e in uow.audit.for_entity("user", "u1").items] == ["login.failure"]
        assert uow.audit.by_action("create").items[0].entity_type == "note"
        now = dt.datetime.now(dt.UTC)
        recent = uow.audit.between(now - dt.timedelta(minutes=5), now + dt.timedelta(minutes=5), size=1000).items
        mine = {e.id for e in recent if e.actor == "ada"}
        assert mine == {e.id for e in uow.audit.by_actor("ada").items} and len(mine) == 2
        assert uow.audit.between(now + dt.timedelta(minutes=1), now + dt.timedelta(minutes=2)).items == []


def test_history_is_keyset_paged(database: Database) -> None:
    with database.unit_of_work() as uow:
        for i in range(7):
            audit_log.record_event(uow.session, "ping", data={"i": i})
    with database.unit_of_work() as uow:
        page = uow.audit.by_action("ping", size=3)
        seen = [json.loads(e.data or "{}")["i"] for e in page.items]
        while page.next_cursor:
            page = uow.audit.by_action("ping", size=3, after=page.next_cursor)
            seen += [json.loads(e.data or "{}")["i"] for e in page.items]
    assert seen == [6, 5, 4, 3, 2, 1, 0]


def test_the_repository_offers_no_way_to_write_entries(database: Database) -> None:
    with database.unit_of_work() as uow:
        audit_log.record_event(uow.session, "ping")
    with database.unit_of_work() as uow:
        offered = {name for name in ("create", "create_many", "update", "update_many", "delete", "delete_many",
                                     "upsert", "get_or_create") if hasattr(uow.audit, name)}
        assert offered == set()
        assert uow.audit.count({"action": "ping"}) == 1


@pytest.mark.parametrize("statement", ["UPDATE audit_entry SET action = 'forged'", "DELETE FROM audit_entry"])
def test_the_database_refuses_update_and_delete_on_audit_rows(database: Database, statement: str) -> None:
    with database.unit_of_work() as uow:
        audit_log.record_event(uow.session, "ping")
    with pytest.raises(Conflict, match="append-only"), database.unit_of_work() as uow:
        uow.session.execute(text(statement))
    with database.unit_of_work() as uow:
        assert uow.audit.count() == 1 and uow.audit.verify_chain().ok


# --- tamper evidence, concurrency and retention need committed data: a database of their own ----------------


@pytest.fixture
def audit_db(engine_name: str, test_databases: TestDatabases) -> Iterator[Database]:
    """A database of its own, schema fresh from the migrations, where the test commits for real."""
    with test_databases.own(engine_name, "dblayer_audit") as database:
        TestBase.metadata.create_all(database.engine)
        yield database


def seed_events(database: Database, count: int) -> None:
    with database.unit_of_work() as uow:
        for i in range(count):
            audit_log.record_event(uow.session, "ping", data={"i": i})


def tamper(database: Database, *statements: str) -> None:
    """Run raw SQL against audit_entry with the append-only triggers dropped, then put them back."""
    from db import dialects

    backend = database.engine.dialect.name
    with database.engine.begin() as connection:
        for ddl in dialects.dialect_named(backend).drop_append_only_ddl():
            connection.exec_driver_sql(ddl)
    with database.engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
    with database.engine.begin() as connection:
        for ddl in dialects.dialect_named(backend).append_only_ddl():
            connection.exec_driver_sql(ddl)


def verify(database: Database) -> audit_log.ChainReport:
    with database.unit_of_work() as uow:
        return uow.audit.verify_chain()


def test_an_untouched_chain_verifies(audit_db: Database) -> None:
    seed_events(audit_db, 5)
    report = verify(audit_db)
    assert report.ok and report.checked == 5 and report.first_bad_seq is None


@pytest.mark.parametrize(
    ("statements", "first_bad"),
    [
        (["UPDATE audit_entry SET data = '{\"i\":99}' WHERE seq = 3"], 3),
        (["UPDATE audit_entry SET action = 'pong' WHERE seq = 2"], 2),
        (["DELETE FROM audit_entry WHERE seq = 4"], 5),
        (["UPDATE audit_entry SET seq = 100 WHERE seq = 2", "UPDATE audit_entry SET seq = 2 WHERE seq = 3",
          "UPDATE audit_entry SET seq = 3 WHERE seq = 100"], 2),
        (["DELETE FROM audit_entry WHERE seq = 5"], 5),
    ],
    ids=["edit-data", "edit-action", "delete-middle", "reorder", "delete-last"],
)
def test_editing_deleting_or_reordering_an_entry_is_detected(
    audit_db: Database, statements: list[str], first_bad: int
) -> None:
    seed_events(audit_db, 5)
    tamper(audit_db, *statements)
    report = verify(audit_db)
    assert not report.ok
    assert report.first_bad_seq == first_bad
    assert report.reason


def test_concurrent_appends_leave_one_unbroken_chain(audit_db: Database) -> None:
    writers, each = 4, 25
    start = threading.Barrier(writers)
    failures: list[BaseException] = []

    def write(n: int) -> None:
        try:
            start.wait(120)
            for i in range(each):
                audit_db.run_in_transaction(
                    lambda uow, i=i: audit_log.record_event(uow.session, "ping", data={"writer": n, "i": i}),
                    attempts=20,
                )
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    report = verify(audit_db)
    assert report.ok and report.checked == writers * each


def test_a_retention_purge_archives_removes_and_keeps_the_chain_verifiable(audit_db: Database, tmp_path: Path) -> None:
    seed_events(audit_db, 6)
    cutoff = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    with audit_db.unit_of_work(actor="ops") as uow:
        checkpoint = uow.audit.purge(before=cutoff, reason="retention: 1 year", archive_dir=tmp_path)
        assert checkpoint is not None
        assert (checkpoint.up_to_seq, checkpoint.entries) == (6, 6)
    archive = tmp_path / checkpoint.archive
    lines = gzip.decompress(archive.read_bytes()).decode().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3, 4, 5, 6]
    with audit_db.unit_of_work() as uow:
        remaining = entries(uow)
        assert [e.action for e in remaining] == ["audit.purged"]
    assert verify(audit_db).ok
    seed_events(audit_db, 2)
    assert verify(audit_db).ok
    with audit_db.unit_of_work() as uow:
        assert uow.audit.purge(before=dt.datetime(2000, 1, 1, tzinfo=dt.UTC), reason="again", archive_dir=tmp_path) \
            is None


def test_a_purge_needs_a_reason(audit_db: Database, tmp_path: Path) -> None:
    from db import ValidationError

    with audit_db.unit_of_work() as uow, pytest.raises(ValidationError):
        uow.audit.purge(before=dt.datetime.now(dt.UTC), reason="  ", archive_dir=tmp_path)


def test_a_forged_checkpoint_is_refused_and_with_the_triggers_lifted_does_not_hide_an_edit(audit_db: Database) -> None:
    seed_events(audit_db, 4)
    tamper(audit_db, "UPDATE audit_entry SET action = 'pong' WHERE seq = 2")
    forge = text("INSERT INTO audit_checkpoint (id, up_to_seq, hash, entries, archive, archive_sha256, created_at, "
                 "reason) VALUES (:id, :seq, :hash, 4, 'forged', :sha, :at, 'forged')")
    with audit_db.unit_of_work() as uow:
        head = uow.session.execute(text("SELECT seq, hash FROM audit_chain_head")).one()
    values = {"id": "0" * 32 if audit_db.backend == "sqlite" else "00000000-0000-0000-0000-000000000000",
              "seq": head.seq, "hash": head.hash, "sha": "0" * 64, "at": "2026-01-01 00:00:00"}
    with pytest.raises(Conflict, match="checkpoint"), audit_db.unit_of_work() as uow:  # INSERT rights only
        uow.session.execute(forge, values)
    with audit_db.engine.begin() as connection:  # the triggers lifted
        for ddl in dialects.dialect_named(audit_db.backend).drop_seq_guard_ddl():
            connection.exec_driver_sql(ddl)
        connection.execute(forge, values)
    report = verify(audit_db)
    assert not report.ok and "checkpoint" in (report.reason or "")


def test_a_purge_refuses_a_broken_chain(audit_db: Database, tmp_path: Path) -> None:
    seed_events(audit_db, 3)
    tamper(audit_db, "UPDATE audit_entry SET action = 'pong' WHERE seq = 1")
    with audit_db.unit_of_work() as uow, pytest.raises(Conflict, match="broken"):
        uow.audit.purge(before=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1), reason="r", archive_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("statement", ["UPDATE audit_checkpoint SET hash = 'x'", "DELETE FROM audit_checkpoint"])
def test_checkpoints_are_append_only_too(audit_db: Database, tmp_path: Path, statement: str) -> None:
    seed_events(audit_db, 2)
    with audit_db.unit_of_work() as uow:
        uow.audit.purge(before=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1), reason="r", archive_dir=tmp_path)
    with pytest.raises(Conflict, match="append-only"), audit_db.unit_of_work() as uow:
        uow.session.execute(text(statement))
    assert verify(audit_db).ok


def test_large_bulk_writes_of_an_audited_model_are_recorded_on_every_engine(database: Database) -> None:
    with database.unit_of_work() as uow:
        assert notes(uow).create_many({"title": f"n{i}"} for i in range(6_000)) == 6_000
    with database.unit_of_work() as uow:
        created = entries(uow, entity_type="note", action="create_many")
    assert [len(changes(e)["ids"]) for e in created] == [5_000, 1_000]


def test_upserts_of_an_audited_model_are_recorded(database: Database) -> None:
    with database.unit_of_work() as uow:
        made = notes(uow).create(title="t")
        notes(uow).upsert({"id": made.id, "title": "u", "pin": "SECRET-PIN"}, match=["id"])
    with database.unit_of_work() as uow:
        (upserted,) = entries(uow, entity_type="note", action="upsert")
    assert upserted.entity_id == str(made.id)
    assert changes(upserted)["title"] == [None, "u"] and changes(upserted)["pin"] == [None, audit_log.REDACTED]


def test_an_update_records_the_old_value_even_when_it_was_not_loaded(database: Database) -> None:
    with database.unit_of_work() as uow:
        note = notes(uow).create(title="before")
        uow.session.expire(note)
        notes(uow).update(note, title="after")
    with database.unit_of_work() as uow:
        (updated,) = entries(uow, entity_type="note", action="update")
    assert changes(updated) == {"title": ["before", "after"]}


def test_request_context_with_control_characters_is_stored_cleanly(database: Database) -> None:
    with database.unit_of_work() as uow:
        uow.context.update(user_agent="evil\x00agent\ud800\n", request_id="r\x07")
        notes(uow).create(title="t")
    with database.unit_of_work() as uow:
        (created,) = entries(uow, entity_type="note")
    assert (created.user_agent, created.request_id) == ("evilagent", "r")


@pytest.mark.parametrize("before", ["2020-01-01", None, dt.datetime(2020, 1, 1)])  # the last is naive
def test_a_purge_before_anything_but_an_aware_datetime_is_a_validation_error(database: Database, before: Any) -> None:
    with pytest.raises(ValidationError), database.unit_of_work() as uow:
        uow.audit.purge(before=before, reason="test")
