"""A small, realistic demo data set, written through the repositories: accounts, users, memberships, files, logins.

    python -m db.scripts.fill_sample [--url URL]        # the same as: python -m db fill --sample

Three companies with a handful of people each, in every membership role; a few files per account (a CSV, a PNG,
a PDF and a text note, so the storage reports have something to show); successful and failed logins and an
administrator's deactivation, so the audit trail and the login reports have a history. Everything goes through the
same repositories an application uses, so every row is checked and every change is audited.

``fill_history`` adds a year of generated history up to today (``db.scripts.sample_generator`` with a fixed
seed), so that the dashboard's sign-up chart and the reports have a past to show.

Every sample user's password is ``SAMPLE_PASSWORD``: the data set is for demonstrations and development only.
Idempotent: if the sample is already there (the account ``acme`` exists), nothing is written; the history is
written once per database (its seed is recognised).
"""

from __future__ import annotations

import datetime as dt
import struct
import zlib
from dataclasses import dataclass

from db.admin_catalog import SYSTEM
from db.errors import AuthenticationError
from db.layer import Database, UnitOfWork
from db.models.account import Account
from db.models.user import User
from db.progress import SILENT, Progress
from db.scripts.create_db import require_head
from db.scripts.sample_generator import GenerationResult, generate, has_seed
from db.scripts.sample_options import GeneratorOptions

SAMPLE_PASSWORD = "sample-demo-password"  # documented; for sample data only
MARKER_SLUG = "acme"
HISTORY_SEED = 2026
HISTORY_DAYS = 365

AccountSpec = tuple[str, str, str, tuple[tuple[str, str, str], ...]]

# slug, name, plan, and its people: (email, display name, role); the first is the owner.
ACCOUNTS: tuple[AccountSpec, ...] = (
    ("acme", "Acme Corporation", "enterprise", (
        ("ada@acme.example", "Ada Lovelace", "owner"),
        ("grace@acme.example", "Grace Hopper", "admin"),
        ("alan@acme.example", "Alan Turing", "member"),
        ("margaret@acme.example", "Margaret Hamilton", "member"),
        ("ken@acme.example", "Ken Thompson", "viewer"),
    )),
    ("globex", "Globex", "pro", (
        ("hank@globex.example", "Hank Scorpio", "owner"),
        ("ada@acme.example", "Ada Lovelace", "admin"),
        ("frank@globex.example", "Frank Grimes", "member"),
    )),
    ("initech", "Initech", "free", (
        ("peter@initech.example", "Peter Gibbons", "owner"),
        ("milton@initech.example", "Milton Waddams", "member"),
    )),
)
LOGINS = ("ada@acme.example", "grace@acme.example", "alan@acme.example", "hank@globex.example",
          "peter@initech.example", "ada@acme.example")
FAILED_LOGINS = ("milton@initech.example", "nobody@initech.example")
DEACTIVATED = ("milton@initech.example", "moved to the basement; access no longer needed")


@dataclass(frozen=True, slots=True)
class SampleResult:
    created: bool  # False: the sample was already there and nothing was written
    accounts: int = 0
    users: int = 0
    memberships: int = 0
    files: int = 0
    logins: int = 0
    failed_logins: int = 0


def fill_sample(database: Database) -> SampleResult:
    """Write the demo data set unless it is there already (see the module docstring)."""
    require_head(database)
    with database.unit_of_work(actor=SYSTEM) as uow:
        if uow.accounts.exists(slug=MARKER_SLUG):
            return SampleResult(created=False)
        users = _people(uow)
        accounts = [_account(uow, spec, users) for spec in ACCOUNTS]
        owners = [users[people[0][0]] for *_, people in ACCOUNTS]
        files = sum(_files(uow, account, owner) for account, owner in zip(accounts, owners, strict=True))
        uow.admin.deactivate_user(users[DEACTIVATED[0]], reason=DEACTIVATED[1])
    logins = sum(_login(database, email, SAMPLE_PASSWORD) for email in LOGINS)
    failures = sum(not _login(database, email, "not-the-password") for email in FAILED_LOGINS)
    return SampleResult(
        created=True, accounts=len(accounts), users=len(users),
        memberships=sum(len(people) for *_, people in ACCOUNTS), files=files, logins=logins, failed_logins=failures,
    )


def fill_history(database: Database, rows: int = 20_000, *, today: dt.date | None = None,
                 progress: Progress = SILENT) -> GenerationResult | None:
    """``rows`` generated rows of activity over the year up to ``today``; None if the history is there already."""
    require_head(database)
    if rows <= 0 or has_seed(database, HISTORY_SEED):
        return None
    end = today or dt.datetime.now(dt.UTC).date()
    start = dt.datetime.combine(end - dt.timedelta(days=HISTORY_DAYS), dt.time(), tzinfo=dt.UTC)
    options = GeneratorOptions(rows=rows, seed=HISTORY_SEED, start=start, days=HISTORY_DAYS)
    return generate(database, options, progress=progress)


def _people(uow: UnitOfWork) -> dict[str, User]:
    """Every sample person once (someone may belong to several accounts), by email."""
    people = {email: name for *_, members in ACCOUNTS for email, name, _ in members}
    return {
        email: uow.users.create(email=email, password=SAMPLE_PASSWORD, display_name=name, is_verified=True)
        for email, name in people.items()
    }


def _account(uow: UnitOfWork, spec: AccountSpec, users: dict[str, User]) -> Account:
    slug, name, plan, ((owner_email, _, _), *others) = spec
    account = uow.accounts.create(name=name, slug=slug, plan=plan, owner=users[owner_email])
    for email, _, role in others:
        uow.accounts.add_member(account, users[email], role)
    return account


def _files(uow: UnitOfWork, account: Account, owner: User) -> int:
    samples = (
        (f"{account.slug}-customers.csv", "text/csv", _csv(account.name)),
        ("logo.png", "image/png", _png(len(account.slug))),
        ("handbook.pdf", "application/pdf", _pdf(f"{account.name} employee handbook")),
        ("meeting notes.txt", "text/plain", f"Notes of the {account.name} weekly meeting.\n".encode()),
    )
    for filename, content_type, content in samples:
        uow.files.store(account=account, owner=owner, filename=filename, stream=content, content_type=content_type)
    return len(samples)


def _login(database: Database, email: str, password: str) -> bool:
    """Sign in as a user would; a failure is recorded by the layer (count and audit event) and returns False."""
    try:
        with database.unit_of_work() as uow:
            uow.users.authenticate(email, password)
    except AuthenticationError:
        return False
    return True


def _csv(company: str) -> bytes:
    rows = ["id,name,city,since"] + [f"{i},{company} customer {i},City {i % 7},{2015 + i % 10}" for i in range(1, 41)]
    return ("\r\n".join(rows) + "\r\n").encode()


def _png(shade: int) -> bytes:
    """A real 16x16 greyscale PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixels = b"".join(b"\x00" + bytes((shade * 16 + x * 8) % 256 for x in range(16)) for _ in range(16))
    header = struct.pack(">IIBBBBB", 16, 16, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b"")


def _pdf(title: str) -> bytes:
    """A minimal one-page PDF."""
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
        b"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >> endobj\n"
        + f"% {title}\n".encode() + b"trailer << /Root 1 0 R >>\n%%EOF\n"
    )


if __name__ == "__main__":
    from db.cli import run_script

    run_script("fill", "--sample")
