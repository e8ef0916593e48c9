"""A programming error leaves a repository as it is; only what the database refused becomes a ``db.errors`` error.

A wrong call (a missing argument, an unknown keyword, a wrong container) and a bug inside the layer raise the same
exception from the fake and from every engine, never a ``ValidationError`` that would send the caller looking
for a bad value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from db import DatabaseError
from db.repositories import query_spec, values

WRONG_CALLS: dict[str, Callable[[Any], Any]] = {
    "update without its target": lambda repo: repo.update(),
    "get_by_id with a misspelt keyword": lambda repo: repo.get_by_id("x", includ_deleted=True),
    "list with a positional filter": lambda repo: repo.list({"name": "alpha"}),
    "page with a misspelt size": lambda repo: repo.page(sise=5),
    "upsert without match": lambda repo: repo.upsert({"name": "alpha"}),
    "delete_many without filters": lambda repo: repo.delete_many(),
    "get_or_create with a list of defaults": lambda repo: repo.get_or_create(defaults=[("quantity", 1)], name="a"),
    "get_or_create repeating a matched field": lambda repo: repo.get_or_create(defaults={"name": "b"}, name="a"),
    "create with positional values": lambda repo: repo.create("alpha"),
}


@pytest.mark.parametrize("call", WRONG_CALLS.values(), ids=WRONG_CALLS.keys())
def test_a_wrong_call_is_a_type_error_not_a_domain_error(widgets: Any, call: Callable[[Any], Any]) -> None:
    with pytest.raises(TypeError) as raised:
        call(widgets)
    assert not isinstance(raised.value, DatabaseError)
    assert widgets.count() == 0


class Bug(Exception):
    """Stands for any bug: an exception the layer does not expect."""


@pytest.mark.parametrize("raised", [TypeError("a bug"), ValueError("a bug"), KeyError("a bug"), Bug("a bug")],
                         ids=["TypeError", "ValueError", "KeyError", "other"])
def test_a_bug_inside_the_layer_leaves_unchanged(
    widgets: Any, monkeypatch: pytest.MonkeyPatch, raised: Exception
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise raised

    monkeypatch.setattr(query_spec, "parse_filters", broken)
    for call in (lambda: widgets.list(filters={"name": "alpha"}), lambda: widgets.count({"name": "alpha"}),
                 lambda: widgets.update_many({"name": "alpha"}, quantity=1)):
        with pytest.raises(type(raised)) as caught:
            call()
        assert caught.value is raised


def test_a_bug_in_a_value_rule_leaves_unchanged(widgets: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise AttributeError("a bug")

    monkeypatch.setattr(values, "stored", broken)
    with pytest.raises(AttributeError, match="a bug"):
        widgets.create(name="alpha")
    with pytest.raises(AttributeError, match="a bug"):
        widgets.upsert({"name": "alpha"}, match=["name"])
