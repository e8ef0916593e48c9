"""Repositories: the only place queries live."""

from db.repositories.base_repository import BaseRepository, Page
from db.repositories.memory_repository import InMemoryRepository

__all__ = ["BaseRepository", "InMemoryRepository", "Page"]
