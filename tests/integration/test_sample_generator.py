"""The sample generator on every engine: determinism, proportions, references, blobs, the audit chain, the CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from db import Conflict, Database, ValidationError
from db.audit import Entry, Record, append, append_entries
from db.cli import main
from db.migrations.runner import SchemaDriftError
from db.models.account import Account
from db.models.file_blob import FileBlob
from db.models.file_object import StoredFile
from db.models.log_audit import AuditEntry
from db.models.membership import Membership
from db.models.user import User
from db.passwords import verify_password
from db.repositories.audit_repository import AuditRepository
from db.scripts.sample_generator import (
    SAMPLE_PASSWORD,
    GenerationResult,
    GeneratorOptions,
    generate,
    plan,
)
from db.services.reports import ReportService
from db.settings import Settings
from db.storage import LocalStorage
from tests.support import TestDatabases, drop_all_tables, drop_server_database

OPTIONS = GeneratorOptions(
    rows=3_000, seed=7, users_per_account=8, members_per_account=4, files_per_account=5, blobs=12, batch_size=700,
)
GENERATED_TABLES = {"user": User, "account": Account, "membership": Membership, "file_blob": FileBlob,
                    "file": StoredFile}
PERIOD_END = OPTIONS.start + dt.timedelta(days=OPTIONS.days)


@pytest.fixture(scope="module")
def generated(engine_name: str, test_databases: TestDatabases,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, GenerationResult]]:
    """One database per engine holding ``OPTIONS``' data (read by most tests; they write nothing that stays)."""
    settings = Settings.for_tests(storage_root=tmp_path_factory.mktemp("gen_files"))
    with test_databases.own(engine_name, "gen_module", settings) as database:
        yield database, generate(database, OPTIONS)


@pytest.fixture
def fresh(engine_name: str, test_databases: TestDatabases, tmp_path: Path) -> Iterator[Any]:
    """A factory of empty, migrated databases of this test's own (``fresh("gen_a")``), dropped afterwards."""
    with ExitStack() as stack:
        yield lambda name: stack.enter_context(
            test_databases.own(engine_name, name, Settings.for_tests(storage_root=tmp_path / name)))


def counts(database: Database) -> dict[str, int]:
    with database.session() as session:
        found = {name: session.scalar(select(func.count()).select_from(model)) or 0
                 for name, model in GENERATED_TABLES.items()}
        found["events"] = session.scalar(select(func.count()).select_from(AuditEntry)
                                         .where(AuditEntry.kind == "event")) or 0
    return found


def snapshot(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every generated table's rows in primary-key order, and the audit log as far as it is ours to decide."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    with database.session() as session:
        for name, model in GENERATED_TABLES.items():
            table: Any = model.__table__
            tables[name] = [tuple(row) for row in session.execute(select(table).order_by(*table.primary_key))]
        log: Any = AuditEntry.__table__
        # The repositories' own create_many entries carry the real time and a fresh id (see the module docstring).
        decided = [log.c.seq, log.c.kind, log.c.action, log.c.entity_type, log.c.entity_id, log.c.actor, log.c.ip,
                   log.c.user_agent, log.c.request_id, log.c.changes, log.c.data]
        tables["audit_entry"] = [tuple(row) for row in session.execute(select(*decided).order_by(log.c.seq))]
        tables["events"] = [tuple(row) for row in session.execute(
            select(log.c.id, log.c.created_at, log.c.data).where(log.c.kind == "event").order_by(log.c.seq))]
    return tables


# --- determinism -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_same_seed_gives_the_same_data_table_by_table_and_another_seed_other_data(
    generated: tuple[Database, GenerationResult], fresh: Any
) -> None:
    first, _ = generated
    again = fresh("gen_again")
    other = fresh("gen_other")
    generate(again, OPTIONS)
    generate(other, GeneratorOptions(**{**_fields(OPTIONS), "seed": 8}))

    expected, same, different = snapshot(first), snapshot(again), snapshot(other)
    for table in expected:
        assert same[table] == expected[table], table
        assert different[table] != expected[table], table
    ids = {row[0] for row in expected["user"]}
    assert ids.isdisjoint(row[0] for row in different["user"])  # primary keys too


def _fields(options: GeneratorOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in GeneratorOptions.__dataclass_fields__}


# --- proportions and options --------------------------------------------------------------------------------------


def test_the_rows_add_up_to_the_total_asked_for_in_the_proportions_asked_for(
    generated: tuple[Database, GenerationResult]
) -> None:
    database, result = generated
    found = counts(database)
    expected = plan(OPTIONS)
    assert result.total_rows == OPTIONS.rows == 3_000
    assert dict(result.rows) == expected.per_table()
    assert found["user"] == expected.users and found["account"] == expected.users // 8
    assert found["membership"] == expected.accounts * 4
    assert found["file"] == expected.accounts * 5 and found["file_blob"] == 12
    assert found["events"] == result.rows["audit_entry"]
    assert sum(found[name] for name in GENERATED_TABLES) + found["events"] == 3_000
    assert result.seconds > 0 and result.rows_per_second > 0


