"""Audit chain head kept: the database refuses to remove the chain head row (DELETE; TRUNCATE too on PostgreSQL).

Without its head row the log would start again from nothing: the layer used to create a genesis head when the row
was missing, so deleting it (and on a keyed chain, the entries too) quietly began a new chain. The trigger allows
one removal only: the genesis head of an empty log (seq 0, no entry, no checkpoint), which is the row a restore
clears before it loads the backup's head; removing that one loses no history.

Revision ID: 0007_audit_head_kept
Revises: 0006_database_identity
Create Date: 2026-12-03 15:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0007_audit_head_kept'
down_revision: str | Sequence[str] | None = '0006_database_identity'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What this revision made, as it made it: the live code (db.dialects) may change, this may not.
HEAD_KEPT_DDL: dict[str, list[str]] = {
    "postgresql": [
        "CREATE OR REPLACE FUNCTION dblayer_audit_head_kept() RETURNS trigger AS $$ BEGIN IF TG_OP = 'TRUNCATE' THEN RAISE EXCEPTION USING MESSAGE = 'audit_chain_head cannot be removed'; END IF; IF OLD.seq <> 0 OR EXISTS (SELECT 1 FROM audit_entry) OR EXISTS (SELECT 1 FROM audit_checkpoint) THEN RAISE EXCEPTION USING MESSAGE = 'audit_chain_head cannot be removed'; END IF; RETURN OLD; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head FOR EACH ROW EXECUTE FUNCTION dblayer_audit_head_kept()",
        "CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head FOR EACH STATEMENT EXECUTE FUNCTION dblayer_audit_head_kept()",
    ],
    "mariadb": [
        "CREATE TRIGGER audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head FOR EACH ROW BEGIN IF OLD.seq <> 0 OR EXISTS (SELECT 1 FROM audit_entry) OR EXISTS (SELECT 1 FROM audit_checkpoint) THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_chain_head cannot be removed'; END IF; END",
    ],
    "sqlite": [
        "CREATE TRIGGER audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head WHEN OLD.seq <> 0 OR EXISTS (SELECT 1 FROM audit_entry) OR EXISTS (SELECT 1 FROM audit_checkpoint) BEGIN SELECT RAISE(ABORT, 'audit_chain_head cannot be removed'); END",
    ],
}
DROP_HEAD_KEPT_DDL: dict[str, list[str]] = {
    "postgresql": [
        "DROP TRIGGER IF EXISTS audit_chain_head_no_truncate ON audit_chain_head",
        "DROP TRIGGER IF EXISTS audit_chain_head_no_delete ON audit_chain_head",
        "DROP FUNCTION IF EXISTS dblayer_audit_head_kept()",
    ],
    "mariadb": [
        "DROP TRIGGER IF EXISTS audit_chain_head_no_delete",
    ],
    "sqlite": [
        "DROP TRIGGER IF EXISTS audit_chain_head_no_delete",
    ],
}


def upgrade() -> None:
    for statement in _for_this_engine(HEAD_KEPT_DDL):
        op.execute(statement)


def downgrade() -> None:
    for statement in _for_this_engine(DROP_HEAD_KEPT_DDL):
        op.execute(statement)


def _for_this_engine(ddl: dict[str, list[str]]) -> list[str]:
    """The statements for the engine migrated: MySQL's are MariaDB's, and any other engine gets SQLite's."""
    backend = op.get_bind().dialect.name
    return ddl["mariadb" if backend in ("mysql", "mariadb") else backend if backend in ddl else "sqlite"]
