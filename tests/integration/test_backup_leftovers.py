"""What killed backups leave behind (a ``.partial`` archive, a ``.backup-*`` scratch folder) is found and removed by
``cleanup``; what a running backup holds is listed as in use and never touched, and that backup still completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from db import Database
from db.backup.leftovers import ABANDONED, IN_USE, backup_leftovers
from db.backup.reader import verify_archive
from db.cli import main
from tests.integration.test_backup_restore import populate, settings_for
from tests.support import TestDatabases

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def source(engine_name: str, test_databases: TestDatabases, tmp_path: Path) -> Iterator[Database]:
    with test_databases.own(engine_name, "bkl_source", settings_for(tmp_path / "files")) as database:
        populate(database)
        yield database


def url_of(database: Database) -> str:
    return database.url.render_as_string(hide_password=False)


def paused_backup(database: Database, folder: Path, tmp_path: Path, name: str) -> tuple[subprocess.Popen[str], Path]:
    """A backup child stopped while it writes (until ``go`` exists); returns it and its ``go`` file."""
    step = "database" if database.backend == "sqlite" else "rows"
    ready, go = tmp_path / f"{name}.ready", tmp_path / f"{name}.go"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.backup_worker", step, str(ready), str(go), "--", "backup",
         "--url", url_of(database), "--storage", str(database.settings.storage_root), "--dir", str(folder)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not ready.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"the backup never started writing: {child.communicate()[1][-2000:]}")
        time.sleep(0.05)
    return child, go


def debris(folder: Path) -> set[str]:
    return {entry.name for entry in folder.iterdir() if entry.name.startswith(".")}


def cleanup(database: Database, folder: Path, *args: str) -> int:
    return main(["cleanup", "--url", url_of(database), "--storage", str(database.settings.storage_root),
                 "--backup-dir", str(folder), "--tokens-after", "never", "--deleted-after", "never",
                 "--audit-after", "never", "--keep-orphan-blobs", *args])


def test_cleanup_removes_what_a_killed_backup_left_and_never_what_a_running_one_holds(
    source: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "backups"
    killed, _ = paused_backup(source, folder, tmp_path, "killed")
    left_by_killed = debris(folder)
    killed.kill()
    killed.communicate(timeout=60)
    running, go = paused_backup(source, folder, tmp_path, "running")
    held_by_running = debris(folder) - left_by_killed
    expected = 2 if source.backend == "sqlite" else 1  # the .partial archive, and the SQLite snapshot's folder
    assert len(left_by_killed) == len(held_by_running) == expected
    try:
        states = {Path(leftover.name).name: leftover.state for leftover in backup_leftovers(folder)}
        assert states == {**dict.fromkeys(left_by_killed, ABANDONED), **dict.fromkeys(held_by_running, IN_USE)}

        assert cleanup(source, folder) == 0  # a dry run lists both kinds and removes nothing
        listing = capsys.readouterr().out
        assert all(name in listing for name in left_by_killed | held_by_running) and "in use" in listing
        assert debris(folder) == left_by_killed | held_by_running

        assert cleanup(source, folder, "--apply", "--yes") == 0
        assert debris(folder) == held_by_running
    finally:
        go.write_text("go")
    _, err = running.communicate(timeout=120)
    assert running.returncode == 0, err
    [made] = list(folder.iterdir())
    assert made.name.endswith(".tar") and verify_archive(made).engine in ("sqlite", "postgresql", "mariadb")
    assert backup_leftovers(folder) == []


def test_an_interrupted_backup_removes_its_own_files(source: Database, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    child, _ = paused_backup(source, folder, tmp_path, "interrupted")
    child.send_signal(signal.SIGINT)
    child.communicate(timeout=60)
    assert child.returncode != 0
    assert list(folder.iterdir()) == []
