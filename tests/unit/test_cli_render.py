"""The command line's tables and charts show data as it is."""

from __future__ import annotations

from rich.console import Console

from db.cli.common import human_bytes, table
from db.cli.render import bar_chart


def rendered(renderable: object, width: int = 60) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_a_cell_with_square_brackets_is_text_not_markup() -> None:
    out = rendered(table(None, ["file"], [("x] notes [bold].txt",), ("[/x] closing.txt",)]))
    assert "x] notes [bold].txt" in out and "[/x] closing.txt" in out


def test_long_ids_wrap_instead_of_being_cut() -> None:
    ident = "01a2208c-8d09-70a3-807f-1c2d3e4f5a6b"
    out = rendered(table(None, ["kind", "id"], [("blob", ident * 2)]), width=40)
    assert "…" not in out
    column = "".join(line.split("│")[2].strip() for line in out.splitlines() if line.count("│") == 3)
    assert column == ident * 2


def test_numbers_get_thousands_separators_and_bars_scale_to_the_largest() -> None:
    out = rendered(table(None, ["what", "count"], [("rows", 1234567)], numeric=["count"]))
    assert "1,234,567" in out
    chart = rendered(bar_chart("t", [("a", 10), ("b", 5), ("c", 0)], width=20)).splitlines()
    bars = {line.split()[0]: line.count("█") for line in chart if line.strip() and line.split()[0] in "abc"}
    assert bars == {"a": 20, "b": 10, "c": 0}
    assert human_bytes(1536) == "1.5 KiB" and human_bytes(12) == "12 B"
