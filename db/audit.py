"""The audit trail's mechanics: what repositories and session hooks call to record changes and events.

The models live in ``db/models/log_audit.py`` and the queries in ``db/repositories/audit_repository.py``.
Everything here writes in the caller's transaction: a change that rolls back leaves no entry.

Interface (stable; the implementation is being written):

- ``record_event(session, action, *, entity_type=None, entity_id=None, data=None, user_id=None)``: an activity
  event such as ``login.success``, ``login.failure``, ``user.locked``, ``token.issued``, ``token.consumed`` or a
  privileged operation ``admin.user.deactivate``. ``data`` must never hold a secret.
- ``actor_of(session)``: who acts in this unit of work (``Database.unit_of_work(actor=...)``), as stored.
- Changes to models with the ``db.models.base.Audited`` mixin are recorded automatically on flush; bulk paths
  call ``record_bulk``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session


def actor_of(session: Session) -> str | None:
    """The unit of work's actor as stored in the log: a user's id, or a label such as ``"system"``."""
    actor = session.info.get("actor")
    if actor is None:
        return None
    ident = getattr(actor, "id", actor)
    return str(ident)[:64]


def record_event(
    session: Session,
    action: str,
    *,
    entity_type: str | None = None,
    entity_id: Any = None,
    data: Mapping[str, Any] | None = None,
    user_id: Any = None,
) -> None:
    """Append an activity event to the audit log, in the session's transaction."""
    return None


def record_bulk(session: Session, table: str, action: str, ids: Sequence[Any], fields: Mapping[str, Any]) -> None:
    """Append one entry for a bulk create/update/delete of an audited model, listing the ids."""
    return None
