"""The operations scripts on every engine: create, fill (twice), sample, migrate, admin, report, status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from db import AuthenticationError, Database, NotFound, ValidationError
from db.migrations import runner
from db.models.account import Account
from db.models.admin_user_role import UserRole
from db.models.file_object import StoredFile
from db.models.log_audit import AuditEntry
from db.models.membership import Membership
from db.models.user import User
from db.repositories.audit_repository import AuditRepository
from db.scripts import admin_db, fill_sample, migrate_db
from db.scripts.create_db import create_database
from db.scripts.fill_reference import AdminCredentials, administrators, fill_reference
from db.scripts.report_db import run_report
from db.scripts.status_db import overview
from db.settings import Settings
from tests.support import TestDatabases, drop_server_database

HEAD = runner.head_revision()
ADMIN = AdminCredentials("root@example.com", "a long and unusual passphrase")


@pytest.fixture
def fresh(engine_name: str, test_databases: TestDatabases, tmp_path: Path) -> Iterator[Database]:
    """A migrated database of this test's own (its writes are committed), blobs under tmp_path."""
    settings = Settings.for_tests(storage_root=tmp_path / "files")
    with test_databases.own(engine_name, "dblayer_ops", settings) as database:
        yield database


def counts(database: Database) -> dict[str, int]:
    models = {"users": User, "accounts": Account, "memberships": Membership, "files": StoredFile,
              "grants": UserRole, "audit": AuditEntry}
    with database.session() as session:
        return {name: session.scalar(select(func.count()).select_from(model)) or 0 for name, model in models.items()}


def sign_in(database: Database, email: str, password: str) -> User:
    with database.unit_of_work() as uow:
        return uow.users.authenticate(email, password)


# --- create ----------------------------------------------------------------------------------------------------


def test_create_makes_the_missing_database_then_migrates_it_and_a_second_run_changes_nothing(
    engine_name: str, test_databases: TestDatabases
) -> None:
    url = test_databases.url(engine_name, "dblayer_ops_create")  # reachable, or skipped/failed with a message
    drop_server_database(url)
    if engine_name == "sqlite":
        Path(url.database or "").unlink(missing_ok=True)
    database = Database(url, settings=Settings.for_tests())
    try:
        first = create_database(database)
        second = create_database(database)
        with database.engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
    finally:
        database.dispose()
        drop_server_database(url)
    assert (first.created, first.before, first.after) == (True, None, HEAD)
    assert (second.created, second.upgraded, second.after) == (False, False, HEAD)
    assert {"user", "account", "audit_entry", "file", "admin_role"} <= tables
    assert "@" not in first.url or ":" not in first.url.split("@")[0].split("//")[1]  # no password shown


def test_scripts_that_need_the_schema_say_which_command_makes_it(engine_name: str, test_databases: TestDatabases,
                                                                  tmp_path: Path) -> None:
    with test_databases.own(engine_name, "dblayer_ops_empty", Settings.for_tests()) as database:
        migrate_db.downgrade(database, "base")
        for script in (lambda: fill_reference(database), lambda: fill_sample.fill_sample(database),
                       lambda: overview(database)):
            with pytest.raises(runner.SchemaDriftError, match="python -m db create"):
                script()


# --- fill_reference --------------------------------------------------------------------------------------------


def test_fill_reference_creates_the_first_admin_and_a_second_run_changes_nothing(fresh: Database) -> None:
    first = fill_reference(fresh, ADMIN)
    after_first = counts(fresh)
    second = fill_reference(fresh, AdminCredentials(ADMIN.email, "another long passphrase entirely"))

    assert (first.admin_created, first.admin_granted) == (True, True)
    assert not second.changed
    assert counts(fresh) == after_first  # not one row more, audit entries included
    assert administrators(fresh) == [ADMIN.email]
    assert sign_in(fresh, ADMIN.email, ADMIN.password).email == ADMIN.email  # the first password still holds
    with pytest.raises(AuthenticationError):
        sign_in(fresh, ADMIN.email, "another long passphrase entirely")
    with fresh.unit_of_work() as uow:
        assert uow.admin.has_permission(uow.users.get_by_email(ADMIN.email), "data.purge")


