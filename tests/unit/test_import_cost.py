"""``import db`` loads the errors only: no argon2, no file-type sniffer, no storage backend, no domain module."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("argon2", "filetype", "db.storage", "db.passwords", "db.repositories.user_repository", "db.services",
         "sqlalchemy")


def modules_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(output))


def test_import_db_loads_no_hashing_sniffing_storage_or_domain_module() -> None:
    loaded = modules_after("import db")
    assert not [name for name in loaded if name.startswith(HEAVY)]


def test_the_core_database_is_usable_without_the_layers_domain() -> None:
    loaded = modules_after(
        "from sqlalchemy import text\n"
        "from db.session import Database\n"
        "with Database('sqlite://').session() as session: assert session.execute(text('SELECT 1')).scalar() == 1")
    assert not [name for name in loaded if name.startswith(("argon2", "filetype", "db.storage", "db.layer",
                                                             "db.repositories.user_repository",
                                                             "db.services.users"))]


def test_the_layers_database_is_one_name_away() -> None:
    loaded = modules_after("from db import Database")
    assert "db.layer" in loaded


def test_a_sqlite_database_loads_neither_other_engines_module_nor_an_unused_service() -> None:
    loaded = modules_after(
        "from sqlalchemy import text\n"
        "from db import Database\n"
        "with Database('sqlite://').unit_of_work() as uow: uow.reports\n")
    assert "db.dialects.sqlite" in loaded
    assert "db.services.reports" in loaded
    assert not loaded & {"db.dialects.postgresql", "db.dialects.mariadb", "db.services.users", "db.services.files"}


def test_an_engine_module_is_loaded_when_a_statement_is_compiled_for_it() -> None:
    code = (
        "from sqlalchemy import DateTime, column, select\n"
        "from sqlalchemy.dialects import mysql, postgresql\n"
        "from db.dialects import time_bucket\n"
        "week = select(time_bucket(column('at', DateTime), 'week'))\n"
        "print(week.compile(dialect=postgresql.dialect()))\n"
        "print(week.compile(dialect=mysql.dialect()))\n")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "date_trunc('week'" in output
    assert "weekday(at)" in output
