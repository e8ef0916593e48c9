"""A restore over existing data, interrupted for real: ``python -m db restore`` in a child process, stopped at a
chosen point (``restore_worker``) and sent SIGINT (Ctrl-C) or SIGKILL, for every pair of source and target engine.

Afterwards the target holds exactly the old data or exactly the new data (every row of every table, the blobs
its rows name, a verifiable audit chain), ``check`` passes on it, and what the interruption left behind is listed
by ``check`` and removed by the next restore or by ``cleanup``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from db import Database
from db.backup import leftovers
from db.backup.leftovers import ABANDONED, IN_USE, UNFINISHED, restore_leftovers
from db.cli import main
from db.errors import Conflict
from db.scripts.backup_db import backup
from db.scripts.check_db import check
from db.scripts.restore_db import restore
from tests.integration.test_backup_restore import (
    Rows,
    all_rows,
    assert_blobs_present,
    assert_chain_ok,
    populate,
    settings_for,
)
from tests.support import ENGINES, TestDatabases

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WAIT = 180  # seconds: the child imports, verifies and loads a small archive


@dataclass(frozen=True)
class Made:
    path: Path
    rows: Rows  # the source's rows when the backup was taken


@pytest.fixture(scope="session")
def archives(test_databases: TestDatabases, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Made]:
    """A backup of a populated database on each engine ("new" data), made once per session."""
    made: dict[str, Made] = {}

    def archive_of(engine: str) -> Made:
        if engine not in made:
            folder = tmp_path_factory.mktemp(f"atomicity-{engine}")
            with test_databases.own(engine, "atm_source", settings_for(folder / "files")) as source:
                populate(source, prefix="new", users=7)
                made[engine] = Made(backup(source, directory=folder / "backups").path, all_rows(source))
        return made[engine]

    return archive_of


@pytest.fixture
def occupied(engine_name: str, test_databases: TestDatabases, tmp_path: Path) -> Iterator[Database]:
    """The target: the application's schema with "old" data and its blobs."""
    with test_databases.own(engine_name, "atm_target", settings_for(tmp_path / "target-files")) as database:
        populate(database, prefix="old", users=3)
        yield database


def url_of(database: Database) -> str:
    return database.url.render_as_string(hide_password=False)