def test_fill_reference_puts_back_a_built_in_role_that_was_tampered_with(fresh: Database) -> None:
    with fresh.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM admin_role_permission")
    repaired = fill_reference(fresh)
    assert repaired.reference_changes["grants_added"] > 0
    assert not fill_reference(fresh).changed


def test_fill_reference_refuses_a_weak_admin_password_and_writes_nothing(fresh: Database) -> None:
    before = counts(fresh)
    with pytest.raises(ValidationError, match="too common") as refused:
        fill_reference(fresh, AdminCredentials("root@example.com", "password123"))
    assert "password123" not in str(refused.value)
    assert counts(fresh) == before
    assert administrators(fresh) == []


def test_admin_credentials_come_from_the_environment_only_when_both_are_set() -> None:
    assert AdminCredentials.from_environment({"DBLAYER_ADMIN_EMAIL": "a@example.com"}) is None
    both = AdminCredentials.from_environment({"DBLAYER_ADMIN_EMAIL": " a@example.com ",
                                              "DBLAYER_ADMIN_PASSWORD": "s3cret-passphrase"})
    assert both == AdminCredentials("a@example.com", "s3cret-passphrase")
    assert "s3cret" not in repr(both)


# --- fill_sample -----------------------------------------------------------------------------------------------


def test_fill_sample_writes_a_consistent_demo_once(fresh: Database) -> None:
    first = fill_sample.fill_sample(fresh)
    after_first = counts(fresh)
    second = fill_sample.fill_sample(fresh)

    assert first.created and not second.created
    assert counts(fresh) == after_first
    assert after_first["accounts"] == first.accounts == 3
    assert after_first["users"] == first.users
    assert after_first["memberships"] == first.memberships
    assert after_first["files"] == first.files
    assert sign_in(fresh, "ada@acme.example", fill_sample.SAMPLE_PASSWORD).display_name == "Ada Lovelace"
    with pytest.raises(AuthenticationError):  # deactivated by the sample's administrator
        sign_in(fresh, "milton@initech.example", fill_sample.SAMPLE_PASSWORD)
    with fresh.unit_of_work() as uow:
        stored = uow.session.scalars(select(StoredFile)).all()
        assert all(uow.files.verify(item.id).ok for item in stored)
        assert {item.content_type for item in stored} >= {"text/csv", "image/png", "application/pdf", "text/plain"}
        assert AuditRepository(uow.session).verify_chain().ok


def test_the_sample_gives_the_reports_something_to_show(fresh: Database) -> None:
    fill_sample.fill_sample(fresh)
    view = overview(fresh)
    assert view.chain.ok
    people = {email for *_, members in fill_sample.ACCOUNTS for email, _, _ in members}
    assert view.counts["users"] == len(people)
    assert sum(row.count for row in view.signups) == view.counts["users"]
    assert [row.slug for row in view.storage] and view.stored_bytes == sum(row.total_bytes for row in view.storage)
    assert view.revision == view.head == HEAD


# --- migrate_db ------------------------------------------------------------------------------------------------


def test_migrate_walks_the_revisions_both_ways_and_names_an_unknown_one(fresh: Database) -> None:
    down = migrate_db.downgrade(fresh, "0002_audit_log")
    assert (down.before, down.after) == (HEAD, "0002_audit_log")
    with fresh.engine.connect() as connection:
        assert "user" not in inspect(connection).get_table_names()
    history = migrate_db.history(fresh)
    assert [r.revision for r in history if r.is_current] == ["0002_audit_log"]
    assert history[0].is_head and history[0].revision == HEAD
    assert not migrate_db.status(fresh).at_head

    with pytest.raises(runner.MigrationError, match=r"'nope'.*the database is at 0002_audit_log"):
        migrate_db.upgrade(fresh, "nope")
    assert migrate_db.status(fresh).current == "0002_audit_log"  # untouched

    up = migrate_db.upgrade(fresh)
    assert (up.before, up.after, up.changed) == ("0002_audit_log", HEAD, True)
    assert not migrate_db.upgrade(fresh).changed
    migrate_db.check(fresh)


