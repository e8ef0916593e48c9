"""``Database()`` and the command line read the environment in one place, ``Settings.from_env``; explicit values
win."""

from __future__ import annotations

from pathlib import Path

import pytest

from db import Database, ValidationError
from db.cli.common import open_database
from db.settings import DEFAULT_STORAGE_ROOT, Settings


def test_database_takes_its_storage_root_from_the_environment_as_the_command_line_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DBLAYER_STORAGE_ROOT", str(tmp_path / "from-env"))
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert Database(url).settings.storage_root == tmp_path / "from-env"
    assert open_database(url).settings.storage_root == tmp_path / "from-env"
    assert open_database(url, tmp_path / "flag").settings.storage_root == tmp_path / "flag"  # --storage wins


def test_explicit_settings_win_over_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DBLAYER_STORAGE_ROOT", str(tmp_path / "from-env"))
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert Database(url, settings=Settings(storage_root=tmp_path / "mine")).settings.storage_root == tmp_path / "mine"
    combined = Settings.from_env(lockout_threshold=9)
    assert (combined.storage_root, combined.lockout_threshold) == (tmp_path / "from-env", 9)
    assert Settings.from_env(storage_root=tmp_path / "mine").storage_root == tmp_path / "mine"


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_variable_counts_as_unset(value: str) -> None:
    assert Settings.from_env({"DBLAYER_STORAGE_ROOT": value}).storage_root == DEFAULT_STORAGE_ROOT
    assert Settings.from_env({}).storage_root == DEFAULT_STORAGE_ROOT


def test_a_path_with_a_nul_byte_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValidationError, match="DBLAYER_STORAGE_ROOT"):
        Settings.from_env({"DBLAYER_STORAGE_ROOT": "/srv/fi\0les"})


def test_each_call_of_for_tests_gets_a_storage_root_of_its_own() -> None:
    assert Settings.for_tests().storage_root != Settings.for_tests().storage_root
