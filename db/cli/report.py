"""``python -m db report NAME``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from db.cli.app import app
from db.cli.common import UrlOption, console, opened, table
from db.errors import ValidationError

if TYPE_CHECKING:
    from db.services.report_catalogue import ReportResult

DEFAULT_DAYS = 30
MAX_DAYS = 36_500  # a century: any longer range is a typo


class Format(enum.StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _when(value: str | None) -> dt.datetime | None:
    """An ISO date or date-time; without a zone it is UTC."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO date such as 2026-01-31 or 2026-01-31T12:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@app.command("report")
def report(
    name: Annotated[str | None, typer.Argument(help="The report; see --list.")] = None,
    url: UrlOption = None,
    start: Annotated[str | None, typer.Option(help="Start of the range (ISO date; default: --days before --end).")]
    = None,
    end: Annotated[str | None, typer.Option(help="End of the range, excluded (default: now).")] = None,
    days: Annotated[int | None, typer.Option(
        min=1, max=MAX_DAYS, help="Length of the default range, in days (default: 30).")]
    = None,
    bucket: Annotated[str | None, typer.Option(help="day, week or month (per-period reports).")] = None,
    kind: Annotated[str | None, typer.Option(help="event or change (audit reports).")] = None,
    limit: Annotated[int | None, typer.Option(help="How many rows (top_uploaders).")] = None,
    by: Annotated[str | None, typer.Option(help="bytes or files (top_uploaders).")] = None,
    account: Annotated[str | None, typer.Option(help="An account id (storage_by_content_type, top_uploaders).")]
    = None,
    output: Annotated[Format, typer.Option("--format", help="How to print the rows.")] = Format.table,
    save: Annotated[bool, typer.Option("--save", help="Store the run in report_run.")] = False,
    listing: Annotated[bool, typer.Option("--list", help="List the reports and their parameters.")] = False,
) -> None:
    """Run a report; per-period reports also draw a chart. Example: report signups --days 90 --bucket week."""
    from db.scripts.report_db import run_report

    if listing or name is None:
        _list_reports()
        return
    given = {"bucket": bucket, "kind": kind, "limit": limit, "by": by, "account_id": account}
    parameters = _parameters(name, given, _when(start), _when(end), days)
    with opened(url) as database:
        result = run_report(database, name, save=save, **parameters)
    _show(result, output)


def _parameters(name: str, given: dict[str, Any], start: dt.datetime | None, end: dt.datetime | None,
                days: int | None) -> dict[str, Any]:
    """What the user gave, plus a default range for reports that take one; an option the report lacks is an error."""
    from db.services.reports import ReportService

    takes = ReportService.report(name).parameters  # ValidationError naming the reports, for an unknown name
    parameters = {key: value for key, value in given.items() if value is not None}
    if "start" in takes:
        end = end or dt.datetime.now(dt.UTC)
        parameters.update(start=start or _days_before(end, days or DEFAULT_DAYS), end=end)
    elif start or end or days is not None:
        raise ValidationError(f"report {name} takes no time range")
    return parameters


def _days_before(end: dt.datetime, days: int) -> dt.datetime:
    try:
        return end - dt.timedelta(days=days)
    except OverflowError:
        raise ValidationError(f"--days {days} before --end reaches before the year 1: give --start",
                              field="days", rule="range") from None


def _list_reports() -> None:
    from db.scripts.report_db import available

    rows = [(report.name, ", ".join(report.parameters) or "-", report.description) for report in available()]
    console().print(table("Reports", ["name", "parameters", "description"], rows))


def _show(result: ReportResult[Any], output: Format) -> None:
    from db.cli.render import bar_chart
    from db.scripts.report_db import PERIODIC

    out = console()
    if output is Format.csv:
        out.print(result.to_csv(), end="", markup=False, soft_wrap=True)
        return
    if output is Format.json:
        out.print(result.to_json(), markup=False, soft_wrap=True)
        return
    names = [field.name for field in dataclasses.fields(result.row_type)]
    rows = [[getattr(row, field) for field in names] for row in result.rows]
    numeric = [field.name for field in dataclasses.fields(result.row_type) if field.type in ("int", int)]
    title = f"{result.name} ({result.row_count} rows, {result.duration_ms:.0f} ms)"
    out.print(table(title, names, rows, numeric=numeric))
    if result.name in PERIODIC and result.rows:
        value = names[1]  # the first count after the period
        out.print(bar_chart(f"{result.name}: {value} per {result.parameters.get('bucket')}",
                            [(row.period, getattr(row, value)) for row in result.rows]))
    if result.run_id is not None:
        out.print(f"saved as run {result.run_id}")
