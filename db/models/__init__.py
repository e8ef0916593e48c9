"""ORM models, one entity per module, re-exported here so that ``Base.metadata`` knows every table."""

from db.models.account import Account
from db.models.admin_permission import Permission
from db.models.admin_role import Role
from db.models.admin_role_permission import RolePermission
from db.models.admin_user_role import UserRole
from db.models.base import Audited, SoftDelete, Timestamps, UUIDPrimaryKey, Versioned
from db.models.database_identity import DatabaseIdentity
from db.models.file_blob import FileBlob
from db.models.file_object import StoredFile
from db.models.log_audit import AuditChainHead, AuditCheckpoint, AuditEntry
from db.models.membership import Membership
from db.models.report_run import ReportRun
from db.models.user import User
from db.models.user_token import UserToken

__all__ = [
    "Account",
    "AuditChainHead",
    "AuditCheckpoint",
    "AuditEntry",
    "Audited",
    "DatabaseIdentity",
    "FileBlob",
    "Membership",
    "Permission",
    "ReportRun",
    "Role",
    "RolePermission",
    "SoftDelete",
    "StoredFile",
    "Timestamps",
    "UUIDPrimaryKey",
    "User",
    "UserRole",
    "UserToken",
    "Versioned",
]
