"""Repositories: the only place queries live."""

from db.repositories.base_repository import BaseRepository, Page

__all__ = ["BaseRepository", "Page"]
