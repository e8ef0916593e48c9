"""``db.testing`` is where the test kit lives, and pytest stays optional: only ``RepositoryContract`` needs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import db
import db.testing
from db.testing import RepositoryContract

ROOT = Path(__file__).resolve().parents[2]


def test_the_fake_is_in_the_test_kit_not_in_the_top_level_api() -> None:
    assert "InMemoryRepository" not in db.__all__ and not hasattr(db, "InMemoryRepository")
    assert {"InMemoryRepository", "InMemoryStore", "RepositoryContract"} <= set(db.testing.__all__)
    assert db.testing.RepositoryContract is RepositoryContract is db.testing.contract.RepositoryContract


def test_importing_db_and_the_fake_does_not_import_pytest() -> None:
    code = ("import sys, db, db.testing; from db.testing import InMemoryRepository, InMemoryStore; "
            "assert 'pytest' not in sys.modules, 'pytest imported'")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode == 0, run.stderr[-2000:]


def test_the_contract_class_is_not_collected_itself() -> None:
    assert not RepositoryContract.__name__.startswith("Test")
