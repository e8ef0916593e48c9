"""Database configuration without touching any database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from db import Database, DatabaseUnavailable
from db.dialects import DEFAULT_SQLITE_PATH

ROOT = Path(__file__).resolve().parents[2]


def test_the_url_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/from-env.db")
    assert Database("sqlite:////tmp/from-arg.db").url.database == "/tmp/from-arg.db"


def test_database_url_is_used_when_no_argument_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/from-env.db")
    assert Database().url.database == "/tmp/from-env.db"


def test_the_default_is_the_sqlite_file_in_db_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert Database().url.database == str(DEFAULT_SQLITE_PATH)
    assert DEFAULT_SQLITE_PATH == ROOT / "db" / "data" / "app.db"


@pytest.mark.parametrize(
    ("given", "driver"),
    [("postgresql://u@h/d", "postgresql+psycopg"), ("postgres://u@h/d", "postgresql+psycopg"),
     ("mariadb://u@h/d", "mariadb+pymysql"), ("mysql://u@h/d", "mysql+pymysql")],
)
def test_bare_server_urls_get_the_tested_drivers(given: str, driver: str) -> None:
    assert Database(given).url.drivername == driver


def test_mariadb_urls_get_utf8mb4() -> None:
    assert Database("mariadb://u@h/d").url.query["charset"] == "utf8mb4"


def test_a_malformed_url_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(DatabaseUnavailable) as raised:
        Database("postgresql//ada:hunter2@db.example/app")
    assert "hunter2" not in str(raised.value)
    assert "not a database URL" in str(raised.value)


@pytest.mark.parametrize("url", ["postgresql://ada:hunter2@db.example:port/app", "mariadb://ada:hunter2@h:99999x/d"])
def test_a_url_with_a_bad_port_is_the_same_clear_error(url: str) -> None:
    with pytest.raises(DatabaseUnavailable) as raised:
        Database(url)
    assert "hunter2" not in str(raised.value)
    assert "not a database URL" in str(raised.value)


def test_the_repr_hides_the_password() -> None:
    assert "hunter2" not in repr(Database("postgresql://ada:hunter2@db.example/app"))


def test_nothing_is_connected_or_created_at_import_or_construction(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "never.db"
    code = (
        "import db, db.models, db.repositories, db.session\n"
        f"d = db.Database('sqlite:///{target}')\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "ok"
    assert not target.parent.exists()


def test_attempts_must_be_positive() -> None:
    from db import ValidationError

    with pytest.raises(ValidationError):
        Database("sqlite://").run_in_transaction(lambda uow: None, attempts=0)
