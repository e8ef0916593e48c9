"""What the command-line tests share: an environment of the test's own, and running ``python -m db`` in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.cli import main


def own_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite URL of the test's own, with blobs under tmp_path and no database or administrator from outside."""
    for variable in ("DATABASE_URL", "DBLAYER_ADMIN_EMAIL", "DBLAYER_ADMIN_PASSWORD", "DBLAYER_AUDIT_KEY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DBLAYER_STORAGE_ROOT", str(tmp_path / "files"))
    return f"sqlite:///{tmp_path / 'cli.db'}"


def run(capsys: pytest.CaptureFixture[str], *args: str, flat: bool = True) -> tuple[int, str, str]:
    """Exit code, standard output and standard error of ``python -m db *args`` (``flat``: whitespace collapsed,
    since Rich wraps long lines at the terminal's width)."""
    code = main(list(args))
    captured = capsys.readouterr()
    if not flat:
        return code, captured.out, captured.err
    return code, " ".join(captured.out.split()), " ".join(captured.err.split())
