"""Rich renderings shared by several commands: bar charts and the database overview."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.markup import escape

from db.cli.common import human_bytes, table

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from db.scripts.status_db import Overview

BAR = "█"
PARTS = " ▏▎▍▌▋▊▉"  # eighths of a block, for smooth bar ends


def bar_chart(title: str, points: Sequence[tuple[str, int]], *, width: int = 40) -> Table:
    """A horizontal bar chart: one row per label, the bar scaled to the largest value, the value at the end."""
    from rich.table import Table

    chart = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 1))
    chart.add_column("label", style="dim")
    chart.add_column("bar", style="cyan", no_wrap=True)
    chart.add_column("value", justify="right")
    largest = max((value for _, value in points), default=0)
    for label, value in points:
        chart.add_row(label, _bar(value, largest, width), f"{value:,}")
    return chart


def _bar(value: int, largest: int, width: int) -> str:
    if largest <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / largest * width * 8))
    return BAR * (eighths // 8) + PARTS[eighths % 8].strip()


def show_overview(console: Console, overview: Overview) -> None:
    state = "[green]head[/green]" if overview.revision == overview.head else f"[red]not head ({overview.head})[/red]"
    revision = overview.revision or "none"
    console.print(f"[bold]{overview.engine}[/bold] {escape(overview.url)}  revision {revision} {state}")
    counts: list[tuple[str, object]] = list(overview.counts.items())
    counts.append(("stored bytes", human_bytes(overview.stored_bytes)))
    console.print(table("Rows", ["what", "count"], counts, numeric=["count"]))
    if overview.signups:
        points = [(row.period, row.count) for row in overview.signups][-24:]
        console.print(bar_chart(f"Sign-ups per {overview.signup_bucket}", points))
    if overview.storage:
        console.print(table(
            "Storage per account (largest first)", ["account", "files", "bytes", "quota used"],
            [(row.slug, row.file_count, human_bytes(row.total_bytes), _share(row.total_bytes, row.quota_bytes))
             for row in overview.storage],
            numeric=["files", "bytes", "quota used"],
        ))
    chain = overview.chain
    if chain.ok:
        keyed = f", keyed (key id {chain.key_id})" if chain.key_id else ""
        console.print(f"audit chain [bold green]OK[/bold green]: {chain.checked:,} entries verified{keyed}")
    else:
        console.print(f"audit chain [bold red]BROKEN[/bold red]: {escape(chain.problem or '')}", soft_wrap=True)


def _share(used: int, quota: int) -> str:
    return f"{used / quota:.1%}" if quota else "-"
