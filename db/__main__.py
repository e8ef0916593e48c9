"""``python -m db``: create or migrate the database to the newest revision, then show its state.

The database is ``--url``, else ``DATABASE_URL``, else the SQLite file ``db/data/app.db``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from alembic.util.exc import CommandError
from sqlalchemy import exc, func, inspect, select, table

from db.errors import DatabaseError
from db.migrations import runner
from db.repositories.audit_repository import AuditRepository
from db.session import Database

VERSION_TABLE = "alembic_version"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m db",
        description="Create or migrate the database to the newest schema revision, then show its engine, "
        "revision and tables. The database is --url, else DATABASE_URL, else the SQLite file db/data/app.db.",
    )
    parser.add_argument("--url", help="database URL (default: DATABASE_URL, else db/data/app.db)")
    args = parser.parse_args(argv)
    database: Database | None = None
    try:
        database = Database(args.url)
        before = runner.current_revision(database)
        runner.upgrade(database)
        for line in describe(database, before):
            print(line)
    except exc.DBAPIError as error:
        where = database.url.render_as_string(hide_password=True) if database else "the database"
        return _fail(f"cannot use {where}: {_first_line(error.orig or error)}")
    except exc.ArgumentError as error:  # an unknown dialect or a malformed URL
        return _fail(f"bad database URL: {error}")
    except ModuleNotFoundError as error:
        return _fail(f"the database driver is not installed: {error}")
    except (DatabaseError, CommandError, OSError) as error:
        return _fail(str(error))
    finally:
        if database is not None:
            database.dispose()
    return 0


def describe(database: Database, before: str | None = None) -> list[str]:
    """The engine, schema revision and tables (with row counts) of ``database``, as lines of text."""
    current, head = runner.current_revision(database), runner.head_revision()
    state = "head" if current == head else f"not head: the head is {head}"
    if before != current:
        state += f"; upgraded from {before or 'an empty database'}"
    with database.engine.connect() as connection:
        version = ".".join(str(part) for part in connection.dialect.server_version_info or ())
        names = sorted(name for name in inspect(connection).get_table_names() if name != VERSION_TABLE)
        counts = {
            name: connection.scalar(select(func.count()).select_from(table(name))) or 0 for name in names
        }
    engine = f"{database.backend} {version} ({database.engine.dialect.driver})".replace("  ", " ")
    lines = [
        f"engine:   {engine}  {database.url.render_as_string(hide_password=True)}",
        f"revision: {current or 'none'} ({state})",
        f"tables:   {len(names) or 'none yet'}",
    ]
    if "audit_entry" in names:
        lines.append(f"audit:    {_chain_state(database)}")
    width = max((len(name) for name in names), default=0)
    for name, count in counts.items():
        lines.append(f"  {name:<{width}}  {count:>10,} row{'s' if count != 1 else ''}")
    return lines


def _chain_state(database: Database) -> str:
    """The audit chain's verification, read in a plain session (no write lock on SQLite)."""
    with database.session() as session:
        report = AuditRepository(session).verify_chain()
    if report.ok:
        return f"chain OK ({report.checked:,} entries since the last checkpoint)"
    return f"CHAIN BROKEN at seq {report.first_bad_seq}: {report.reason}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _fail(message: str) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
