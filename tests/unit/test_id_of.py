"""``id_of``: the one way the layer reads "a saved entity or its id" from a caller."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from db.errors import ValidationError
from db.models.user import User
from db.repositories.values import id_of

KNOWN = uuid.UUID("0190f0d8-7d3a-7cc2-9a1e-5a1b2c3d4e5f")


@pytest.mark.parametrize("given", [KNOWN, str(KNOWN), SimpleNamespace(id=KNOWN)])
def test_an_id_or_an_object_carrying_one_gives_that_id(given: Any) -> None:
    assert id_of(given, "file") == KNOWN


@pytest.mark.parametrize("given", [None, 42, "not-a-uuid", b"\x00" * 16, SimpleNamespace(id="x")])
def test_anything_else_is_a_validation_error_naming_the_field(given: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        id_of(given, "account_id")
    assert refused.value.field == "account_id"


def test_an_entity_not_saved_yet_has_no_id_to_give_even_if_one_was_assigned() -> None:
    with pytest.raises(ValidationError, match="saved first"):
        id_of(User(id=KNOWN, email="ada@example.com"), "user")


@pytest.mark.parametrize("given", [KNOWN, str(KNOWN)])
def test_entity_only_refuses_a_bare_id(given: Any) -> None:
    with pytest.raises(ValidationError, match="saved entity"):
        id_of(given, "user_id", entity_only=True)
    assert id_of(SimpleNamespace(id=KNOWN), "user_id", entity_only=True) == KNOWN
