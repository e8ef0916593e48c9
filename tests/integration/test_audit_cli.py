"""``python -m db audit head|verify|seal`` and ``check --audit-head``: what an operator sees, and the exit codes.

In-process on a SQLite file of the test's own (the commands are the same on every engine: the engine-specific
parts are tested in test_audit_tampering.py and test_audit_key.py), and once through a real ``python -m``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from db import Database
from db.cli import main
from db.migrations import runner
from db.settings import Settings
from tests.integration.audit_attacks import attack, seed

ROOT = Path(__file__).resolve().parents[2]
KEY = "correct horse battery staple, 0123456789"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, " ".join(captured.out.split()), " ".join(captured.err.split())


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated SQLite file with five audit events; no DATABASE_URL and no audit key from outside."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DBLAYER_AUDIT_KEY", raising=False)
    monkeypatch.setenv("DBLAYER_STORAGE_ROOT", str(tmp_path / "files"))
    database = Database(f"sqlite:///{tmp_path / 'audit.db'}", settings=Settings.for_tests())
    runner.upgrade(database)
    seed(database, 5)
    yield database.url.render_as_string(hide_password=False)
    database.dispose()


def token(capsys: pytest.CaptureFixture[str], url: str) -> str:
    code, out, err = run(capsys, "audit", "head", "--json", "--url", url)
    assert code == 0, err
    head = json.loads(out)
    return f"{head['seq']}:{head['hash']}"


def test_audit_head_prints_a_head_that_verify_finds_unchanged_in_every_form(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "audit", "head", "--url", url)
    exported = token(capsys, url)
    assert code == 0 and "seq 5" in out and exported in out and "keyed no" in out
    seed(Database(url), 2)
    (tmp_path / "head.json").write_text(json.dumps({"seq": 5, "hash": exported.split(":")[1]}))
    for given in (exported, json.dumps({"seq": 5, "hash": exported.split(":")[1]}), str(tmp_path / "head.json")):
        code, out, err = run(capsys, "audit", "verify", "--head", given, "--url", url)
        assert code == 0, err
        assert "7 entries up to the head at seq 7" in out and "exported head (seq 5) is in the chain unchanged" in out


def test_a_broken_chain_fails_verify_and_check_with_the_seq_and_the_reason(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with attack(Database(url)) as attacker:
        attacker.sql("UPDATE audit_entry SET action = 'pong' WHERE seq = 3")
    code, _, err = run(capsys, "audit", "verify", "--url", url)
    assert code == 1 and "audit chain broken: seq 3" in err and "content does not match its hash" in err
    code, out, err = run(capsys, "audit", "verify", "--json", "--url", url)
    report = json.loads(out)
    assert code == 1 and (report["ok"], report["first_bad_seq"]) == (False, 3)
    code, out, err = run(capsys, "check", "--no-blobs", "--url", url)
    assert code == 1 and "check failed: audit chain" in err and "broken at seq 3" in out


def test_check_with_an_exported_head_catches_a_rewrite_that_verifies_on_its_own(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    exported = token(capsys, url)
    with attack(Database(url)) as attacker:
        attacker.sql("UPDATE audit_entry SET action = 'pong' WHERE seq = 2")
        attacker.rechain(start=2)
    assert run(capsys, "check", "--no-blobs", "--url", url)[0] == 0  # no key, no export: undetectable
    code, out, _ = run(capsys, "check", "--no-blobs", "--audit-head", exported, "--url", url)
    assert code == 1 and "history up to it was rewritten" in out


@pytest.mark.parametrize("given", ["nonsense", "5:abc", "-1:" + "a" * 64, "bytes"])
def test_a_bad_exported_head_is_one_clear_line(url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                               given: str) -> None:
    if given == "bytes":
        given = str(tmp_path / "head.bin")
        Path(given).write_bytes(b"\xff\xfe5:" + b"a" * 64)
    code, _, err = run(capsys, "audit", "verify", "--head", given, "--url", url)
    assert code == 1 and err.startswith("error:") and "exported audit head" in err and "Traceback" not in err


def test_with_a_key_set_seal_makes_the_chain_keyed_and_the_key_is_never_printed(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBLAYER_AUDIT_KEY", KEY)
    outputs = []
    for args, expected in ((("audit", "verify"), 1), (("audit", "seal"), 0), (("audit", "verify"), 0),
                           (("audit", "head", "--json"), 0), (("check", "--no-blobs"), 0)):
        code, out, err = run(capsys, *args, "--url", url)
        outputs.append(out + err)
        assert code == expected, (args, out, err)
    assert "python -m db audit seal" in outputs[0] and "keyed yes" in outputs[1]
    assert json.loads(outputs[3])["keyed"] is True
    monkeypatch.delenv("DBLAYER_AUDIT_KEY")
    code, _, err = run(capsys, "audit", "verify", "--url", url)
    assert code == 1 and "set DBLAYER_AUDIT_KEY" in err
    assert not [text for text in [*outputs, err] if KEY in text]


def test_a_short_key_stops_every_command_without_echoing_it(url: str, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBLAYER_AUDIT_KEY", "hunter2-hunter2")
    for args in (("audit", "head"), ("audit", "verify"), ("check", "--no-blobs")):
        code, out, err = run(capsys, *args, "--url", url)
        assert code == 1 and "at least 32 characters" in err and "hunter2" not in out + err


def test_the_script_runs_on_its_own(url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "db.scripts.audit_db", "verify", "--url", url], cwd=ROOT, env=dict(os.environ),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0 and "audit chain verified: 5 entries" in done.stdout
