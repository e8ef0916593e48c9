"""Audit integrity: the database refuses impossible seq values, and the chain can be keyed (HMAC).

- CHECK constraints: every entry's seq is positive; one chain head row (id 1) with a seq of 0 or more; a
  checkpoint covers at least one entry.
- Triggers (``SEQ_GUARD_DDL``): an entry at or below the chain head, a checkpoint no purge can have
  made, and a chain head that moves back are refused.
- ``audit_entry.key_id`` (the key an entry's HMAC was made with; NULL: plain SHA-256), and ``audit_chain_head.key_id``
  and ``mac`` (the head's HMAC).

Rows that already break the new rules (someone wrote them past the layer) stop the upgrade with the reason: the
constraints would refuse them anyway, and ``python -m db check`` names them. A downgrade is refused while keyed
entries exist: without ``key_id`` they could never be verified again.

Revision ID: 0005_audit_integrity
Revises: 0004_files_reports
Create Date: 2026-12-03 10:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from db.migrations.runner import MigrationError

revision: str = '0005_audit_integrity'
down_revision: str | Sequence[str] | None = '0004_files_reports'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IMPOSSIBLE = (
    ("audit_entry", "seq <= 0", "entries with a seq of 0 or less"),
    ("audit_chain_head", "id <> 1 OR seq < 0", "chain head rows other than id 1, or with a negative seq"),
    ("audit_checkpoint", "up_to_seq <= 0 OR entries <= 0", "checkpoints with a seq or entry count of 0 or less"),
)

# What this revision made, as it made it: the live code (db.dialects) may change, this may not. The triggers refuse
# an entry at or below the chain head, a checkpoint no purge can have made, and a chain head that moves back.
SEQ_GUARD_DDL: dict[str, list[str]] = {
    "postgresql": [
        "CREATE OR REPLACE FUNCTION dblayer_audit_above_head() RETURNS trigger AS $$ BEGIN IF NEW.seq <= (SELECT seq FROM audit_chain_head WHERE id = 1) THEN RAISE EXCEPTION USING MESSAGE = 'audit_entry seq must be above the chain head'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER audit_entry_above_head BEFORE INSERT ON audit_entry FOR EACH ROW EXECUTE FUNCTION dblayer_audit_above_head()",
        "CREATE OR REPLACE FUNCTION dblayer_audit_checkpoint_proven() RETURNS trigger AS $$ BEGIN IF EXISTS (SELECT 1 FROM audit_chain_head WHERE id = 1 AND (NEW.up_to_seq > seq OR NEW.up_to_seq <= (SELECT coalesce(max(up_to_seq), 0) FROM audit_checkpoint))) OR EXISTS (SELECT 1 FROM audit_entry WHERE seq <= NEW.up_to_seq) THEN RAISE EXCEPTION USING MESSAGE = 'audit_checkpoint must follow a purge'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER audit_checkpoint_proven BEFORE INSERT ON audit_checkpoint FOR EACH ROW EXECUTE FUNCTION dblayer_audit_checkpoint_proven()",
        "CREATE OR REPLACE FUNCTION dblayer_audit_head_forward() RETURNS trigger AS $$ BEGIN IF NEW.seq < OLD.seq THEN RAISE EXCEPTION USING MESSAGE = 'audit_chain_head cannot move back'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE ON audit_chain_head FOR EACH ROW EXECUTE FUNCTION dblayer_audit_head_forward()",
    ],
    "mariadb": [
        "CREATE TRIGGER audit_entry_above_head BEFORE INSERT ON audit_entry FOR EACH ROW BEGIN IF NEW.seq <= (SELECT seq FROM audit_chain_head WHERE id = 1) THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_entry seq must be above the chain head'; END IF; END",
        "CREATE TRIGGER audit_checkpoint_proven BEFORE INSERT ON audit_checkpoint FOR EACH ROW BEGIN IF EXISTS (SELECT 1 FROM audit_chain_head WHERE id = 1 AND (NEW.up_to_seq > seq OR NEW.up_to_seq <= (SELECT coalesce(max(up_to_seq), 0) FROM audit_checkpoint))) OR EXISTS (SELECT 1 FROM audit_entry WHERE seq <= NEW.up_to_seq) THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_checkpoint must follow a purge'; END IF; END",
        "CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE ON audit_chain_head FOR EACH ROW BEGIN IF NEW.seq < OLD.seq THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_chain_head cannot move back'; END IF; END",
    ],
    "sqlite": [
        "CREATE TRIGGER audit_entry_above_head BEFORE INSERT ON audit_entry WHEN NEW.seq <= (SELECT seq FROM audit_chain_head WHERE id = 1) BEGIN SELECT RAISE(ABORT, 'audit_entry seq must be above the chain head'); END",
        "CREATE TRIGGER audit_checkpoint_proven BEFORE INSERT ON audit_checkpoint WHEN EXISTS (SELECT 1 FROM audit_chain_head WHERE id = 1 AND (NEW.up_to_seq > seq OR NEW.up_to_seq <= (SELECT coalesce(max(up_to_seq), 0) FROM audit_checkpoint))) OR EXISTS (SELECT 1 FROM audit_entry WHERE seq <= NEW.up_to_seq) BEGIN SELECT RAISE(ABORT, 'audit_checkpoint must follow a purge'); END",
        "CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE ON audit_chain_head WHEN NEW.seq < OLD.seq BEGIN SELECT RAISE(ABORT, 'audit_chain_head cannot move back'); END",
    ],
}
DROP_SEQ_GUARD_DDL: dict[str, list[str]] = {
    "postgresql": [
        "DROP TRIGGER IF EXISTS audit_entry_above_head ON audit_entry",
        "DROP TRIGGER IF EXISTS audit_checkpoint_proven ON audit_checkpoint",
        "DROP TRIGGER IF EXISTS audit_chain_head_forward ON audit_chain_head",
        "DROP FUNCTION IF EXISTS dblayer_audit_above_head()",
        "DROP FUNCTION IF EXISTS dblayer_audit_checkpoint_proven()",
        "DROP FUNCTION IF EXISTS dblayer_audit_head_forward()",
    ],
    "mariadb": [
        "DROP TRIGGER IF EXISTS audit_entry_above_head",
        "DROP TRIGGER IF EXISTS audit_checkpoint_proven",
        "DROP TRIGGER IF EXISTS audit_chain_head_forward",
    ],
    "sqlite": [
        "DROP TRIGGER IF EXISTS audit_entry_above_head",
        "DROP TRIGGER IF EXISTS audit_checkpoint_proven",
        "DROP TRIGGER IF EXISTS audit_chain_head_forward",
    ],
}


def upgrade() -> None:
    if not context.is_offline_mode():  # offline (--sql), there are no rows to look at
        _refuse_impossible_rows()
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key_id', sa.String(length=16), nullable=True))
        batch_op.create_check_constraint(op.f('ck_audit_entry_seq_positive'), 'seq > 0')
    with op.batch_alter_table('audit_chain_head', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key_id', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('mac', sa.String(length=64), nullable=True))
        batch_op.create_check_constraint(op.f('ck_audit_chain_head_single_row'), 'id = 1')
        batch_op.create_check_constraint(op.f('ck_audit_chain_head_seq_not_negative'), 'seq >= 0')
    with op.batch_alter_table('audit_checkpoint', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_audit_checkpoint_up_to_seq_positive'), 'up_to_seq > 0')
        batch_op.create_check_constraint(op.f('ck_audit_checkpoint_entries_positive'), 'entries > 0')
    # After the batch operations: on SQLite they copy the tables, and a copy has no triggers.
    for statement in _for_this_engine(SEQ_GUARD_DDL):
        op.execute(statement)


def downgrade() -> None:
    if not context.is_offline_mode():
        _refuse_keyed_entries()
    for statement in _for_this_engine(DROP_SEQ_GUARD_DDL):
        op.execute(statement)
    with op.batch_alter_table('audit_checkpoint', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_audit_checkpoint_entries_positive'), type_='check')
        batch_op.drop_constraint(op.f('ck_audit_checkpoint_up_to_seq_positive'), type_='check')
    with op.batch_alter_table('audit_chain_head', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_audit_chain_head_seq_not_negative'), type_='check')
        batch_op.drop_constraint(op.f('ck_audit_chain_head_single_row'), type_='check')
        batch_op.drop_column('mac')
        batch_op.drop_column('key_id')
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_audit_entry_seq_positive'), type_='check')
        batch_op.drop_column('key_id')


def _for_this_engine(ddl: dict[str, list[str]]) -> list[str]:
    """The statements for the engine migrated: MySQL's are MariaDB's, and any other engine gets SQLite's."""
    backend = op.get_bind().dialect.name
    return ddl["mariadb" if backend in ("mysql", "mariadb") else backend if backend in ddl else "sqlite"]


def _refuse_impossible_rows() -> None:
    connection = op.get_bind()
    for table, condition, what in _IMPOSSIBLE:
        found = connection.exec_driver_sql(f"SELECT count(*) FROM {table} WHERE {condition}").scalar()
        if found:
            raise MigrationError(
                f"{table} holds {found} {what}: rows no version of this layer writes (tampering?); run "
                "python -m db check, keep a copy of the database as evidence, and remove them before upgrading"
            )


def _refuse_keyed_entries() -> None:
    keyed = op.get_bind().exec_driver_sql("SELECT count(*) FROM audit_entry WHERE key_id IS NOT NULL").scalar()
    if keyed:
        raise MigrationError(
            f"{keyed} audit entries are keyed (HMAC): below revision 0005 nothing records their key, so they could "
            "never be verified again; not downgrading"
        )
