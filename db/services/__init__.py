"""Services: the layer's business operations, each over one unit of work's session.

A repository is data access for one entity; a service is what the application asks for (log in, grant a role,
store a file, run a report) and may use several repositories, the password hasher, the file store and the audit
trail to do it. Services never commit: the unit of work does. See ``ARCHITECTURE.md``.
"""

from db.services.base import EntityService, Service

__all__ = ["EntityService", "Service"]
