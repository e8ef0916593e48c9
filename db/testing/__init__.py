"""The test kit: an in-memory fake of ``BaseRepository``, and the contract every repository keeps.

    from db.testing import InMemoryRepository, InMemoryStore

    class FakeProjectRepository(InMemoryRepository[Project]):
        model = Project

Importing ``db.testing`` needs nothing beyond the layer itself; ``RepositoryContract`` (the repository contract
suite, ``db.testing.contract``) needs pytest, and is imported only when asked for.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from db.testing.memory_repository import InMemoryRepository
from db.testing.memory_store import InMemoryStore

if TYPE_CHECKING:
    from db.testing.contract import RepositoryContract

__all__ = ["InMemoryRepository", "InMemoryStore", "RepositoryContract"]


def __getattr__(name: str) -> Any:
    """``RepositoryContract`` on first use, so that the fake does not need pytest."""
    if name != "RepositoryContract":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import pytest  # noqa: PLC0415 - only the contract suite needs pytest

    if "db.testing.contract" not in sys.modules:  # its plain asserts then report their values, as in a test file
        pytest.register_assert_rewrite("db.testing.contract")
    from db.testing.contract import RepositoryContract  # noqa: PLC0415 - after the assert rewrite is registered

    return RepositoryContract
