"""The database's identity: one row naming this database, which its file storage root is bound to.

Revision ID: 0006_database_identity
Revises: 0005_audit_integrity
Create Date: 2026-12-03 11:00:00.000000
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.base

revision: str = '0006_database_identity'
down_revision: str | Sequence[str] | None = '0005_audit_integrity'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table('database_identity',
    sa.Column('singleton', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('singleton = 1', name=op.f('ck_database_identity_one_row')),
    sa.PrimaryKeyConstraint('singleton', name=op.f('pk_database_identity')),
    mariadb_charset='utf8mb4',
    mariadb_collate='utf8mb4_nopad_bin',
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_bin'
    )
    # Every database gets its own identity when it is made or upgraded; a storage root it already uses is bound to
    # it at first use (db.storage_binding).
    op.bulk_insert(table, [{"singleton": 1, "id": uuid.uuid4(), "created_at": dt.datetime.now(dt.UTC)}])


def downgrade() -> None:
    op.drop_table('database_identity')
