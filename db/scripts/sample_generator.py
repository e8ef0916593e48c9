"""Large, realistic, reproducible sample data: users, accounts, memberships, files and their blobs, activity.

    result = generate(database, GeneratorOptions(rows=1_000_000, seed=42))
    result.rows          # {"user": ..., "account": ..., "membership": ..., "file_blob": ..., "file": ...,
                         #  "audit_entry": ...}
    result.total_rows, result.seconds, result.rows_per_second

``python -m db generate --rows 1000000 --seed 42`` (or ``python -m db.scripts.sample_generator ...``) does the
same with a progress bar per table.

**Sizes.** Either ``rows`` (the total, exact) or per-entity counts. From ``users`` (default 1,000 without
``rows``): ``accounts`` = users / ``users_per_account``; memberships = accounts x ``members_per_account``
(each account has one owner, the rest are admins, members and viewers, spread unevenly: a few large teams, many
small ones); files = accounts x ``files_per_account``, naming ``blobs`` distinct contents (default files / 10, at
most 1,000: the bytes are written and fsynced one by one); one ``file.uploaded`` event per file; activity events
= users x ``events_per_user``. Bounds: ``blobs`` at most ``MAX_BLOBS`` (100,000), each ratio at most ``MAX_RATIO``
(10,000), at most ``MAX_ROWS`` (a billion) rows in all; and before anything is written, the rows (in a SQLite file)
and the blobs must fit the free space of their disks by a generous estimate, else ``DiskFull``. With ``rows``, the
users are sized from those ratios and the activity events take whatever is left, so the rows add up to ``rows``
exactly. The audit log also gets, from the repositories' bulk
path itself, one ``create_many`` entry per 5,000 rows written (about 0.02 %): those are not counted.

**Determinism.** Only ``random.Random(seed)`` is used, never the global generator or the clock: the same seed and
options give the same rows, primary keys included, on every engine. Ids are UUIDv7-shaped: the time of the row
(so they are time-ordered, which keeps index inserts cheap) and 74 bits computed from the row's index and a
per-table key drawn from the seed (a bijection, so they never repeat). Times lie in the period ``start`` (default
2024-01-01 UTC) plus ``days`` (default 730), growing over time: more sign-ups, files and activity towards the
end. The exception is what the layer writes itself: the ``create_many`` audit entries carry the real time and
their own ids, and so the chain's hashes differ between runs (the generated events are identical).

**Realism.** Names, e-mail domains, locales, time zones, plans, file names and content types come from small
built-in lists. Activity events are the ones the layer records and the reports read: ``login.success`` (the
bulk), ``login.failure``, ``user.locked``, ``token.issued``, ``token.consumed``, ``password.changed``,
``file.downloaded``, each by a user who had signed up by then, with a per-user IP address and browser. Files
belong to accounts that existed by then and are uploaded by their owners, admins or members.

**Passwords.** Hashing a password per user (argon2) would take hours: every generated user has the password
``SAMPLE_PASSWORD``, hashed once per run with the database's argon2 settings and a salt drawn from the seed (so
the hash is deterministic too). Sample data only: never generate into a database real people sign in to.

**Uniqueness and re-runs.** E-mail addresses (``first.last.N@sSEED.mail.example.com``), usernames and account
slugs carry the seed, so runs with different seeds can share a database. Generating a seed that is already there is
refused up front (``Conflict``, nothing written). The schema must be at the migrations' head (``SchemaDriftError``).

**Streaming and transactions.** Rows are made lazily by generators and handed to the driver 5,000 at a time through
the repositories' bulk path (``create_many``; audit events through ``db.audit.append_entries``, which extends the
hash chain exactly as single appends do). Each ``batch_size`` rows (default 50,000) are one unit of work, committed
before the next begins: on SQLite that holds the write lock about 2-3 s at a time (other writers wait, within their
busy timeout). Smaller transactions cost more than they seem on SQLite: every commit writes each index page it
touched to the WAL again, and the audit log's indexes take random keys (5,000-row transactions made a million rows
25 % slower). The cyclic garbage collector is paused during a transaction (the rows form no cycles). Memory stays
flat (about 130 MB for 100,000 or 1,000,000 rows): only per-account uploader lists, the blob pool's metadata and a
bounded cache of per-user values are kept. An interrupted run leaves whole batches, parents before children (so
references hold); generate into a fresh database rather than finishing one. Blob bytes are written
(content-addressed, under ``database.settings.storage_root``) before the rows that name them. ``write_blobs=False``
writes no files and no blobs (a file row must have its bytes).
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import math
import random
import shutil
import time
import uuid
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from argon2 import Type
from argon2.low_level import hash_secret
from sqlalchemy import select

from db import storage_binding
from db.audit import Entry, append_entries
from db.errors import Conflict, DiskFull, ValidationError
from db.layer import Database
from db.models.user import User
from db.passwords import hasher
from db.progress import SILENT, Advance, Progress
from db.repositories.account_repository import AccountRepository
from db.repositories.base_repository import WriteRepository
from db.repositories.bulk import BATCH_ROWS, batched, collector_paused
from db.repositories.file_blob_repository import FileBlobRepository
from db.repositories.file_repository import FileRepository
from db.repositories.membership_repository import MembershipRepository
from db.repositories.user_repository import UserRepository
from db.scripts.create_db import require_head
from db.scripts.sample_options import GeneratorOptions
from db.storage import LocalStorage

T = TypeVar("T")

SAMPLE_PASSWORD = "sample data only 42"
GENERATOR_ACTOR = "sample-generator"
MAX_ROWS = 1_000_000_000  # rows in total, whatever the options
MAX_BATCH = 100_000
MAX_DEFAULT_BLOBS = 1_000
MAX_BLOBS = 100_000  # distinct contents: about 0.8 GB of files at most
MAX_RATIO = 10_000  # members or files per account, events per user
# What a generated row takes in a SQLite file with its indexes (about 780 bytes measured, mostly audit entries),
# and a blob on disk (4.3 KB on average, in whole file-system blocks): the free-space check's estimate.
ROW_BYTES = 1024
BLOB_BYTES = 8192
GROWTH = 0.7  # times are start + span * fraction**GROWTH: activity grows towards the end of the period
TABLES = ("user", "account", "membership", "file_blob", "file", "audit_entry")

# --- built-in word lists -----------------------------------------------------------------------------------------

FIRST_NAMES = (
    "ada", "alan", "grace", "linus", "margaret", "dennis", "barbara", "ken", "frances", "edsger", "radia", "tim",
    "katherine", "john", "hedy", "donald", "sophie", "guido", "annie", "niklaus", "joan", "bjarne", "mary", "james",
    "lynn", "claude", "karen", "vint", "shafi", "leslie", "elena", "omar", "yuki", "priya", "chen", "fatima",
)
LAST_NAMES = (
    "lovelace", "turing", "hopper", "torvalds", "hamilton", "ritchie", "liskov", "thompson", "allen", "dijkstra",
    "perlman", "berners", "johnson", "backus", "lamarr", "knuth", "wilson", "rossum", "easley", "wirth", "clarke",
    "stroustrup", "keller", "gosling", "conway", "shannon", "jones", "cerf", "goldwasser", "lamport", "garcia",
    "haddad", "tanaka", "sharma", "wei", "khan",
)
COMPANY_WORDS = (
    "acme", "globex", "initech", "umbrella", "stark", "wayne", "hooli", "vandelay", "wonka", "tyrell", "cyberdyne",
    "soylent", "aperture", "massive", "dynamic", "blue", "green", "north", "summit", "harbor", "pixel", "quantum",
    "river", "atlas", "nimbus", "orbit", "cedar", "falcon", "lumen", "vertex",
)
COMPANY_SUFFIXES = ("Labs", "Systems", "Industries", "Group", "Studio", "Works", "Partners", "Analytics", "Cloud")
DOMAIN_STEMS = ("mail", "post", "inbox", "corp", "team", "dev")
LOCALES = ("en", "en-GB", "en-US", "fr", "de", "es", "it", "pt-BR", "ja", "zh-Hans", "nl", "sv", "pl")
TIMEZONES = (
    "UTC", "Europe/London", "Europe/Paris", "Europe/Berlin", "America/New_York", "America/Chicago",
    "America/Los_Angeles", "America/Sao_Paulo", "Asia/Tokyo", "Asia/Kolkata", "Asia/Shanghai", "Australia/Sydney",
)
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari",
    "python-requests/2.32.3",
)
FILE_WORDS = (
    "report", "invoice", "notes", "budget", "roadmap", "minutes", "draft", "final", "summary", "plan", "export",
    "backup", "design", "contract", "photo", "scan", "slides", "review", "q1", "q2", "q3", "q4", "2024", "2025",
)
PLANS = (("free", 70), ("pro", 25), ("enterprise", 5))
QUOTAS = {"free": 2**30, "pro": 10 * 2**30, "enterprise": 100 * 2**30}
STATUSES = (("active", 94), ("suspended", 4), ("closed", 2))
MEMBER_ROLES = (("admin", 10), ("member", 70), ("viewer", 20))
UPLOADER_ROLES = frozenset({"owner", "admin", "member"})
# (content type, file extension, weight)
BLOB_KINDS = (
    ("text/plain", "txt", 30), ("text/csv", "csv", 15), ("application/json", "json", 15),
    ("image/png", "png", 25), ("application/pdf", "pdf", 15),
)
# (action, weight); file.downloaded only when there are files
ACTIVITY = (
    ("login.success", 55), ("login.failure", 8), ("user.locked", 1), ("token.issued", 4), ("token.consumed", 3),
    ("password.changed", 2), ("file.downloaded", 15),
)
LOGIN_ACTIONS = frozenset({"login.success", "login.failure", "user.locked"})
TOKEN_PURPOSES = ("verify_email", "password_reset")


# --- options and results -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """The exact number of rows each table gets (``uploads`` and ``events`` are both audit entries)."""

    users: int
    accounts: int
    memberships: int
    blobs: int
    files: int
    uploads: int
    events: int

    def per_table(self) -> dict[str, int]:
        return {
            "user": self.users, "account": self.accounts, "membership": self.memberships, "file_blob": self.blobs,
            "file": self.files, "audit_entry": self.uploads + self.events,
        }

    @property
    def total(self) -> int:
        return sum(self.per_table().values())


@dataclass(frozen=True, slots=True)
class GenerationResult:
    rows: Mapping[str, int]  # table → rows generated
    seconds_per_table: Mapping[str, float]
    total_rows: int
    seconds: float
    seed: int

    @property
    def rows_per_second(self) -> float:
        return self.total_rows / self.seconds if self.seconds > 0 else 0.0


# --- checking the options ----------------------------------------------------------------------------------------


def _whole(name: str, value: Any, *, minimum: int = 0, maximum: int = MAX_ROWS) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValidationError(f"generate: {name} must be a whole number from {minimum:,} to {maximum:,}",
                              field=name, rule="range")
    return value


def _ratio(name: str, value: Any, *, minimum: float = 0.0, maximum: float = MAX_RATIO) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
            or not minimum <= value <= maximum):
        raise ValidationError(f"generate: {name} must be a number from {minimum:g} to {maximum:,g}", field=name,
                              rule="range")
    return float(value)


def check_options(options: GeneratorOptions) -> GeneratorOptions:
    """``options`` if every value is usable, else ``ValidationError`` naming the first bad one."""
    if not isinstance(options, GeneratorOptions):
        raise ValidationError("generate: options must be GeneratorOptions", field="options", rule="type")
    if options.rows is not None:
        _whole("rows", options.rows, minimum=1)
    if options.users is not None:
        _whole("users", options.users, minimum=1)
    if options.accounts is not None:
        _whole("accounts", options.accounts, minimum=1)
    if options.blobs is not None:
        _whole("blobs", options.blobs, minimum=1, maximum=MAX_BLOBS)
    _whole("users_per_account", options.users_per_account, minimum=1)
    _ratio("members_per_account", options.members_per_account, minimum=1.0)
    _ratio("files_per_account", options.files_per_account)
    _ratio("events_per_user", options.events_per_user)
    _whole("seed", options.seed, maximum=2**63 - 1)
    _whole("batch_size", options.batch_size, minimum=1, maximum=MAX_BATCH)
    _whole("days", options.days, minimum=1, maximum=36_500)
    if not isinstance(options.write_blobs, bool):
        raise ValidationError("generate: write_blobs must be True or False", field="write_blobs", rule="type")
    start = options.start
    if not isinstance(start, dt.datetime) or start.tzinfo is None or start.utcoffset() is None:
        raise ValidationError("generate: start must be a timezone-aware datetime", field="start", rule="type")
    if not _EPOCH <= start <= _LAST_START - dt.timedelta(days=options.days):
        raise ValidationError("generate: the period (start plus days) must lie between 1970 (ids carry Unix time) "
                              "and the year 9999", field="start", rule="range")
    return options


def plan(options: GeneratorOptions) -> Plan:
    """The rows per table these options give (``ValidationError`` if ``rows`` cannot hold them)."""
    check_options(options)
    users = options.users
    if users is None:
        users = _users_for(options) if options.rows is not None else 1_000
    accounts = options.accounts or max(1, users // options.users_per_account)
    memberships = min(max(accounts, round(accounts * options.members_per_account)), accounts * users)
    files = round(accounts * options.files_per_account) if options.write_blobs else 0
    blobs = (options.blobs or min(MAX_DEFAULT_BLOBS, max(1, files // 10))) if files else 0
    fixed = users + accounts + memberships + blobs + 2 * files
    if options.rows is None:
        planned = Plan(users, accounts, memberships, blobs, files, files, round(users * options.events_per_user))
        if planned.total > MAX_ROWS:
            raise ValidationError(f"generate: these options make {planned.total:,} rows, more than {MAX_ROWS:,}: "
                                  "ask for fewer users, files or events", field="rows", rule="range")
        return planned
    if fixed > options.rows:
        raise ValidationError(f"generate: rows={options.rows:,} is fewer than these options need ({fixed:,}): "
                              "ask for more rows or fewer users, accounts or files", field="rows", rule="range")
    return Plan(users, accounts, memberships, blobs, files, files, options.rows - fixed)


def check_free_space(database: Database, counts: Plan) -> None:
    """``DiskFull`` before anything is written when the rows (in a SQLite file) and the blobs would not fit.

    The estimate is ``ROW_BYTES`` per row and ``BLOB_BYTES`` per blob; a server's disk is its own, not checked here.
    """
    needs: dict[int, tuple[Path, int]] = {}  # per file system (the database and the blobs may share one)

    def need(path: Path, size: int) -> None:
        where = _existing(path)
        first, before = needs.get(where.stat().st_dev, (where, 0))
        needs[where.stat().st_dev] = (first, before + size)

    file = database.dialect.local_file(database.url)
    if file is not None:
        need(file.resolve().parent, counts.total * ROW_BYTES)
    if counts.blobs:
        need(Path(database.settings.storage_root), counts.blobs * BLOB_BYTES)
    for where, size in needs.values():
        free = shutil.disk_usage(where).free
        if size > free:
            raise DiskFull(f"generate: these options need about {size / 2**20:,.0f} MiB on the disk of {where} "
                           f"and {free / 2**20:,.0f} MiB are free; nothing was written (ask for fewer rows or "
                           "free some space)")


def _existing(path: Path) -> Path:
    """``path``, or the nearest of its parents that exists (the disk it will be created on)."""
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _users_for(options: GeneratorOptions) -> int:
    """How many users make ``rows`` in total with the options' ratios."""
    per_account = 1 + options.members_per_account
    if options.write_blobs:
        per_account += 2 * options.files_per_account + options.files_per_account / 10
    per_user = 1 + options.events_per_user + per_account / options.users_per_account
    return max(1, int((options.rows or 0) / per_user))