def test_per_entity_counts_are_honoured_without_a_total() -> None:
    counted = plan(GeneratorOptions(users=50, accounts=7, members_per_account=3, files_per_account=2,
                                    events_per_user=4, blobs=5))
    assert (counted.users, counted.accounts, counted.memberships, counted.files, counted.blobs) == (50, 7, 21, 14, 5)
    assert counted.events == 200 and counted.uploads == 14
    no_files = plan(GeneratorOptions(users=50, write_blobs=False))
    assert no_files.files == no_files.blobs == no_files.uploads == 0


def test_times_lie_in_the_period_and_grow_towards_its_end(generated: tuple[Database, GenerationResult]) -> None:
    database, _ = generated
    with database.session() as session:
        times = list(session.scalars(select(User.created_at).order_by(User.created_at)))
        events = list(session.scalars(select(AuditEntry.created_at).where(AuditEntry.kind == "event")))
    assert OPTIONS.start <= times[0] and times[-1] < PERIOD_END
    assert all(OPTIONS.start <= moment < PERIOD_END for moment in events)
    middle = OPTIONS.start + (PERIOD_END - OPTIONS.start) / 2
    assert sum(moment >= middle for moment in times) > sum(moment < middle for moment in times)


# --- references, blobs, passwords -------------------------------------------------------------------------------


def test_memberships_files_and_events_point_at_rows_that_exist(generated: tuple[Database, GenerationResult]) -> None:
    database, _ = generated
    with database.session() as session:
        users = set(session.scalars(select(User.id)))
        accounts = set(session.scalars(select(Account.id)))
        memberships = session.execute(select(Membership.account_id, Membership.user_id, Membership.role)).all()
        files = session.execute(select(StoredFile.account_id, StoredFile.owner_id, StoredFile.sha256)).all()
        blobs = set(session.scalars(select(FileBlob.sha256)))
        login_users = set(session.scalars(select(AuditEntry.entity_id).where(AuditEntry.action == "login.success")))
    assert {m.user_id for m in memberships} <= users and {m.account_id for m in memberships} == accounts
    owners = [m.account_id for m in memberships if m.role == "owner"]
    assert sorted(owners) == sorted(accounts)  # exactly one owner each
    roles = {(m.account_id, m.user_id): m.role for m in memberships}
    assert all(roles.get((f.account_id, f.owner_id)) in {"owner", "admin", "member"} for f in files)
    assert {f.sha256 for f in files} <= blobs
    assert login_users and {str(user) for user in users} >= login_users


def test_every_blob_is_in_storage_and_hashes_to_its_key(generated: tuple[Database, GenerationResult]) -> None:
    database, _ = generated
    storage = LocalStorage(database.settings.storage_root)
    with database.session() as session:
        blobs = session.execute(select(FileBlob.sha256, FileBlob.size)).all()
    for blob in blobs:
        with storage.open(blob.sha256) as stream:
            data = stream.read()
        assert hashlib.sha256(data).hexdigest() == blob.sha256 and len(data) == blob.size
    assert sorted(storage.keys()) == sorted(blob.sha256 for blob in blobs)


def test_generated_users_sign_in_with_the_sample_password(generated: tuple[Database, GenerationResult]) -> None:
    database, _ = generated
    with database.session() as session:
        user = session.scalars(select(User).where(User.is_active.is_(True)).limit(1)).one()
        hashes = set(session.scalars(select(User.password_hash)))
    assert len(hashes) == 1 and verify_password(SAMPLE_PASSWORD, hashes.pop())
    with database.unit_of_work() as uow:
        assert uow.users.authenticate(user.email, SAMPLE_PASSWORD).id == user.id


# --- the audit chain and the reports ------------------------------------------------------------------------------


def test_the_audit_chain_verifies_after_generation(generated: tuple[Database, GenerationResult]) -> None:
    database, result = generated
    with database.session() as session:
        report = AuditRepository(session).verify_chain()
    assert report.ok, report
    assert report.checked > result.rows["audit_entry"]  # the create_many entries of each batch too


