"""Users are data access (``UserRepository``) under business rules (``UserService``, ``uow.users``)."""

from __future__ import annotations

import inspect

from db.repositories.base_repository import WriteRepository
from db.repositories.user_repository import UserRepository
from db.repositories.user_token_repository import UserTokenRepository
from db.services.users import UserService


def test_the_user_repository_offers_no_upsert_or_get_or_create() -> None:
    for refused in ("upsert", "get_or_create"):
        assert not hasattr(UserRepository, refused)
        assert not hasattr(UserService, refused)


def test_the_user_repository_creates_from_plain_columns_with_the_inherited_signature() -> None:
    for method in ("create", "create_many", "update", "update_many"):
        ours, inherited = getattr(UserRepository, method), getattr(WriteRepository, method)
        assert inspect.signature(ours).parameters == inspect.signature(inherited).parameters, method
    assert "password" not in inspect.signature(UserRepository.create).parameters


def test_the_user_service_keeps_the_operations_callers_use() -> None:
    operations = ("create", "create_many", "update", "update_profile", "update_many", "delete", "set_active",
                  "unlock", "authenticate", "change_password", "reset_password", "require_password_reset",
                  "issue_token", "consume_token", "revoke_tokens", "stale_tokens", "delete_tokens", "get_by_email",
                  "get_by_username", "get_by_id", "get_many", "exists", "count", "list", "page")
    assert [name for name in operations if not callable(getattr(UserService, name, None))] == []
    assert list(inspect.signature(UserService.create).parameters) == ["self", "email", "password", "profile"]


def test_the_token_repository_has_no_generic_writes() -> None:
    assert not any(hasattr(UserTokenRepository, name) for name in ("create", "update", "delete", "upsert"))
