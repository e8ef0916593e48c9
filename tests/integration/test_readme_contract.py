"""The README's "Testing your own repositories" module runs as written, with pytest, on an application's repository.

The module is the README's ```py block, written to a file as it stands; ``myapp/projects.py`` beside it holds the
application's model and repository (those of the README's "Using it"). pytest runs it in a fresh interpreter, as an
application's test run would: the shipped contract must pass on the SQL repository and on its fake.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = "## Testing your own repositories"

APPLICATION = '''
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from db import BaseRepository
from db.base import Base
from db.models.base import SoftDelete, Timestamps, UUIDPrimaryKey, Versioned


class Project(UUIDPrimaryKey, Timestamps, SoftDelete, Versioned, Base):
    __tablename__ = "project"
    name: Mapped[str] = mapped_column(String(100), unique=True)
    stars: Mapped[int] = mapped_column(default=0)
    api_key: Mapped[str | None] = mapped_column(String(64), info={"secret": True})


class ProjectRepository(BaseRepository[Project]):
    model = Project
    sortable = frozenset({"name", "stars", "created_at"})
'''


def readme_test_module() -> str:
    """The first ```py block of the README's "Testing your own repositories" section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    found = re.search(r"^```py\n(.*?)^```", section, re.S | re.M)
    assert found, f"no ```py block under {SECTION!r}"
    return found.group(1)


def write_application(root: Path) -> None:
    (root / "myapp").mkdir()
    (root / "myapp" / "__init__.py").write_text("", encoding="utf-8")
    (root / "myapp" / "projects.py").write_text(APPLICATION, encoding="utf-8")
    (root / "tests").mkdir()
    (root / "tests" / "test_projects.py").write_text(readme_test_module(), encoding="utf-8")


def test_the_readme_contract_example_passes_on_the_repository_and_its_fake(tmp_path: Path) -> None:
    write_application(tmp_path)
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_", "PYTEST_"))}
    environment["PYTHONPATH"] = str(ROOT)
    run = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "tests"], cwd=tmp_path,
                         env=environment, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    for backend in ("sql", "fake"):
        assert re.search(rf"TestProjectRepository::test_\w+\[{backend}\] PASSED", run.stdout), run.stdout[-4000:]