# --- deterministic building blocks -------------------------------------------------------------------------------

_LOW62 = (1 << 62) - 1
_MASK74 = (1 << 74) - 1


def _uuid7(millis: int, bits: int) -> uuid.UUID:
    """A UUID shaped like a v7: 48 bits of Unix milliseconds, version 7, the RFC variant, 74 given bits."""
    return uuid.UUID(int=(millis << 80) | (0x7 << 76) | ((bits >> 62) << 64) | (0b10 << 62) | (bits & _LOW62))


@dataclass(frozen=True, slots=True)
class _Sequence:
    """``count`` rows of one table spread over the period: each row's time and id are functions of its index.

    So a later table refers to row ``i`` (a membership's user, a file's account) without anything being stored.
    """

    count: int
    start_us: int
    span_us: int
    key: int  # odd: i → i * key mod 2**74 is a bijection, so ids never repeat
    offset: int

    def micros(self, index: int) -> int:
        jitter = ((index * self.key) >> 20 & 0xFFFF) / 65536
        return self.start_us + int(self.span_us * ((index + jitter) / self.count) ** GROWTH)

    def time(self, index: int) -> dt.datetime:
        return _EPOCH + dt.timedelta(microseconds=self.micros(index))

    def ident(self, index: int) -> uuid.UUID:
        return _uuid7(self.micros(index) // 1000, (index * self.key + self.offset) & _MASK74)

    def existing_at(self, fraction: float) -> int:
        """How many rows of this table exist once ``fraction`` of the period (on the growth curve) has passed."""
        return min(self.count, max(1, int(self.count * fraction)))


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LAST_START = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


def _weighted(rng: random.Random, choices: Sequence[tuple[str, int]]) -> Callable[[], str]:
    """A cheap weighted choice: a table of 100-ish entries indexed by one random number."""
    table = [name for name, weight in choices for _ in range(weight)]
    size = len(table)
    return lambda: table[int(rng.random() * size)]


@dataclass(slots=True)
class _Blob:
    sha256: str
    size: int
    content_type: str
    extension: str


@dataclass(slots=True)
class _World:
    """The seeded state every table's rows are made from."""

    options: GeneratorOptions
    plan: Plan
    rng: random.Random
    users: _Sequence
    accounts: _Sequence
    files: _Sequence
    events: _Sequence
    id_keys: dict[str, tuple[int, int]]
    password_hash: str
    uploaders: list[array[int]] = field(default_factory=list)  # per account: users who may upload
    blobs: list[_Blob] = field(default_factory=list)

    @classmethod
    def make(cls, options: GeneratorOptions, counts: Plan, password_hash: Callable[[random.Random], str]) -> _World:
        rng = random.Random(options.seed)
        start_us = (options.start.astimezone(dt.UTC) - _EPOCH) // dt.timedelta(microseconds=1)
        span_us = options.days * 86_400 * 1_000_000

        def sequence(count: int) -> _Sequence:
            return _Sequence(max(1, count), start_us, span_us, rng.getrandbits(74) | 1, rng.getrandbits(74))

        users, accounts, files, events = (sequence(n) for n in (counts.users, counts.accounts, counts.files,
                                                                counts.events))
        keys = {name: (rng.getrandbits(74) | 1, rng.getrandbits(74)) for name in ("membership", "token")}
        return cls(options, counts, rng, users, accounts, files, events, keys, password_hash(rng))

    def account_owner(self, account: int) -> int:
        return account * self.plan.users // self.plan.accounts

    def other_id(self, kind: str, index: int, micros: int) -> uuid.UUID:
        key, offset = self.id_keys[kind]
        return _uuid7(micros // 1000, (index * key + offset) & _MASK74)


# --- the rows ----------------------------------------------------------------------------------------------------


def _user_rows(world: _World) -> Iterator[dict[str, Any]]:
    rng, seed, users = world.rng, world.options.seed, world.users
    locale, zone = _weighted(rng, [(name, 1) for name in LOCALES]), _weighted(rng, [(name, 1) for name in TIMEZONES])
    end_us = users.start_us + users.span_us
    for index in range(world.plan.users):
        first, last = FIRST_NAMES[int(rng.random() * len(FIRST_NAMES))], LAST_NAMES[
            int(rng.random() * len(LAST_NAMES))]
        email = f"{first}.{last}.{index}@s{seed}.{DOMAIN_STEMS[index % len(DOMAIN_STEMS)]}.example.com"
        username = f"{first}_{last}_{index}_s{seed}" if rng.random() < 0.4 else None
        created_us = users.micros(index)
        created = _EPOCH + dt.timedelta(microseconds=created_us)
        logged_in = rng.random() < 0.8
        yield {
            "id": users.ident(index), "email": email, "username": username,
            "display_name": f"{first.title()} {last.title()}", "locale": locale(),
            "timezone": zone(), "is_active": rng.random() < 0.97, "is_verified": rng.random() < 0.85,
            "password_hash": world.password_hash, "password_changed_at": created,
            "last_login_at": _EPOCH + dt.timedelta(microseconds=created_us + int(rng.random() * (end_us - created_us)))
            if logged_in else None,
            "created_at": created, "updated_at": created,
        }


def _account_rows(world: _World) -> Iterator[dict[str, Any]]:
    rng, seed, accounts = world.rng, world.options.seed, world.accounts
    plan_of, status_of = _weighted(rng, PLANS), _weighted(rng, STATUSES)
    for index in range(world.plan.accounts):
        word = COMPANY_WORDS[int(rng.random() * len(COMPANY_WORDS))]
        suffix = COMPANY_SUFFIXES[int(rng.random() * len(COMPANY_SUFFIXES))]
        created = accounts.time(index)
        plan_name = plan_of()
        yield {
            "id": accounts.ident(index), "name": f"{word.title()} {suffix} {index}",
            "slug": f"{word}-{suffix.lower()}-{index}-s{seed}", "plan": plan_name, "status": status_of(),
            "storage_quota_bytes": QUOTAS[plan_name], "created_at": created, "updated_at": created,
        }


def _members_per_account(world: _World) -> list[int]:
    """How many members each account gets: at least its owner, unevenly (Pareto), adding up exactly."""
    rng, counts = world.rng, world.plan
    extra = counts.memberships - counts.accounts
    weights = [rng.paretovariate(1.2) for _ in range(counts.accounts)]
    total = sum(weights)
    sizes = [min(counts.users, 1 + int(extra * weight / total)) for weight in weights]
    missing = counts.memberships - sum(sizes)
    while missing > 0:  # the remainder, one by one, to accounts with room (the plan caps memberships)
        for index in range(counts.accounts):
            if missing and sizes[index] < counts.users:
                sizes[index] += 1
                missing -= 1
    return sizes


def _membership_rows(world: _World) -> Iterator[dict[str, Any]]:
    rng, users, accounts = world.rng, world.users, world.accounts
    role_of = _weighted(rng, MEMBER_ROLES)
    made = 0
    for account, size in enumerate(_members_per_account(world)):
        owner = world.account_owner(account)
        account_id, joined_us = accounts.ident(account), accounts.micros(account)
        joined = _EPOCH + dt.timedelta(microseconds=joined_us)
        uploaders = array("i", [owner])
        others = (pick if pick < owner else pick + 1 for pick in rng.sample(range(world.plan.users - 1), size - 1))
        for user, role in ((owner, "owner"), *((other, role_of()) for other in others)):
            delay = int(rng.random() * 30 * 86_400) * 1_000_000 if role != "owner" else 0
            moment = joined + dt.timedelta(microseconds=delay)
            if role in UPLOADER_ROLES and role != "owner":
                uploaders.append(user)
            yield {
                "id": world.other_id("membership", made, joined_us + delay), "account_id": account_id,
                "user_id": users.ident(user), "role": role, "created_at": moment, "updated_at": moment,
            }
            made += 1
        world.uploaders.append(uploaders)


def _blob_bytes(rng: random.Random, content_type: str, size: int) -> bytes:
    if content_type == "image/png":
        return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.randbytes(max(0, size - 16))
    if content_type == "application/pdf":
        return b"%PDF-1.7\n" + rng.randbytes(max(0, size - 9))
    words = [FILE_WORDS[int(rng.random() * len(FILE_WORDS))] for _ in range(max(1, size // 7))]
    if content_type == "text/csv":
        return "\r\n".join(",".join(words[i:i + 4]) for i in range(0, len(words), 4)).encode()
    if content_type == "application/json":
        return ("[" + ",".join(f'{{"item":"{word}","n":{n}}}' for n, word in enumerate(words)) + "]").encode()
    return " ".join(words).encode()


def _blob_rows(world: _World, storage: LocalStorage) -> Iterator[dict[str, Any]]:
    """Each blob's bytes are stored before its row is yielded: a row never names missing bytes."""
    rng = world.rng
    kinds = [(content_type, extension) for content_type, extension, weight in BLOB_KINDS for _ in range(weight)]
    start = world.files.time(0)
    for _ in range(world.plan.blobs):
        content_type, extension = kinds[int(rng.random() * len(kinds))]
        size = 256 + int(rng.random() ** 3 * 16_000)
        sha256, stored = storage.put(_blob_bytes(rng, content_type, size))
        world.blobs.append(_Blob(sha256, stored, content_type, extension))
        yield {"sha256": sha256, "size": stored, "created_at": start}


def _file_rows(world: _World) -> Iterator[tuple[dict[str, Any], Entry]]:
    """Files with their ``file.uploaded`` events (as ``uow.files.store`` records them)."""
    rng, files, users, accounts = world.rng, world.files, world.users, world.accounts
    person_of = _people(users)
    for index in range(world.plan.files):
        fraction = index / files.count
        account = int(rng.random() * accounts.existing_at(fraction))
        choices = world.uploaders[account]
        owner = choices[int(rng.random() * len(choices))]
        blob = world.blobs[int(rng.random() ** 2 * len(world.blobs))]
        file_id, account_id, person = files.ident(index), accounts.ident(account), person_of(owner)
        created_us = files.micros(index)
        created = _EPOCH + dt.timedelta(microseconds=created_us)
        words = f"{FILE_WORDS[int(rng.random() * len(FILE_WORDS))]}-{FILE_WORDS[int(rng.random() * len(FILE_WORDS))]}"
        row = {
            "id": file_id, "account_id": account_id, "owner_id": users.ident(owner),
            "filename": f"{words}-{index}.{blob.extension}", "content_type": blob.content_type,
            "declared_type": blob.content_type, "size": blob.size, "sha256": blob.sha256, "created_at": created,
            "updated_at": created,
        }
        data = {"file_id": str(file_id), "account_id": str(account_id), "size": blob.size,
                "content_type": blob.content_type, "user_id": person.id}
        yield row, _event(world, "file.uploaded", created_us, person=person, entity=("file", str(file_id)), data=data)


@dataclass(frozen=True, slots=True)
class _Person:
    """What every event of one user repeats: the user's id as text, IP address and browser."""

    id: str
    ip: str
    user_agent: str


def _people(users: _Sequence) -> Callable[[int], _Person]:
    """User number → ``_Person``, cached (bounded: memory stays flat however many users there are)."""

    @functools.lru_cache(maxsize=1 << 16)
    def person(user: int) -> _Person:
        return _Person(str(users.ident(user)), f"10.{user >> 16 & 255}.{user >> 8 & 255}.{user & 255}",
                       USER_AGENTS[user % len(USER_AGENTS)])

    return person


def _event(world: _World, action: str, micros: int, *, person: _Person, entity: tuple[str, str],
           data: dict[str, Any]) -> Entry:
    """An activity event by ``person`` (a login has no actor yet)."""
    getrandbits = world.rng.getrandbits
    return Entry(  # positional, in Entry's field order: id, created_at, kind, action, entity, actor, ip, ...
        _uuid7(micros // 1000, getrandbits(74)), _EPOCH + dt.timedelta(microseconds=micros), "event", action,
        entity[0], entity[1], None if action in LOGIN_ACTIONS else person.id, person.ip, person.user_agent,
        f"s{world.options.seed}-{getrandbits(64):016x}", None, data,
    )


def _event_rows(world: _World) -> Iterator[Entry]:
    rng, events, users, files = world.rng, world.events, world.users, world.files
    person_of, random = _people(users), rng.random
    activity = ACTIVITY if world.plan.files else tuple(pair for pair in ACTIVITY if pair[0] != "file.downloaded")
    action_of = _weighted(rng, activity)
    for index in range(world.plan.events):
        micros, fraction = events.micros(index), index / events.count
        person, action = person_of(int(random() * users.existing_at(fraction))), action_of()
        entity: tuple[str, str] = ("user", person.id)
        data: dict[str, Any]
        if action == "login.success":
            data = {"user_id": person.id}
        elif action == "file.downloaded":
            file_id = str(files.ident(int(random() * files.existing_at(fraction))))
            entity, data = ("file", file_id), {"file_id": file_id, "user_id": person.id}
        else:
            data = _activity_data(rng, action, micros)
            data["user_id"] = person.id
            if action.startswith("token."):
                entity = ("user_token", str(world.other_id("token", index, micros)))
        yield _event(world, action, micros, person=person, entity=entity, data=data)


def _activity_data(rng: random.Random, action: str, micros: int) -> dict[str, Any]:
    moment = _EPOCH + dt.timedelta(microseconds=micros)
    if action == "login.failure":
        return {"reason": "bad_password" if rng.random() < 0.9 else "unknown_email"}
    if action == "user.locked":
        return {"until": (moment + dt.timedelta(minutes=15)).isoformat(), "failures": 5}
    if action == "token.issued":
        purpose = TOKEN_PURPOSES[int(rng.random() * 2)]
        ttl = dt.timedelta(days=2) if purpose == "verify_email" else dt.timedelta(hours=1)
        return {"purpose": purpose, "expires_at": (moment + ttl).isoformat()}
    if action == "token.consumed":
        return {"purpose": TOKEN_PURPOSES[int(rng.random() * 2)]}
    if action == "password.changed":
        return {"via": "change" if rng.random() < 0.7 else "reset"}
    return {}


# --- writing -----------------------------------------------------------------------------------------------------


def generate(database: Database, options: GeneratorOptions | None = None, *,
             progress: Progress = SILENT) -> GenerationResult:
    """Generate sample data into ``database`` (migrated to the head); see the module docstring."""
    clock = time.perf_counter()
    options = check_options(options or GeneratorOptions())
    counts = plan(options)
    require_head(database)
    check_free_space(database, counts)
    world = _World.make(options, counts, lambda rng: _password_hash(database, rng))
    _refuse_existing(database, world)
    storage = storage_binding.writable_storage(database) if counts.blobs else storage_binding.local_storage(database)
    seconds: dict[str, float] = {}
    stages: list[tuple[str, int, Callable[[Advance], None]]] = [
        ("user", counts.users, lambda advance: _write(database, _user_rows(world), UserRepository, options, advance)),
        ("account", counts.accounts,
         lambda advance: _write(database, _account_rows(world), AccountRepository, options, advance)),
        ("membership", counts.memberships,
         lambda advance: _write(database, _membership_rows(world), MembershipRepository, options, advance)),
        ("file_blob", counts.blobs,
         lambda advance: _write(database, _blob_rows(world, storage), FileBlobRepository, options, advance)),
        ("file", counts.files, lambda advance: _write_files(database, world, advance)),
        ("audit_entry", counts.events, lambda advance: _write_events(database, world, advance)),
    ]
    for table, total, write in stages:
        started = time.perf_counter()
        label_total = total + counts.uploads if table == "audit_entry" else total
        with progress.track(table, total=label_total) as advance:
            if table == "audit_entry":
                advance(counts.uploads)  # written with their files
            write(advance)
        seconds[table] = seconds.get(table, 0.0) + time.perf_counter() - started
    elapsed = time.perf_counter() - clock
    return GenerationResult(counts.per_table(), seconds, counts.total, elapsed, options.seed)


BUILD_BATCH = BATCH_ROWS  # rows built and handed to the driver at a time: what memory holds, whatever the transaction


def _transactions(rows: Iterable[T], size: int) -> Iterator[Iterator[T]]:
    """``rows`` as consecutive runs of at most ``size``, each consumed lazily: nothing is built ahead."""
    iterator = iter(rows)
    for first in iterator:
        yield itertools.chain((first,), itertools.islice(iterator, size - 1))


def _write(database: Database, rows: Iterable[Mapping[str, Any]], repository: type[WriteRepository[Any]],
           options: GeneratorOptions, advance: Advance) -> None:
    for run in _transactions(rows, options.batch_size):
        with collector_paused(), database.unit_of_work(actor=GENERATOR_ACTOR) as uow:
            count = uow.repository(repository).create_many(run)  # streams in batches of 5,000
        advance(count)


def _write_files(database: Database, world: _World, advance: Advance) -> None:
    for run in _transactions(_file_rows(world), world.options.batch_size):
        with collector_paused(), database.unit_of_work(actor=GENERATOR_ACTOR) as uow:
            count = 0
            for batch in batched(run, BUILD_BATCH):
                count += uow.repository(FileRepository).create_many(row for row, _ in batch)
                append_entries(uow.session, [entry for _, entry in batch])
        advance(count)


def _write_events(database: Database, world: _World, advance: Advance) -> None:
    for run in _transactions(_event_rows(world), world.options.batch_size):
        with collector_paused(), database.unit_of_work(actor=GENERATOR_ACTOR) as uow:
            count = append_entries(uow.session, run, batch_size=BUILD_BATCH)
        advance(count)


def _password_hash(database: Database, rng: random.Random) -> str:
    """``SAMPLE_PASSWORD`` hashed once with the database's argon2 parameters and a salt drawn from the seed."""
    parameters = hasher(database.settings)
    return hash_secret(
        SAMPLE_PASSWORD.encode(), rng.randbytes(16), time_cost=parameters.time_cost,
        memory_cost=parameters.memory_cost, parallelism=parameters.parallelism, hash_len=parameters.hash_len,
        type=Type.ID,
    ).decode()


def has_seed(database: Database, seed: int) -> bool:
    """Whether ``database`` already holds sample users of ``seed`` (their e-mails carry it)."""
    pattern = f"%@s{seed}.%.example.com"
    with database.session() as session:
        return session.scalar(select(User.id).where(User.email_key.like(pattern)).limit(1)) is not None


def _refuse_existing(database: Database, world: _World) -> None:
    """Users of this seed already there: the same rows would clash half-way, so refuse now (e-mails carry the
    seed whatever the other options were)."""
    if has_seed(database, world.options.seed):
        raise Conflict(f"this database already holds sample data of seed {world.options.seed}: "
                       "use another --seed or a fresh database", entity="user")


if __name__ == "__main__":
    from db.cli import run_script

    run_script("generate")
