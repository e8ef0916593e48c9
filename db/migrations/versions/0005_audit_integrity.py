"""Audit integrity: the database refuses impossible seq values, and the chain can be keyed (HMAC).

- CHECK constraints: every entry's seq is positive; one chain head row (id 1) with a seq of 0 or more; a
  checkpoint covers at least one entry.
- Triggers (``db.dialects.seq_guard_ddl``): an entry at or below the chain head, a checkpoint no purge can have
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

from db import dialects
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
    for statement in dialects.seq_guard_ddl(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    if not context.is_offline_mode():
        _refuse_keyed_entries()
    for statement in dialects.drop_seq_guard_ddl(op.get_bind().dialect.name):
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
