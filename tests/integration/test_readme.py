"""The README's Python blocks run as written, in order, on a fresh database of every engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from db import Database
from tests.readme_runner import blocks
from tests.support import TestDatabases, drop_all_tables

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def fresh_url(engine_name: str, test_databases: TestDatabases, tmp_path: Path) -> str:
    if engine_name == "sqlite":
        return f"sqlite:///{tmp_path / 'readme' / 'app.db'}"  # not even the file exists yet
    url = test_databases.url(engine_name, "dblayer_readme")
    database = Database(url)
    drop_all_tables(database)
    database.dispose()
    return url.render_as_string(hide_password=False)


def test_the_readme_has_python_blocks_to_run() -> None:
    assert len(blocks(README.read_text(encoding="utf-8"))) >= 5


@pytest.mark.slow
def test_every_python_block_of_the_readme_runs_as_written(
    engine_name: str, test_databases: TestDatabases, tmp_path: Path
) -> None:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_", "DBLAYER_"))}
    environment |= {"DATABASE_URL": fresh_url(engine_name, test_databases, tmp_path),
                    "DBLAYER_STORAGE_ROOT": str(tmp_path / "files"), "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "readme_runner.py"), str(README)], cwd=tmp_path,
                         env=environment, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "blocks ran" in run.stdout
