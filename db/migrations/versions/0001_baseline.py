"""Baseline: the empty application schema.

Revision ID: 0001_baseline
Revises:
Create Date: 2025-11-28

The first revision creates nothing. It gives every database a known starting point (``alembic_version`` holds
``0001_baseline``) so that the revisions which add the application's tables build on it, each with
``down_revision`` pointing at its predecessor: ``0002_...`` revises ``0001_baseline``, and so on.

Downgrading to ``base`` from here only clears ``alembic_version``; it drops nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0001_baseline"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
