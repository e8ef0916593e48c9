"""Every revision carries its own DDL and data: it may use ``db.base`` (column types) and ``db.migrations`` (the
runner's errors), nothing else of the layer. A revision that called live code (``db.dialects``, a catalogue, a
model) would change what it does whenever that code changes, on databases it migrated long ago."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from db.migrations.runner import VERSIONS_DIR

ALLOWED = ("db.base", "db.migrations")
REVISIONS = sorted(VERSIONS_DIR.glob("*.py"))


def allowed(module: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in ALLOWED)


def imported_db_modules(tree: ast.AST) -> list[str]:
    """The ``db`` modules an import statement names: ``import db.x``, ``from db.x import y``, ``from db import x``."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] == "db"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "db":
                found += [f"db.{alias.name}" for alias in node.names]
            elif node.module.startswith("db."):
                found.append(node.module)
    return found


def attribute_paths_from_db(tree: ast.AST) -> list[str]:
    """``db.x`` as reached through the name ``db``: ``import db.base`` also makes ``db.dialects`` reachable."""
    return [
        f"db.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "db"
    ]


def forbidden_uses(source: str) -> list[str]:
    tree = ast.parse(source)
    uses = imported_db_modules(tree) + attribute_paths_from_db(tree)
    return sorted({use for use in uses if not allowed(use)})


def test_there_are_revisions_to_check() -> None:
    assert len(REVISIONS) >= 6


@pytest.mark.parametrize("revision", REVISIONS, ids=lambda path: path.stem)
def test_a_revision_uses_only_db_base_and_db_migrations(revision: Path) -> None:
    assert forbidden_uses(revision.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "source",
    [
        "from db import dialects",
        "from db.admin_catalog import seed_builtin_roles",
        "import db.models.log_audit",
        "import db",
        "import db.base\ndb.dialects.append_only_ddl('sqlite')",
        "from db.models.database_identity import identity_row as row",
    ],
)
def test_the_check_catches_live_code(source: str) -> None:
    assert forbidden_uses(source)


@pytest.mark.parametrize(
    "source",
    [
        "import db.base\ndb.base.UTCDateTime()",
        "from db.base import UTCDateTime",
        "from db.migrations.runner import MigrationError",
        "from db import base",
        "import sqlalchemy as sa\nfrom alembic import op",
    ],
)
def test_the_check_lets_the_allowed_modules_through(source: str) -> None:
    assert forbidden_uses(source) == []
