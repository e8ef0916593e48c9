"""``python -m db``: what a user sees and the exit codes, for good and bad input.

Most tests call ``db.cli.main`` in-process on a SQLite file; ``setup --sample`` runs on every engine, and a few
run the real ``python -m db`` in a subprocess (no terminal: nothing can be asked).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from db import Database
from db.migrations import runner
from tests.integration import cli_support
from tests.integration.cli_support import run
from tests.support import TestDatabases

ROOT = Path(__file__).resolve().parents[2]
HEAD = runner.head_revision()


def flat(text: str) -> str:
    """Rich wraps long lines at the terminal's width: compare words, not line breaks."""
    return " ".join(text.split())


def run_db(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=os.environ | (env or {}), input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
        check=False,
    )


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    return cli_support.own_environment(tmp_path, monkeypatch)


@pytest.fixture
def created(url: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert run(capsys, "create", "--url", url)[0] == 0
    return url


@pytest.fixture
def empty_url(engine_name: str, test_databases: TestDatabases) -> Iterator[str]:
    """An empty database of this engine (the SQLite one in pytest's temporary directory)."""
    with test_databases.own(engine_name, "dblayer_cli") as database:
        runner.downgrade(database, "base")
        yield database.url.render_as_string(hide_password=False)


# --- the whole system on every engine --------------------------------------------------------------------------


@pytest.mark.slow
def test_setup_with_sample_builds_everything_and_prints_the_dashboard(
    empty_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBLAYER_STORAGE_ROOT", str(tmp_path / "files"))
    monkeypatch.setenv("DBLAYER_ADMIN_EMAIL", "root@example.com")
    monkeypatch.setenv("DBLAYER_ADMIN_PASSWORD", "a long and unusual passphrase")
    code, out, err = run(capsys, "setup", "--sample", "--url", empty_url)
    assert code == 0, err
    assert f"schema migrated from empty to {HEAD}" in out
    assert "administrator root@example.com created and made superadmin" in out
    assert "Sample data written" in out and "Sign-ups per" in out and "Storage per account" in out
    assert "audit chain OK" in out
    assert "a long and unusual passphrase" not in out + err

    code, out, _ = run(capsys, "setup", "--sample", "--url", empty_url)
    assert code == 0
    assert "nothing to migrate" in out and "sample data already present" in out
    assert "already a superadmin (password unchanged)" in out


# --- create, fill, status --------------------------------------------------------------------------------------


def test_create_then_status(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "create", "--url", url)
    assert code == 0 and f"created, schema migrated from empty to {HEAD}" in out
    code, out, _ = run(capsys, "status", "--url", url)
    assert code == 0 and f"revision {HEAD} head" in out and "audit chain OK" in out


def test_status_of_a_missing_sqlite_file_says_so_and_creates_nothing(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "typo.db"
    code, out, err = run(capsys, "status", "--url", f"sqlite:///{missing}")
    assert code == 1 and out == "" and "no SQLite database at" in err
    assert not missing.exists()


@pytest.mark.parametrize("bind", [[], ["--bind"], ["--bind", "--yes"]], ids=["show", "bind", "bind-yes"])
def test_storage_of_a_missing_sqlite_file_says_so_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bind: list[str]
) -> None:
    missing, files = tmp_path / "typo.db", tmp_path / "files"
    code, out, err = run(capsys, "storage", *bind, "--url", f"sqlite:///{missing}", "--storage", str(files))
    assert code == 1 and out == "" and f"no SQLite database at {missing}" in err and "migrate" not in err
    assert not missing.exists() and not files.exists()


def test_fill_without_a_schema_says_to_create_it(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "fill", "--url", url)
    assert code == 1 and out == ""
    assert err.startswith("error:") and "run `python -m db create`" in err
    assert "Traceback" not in err


def test_fill_with_an_admin_email_but_no_password_off_a_terminal_writes_nothing(
    created: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "fill", "--url", created, "--admin-email", "root@example.com")
    assert code == 1 and "no password for root@example.com" in err
    code, out, _ = run(capsys, "status", "--url", created)
    assert "users │ 0 │" in out


def test_a_weak_admin_password_is_refused_without_echoing_it(
    created: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBLAYER_ADMIN_PASSWORD", "password123")
    code, out, err = run(capsys, "fill", "--url", created, "--admin-email", "root@example.com")
    assert code == 1 and "too common" in err
    assert "password123" not in out + err


# --- bad input: one red line, exit 1, no traceback -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["create", "--url", "not a url"], "not a database URL"),
        (["create", "--url", "nosuchdb://x/y"], "bad database URL"),
        (["create", "--url", "postgresql://nobody:hunter2@127.0.0.1:1/x"], "could not be reached"),
        (["migrate", "current", "--url", "mariadb://root@127.0.0.1:1/x"], "could not be reached"),
    ],
)
def test_a_bad_or_unreachable_database_is_one_line_without_the_password(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *args)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and expected in err
    assert "hunter2" not in err and "Traceback" not in err


def test_an_unknown_revision_is_named_and_nothing_changes(created: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "migrate", "upgrade", "0099_nope", "--url", created)
    assert code == 1 and "Can't locate revision identified by '0099_nope'" in err
    code, out, _ = run(capsys, "migrate", "current", "--url", created)
    assert code == 0 and f"{HEAD} (head)" in out


def test_migrate_history_check_and_downgrade(created: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "migrate", "history", "--url", created)
    assert code == 0 and f"→ {HEAD}" in out and "0001_baseline" in out
    assert run(capsys, "migrate", "check", "--url", created)[:2] == (0, "✓ at head, and the schema matches the models")
    code, out, _ = run(capsys, "migrate", "downgrade", "0003_identity", "--url", created, "--yes")
    assert code == 0 and f"downgraded from {HEAD} to 0003_identity" in out
    code, _, err = run(capsys, "migrate", "check", "--url", created)
    assert code == 1 and "at revision 0003_identity" in err


def test_a_downgrade_off_a_terminal_without_yes_is_aborted(created: str) -> None:
    result = run_db("db", "migrate", "downgrade", "base", "--url", created)
    assert result.returncode == 1
    assert "Aborted" in result.stderr
    database = Database(created)
    try:
        assert runner.current_revision(database) == HEAD
        with database.engine.connect() as connection:
            assert "user" in inspect(connection).get_table_names()
    finally:
        database.dispose()


@pytest.mark.slow
def test_reports_list_run_export_and_refuse_bad_parameters(created: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "report", "--list")
    assert code == 0 and "signups" in out and "top_uploaders" in out
    assert run(capsys, "fill", "--url", created, "--sample")[0] == 0
    code, out, _ = run(capsys, "report", "signups", "--url", created, "--days", "3")
    assert code == 0 and "signups:" in out and "█" in out  # a chart under the table
    code, out, _ = run(capsys, "report", "accounts_by_plan", "--url", created, "--format", "csv")
    assert code == 0 and out.startswith("plan,status,count")
    code, _, err = run(capsys, "report", "nope", "--url", created)
    assert code == 1 and "no report is called 'nope'" in err
    code, _, err = run(capsys, "report", "signups", "--url", created, "--start", "yesterday")
    assert code == 2 and "not an ISO date" in err
    code, _, err = run(capsys, "report", "signups", "--url", created, "--bucket", "fortnight")
    assert code == 1 and "bucket must be one of" in err
    code, _, err = run(capsys, "report", "accounts_by_plan", "--url", created, "--start", "2026-01-01")
    assert code == 1 and "takes no time range" in err
    code, _, err = run(capsys, "report", "accounts_by_plan", "--url", created, "--days", "7")
    assert code == 1 and "takes no time range" in err


def test_admin_commands(created: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBLAYER_ADMIN_PASSWORD", "an operator's passphrase")
    code, _, err = run(capsys, "admin", "create", "ops@example.com", "--url", created)
    assert code == 2 and "--role" in err  # no default role: the highest one is never given by omission
    code, out, _ = run(capsys, "admin", "create", "ops@example.com", "--role", "superadmin", "--reason", "first",
                       "--url", created)
    assert code == 0 and "ops@example.com: created, superadmin (roles: superadmin)" in out
    code, out, _ = run(capsys, "admin", "grant", "ops@example.com", "support", "--reason", "desk", "--url", created)
    assert code == 0 and "roles: superadmin, support" in out
    code, out, _ = run(capsys, "admin", "revoke", "ops@example.com", "support", "--reason", "done", "--url", created)
    assert code == 0 and "roles: superadmin" in out
    code, out, _ = run(capsys, "admin", "unlock", "ops@example.com", "--reason", "phone", "--url", created)
    assert code == 0 and "unlocked" in out
    code, _, err = run(capsys, "admin", "grant", "ghost@example.com", "support", "--reason", "x", "--url", created)
    assert code == 1 and "ghost@example.com not found" in err
    code, _, err = run(capsys, "admin", "grant", "ops@example.com", "support", "--url", created)
    assert code == 2 and "--reason" in err
    assert "an operator's passphrase" not in err


def test_admin_create_reads_the_password_from_stdin(created: str) -> None:
    result = run_db("db", "admin", "create", "ops@example.com", "--role", "superadmin", "--reason", "first",
                    "--password-stdin", "--url", created,
                    stdin="a passphrase from a pipe\n", env={"DBLAYER_ADMIN_PASSWORD": ""})
    assert result.returncode == 0, result.stderr
    assert "created, superadmin" in flat(result.stdout)


# --- entry points ----------------------------------------------------------------------------------------------


def test_help_everywhere_and_a_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("setup", "create", "fill", "generate", "migrate", "backup", "restore", "cleanup", "check",
                    "report", "admin", "status"):
        assert command in out
    for group in ("migrate", "admin"):
        assert run(capsys, group, "--help")[0] == 0
    code, _, err = run(capsys, "frobnicate")
    assert code == 2 and "No such command" in err


def test_each_script_runs_as_a_module_like_its_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'script.db'}"
    result = run_db("db.scripts.create_db", "--url", url)
    assert result.returncode == 0, result.stderr
    assert f"schema migrated from empty to {HEAD}" in flat(result.stdout)
    assert run_db("db.scripts.migrate_db", "current", "--url", url).returncode == 0


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "dblayer"
    assert script.exists(), "pip install -e . installs the dblayer command"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and "Create, fill, migrate" in flat(result.stdout)
