"""Where a database is (``storage_binding.database_location``): every URL that reaches one database gives the same
location, and a copy elsewhere another; markers from before locations were recorded are compared by their URL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import make_url

from db.storage import StorageOwner
from db.storage_binding import BindingState, StorageBinding, database_location, recorded_location

IDENTITY = uuid.uuid4()


def location(url: str) -> str:
    return database_location(make_url(url))


def test_a_sqlite_file_is_the_same_by_a_relative_an_absolute_or_a_linked_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "app.db").touch()
    (tmp_path / "link.db").symlink_to(tmp_path / "app.db")
    monkeypatch.chdir(tmp_path)
    same = {location(url) for url in ("sqlite:///app.db", f"sqlite:///{tmp_path}/app.db",
                                      f"sqlite+pysqlite:///{tmp_path}/./app.db", "sqlite:///link.db")}
    assert same == {f"sqlite:{tmp_path.resolve() / 'app.db'}"}
    assert location(f"sqlite:///{tmp_path}/copy.db") not in same


@pytest.mark.parametrize("url", [
    "postgresql://postgres@127.0.0.1:5432/app", "postgres://postgres:secret@localhost/app",
    "postgresql+psycopg://other:pw@LOCALHOST:5432/app", "postgresql+psycopg2://u@/app",
])
def test_a_postgresql_database_is_the_same_by_any_spelling_user_or_password(url: str) -> None:
    assert location(url) == "postgresql://localhost:5432/app"


@pytest.mark.parametrize("url", [
    "mariadb://root@127.0.0.1:3306/app", "mysql://root@localhost/app", "mariadb+pymysql://x:y@[::1]:3306/app",
])
def test_a_mariadb_database_is_the_same_by_any_spelling(url: str) -> None:
    assert location(url) == "mariadb://localhost:3306/app"


@pytest.mark.parametrize("url", [
    "postgresql://postgres@127.0.0.1:5432/app_copy", "postgresql://postgres@127.0.0.1:5433/app",
    "postgresql://postgres@db.example:5432/app", "mariadb://root@127.0.0.1:3306/app",
])
def test_another_database_name_port_host_or_engine_is_another_location(url: str) -> None:
    assert location(url) != "postgresql://localhost:5432/app"


def test_the_password_is_never_part_of_a_location() -> None:
    assert "secret" not in location("postgresql://u:secret@h/app")


def binding(url: str, owner: StorageOwner) -> StorageBinding:
    return StorageBinding("/files", IDENTITY, url, location(url), owner)


def test_a_marker_naming_this_identity_elsewhere_is_not_bound_to_this_database(tmp_path: Path) -> None:
    here, there = f"sqlite:///{tmp_path}/copy.db", f"sqlite:///{tmp_path}/app.db"
    marker = StorageOwner.of(IDENTITY, there, location(there))
    assert binding(there, marker).state is BindingState.BOUND
    elsewhere = binding(here, marker)
    assert elsewhere.state is BindingState.ELSEWHERE
    message = str(elsewhere.refusal())
    assert location(there) in message and location(here) in message and "python -m db storage --bind" in message


def test_a_marker_from_before_locations_is_compared_by_its_url_when_that_says_where(tmp_path: Path) -> None:
    there = f"sqlite:///{tmp_path}/app.db"
    legacy = StorageOwner(str(IDENTITY), there, "2026-01-01T00:00:00+00:00")
    assert recorded_location(legacy) == location(there)
    assert binding(there, legacy).state is BindingState.BOUND
    assert binding(f"sqlite:///{tmp_path}/copy.db", legacy).state is BindingState.ELSEWHERE
    server = StorageOwner(str(IDENTITY), "postgresql+psycopg://u:***@127.0.0.1/app", "2026-01-01T00:00:00+00:00")
    assert binding("postgres://u:pw@localhost/app", server).state is BindingState.BOUND


def test_a_marker_from_before_locations_with_a_relative_sqlite_path_must_be_rebound() -> None:
    legacy = StorageOwner(str(IDENTITY), "sqlite:///app.db", "2026-01-01T00:00:00+00:00")
    assert recorded_location(legacy) is None
    refused = binding("sqlite:///app.db", legacy)
    assert refused.state is BindingState.ELSEWHERE
    assert "does not record" in str(refused.refusal())
