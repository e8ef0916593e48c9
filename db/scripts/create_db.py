"""Create the database and bring its schema to the newest revision, through the migrations (never ``create_all``).

    python -m db.scripts.create_db [--url URL]          # the same as: python -m db create

On PostgreSQL and MariaDB the database itself is created first if the server lacks it; a SQLite file is created
by its first connection. Running it again on a database at head changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from alembic.util.exc import CommandError

from db.layer import Database
from db.migrations import runner


@dataclass(frozen=True, slots=True)
class CreateResult:
    url: str  # without the password
    created: bool  # the database (or SQLite file) did not exist before
    before: str | None  # the revision it was at (None: no schema yet)
    after: str | None  # the revision it is at now: the head

    @property
    def upgraded(self) -> bool:
        return self.before != self.after


def create_database(database: Database) -> CreateResult:
    """Create ``database`` if missing and migrate it to head; ``MigrationError`` for a revision this code lacks."""
    created = database.dialect.create_database_if_missing(database.url)
    before = runner.current_revision(database)
    try:
        runner.upgrade(database)
    except CommandError as error:
        raise runner.MigrationError(
            f"cannot migrate from revision {before or 'none'}: {error} (is the database newer than this code?)"
        ) from None
    return CreateResult(
        url=database.url.render_as_string(hide_password=True), created=created, before=before,
        after=runner.current_revision(database),
    )


def require_head(database: Database) -> None:
    """``SchemaDriftError`` with the command to run, unless the database's schema is at the newest revision."""
    current, head = runner.current_revision(database), runner.head_revision()
    if current != head:
        state = f"at revision {current}" if current else "empty (no schema)"
        raise runner.SchemaDriftError(
            f"the database is {state}, not at {head}: run `python -m db create` (or `python -m db migrate upgrade`)"
        )


if __name__ == "__main__":
    from db.cli import run_script

    run_script("create")
