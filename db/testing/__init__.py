"""The test kit: an in-memory fake of ``BaseRepository``, with the same methods and the same rules.

    from db.testing import InMemoryRepository, InMemoryStore

    class FakeProjectRepository(InMemoryRepository[Project]):
        model = Project
"""

from db.testing.memory_repository import InMemoryRepository
from db.testing.memory_store import InMemoryStore

__all__ = ["InMemoryRepository", "InMemoryStore"]
