"""ORM models, one entity per module, re-exported here so that ``Base.metadata`` knows every table."""

from db.models.base import SoftDelete, Timestamps, UUIDPrimaryKey, Versioned

__all__ = ["SoftDelete", "Timestamps", "UUIDPrimaryKey", "Versioned"]
