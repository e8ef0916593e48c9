"""``python -m db`` starts light, and takes its settings from before the command, the environment and ``.env``.

No timings here (bench/bench_startup.py measures them): what is checked is which modules ``--help`` loads.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
import typer

from db.cli import app
from db.cli.app import COMMAND_MODULES
from tests.integration import cli_support
from tests.integration.cli_support import run

ROOT = Path(__file__).resolve().parents[2]
# Runs the command line's main, then prints the names of the modules it loaded (JSON) on the last line.
LOADED_AFTER = (
    "import json, sys\n"
    "from db.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print(json.dumps(sorted(sys.modules)))\n"
    "sys.exit(code)\n"
)
NOT_FOR_HELP = ("sqlalchemy", "argon2", "alembic", "db.models", "db.layer", "zstandard", "rich.progress")


def loaded_by(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", LOADED_AFTER, *args], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def command_paths(group: object, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command and group under ``group`` (Typer's Click group), as the words that name it."""
    for name, command in getattr(group, "commands", {}).items():
        yield (*prefix, name)
        yield from command_paths(command, (*prefix, name))


def test_help_loads_neither_sqlalchemy_nor_argon2_nor_the_models() -> None:
    loaded = loaded_by("--help")
    assert "db.cli" in loaded
    heavy = sorted(name for name in loaded if name.split(".")[0] in ("sqlalchemy", "argon2", "alembic")
                   or name.startswith(NOT_FOR_HELP))
    assert heavy == []
    assert "sqlalchemy.orm" not in loaded


@pytest.mark.parametrize("command", [("status",), ("migrate", "current"), ("backup",), ("report",)])
def test_a_commands_help_loads_no_models(command: tuple[str, ...]) -> None:
    loaded = loaded_by(*command, "--help")
    assert not {"sqlalchemy.orm", "argon2", "db.models"} & loaded


def test_every_commands_help_works(capsys: pytest.CaptureFixture[str]) -> None:
    for module in COMMAND_MODULES:
        importlib.import_module(f"db.cli.{module}")
    paths = list(command_paths(typer.main.get_command(app)))
    assert {("status",), ("migrate", "upgrade"), ("audit", "verify"), ("admin", "create")} <= set(paths)
    for path in paths:
        code, out, err = run(capsys, *path, "--help")
        assert (code, err) == (0, ""), path
        assert f"python -m db {' '.join(path)}" in out, path


def test_version_is_the_packages(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert (code, out) == (0, f"db-layer {version('db-layer')}")


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """A created SQLite database; DATABASE_URL unset."""
    created = cli_support.own_environment(tmp_path, monkeypatch)
    assert run(capsys, "create", "--url", created)[0] == 0
    return created


def missing(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'elsewhere.db'}"


def test_url_before_the_command(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = run(capsys, "--url", url, "migrate", "current")
    after = run(capsys, "migrate", "current", "--url", url)
    assert before == after
    assert before[0] == 0 and "(head)" in before[1]
    assert "DATABASE_URL" not in os.environ  # put back after the run


def test_url_after_the_command_wins(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--url", missing(tmp_path), "migrate", "current", "--url", url)
    assert code == 0 and "(head)" in out


def test_url_before_the_command_beats_the_environment(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", missing(tmp_path))
    code, out, _ = run(capsys, "--url", url, "migrate", "current")
    assert code == 0 and "(head)" in out
    assert os.environ["DATABASE_URL"] == missing(tmp_path)


def test_storage_before_the_command(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blobs = str(tmp_path / "blobs")
    before = run(capsys, "--url", url, "--storage", blobs, "storage")
    assert before == run(capsys, "storage", "--url", url, "--storage", blobs)
    assert before != run(capsys, "storage", "--url", url)  # the environment's root (own_environment) is another
    assert before[0] == 0


def test_dotenv_in_the_working_directory(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text(f"DATABASE_URL={url}\nDBLAYER_DOTENV_PROBE=1\n", encoding="utf-8")
    monkeypatch.chdir(project)
    code, out, _ = run(capsys, "migrate", "current")
    assert code == 0 and "(head)" in out
    assert "DATABASE_URL" not in os.environ and "DBLAYER_DOTENV_PROBE" not in os.environ


def test_the_environment_beats_dotenv(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text(f"DATABASE_URL={missing(tmp_path)}\n", encoding="utf-8")
    monkeypatch.chdir(project)
    monkeypatch.setenv("DATABASE_URL", url)
    code, out, _ = run(capsys, "migrate", "current")
    assert code == 0 and "(head)" in out


def test_dotenv_in_a_subprocess(url: str, tmp_path: Path) -> None:
    """``python -m db`` itself (not only ``main``) reads ``.env``."""
    (tmp_path / ".env").write_text(f"DATABASE_URL={url}\n", encoding="utf-8")
    environment = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    environment["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "db", "migrate", "current"], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "(head)" in done.stdout
