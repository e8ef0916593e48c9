"""Reports on every engine: the same seeded data gives the same literal rows on SQLite, PostgreSQL and MariaDB,
bucket boundaries included (23:59:59.999999 and 00:00:00 UTC, Sunday → Monday, month and year ends).

Activity is seeded through ``db.audit`` (the log is append-only and hash-chained) with its clock set by the test;
users through ``uow.users`` and then backdated (``created_at`` is the layer's to set, so a Core UPDATE does it).
Every range lies in 2021, where no other test writes anything.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import update

from db import AuthenticationError, BaseRepository, Database, InvalidFilter, NotFound, UnitOfWork, ValidationError
from db import audit as audit_log
from db.models.file_blob import FileBlob
from db.models.file_object import StoredFile
from db.models.user import User
from db.repositories.report_run_repository import ReportRunRepository
from db.services.report_catalogue import (
    REPORTS,
    AccountStorage,
    ActionCount,
    ActorCount,
    ContentTypeStorage,
    LoginActivity,
    PeriodCount,
    PlanStatusCount,
    Uploader,
    to_csv,
    to_json,
)
from db.services.reports import ReportService

UTC = dt.UTC


def moment(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def reports(uow: UnitOfWork) -> ReportService:
    return uow.reports


class Clock:
    """``db.audit``'s clock: entries appended while ``now`` is set carry that time."""

    def __init__(self) -> None:
        self.now: dt.datetime | None = None

    def __call__(self) -> dt.datetime:
        return self.now or dt.datetime.now(UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(audit_log, "utcnow", clock)
    return clock


def record(uow: UnitOfWork, clock: Clock, when: str, action: str, *, user: Any = None, kind: str = "event") -> None:
    clock.now = moment(when)
    user_id = None if user is None else str(user)
    audit_log.append(uow.session, [audit_log.Record(kind, action, "user", user_id, None, {"user_id": user_id})])
    clock.now = None


def make_users(database: Database, created: dict[str, str]) -> dict[str, uuid.UUID]:
    """Users named by the keys, created at the given UTC times."""
    ids: dict[str, uuid.UUID] = {}
    with database.unit_of_work() as uow:
        for name, when in created.items():
            ids[name] = uow.users.create(email=f"{name}@example.com", password=None).id
            uow.session.execute(update(User).where(User.id == ids[name]).values(created_at=moment(when)))
    return ids


# --- sign-ups: every bucket boundary -------------------------------------------------------------------------

SIGNUPS = {
    "before": "2021-02-28 23:59:59.999999",  # outside the range
    "mon_first": "2021-03-01 00:00:00",  # Monday
    "mon_last": "2021-03-01 23:59:59.999999",
    "tue_first": "2021-03-02 00:00:00",
    "sun_last": "2021-03-07 23:59:59.999999",  # Sunday: still the week of 1 March
    "next_mon": "2021-03-08 00:00:00",  # Monday: a new week
    "month_last": "2021-03-31 23:59:59.999999",  # Wednesday of the week of 29 March
    "month_next": "2021-04-01 00:00:00",  # same week, next month
    "at_end": "2021-04-02 00:00:00",  # the range's end: excluded
}
MARCH: dict[str, Any] = {"start": moment("2021-03-01 00:00:00"), "end": moment("2021-04-02 00:00:00")}


@pytest.fixture
def signed_up(database: Database) -> dict[str, uuid.UUID]:
    return make_users(database, SIGNUPS)


def test_daily_signups_split_at_midnight_utc(database: Database, signed_up: dict[str, uuid.UUID]) -> None:
    with database.unit_of_work() as uow:
        rows = reports(uow).signups(**MARCH, bucket="day")
    assert rows == [
        PeriodCount("2021-03-01", 2), PeriodCount("2021-03-02", 1), PeriodCount("2021-03-07", 1),
        PeriodCount("2021-03-08", 1), PeriodCount("2021-03-31", 1), PeriodCount("2021-04-01", 1),
    ]


def test_weekly_signups_run_monday_to_sunday(database: Database, signed_up: dict[str, uuid.UUID]) -> None:
    with database.unit_of_work() as uow:
        rows = reports(uow).signups(**MARCH, bucket="week")
    assert rows == [PeriodCount("2021-03-01", 4), PeriodCount("2021-03-08", 1), PeriodCount("2021-03-29", 2)]


def test_monthly_signups_split_at_the_first_of_the_month(database: Database,
                                                         signed_up: dict[str, uuid.UUID]) -> None:
    with database.unit_of_work() as uow:
        rows = reports(uow).signups(**MARCH, bucket="month")
    assert rows == [PeriodCount("2021-03-01", 6), PeriodCount("2021-04-01", 1)]


def test_a_partial_first_week_is_labelled_with_its_monday(database: Database,
                                                          signed_up: dict[str, uuid.UUID]) -> None:
    with database.unit_of_work() as uow:
        rows = reports(uow).signups(start=moment("2021-03-02 00:00:00"), end=moment("2021-03-08 00:00:00"),
                                    bucket="week")
    assert rows == [PeriodCount("2021-03-01", 2)]


def test_range_bounds_in_another_time_zone_mean_the_same_instants(database: Database,
                                                                  signed_up: dict[str, uuid.UUID]) -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    start = dt.datetime(2021, 3, 1, 1, 0, tzinfo=paris)  # 00:00 UTC
    end = dt.datetime(2021, 3, 2, 1, 0, tzinfo=paris)  # 00:00 UTC the next day
    with database.unit_of_work() as uow:
        rows = reports(uow).signups(start=start, end=end, bucket="day")
    assert rows == [PeriodCount("2021-03-01", 2)]


def test_a_range_that_ends_a_microsecond_earlier_leaves_the_last_row_out(
    database: Database, signed_up: dict[str, uuid.UUID]
) -> None:
    with database.unit_of_work() as uow:
        rows = reports(uow).signups(start=moment("2021-03-01 00:00:00"),
                                    end=moment("2021-03-01 23:59:59.999999"), bucket="day")
    assert rows == [PeriodCount("2021-03-01", 1)]


def test_soft_deleted_users_still_count_as_sign_ups(database: Database, signed_up: dict[str, uuid.UUID]) -> None:
    with database.unit_of_work() as uow:
        uow.users.delete(signed_up["tue_first"])
        rows = reports(uow).signups(start=moment("2021-03-02 00:00:00"), end=moment("2021-03-03 00:00:00"))
    assert rows == [PeriodCount("2021-03-02", 1)]


def test_a_range_with_no_rows_gives_no_rows(database: Database, signed_up: dict[str, uuid.UUID]) -> None:
    with database.unit_of_work() as uow:
        assert reports(uow).signups(start=moment("2021-05-01 00:00:00"), end=moment("2021-06-01 00:00:00")) == []


# --- logins and active users ---------------------------------------------------------------------------------

ADA, BOB = uuid.UUID("0190aaaa-0000-7000-8000-000000000001"), uuid.UUID("0190bbbb-0000-7000-8000-000000000002")
JANUARY: dict[str, Any] = {"start": moment("2021-01-01 00:00:00"), "end": moment("2021-02-01 00:00:00")}


@pytest.fixture
def logins(database: Database, clock: Clock) -> None:
    with database.unit_of_work() as uow:
        for when, action, user in [
            ("2020-12-31 23:59:59.999999", "login.success", ADA),  # before the range
            ("2021-01-03 23:59:59.999999", "login.success", ADA),  # Sunday: the ISO week of 28 December 2020
            ("2021-01-04 00:00:00", "login.success", ADA),  # Monday: a new week
            ("2021-01-04 09:00:00", "login.failure", BOB),
            ("2021-01-04 10:00:00", "login.success", BOB),
            ("2021-01-04 11:00:00", "login.success", ADA),  # ada again the same day: one active user
            ("2021-01-05 08:00:00", "login.failure", None),  # an unknown email
            ("2021-01-05 08:01:00", "login.failure", BOB),
            ("2021-01-05 08:01:00", "user.locked", BOB),
            ("2021-01-05 09:00:00", "token.issued", BOB),  # not a login
            ("2021-01-31 23:59:59.999999", "login.success", BOB),
            ("2021-02-01 00:00:00", "login.success", BOB),  # the range's end: excluded
        ]:
            record(uow, clock, when, action, user=user)


def test_logins_failures_and_lockouts_per_day(database: Database, logins: None) -> None:
    with database.unit_of_work() as uow:
        rows = reports(uow).logins(**JANUARY, bucket="day")
    assert rows == [
        LoginActivity("2021-01-03", 1, 0, 0),
        LoginActivity("2021-01-04", 3, 1, 0),
        LoginActivity("2021-01-05", 0, 2, 1),
        LoginActivity("2021-01-31", 1, 0, 0),
    ]


def test_logins_per_week_across_the_new_year(database: Database, logins: None) -> None:
    with database.unit_of_work() as uow:
        rows = reports(uow).logins(**JANUARY, bucket="week")
    assert rows == [
        LoginActivity("2020-12-28", 1, 0, 0),
        LoginActivity("2021-01-04", 3, 3, 1),
        LoginActivity("2021-01-25", 1, 0, 0),
    ]


def test_logins_per_month(database: Database, logins: None) -> None:
    with database.unit_of_work() as uow:
        rows = reports(uow).logins(start=moment("2020-12-01 00:00:00"), end=moment("2021-03-01 00:00:00"),
                                   bucket="month")
    assert rows == [
        LoginActivity("2020-12-01", 1, 0, 0),
        LoginActivity("2021-01-01", 5, 3, 1),
        LoginActivity("2021-02-01", 1, 0, 0),
    ]


def test_active_users_are_distinct_users_with_a_successful_login(database: Database, logins: None) -> None:
    with database.unit_of_work() as uow:
        daily = reports(uow).active_users(**JANUARY, bucket="day")
        weekly = reports(uow).active_users(**JANUARY, bucket="week")
        monthly = reports(uow).active_users(**JANUARY, bucket="month")
    assert daily == [PeriodCount("2021-01-03", 1), PeriodCount("2021-01-04", 2), PeriodCount("2021-01-31", 1)]
    assert weekly == [PeriodCount("2020-12-28", 1), PeriodCount("2021-01-04", 2), PeriodCount("2021-01-25", 1)]
    assert monthly == [PeriodCount("2021-01-01", 2)]


def test_the_reports_count_what_authenticate_records(database: Database, clock: Clock) -> None:
    with database.unit_of_work() as uow:
        uow.users.create(email="eve@example.com", password="correct horse battery staple")
    clock.now = moment("2021-07-14 12:00:00")
    with database.unit_of_work() as uow:
        uow.users.authenticate("eve@example.com", "correct horse battery staple")
    for password in ["wrong password 1"] * database.settings.lockout_threshold:
        with pytest.raises(AuthenticationError), database.unit_of_work() as uow:
            uow.users.authenticate("eve@example.com", password)
    clock.now = None
    july_14: dict[str, Any] = {"start": moment("2021-07-14 00:00:00"), "end": moment("2021-07-15 00:00:00")}
    with database.unit_of_work() as uow:
        assert reports(uow).logins(**july_14) == [LoginActivity("2021-07-14", 1, 5, 1)]
        assert reports(uow).active_users(**july_14) == [PeriodCount("2021-07-14", 1)]


# --- audit activity ------------------------------------------------------------------------------------------

AUDIT_WEEK: dict[str, Any] = {"start": moment("2021-09-06 00:00:00"), "end": moment("2021-09-13 00:00:00")}


@pytest.fixture
def activity(database: Database, clock: Clock) -> None:
    for actor, entries in [
        ("ada", [("2021-09-06 00:00:00", "login.success", "event"), ("2021-09-06 10:00:00", "update", "change"),
                 ("2021-09-07 10:00:00", "update", "change")]),
        ("bob", [("2021-09-06 23:59:59.999999", "login.success", "event"),
                 ("2021-09-12 23:59:59.999999", "create", "change")]),
        ("system", [("2021-09-13 00:00:00", "create", "change")]),  # the range's end: excluded
        (None, [("2021-09-07 00:00:00", "login.failure", "event")]),
    ]:
        with database.unit_of_work(actor=actor) as uow:
            for when, action, kind in entries:
                record(uow, clock, when, action, kind=kind)


def test_audit_entries_per_action(database: Database, activity: None) -> None:
    with database.unit_of_work() as uow:
        assert reports(uow).audit_by_action(**AUDIT_WEEK) == [
            ActionCount("login.success", 2), ActionCount("update", 2), ActionCount("create", 1),
            ActionCount("login.failure", 1),
        ]
        assert reports(uow).audit_by_action(**AUDIT_WEEK, kind="event") == [
            ActionCount("login.success", 2), ActionCount("login.failure", 1),
        ]


def test_audit_entries_per_actor_with_no_actor_first_among_equals(database: Database, activity: None) -> None:
    with database.unit_of_work() as uow:
        assert reports(uow).audit_by_actor(**AUDIT_WEEK) == [
            ActorCount("ada", 3), ActorCount("bob", 2), ActorCount(None, 1),
        ]
        assert reports(uow).audit_by_actor(**AUDIT_WEEK, kind="event") == [
            ActorCount(None, 1), ActorCount("ada", 1), ActorCount("bob", 1),
        ]


def test_audit_entries_per_period(database: Database, activity: None) -> None:
    with database.unit_of_work() as uow:
        assert reports(uow).audit_by_period(**AUDIT_WEEK, bucket="day") == [
            PeriodCount("2021-09-06", 3), PeriodCount("2021-09-07", 2), PeriodCount("2021-09-12", 1),
        ]
        assert reports(uow).audit_by_period(**AUDIT_WEEK, bucket="week", kind="change") == [
            PeriodCount("2021-09-06", 3),
        ]


# --- accounts --------------------------------------------------------------------------------------------------


def test_accounts_per_plan_and_status_leave_soft_deleted_accounts_out(database: Database) -> None:
    with database.unit_of_work() as uow:
        owner = uow.users.create(email="owner@example.com", password=None)
        made = {}
        for slug, plan, status in [("a1", "free", "active"), ("a2", "free", "active"), ("a3", "free", "suspended"),
                                   ("a4", "pro", "active"), ("a5", "enterprise", "closed"),
                                   ("a6", "pro", "active")]:
            made[slug] = uow.accounts.create(name=slug, slug=slug, owner=owner, plan=plan, status=status)
        uow.accounts.delete(made["a6"])
    with database.unit_of_work() as uow:
        assert reports(uow).accounts_by_plan() == [
            PlanStatusCount("enterprise", "closed", 1), PlanStatusCount("free", "active", 2),
            PlanStatusCount("free", "suspended", 1), PlanStatusCount("pro", "active", 1),
        ]


# --- storage and uploaders ------------------------------------------------------------------------------------


class FileRows(BaseRepository[StoredFile]):
    model = StoredFile


class BlobRows(BaseRepository[FileBlob]):
    model = FileBlob


@pytest.fixture
def stored(database: Database) -> dict[str, uuid.UUID]:
    """Two accounts' files: (account, owner, content type, size, created, deleted)."""
    with database.unit_of_work() as uow:
        people = {name: uow.users.create(email=f"{name}@example.com", password=None) for name in ("ada", "bob", "cy")}
        acme = uow.accounts.create(name="Acme", slug="acme", owner=people["ada"], storage_quota_bytes=1000)
        beta = uow.accounts.create(name="Beta", slug="beta", owner=people["cy"], storage_quota_bytes=5000)
        ids = {"acme": acme.id, "beta": beta.id, **{name: user.id for name, user in people.items()}}
        files = [
            (acme, "ada", "image/png", 100, "2021-05-01 00:00:00", False),
            (acme, "ada", "image/png", 200, "2021-05-02 00:00:00", False),
            (acme, "bob", "application/pdf", 50, "2021-05-03 00:00:00", False),
            (acme, "bob", "text/plain", 10, "2021-05-04 00:00:00", True),
            (beta, "cy", "image/png", 400, "2021-06-01 00:00:00", False),
            (beta, None, "text/plain", 5, "2021-06-02 00:00:00", False),
            (beta, "bob", "application/pdf", 300, "2021-05-31 23:59:59.999999", False),
        ]
        for number, (account, owner, content_type, size, created, deleted) in enumerate(files):
            sha = f"{number:064x}"
            uow.repository(BlobRows).create(sha256=sha, size=size)
            row = uow.repository(FileRows).create(
                account_id=account.id, owner_id=None if owner is None else people[owner].id, filename=f"f{number}",
                content_type=content_type, declared_type=None, size=size, sha256=sha, created_at=moment(created))
            if deleted:
                uow.repository(FileRows).delete(row)
    return ids


def test_storage_per_account_counts_files_not_deleted(database: Database, stored: dict[str, uuid.UUID]) -> None:
    with database.unit_of_work() as uow:
        assert reports(uow).storage_by_account() == [
            AccountStorage(stored["beta"], "beta", 3, 705, 5000),
            AccountStorage(stored["acme"], "acme", 3, 350, 1000),
        ]


def test_storage_per_content_type(database: Database, stored: dict[str, uuid.UUID]) -> None:
    with database.unit_of_work() as uow:
        assert reports(uow).storage_by_content_type() == [
            ContentTypeStorage("image/png", 3, 700), ContentTypeStorage("application/pdf", 2, 350),
            ContentTypeStorage("text/plain", 1, 5),
        ]
        assert reports(uow).storage_by_content_type(account_id=stored["acme"]) == [
            ContentTypeStorage("image/png", 2, 300), ContentTypeStorage("application/pdf", 1, 50),
        ]


def test_top_uploaders_by_bytes_or_by_files(database: Database, stored: dict[str, uuid.UUID]) -> None:
    ada, bob, cy = stored["ada"], stored["bob"], stored["cy"]
    with database.unit_of_work() as uow:
        assert reports(uow).top_uploaders() == [Uploader(cy, 1, 400), Uploader(bob, 2, 350), Uploader(ada, 2, 300)]
        assert reports(uow).top_uploaders(by="files", limit=2) == [Uploader(bob, 2, 350), Uploader(ada, 2, 300)]
        assert reports(uow).top_uploaders(account_id=stored["beta"]) == [Uploader(cy, 1, 400), Uploader(bob, 1, 300)]
        assert reports(uow).top_uploaders(start=moment("2021-05-01 00:00:00"), end=moment("2021-06-01 00:00:00")) == [
            Uploader(bob, 2, 350), Uploader(ada, 2, 300),
        ]


def test_saved_runs_of_the_file_reports_read_back_equal(database: Database, stored: dict[str, uuid.UUID]) -> None:
    with database.unit_of_work() as uow:
        runs: list[tuple[str, dict[str, Any]]] = [
            ("storage_by_account", {}), ("storage_by_content_type", {"account_id": stored["acme"]}),
            ("top_uploaders", {"limit": 2}),
        ]
        for name, params in runs:
            result = reports(uow).run(name, **params, save=True)
            assert result.row_count == 2
            assert reports(uow).saved(result.run_id) == result, name
        uploaders = reports(uow).run("top_uploaders", limit=1)
    assert uploaders.parameters == {"account_id": None, "by": "bytes", "end": None, "limit": 1, "start": None}
    assert uploaders.to_csv() == f"owner_id,file_count,total_bytes\r\n{stored['cy']},1,400\r\n"
    assert uploaders.to_json() == f'[{{"owner_id":"{stored["cy"]}","file_count":1,"total_bytes":400}}]'


# --- run, export, save, history --------------------------------------------------------------------------------


def test_run_gives_the_method_s_rows_with_its_checked_parameters(database: Database, logins: None) -> None:
    with database.unit_of_work(actor="ada") as uow:
        result = reports(uow).run("logins", **JANUARY)
        direct = reports(uow).logins(**JANUARY)
    assert list(result.rows) == direct and result.row_count == 4 and result.run_id is None
    assert result.parameters == {"start": "2021-01-01T00:00:00+00:00", "end": "2021-02-01T00:00:00+00:00",
                                 "bucket": "day"}
    assert result.actor == "ada" and result.duration_ms >= 0 and result.started_at.tzinfo is not None


def test_csv_and_json_exports(database: Database, logins: None) -> None:
    with database.unit_of_work() as uow:
        result = reports(uow).run("logins", **JANUARY, bucket="week")
    assert result.to_csv() == (
        "period,successes,failures,lockouts\r\n"
        "2020-12-28,1,0,0\r\n"
        "2021-01-04,3,3,1\r\n"
        "2021-01-25,1,0,0\r\n"
    )
    assert result.to_json() == (
        '[{"period":"2020-12-28","successes":1,"failures":0,"lockouts":0},'
        '{"period":"2021-01-04","successes":3,"failures":3,"lockouts":1},'
        '{"period":"2021-01-25","successes":1,"failures":0,"lockouts":0}]'
    )
    assert to_csv(list(result.rows)) == result.to_csv() and to_json(list(result.rows)) == result.to_json()


def test_exports_of_no_rows_and_of_hostile_text() -> None:
    assert to_csv([], ActorCount) == "actor,count\r\n" and to_csv([]) == "" and to_json([]) == "[]"
    rows = [ActorCount("=HYPERLINK(\"http://x\")", 1), ActorCount("-1+1", 2), ActorCount('a,"b"\nc', 3),
            ActorCount(None, 4), ActorCount("ünï", 5)]
    assert to_csv(rows) == (
        'actor,count\r\n"\'=HYPERLINK(""http://x"")",1\r\n\'-1+1,2\r\n"a,""b""\nc",3\r\n,4\r\nünï,5\r\n'
    )
    assert json.loads(to_json(rows))[0] == {"actor": "=HYPERLINK(\"http://x\")", "count": 1}
    assert json.loads(to_json(rows))[3] == {"actor": None, "count": 4}


def test_a_saved_run_is_listed_and_shown_again_without_recomputation(database: Database,
                                                                      signed_up: dict[str, uuid.UUID]) -> None:
    with database.unit_of_work(actor="ada") as uow:
        first = reports(uow).run("signups", **MARCH, bucket="month", save=True)
    make_users(database, {"late": "2021-03-15 12:00:00"})
    with database.unit_of_work(actor="bob") as uow:
        second = reports(uow).run("signups", **MARCH, bucket="month", save=True)
    assert first.rows == (PeriodCount("2021-03-01", 6), PeriodCount("2021-04-01", 1))
    assert second.rows == (PeriodCount("2021-03-01", 7), PeriodCount("2021-04-01", 1))
    with database.unit_of_work() as uow:
        again = reports(uow).saved(first.run_id)
        runs = reports(uow).history("signups").items
    assert again == first  # the stored rows, not today's
    assert again.to_json() == first.to_json() and again.to_csv() == first.to_csv()
    assert [run.id for run in runs] == [second.run_id, first.run_id]
    newest = runs[0]
    assert (newest.name, newest.row_count, newest.actor) == ("signups", 2, "bob")
    assert json.loads(newest.parameters) == {"bucket": "month", "end": "2021-04-02T00:00:00+00:00",
                                             "start": "2021-03-01T00:00:00+00:00"}
    assert newest.parameters == audit_log.canonical(json.loads(newest.parameters))
    assert newest.started_at == second.started_at and newest.duration_ms == pytest.approx(second.duration_ms)


def test_saved_runs_are_listed_by_history_and_are_the_run_repositorys_data(database: Database,
                                                                         signed_up: dict[str, uuid.UUID]) -> None:
    with database.unit_of_work() as uow:
        saved = reports(uow).run("signups", **MARCH, save=True).run_id
        assert not hasattr(uow.reports, "list")  # the service runs reports; history(name) lists their runs
        runs = uow.repository(ReportRunRepository)
        assert [run.id for run in runs.list(filters={"name": "signups"})] == [saved]
        assert [run.id for run in reports(uow).history("signups").items] == [saved]


def test_history_is_keyset_paged_newest_first_and_per_report(database: Database, logins: None) -> None:
    saved = []
    with database.unit_of_work() as uow:
        for _ in range(3):
            saved.append(reports(uow).run("active_users", **JANUARY, save=True).run_id)
        reports(uow).run("logins", **JANUARY, save=True)
    with database.unit_of_work() as uow:
        first = reports(uow).history("active_users", size=2)
        second = reports(uow).history("active_users", size=2, after=first.next_cursor)
    assert [run.id for run in first.items + second.items] == saved[::-1]
    assert second.next_cursor is None


def test_a_saved_run_of_every_report_reads_back_equal(database: Database, logins: None, activity: None,
                                                      signed_up: dict[str, uuid.UUID]) -> None:
    with database.unit_of_work() as uow:
        for name in ("signups", "active_users", "logins", "audit_by_period", "audit_by_action", "audit_by_actor",
                     "accounts_by_plan"):
            params = {} if name == "accounts_by_plan" else {"start": moment("2020-01-01 00:00:00"),
                                                            "end": moment("2022-01-01 00:00:00")}
            result = reports(uow).run(name, **params, save=True)
            assert reports(uow).saved(result.run_id) == result, name


# --- refusals --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("nope", {}, "name"),
        ("signups", {}, "start"),
        ("signups", {"start": moment("2021-01-01 00:00:00")}, "end"),
        ("signups", {**JANUARY, "colour": "red"}, "colour"),
        ("signups", {"start": dt.datetime(2021, 1, 1), "end": dt.datetime(2021, 2, 1)}, "start"),
        ("signups", {"start": dt.date(2021, 1, 1), "end": moment("2021-02-01 00:00:00")}, "start"),
        ("signups", {"start": "2021-01-01", "end": moment("2021-02-01 00:00:00")}, "start"),
        ("signups", {"start": JANUARY["end"], "end": JANUARY["start"]}, "end"),
        ("signups", {"start": JANUARY["start"], "end": JANUARY["start"]}, "end"),
        ("signups", {**JANUARY, "bucket": "year"}, "bucket"),
        ("signups", {**JANUARY, "bucket": "DAY"}, "bucket"),
        ("signups", {**JANUARY, "bucket": "day') UNION SELECT password_hash FROM user --"}, "bucket"),
        ("signups", {**JANUARY, "bucket": None}, "bucket"),
        ("audit_by_action", {**JANUARY, "kind": "login"}, "kind"),
        ("top_uploaders", {"limit": 0}, "limit"),
        ("top_uploaders", {"limit": 1001}, "limit"),
        ("top_uploaders", {"limit": True}, "limit"),
        ("top_uploaders", {"limit": "10"}, "limit"),
        ("top_uploaders", {"by": "size"}, "by"),
        ("top_uploaders", {"account_id": "not-a-uuid"}, "account_id"),
        ("top_uploaders", {"account_id": 42}, "account_id"),
        ("storage_by_content_type", {"account_id": "'; DROP TABLE file; --"}, "account_id"),
    ],
)
def test_bad_names_and_parameters_are_refused_before_any_sql(
    database: Database, name: str, params: dict[str, Any], field: str
) -> None:
    with database.unit_of_work() as uow:
        with pytest.raises(ValidationError) as caught:
            reports(uow).run(name, **params, save=True)
        assert caught.value.field == field
        assert uow.repository(ReportRunRepository).count() == 0


def test_the_methods_refuse_what_run_refuses(database: Database) -> None:
    with database.unit_of_work() as uow, pytest.raises(ValidationError) as caught:
        reports(uow).signups(start=dt.datetime(2021, 1, 1), end=moment("2021-02-01 00:00:00"))
    assert caught.value.rule == "timezone"


def test_history_and_saved_refuse_unknown_reports_and_runs(database: Database) -> None:
    with database.unit_of_work() as uow:
        with pytest.raises(ValidationError):
            reports(uow).history("nope")
        with pytest.raises(NotFound):
            reports(uow).saved(uuid.UUID(int=1))
        with pytest.raises(InvalidFilter):
            reports(uow).saved("not-an-id")
        with pytest.raises(InvalidFilter):
            reports(uow).history("signups", after="garbage")


def test_every_report_is_named_and_documented() -> None:
    assert set(REPORTS) == {
        "signups", "active_users", "logins", "audit_by_period", "audit_by_action", "audit_by_actor",
        "accounts_by_plan", "storage_by_account", "storage_by_content_type", "top_uploaders",
    }
    assert all(report.description for report in REPORTS.values())