def test_bulk_appended_entries_hash_exactly_as_single_appends(engine_name: str, fresh: Any) -> None:
    database = fresh("gen_chain")
    moment = dt.datetime(2024, 2, 29, 12, 0, 0, 7, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    odd = Entry(id=uuid.UUID(int=5), created_at=moment, kind="event", action="x" * 80, entity_id="é\u2028",
                ip="1.2.3.4\x00", user_agent="ok\ud800", request_id="r" * 200,
                changes={"ids": ["a", "b"], "n": {"k": dt.date(2024, 1, 1)}}, data={"b": 1, "a": None, "ü": 1.5})
    plain = Entry(id=uuid.UUID(int=6), created_at=moment, kind="event", action="login.success", entity_type="user",
                  entity_id="u1", actor=None, data={"user_id": "u1"})
    with database.unit_of_work(actor="someone") as uow:
        append(uow.session, [Record("event", "before")])
        assert append_entries(uow.session, [odd, plain], batch_size=1) == 2
        append(uow.session, [Record("event", "after")])
    with database.session() as session:
        assert AuditRepository(session).verify_chain().ok
        assert session.scalar(select(func.max(AuditEntry.seq))) == 4


def test_the_reports_show_the_generated_activity(generated: tuple[Database, GenerationResult]) -> None:
    database, _ = generated
    with database.session() as session:
        reports = ReportService(session)
        signups = reports.signups(start=OPTIONS.start, end=PERIOD_END, bucket="month")
        logins = reports.logins(start=OPTIONS.start, end=PERIOD_END, bucket="month")
        actions = {row.action: row.count for row in reports.audit_by_action(start=OPTIONS.start, end=PERIOD_END)}
        storage = reports.storage_by_account()
        uploaders = reports.top_uploaders(limit=5)
        active = reports.active_users(start=OPTIONS.start, end=PERIOD_END, bucket="month")
    assert len(signups) >= 12 and len(active) >= 12
    assert sum(row.successes for row in logins) > sum(row.failures for row in logins) > 0
    assert max(actions, key=actions.__getitem__) == "login.success"
    assert {"file.uploaded", "file.downloaded", "token.issued"} <= set(actions)
    assert storage and all(row.file_count > 0 and row.total_bytes > 0 for row in storage)
    assert len(uploaders) == 5


# --- refusals ------------------------------------------------------------------------------------------------------


def test_generating_a_seed_already_there_is_refused_and_writes_nothing(
    generated: tuple[Database, GenerationResult]
) -> None:
    database, _ = generated
    before = counts(database)
    with pytest.raises(Conflict, match="seed 7"):
        generate(database, GeneratorOptions(users=5, seed=7))
    assert counts(database) == before


@pytest.mark.parametrize(("options", "field"), [
    (GeneratorOptions(rows=0), "rows"),
    (GeneratorOptions(rows=10), "rows"),  # fewer than one user, account and file need
    (GeneratorOptions(users=-1), "users"),
    (GeneratorOptions(users=True), "users"),  # type: ignore[arg-type]
    (GeneratorOptions(seed=-5), "seed"),
    (GeneratorOptions(batch_size=0), "batch_size"),
    (GeneratorOptions(members_per_account=0.5), "members_per_account"),
    (GeneratorOptions(events_per_user=float("nan")), "events_per_user"),
    (GeneratorOptions(start=dt.datetime(2024, 1, 1)), "start"),
    (GeneratorOptions(days=0), "days"),
    (GeneratorOptions(write_blobs="no"), "write_blobs"),  # type: ignore[arg-type]
])
def test_bad_options_are_refused_before_anything_is_written(
    generated: tuple[Database, GenerationResult], options: GeneratorOptions, field: str
) -> None:
    database, _ = generated
    before = counts(database)
    with pytest.raises(ValidationError) as refused:
        generate(database, options)
    assert refused.value.field == field
    assert counts(database) == before
    with pytest.raises(ValidationError):
        plan(options)  # what the command line and generate() check first


def test_an_unmigrated_database_is_refused(engine_name: str, test_databases: TestDatabases, tmp_path: Path) -> None:
    url = test_databases.url(engine_name, "gen_empty")
    database = Database(url, settings=Settings.for_tests(storage_root=tmp_path))
    try:
        drop_all_tables(database)  # empty, even if an earlier run left something
        with pytest.raises(SchemaDriftError, match="python -m db create"):
            generate(database, GeneratorOptions(users=3))
    finally:
        database.dispose()
        drop_server_database(url)


# --- the command line ------------------------------------------------------------------------------------------


def test_the_command_generates_shows_a_table_and_refuses_a_second_run(
    engine_name: str, fresh: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = fresh("gen_cli")
    url = database.url.render_as_string(hide_password=False)
    storage = tmp_path / "cli-files"
    rc = main(["generate", "--url", url, "--storage", str(storage), "--users", "30", "--events-per-user", "3",
               "--no-blobs", "--seed", "11", "--start", "2025-01-01", "--days", "90"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "seed 11" in out and "total" in out and "rows/s" in out
    assert counts(database)["user"] == 30 and counts(database)["file"] == 0
    assert not storage.exists() or not any(LocalStorage(storage).keys())

    rc = main(["generate", "--url", url, "--storage", str(storage), "--users", "30", "--seed", "11"])
    assert rc == 1 and "already holds sample data of seed 11" in capsys.readouterr().err


@pytest.mark.parametrize(("arguments", "code", "message"), [
    (["--rows", "-3"], 1, "rows must be a whole number"),
    (["--batch-size", "0"], 1, "batch_size must be a whole number"),
    (["--start", "yesterday"], 1, "--start must be a date"),
    (["--rows", "many"], 2, "Invalid value for '--rows'"),
    (["--colour", "blue"], 2, "No such option"),
])
def test_the_command_rejects_bad_input_with_a_clear_message(
    arguments: list[str], code: int, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["generate", "--url", f"sqlite:///{tmp_path / 'never.db'}", *arguments])
    captured = capsys.readouterr()
    assert rc == code
    assert message in " ".join((captured.out + captured.err).split())
    assert "Traceback" not in captured.err
