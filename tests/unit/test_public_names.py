"""Every name a module of the layer lists in ``__all__`` exists: ``from module import *`` never fails."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import db

SKIPPED = ("__main__", "migrations.env")  # a script's entry point; Alembic's environment, which runs under Alembic only
MODULES = sorted(
    info.name for info in pkgutil.walk_packages(db.__path__, "db.")
    if ".migrations.versions" not in info.name and not info.name.endswith(SKIPPED)
)


@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_all_exists(name: str) -> None:
    module = importlib.import_module(name)
    missing = [item for item in getattr(module, "__all__", ()) if not hasattr(module, item)]
    assert missing == []
