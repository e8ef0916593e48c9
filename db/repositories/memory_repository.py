"""Placeholder: InMemoryRepository is being written."""
from typing import Any, Generic, TypeVar
M = TypeVar("M")
class InMemoryRepository(Generic[M]):
    model: Any
