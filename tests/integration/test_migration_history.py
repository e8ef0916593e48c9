"""pytest-alembic's built-in tests of the revision history, on every engine: a single head, an upgrade from an empty
database, models that match the DDL the revisions make, and every revision down and up again.

pytest-alembic is used as a library (its own collector is switched off in pyproject.toml: it would run the tests
once, on an in-memory SQLite, and does not collect under pytest 9). Each test gets the engine's empty
``dblayer_migrations`` database, as in test_migrations.py, and migrates it through ``db/migrations/env.py``, which
takes a connection of its own from the engine pytest-alembic passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_alembic import Config, MigrationContext, runner
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)

from db import Database
from db.migrations.runner import alembic_config
from tests.integration.test_migrations import empty_database

__all__ = [
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]


@pytest.fixture
def database(engine_name: str, sqlite_dir: Path) -> Iterator[Database]:
    yield from empty_database(engine_name, sqlite_dir)


@pytest.fixture
def alembic_runner(database: Database) -> Iterator[MigrationContext]:
    """The engine's Database's engine (the layer's pragmas and session settings), with the project's Alembic config."""
    with runner(config=Config(alembic_config=alembic_config()), engine=database.engine) as context:
        yield context