def start_restore(point: str, database: Database, archive: Path, tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    """``python -m db restore ARCHIVE --yes`` in a child that waits at ``point`` (see ``restore_worker``)."""
    ready = tmp_path / f"ready-{time.monotonic_ns()}"
    command = [sys.executable, "-m", "tests.integration.restore_worker", point, str(ready), "--",
               "restore", str(archive), "--url", url_of(database), "--storage", str(database.settings.storage_root),
               "--yes"]
    child = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return child, ready


def interrupt_at(point: str, signal_number: int, database: Database, archive: Path,
                 tmp_path: Path) -> subprocess.CompletedProcess[str]:
    child, ready = start_restore(point, database, archive, tmp_path)
    deadline = time.monotonic() + WAIT
    while not ready.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            out, err = child.communicate()
            pytest.fail(f"the restore never reached {point!r} (exit {child.returncode}): {err[-2000:]}")
        time.sleep(0.05)
    child.send_signal(signal_number)
    with contextlib.suppress(subprocess.TimeoutExpired):  # a signal that ends the child ends this wait at once;
        child.wait(timeout=1)  # a SIGINT held back (point "committed") must wait: then the pause ends by itself
    ready.with_name(ready.name + ".go").touch()
    out, err = child.communicate(timeout=WAIT)
    settle(database)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def settle(database: Database) -> None:
    """Wait until the server has ended the killed child's sessions (and so rolled back or released what they held)."""
    database.dispose()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if database.backend == "postgresql":
            with database.engine.connect() as connection:
                others = connection.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()")).scalar()
            busy = bool(others)
        else:
            busy = any(leftover.state == IN_USE for leftover in restore_leftovers(database))
        database.dispose()
        if not busy:
            return
        time.sleep(0.1)
    pytest.fail("the killed restore's sessions did not end within 60 s")


def assert_holds(database: Database, rows: Rows) -> None:
    """Exactly these rows in every table, every blob they name present and intact, the audit chain verified."""
    database.dispose()
    assert all_rows(database) == rows
    assert_blobs_present(database)
    assert_chain_ok(database)


def leftover_states(database: Database) -> list[str]:
    return [leftover.state for leftover in restore_leftovers(database)]


# Every pair of engines is interrupted mid-load (SIGKILL) and just before its swap (SIGINT); each target also
# early, while the archive is verified (SIGINT), just before the swap (SIGKILL) and mid-load (SIGINT).
SCENARIOS = [
    *((source, "SIGKILL", "rows") for source in ENGINES),
    *((source, "SIGINT", "swap") for source in ENGINES),
    ("sqlite", "SIGINT", "verify"),
    ("postgresql", "SIGKILL", "swap"),
    ("mariadb", "SIGINT", "rows"),
]


@pytest.mark.parametrize(("source", "signal_name", "point"), SCENARIOS,
                         ids=[f"from-{source}-{name}-at-{point}" for source, name, point in SCENARIOS])
def test_an_interrupted_restore_leaves_the_old_data_and_the_next_one_cleans_up(
    source: str, signal_name: str, point: str, engine_name: str, occupied: Database,
    archives: Callable[[str], Made], tmp_path: Path,
) -> None:
    made = archives(source)
    old = all_rows(occupied)
    assert old != made.rows

    done = interrupt_at(point, getattr(signal, signal_name), occupied, made.path, tmp_path)

    assert_holds(occupied, old)
    assert check(occupied).ok
    if signal_name == "SIGINT":  # Ctrl-C: exit 130, says so, and tidies up after itself
        assert done.returncode == 130, done.stderr
        assert "interrupted: the restore into" in done.stderr and "still holds its previous data" in done.stderr
        assert "transaction" not in done.stderr  # the ledger's counts (of the staging area) would not say it
        assert "Traceback" not in done.stderr
        assert leftover_states(occupied) == []
    else:  # kill -9: what it staged is recognised as abandoned (PostgreSQL rolls everything back itself)
        assert done.returncode == -signal.SIGKILL
        assert leftover_states(occupied) == ([] if engine_name == "postgresql" or point == "verify" else [ABANDONED])
        assert check(occupied).result("restore").warnings or engine_name == "postgresql"

    if point == "rows":  # the leftovers go with cleanup ...
        assert main(["cleanup", "--url", url_of(occupied), "--storage", str(occupied.settings.storage_root),
                     "--backup-dir", str(tmp_path / "backups"), "--apply", "--yes"]) == 0
        assert leftover_states(occupied) == []
        assert_holds(occupied, old)
    restore(occupied, made.path, yes=True)  # ... or with the next restore, which then completes
    assert leftover_states(occupied) == []
    assert_holds(occupied, made.rows)
    assert check(occupied).ok


@pytest.mark.parametrize("point", ["committed", "done"])
def test_ctrl_c_once_the_swap_has_committed_says_the_target_holds_the_new_data(
    point: str, engine_name: str, occupied: Database, archives: Callable[[str], Made], tmp_path: Path,
) -> None:
    """SIGINT right after the swap's commit (before the restore has recorded it: held back until it has) and after
    the restore has returned: exit 130, one line saying the target holds the restored data, which it does."""
    made = archives(engine_name)

    done = interrupt_at(point, signal.SIGINT, occupied, made.path, tmp_path)

    assert done.returncode == 130, done.stderr
    assert "stopped after its swap had committed" in done.stderr and "holds the restored data" in done.stderr
    assert "previous data" not in done.stderr and "Traceback" not in done.stderr
    assert_holds(occupied, made.rows)
    assert leftover_states(occupied) == []
    assert check(occupied).ok


@pytest.mark.parametrize("backend", ["mariadb"])
@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGINT"])
def test_mariadb_interrupted_between_its_rename_and_its_triggers_holds_the_new_data_and_check_says_so(
    backend: str, signal_name: str, test_databases: TestDatabases, archives: Callable[[str], Made], tmp_path: Path,
) -> None:
    made = archives("sqlite")
    with test_databases.own(backend, "atm_swapped", settings_for(tmp_path / "files")) as target:
        populate(target, prefix="old", users=3)

        done = interrupt_at("swapped", getattr(signal, signal_name), target, made.path, tmp_path)

        assert_holds(target, made.rows)  # the rename ran: the new data is in place, whole
        if signal_name == "SIGINT":  # the restore finished its swap on the way out
            assert done.returncode == 130 and "holds the restored data" in done.stderr
            assert leftover_states(target) == []
        else:  # killed: the audit log's triggers are missing; check fails and says what to do
            assert leftover_states(target) == [UNFINISHED]
            report = check(target)
            assert not report.ok and "restore" in [result.name for result in report.failed]
            assert "cleanup --apply" in report.result("restore").problems[0]
            assert leftovers.remove(target, restore_leftovers(target))
        assert check(target).ok
        assert_holds(target, made.rows)
        with pytest.raises(Conflict, match="append-only"), target.session() as session:  # triggers are back
            session.execute(text("UPDATE audit_entry SET action = 'forged'"))


def test_a_restore_killed_at_arbitrary_moments_always_leaves_one_whole_database(
    engine_name: str, occupied: Database, archives: Callable[[str], Made], tmp_path: Path
) -> None:
    """No pause this time: SIGKILL after a delay, swept over the last half of a restore's run (where the swap and
    its commit happen), alternating between two archives so that each outcome is told apart."""
    old = Made(backup(occupied, directory=tmp_path / "old").path, all_rows(occupied))
    new = archives("postgresql" if engine_name == "sqlite" else "sqlite")
    started = time.monotonic()
    child, _ = start_restore("never", occupied, new.path, tmp_path)
    assert child.wait(WAIT) == 0, child.communicate()[1]
    duration = time.monotonic() - started
    assert_holds(occupied, new.rows)

    holding = new
    for fraction in (0.5, 0.65, 0.8, 0.9, 0.97):
        wanted = old if holding is new else new
        child, _ = start_restore("never", occupied, wanted.path, tmp_path)
        time.sleep(duration * fraction)
        child.kill()
        child.communicate(timeout=WAIT)
        settle(occupied)
        occupied.dispose()
        now = all_rows(occupied)
        assert now in (holding.rows, wanted.rows), f"a mix after a kill at {fraction:.0%} of a restore"
        holding = wanted if now == wanted.rows else holding
        assert_holds(occupied, holding.rows)
        report = check(occupied)
        if not report.ok and engine_name == "mariadb":  # killed between its RENAME TABLE and its triggers
            failed = {result.name for result in report.failed}
            assert "restore" in failed and failed <= {"restore", "schema"}  # schema: the audit triggers are missing
            assert "cleanup --apply" in report.result("restore").problems[0]
            assert leftovers.remove(occupied, restore_leftovers(occupied))
            report = check(occupied)
        assert report.ok
    leftovers.remove(occupied, restore_leftovers(occupied))
    assert leftover_states(occupied) == []


def test_two_restores_into_one_database_at_once_leave_one_of_them_whole(
    engine_name: str, occupied: Database, archives: Callable[[str], Made], tmp_path: Path
) -> None:
    """Two operators, two processes, one target: both finish, and the target holds one backup, whole."""
    first, second = archives("sqlite"), archives("postgresql" if engine_name != "postgresql" else "mariadb")
    children = [start_restore("never", occupied, made.path, tmp_path)[0] for made in (first, second)]
    for child in children:
        _, err = child.communicate(timeout=WAIT)
        assert child.returncode == 0, err
    occupied.dispose()
    assert all_rows(occupied) in (first.rows, second.rows)
    assert_holds(occupied, all_rows(occupied))
    assert check(occupied).ok and leftover_states(occupied) == []