def test_a_revision_is_generated_only_for_a_real_difference(fresh: Database, tmp_path: Path) -> None:
    assert migrate_db.new_revision(fresh, "nothing to do", directory=tmp_path) is None
    with fresh.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE stray (id INTEGER PRIMARY KEY)")
    path = migrate_db.new_revision(fresh, "Drop the stray table!", directory=tmp_path)
    assert path is not None and path.name == f"{int(HEAD[:4]) + 1:04d}_drop_the_stray_table.py"
    text = path.read_text()
    assert "op.drop_table('stray')" in text and f"down_revision: str | Sequence[str] | None = '{HEAD}'" in text
    with pytest.raises(runner.MigrationError, match="message"):
        migrate_db.new_revision(fresh, " !! ", directory=tmp_path)


# --- admin_db --------------------------------------------------------------------------------------------------


def test_admin_operations_are_applied_and_audited(fresh: Database) -> None:
    created = admin_db.create_admin(fresh, "ops@example.com", "an operator's passphrase", role="admin", reason="x")
    assert (created.created, created.roles) == (True, ("admin",))
    again = admin_db.create_admin(fresh, "ops@example.com", "ignored passphrase here", role="superadmin",
                                  reason="promoted")
    assert (again.created, again.changed, again.roles) == (False, True, ("admin", "superadmin"))
    assert not admin_db.grant_role(fresh, "ops@example.com", "admin", reason="twice").changed
    assert admin_db.revoke_role(fresh, "ops@example.com", "admin", reason="rotation").roles == ("superadmin",)

    with fresh.unit_of_work() as uow:
        uow.users.update(uow.users.get_by_email("ops@example.com"), failed_login_count=9)
    admin_db.unlock_user(fresh, "ops@example.com", reason="verified by phone")
    with fresh.session() as session:
        user = session.scalar(select(User).where(User.email == "ops@example.com"))
        assert user is not None and user.failed_login_count == 0
        actions = list(session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("admin.%"))))
    assert actions.count("admin.role.grant") == 2
    assert {"admin.role.revoke", "admin.user.unlock"} <= set(actions)

    with pytest.raises(NotFound):
        admin_db.grant_role(fresh, "nobody@example.com", "admin", reason="x")
    with pytest.raises(NotFound):
        admin_db.revoke_role(fresh, "ops@example.com", "support", reason="not held")
    with pytest.raises(ValidationError):
        admin_db.grant_role(fresh, "ops@example.com", "admin", reason="  ")


# --- report_db -------------------------------------------------------------------------------------------------


def test_reports_run_by_name_and_a_saved_run_is_kept(fresh: Database) -> None:
    import datetime as dt

    fill_sample.fill_sample(fresh)
    end = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    start = end - dt.timedelta(days=2)
    logins = run_report(fresh, "logins", start=start, end=end, bucket="day")
    assert sum(row.successes for row in logins.rows) == len(fill_sample.LOGINS)
    assert sum(row.failures for row in logins.rows) == len(fill_sample.FAILED_LOGINS)
    saved = run_report(fresh, "accounts_by_plan", save=True)
    assert saved.run_id is not None and {row.plan for row in saved.rows} == {"free", "pro", "enterprise"}
    with pytest.raises(ValidationError, match="no report is called"):
        run_report(fresh, "nope")
    with pytest.raises(ValidationError, match="bucket"):
        run_report(fresh, "signups", start=start, end=end, bucket="fortnight")
