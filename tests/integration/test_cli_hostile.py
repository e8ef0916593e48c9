"""``python -m db`` under hostile input, an impatient operator and a new user's typos.

Every bad option value is one line on stderr and exit 1 (2 for a usage error), never a traceback; bytes that are not
UTF-8 are refused before anything is created; generate's sizes are bounded and checked against the free disk;
relative revisions work; every script module runs like its command; Ctrl-C says what was committed. Real
subprocesses where it matters: argv bytes, signals.
"""

from __future__ import annotations

import os
import pkgutil
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

import db.scripts
from db import Database
from db.migrations import runner
from db.models.user import User
from db.scripts import migrate_db
from tests.integration import cli_support
from tests.support import TestDatabases

ROOT = Path(__file__).resolve().parents[2]
HEAD = runner.head_revision()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return cli_support.run(capsys, *args, flat=False)


def one_error_line(err: str) -> str:
    """The single line a failure prints (asserted: one line, no traceback, not an internal error)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "internal error" not in lines[0] and "Traceback" not in err
    return lines[0]


def python_m(*args: str | bytes, env: dict[bytes, bytes] | None = None, **options: object
             ) -> subprocess.CompletedProcess[bytes]:
    environment = dict(os.environb)
    environment.pop(b"DATABASE_URL", None)
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=environment, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=180, check=False, **options)  # type: ignore[call-overload]


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    return cli_support.own_environment(tmp_path, monkeypatch)


@pytest.fixture
def created(url: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert run(capsys, "create", "--url", url)[0] == 0
    return url


# --- bad option values: one line, exit 1 or 2 -------------------------------------------------------------------

BAD_OPTIONS = [
    (["report", "signups", "--days", "800000"], 2, "Invalid value for '--days'"),
    (["report", "signups", "--days", str(10**30)], 2, "Invalid value for '--days'"),
    (["report", "signups", "--days", "0"], 2, "Invalid value for '--days'"),
    (["report", "signups", "--end", "0001-01-01"], 1, "before the year 1"),
    (["report", "signups", "--start", "2026-13-01"], 2, "not an ISO date"),
    (["generate", "--blobs", "1000000"], 1, "blobs must be a whole number from 1 to 100,000"),
    (["generate", "--events-per-user", "1000000"], 1, "events_per_user must be a number from 0 to 10,000"),
    (["generate", "--files-per-account", "inf"], 1, "files_per_account must be a number"),
    (["generate", "--members-per-account", "nan"], 1, "members_per_account must be a number"),
    (["generate", "--users", "1000000000", "--events-per-user", "10000"], 1, "more than 1,000,000,000"),
    (["generate", "--start", "1969-12-31"], 1, "between 1970"),
    (["generate", "--start", "9990-01-01", "--days", "36500"], 1, "and the year 9999"),
    (["migrate", "upgrade", ""], 1, "is not a revision"),
    (["migrate", "downgrade", "0001-01-01", "--yes"], 1, "is not a revision"),
    (["migrate", "downgrade", "--bogus", "--yes"], 2, "no such option: --bogus"),
    (["migrate", "downgrade", "-1x", "--yes"], 2, "no such option: -1x"),
    (["backup", "--keep", "0"], 2, "Invalid value for '--keep'"),
    (["cleanup", "--tokens-after", "forever"], 2, "--tokens-after"),
    (["frobnicate"], 2, "No such command"),
]


@pytest.mark.parametrize(("args", "code", "message"), BAD_OPTIONS, ids=[" ".join(a)[:40] for a, *_ in BAD_OPTIONS])
def test_a_bad_option_value_is_one_line_and_changes_nothing(
    created: str, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    got, _, err = run(capsys, *args, "--url", created)
    assert got == code, err
    assert message in one_error_line(err)
    database = Database(created)
    try:
        assert runner.current_revision(database) == HEAD
    finally:
        database.dispose()


# --- bytes that are not UTF-8 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("option", [b"--url", b"--dir", b"--storage"])
def test_an_argument_that_is_not_utf8_is_refused_before_anything_is_created(tmp_path: Path, option: bytes) -> None:
    where = bytes(tmp_path) + b"/caf\xe9"
    command = {b"--url": b"create", b"--dir": b"backup", b"--storage": b"setup"}[option]
    value = b"sqlite:///" + where + b".db" if option == b"--url" else where
    url = [] if option == b"--url" else [b"--url", f"sqlite:///{tmp_path / 'ok.db'}".encode()]
    result = python_m("db", command, option, value, *url)
    assert result.returncode == 2
    line = one_error_line(result.stderr.decode())
    assert "not valid UTF-8" in line and f"the value of {option.decode()}" in line
    assert list(tmp_path.iterdir()) == []  # no file, no directory, no database


@pytest.mark.parametrize("variable", [b"DATABASE_URL", b"DBLAYER_STORAGE_ROOT", b"DBLAYER_ADMIN_PASSWORD"])
def test_an_environment_variable_that_is_not_utf8_is_refused_without_showing_it(tmp_path: Path,
                                                                                variable: bytes) -> None:
    value = b"sqlite:///" + bytes(tmp_path) + b"/s\xffcret.db" if variable == b"DATABASE_URL" else b"s\xffcret"
    result = python_m("db", "setup", env={variable: value})
    assert result.returncode == 2
    line = one_error_line(result.stderr.decode())
    assert variable.decode() in line and "cret" not in line
    assert list(tmp_path.iterdir()) == []


# --- generate: bounded sizes, free disk -----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs ({mounted.stderr.strip()}): the free-disk check is not tested here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def test_generate_that_would_not_fit_the_disk_is_refused_before_writing(
    small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{small_disk / 'app.db'}"
    assert run(capsys, "create", "--url", url)[0] == 0
    code, _, err = run(capsys, "generate", "--url", url, "--storage", str(small_disk / "files"), "--users", "20000")
    assert code == 1
    assert re.search(r"need about [\d,]+ MiB on the disk of .* and [\d,]+ MiB are free", one_error_line(err))
    database = Database(url)
    try:
        with database.session() as session:
            assert session.scalar(select(func.count()).select_from(User)) == 0
    finally:
        database.dispose()
    assert not (small_disk / "files").exists()


# --- migrations: relative revisions ---------------------------------------------------------------------------


REVISIONS = [revision.revision for revision in migrate_db.history()]  # newest first


def test_migrate_downgrade_takes_the_relative_steps_its_help_shows(created: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "migrate", "downgrade", "--help")[0] == 0
    code, out, err = run(capsys, "migrate", "downgrade", "-1", "--url", created, "--yes")
    assert code == 0, err
    assert f"downgraded from {REVISIONS[0]} to {REVISIONS[1]}" in " ".join(out.split())
    code, out, _ = run(capsys, "migrate", "downgrade", f"{REVISIONS[1]}-1", "--yes", "--url", created)
    assert code == 0 and f"to {REVISIONS[2]}" in " ".join(out.split())
    code, out, _ = run(capsys, "migrate", "upgrade", "+1", "--url", created)
    assert code == 0 and f"to {REVISIONS[1]}" in " ".join(out.split())
    code, out, _ = run(capsys, "migrate", "downgrade", "--yes", "-2", "--url", created)
    assert code == 0 and f"to {REVISIONS[3]}" in " ".join(out.split())


def test_downgrade_minus_one_from_a_real_command_line(created: str) -> None:
    result = python_m("db", "migrate", "downgrade", "-1", "--yes", "--url", created)
    assert result.returncode == 0, result.stderr
    assert f"to {REVISIONS[1]}".encode() in result.stdout


# --- every script module runs like its command ----------------------------------------------------------------

SCRIPTS = sorted(module.name for module in pkgutil.iter_modules(db.scripts.__path__))
LIBRARIES = {"progress", "retention", "sample_options"}


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_module_runs_its_command_or_says_it_is_a_library(script: str) -> None:
    result = python_m(f"db.scripts.{script}", "--help")
    if script in LIBRARIES:
        assert result.returncode == 2
        assert b"is a library the commands use, not a command" in result.stderr
        assert b"Usage: python -m db" in result.stderr + result.stdout
    else:
        assert result.returncode == 0, result.stderr
        assert b"Usage: python -m db " in result.stdout


@pytest.mark.slow
def test_status_and_fill_sample_as_modules_do_what_their_commands_do(created: str) -> None:
    filled = python_m("db.scripts.fill_sample", "--url", created)
    assert filled.returncode == 0, filled.stderr
    assert b"Sample data written" in filled.stdout
    status = python_m("db.scripts.status_db", "--url", created)
    assert status.returncode == 0, status.stderr
    assert b"audit chain OK" in status.stdout and b"accounts" in status.stdout


# --- the administrator message tells the truth ----------------------------------------------------------------


def test_fill_names_the_superadmin_that_exists_instead_of_saying_none_was_made(
    created: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(capsys, "fill", "--url", created)
    assert code == 0 and "no administrator yet" in out
    monkeypatch.setenv("DBLAYER_ADMIN_EMAIL", "root@example.com")
    monkeypatch.setenv("DBLAYER_ADMIN_PASSWORD", "a long and unusual passphrase")
    assert run(capsys, "fill", "--url", created)[0] == 0
    monkeypatch.delenv("DBLAYER_ADMIN_EMAIL")
    monkeypatch.delenv("DBLAYER_ADMIN_PASSWORD")
    for command in ("fill", "setup"):
        code, out, _ = run(capsys, command, "--url", created)
        text = " ".join(out.split())
        assert code == 0 and "superadmin already present: root@example.com" in text
        assert "no administrator" not in text


# --- Ctrl-C -----------------------------------------------------------------------------------------------------

INTERRUPT = re.compile(r"^interrupted: (?:([\d,]+) transactions? had been committed \((.*): kept\)"
                       r"|nothing had been committed); (.*)$")


@pytest.fixture
def generate_target(engine_name: str, test_databases: TestDatabases) -> Iterator[Database]:
    with test_databases.own(engine_name, "dblayer_interrupt") as database:
        yield database


def _rows(database: Database) -> int:
    with database.engine.connect() as connection:
        return sum(connection.scalar(select(func.count()).select_from(table)) or 0
                   for table in _tables(database))


def _tables(database: Database) -> list[object]:
    from db.base import Base

    return [table for name, table in Base.metadata.tables.items() if name != "alembic_version"]


@pytest.mark.slow
def test_ctrl_c_during_generate_exits_130_saying_what_was_committed(generate_target: Database,
                                                                    tmp_path: Path) -> None:
    before = _rows(generate_target)
    url = generate_target.url.render_as_string(hide_password=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "db", "generate", "--url", url, "--storage", str(tmp_path / "files"), "--users",
         "300000", "--events-per-user", "4", "--no-blobs", "--batch-size", "10000", "--seed", "5"],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while _users(generate_target) < 20_000 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    last = err.decode().strip().splitlines()[-1]
    found = INTERRUPT.match(last)
    assert found and found.group(1), last
    assert "Traceback" not in err.decode()
    added = re.match(r"([\d,]+) rows? added", found.group(2))
    assert added, last
    assert _rows(generate_target) - before == int(added.group(1).replace(",", ""))  # exactly what the line says
    assert "the transaction in progress was rolled back" in found.group(3) or "no transaction" in found.group(3)


def _users(database: Database) -> int:
    with database.engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(User)) or 0)


def test_ctrl_c_at_a_confirmation_exits_130_and_nothing_was_committed(created: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "db", "migrate", "downgrade", "base", "--url", created],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdout.read(9) == b"Downgrade"  # the question is asked: the command waits for an answer
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.decode().strip().splitlines()[-1] == (
        "interrupted: nothing had been committed; no transaction with changes was in progress")
    database = Database(created)
    try:
        assert runner.current_revision(database) == HEAD
    finally:
        database.dispose()
