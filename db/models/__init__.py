"""ORM models, one entity per module, re-exported here so that ``Base.metadata`` knows every table."""

from db.models.base import Audited, SoftDelete, Timestamps, UUIDPrimaryKey, Versioned
from db.models.log_audit import AuditChainHead, AuditCheckpoint, AuditEntry

__all__ = [
    "AuditChainHead",
    "AuditCheckpoint",
    "AuditEntry",
    "Audited",
    "SoftDelete",
    "Timestamps",
    "UUIDPrimaryKey",
    "Versioned",
]
