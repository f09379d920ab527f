"""The PostgreSQL backend (work in progress: migrations so far). Needs ``msstore[postgres]``.

* :class:`Migrator` applies, rolls back and reports msstore's versioned migrations
  (``msstore migrate up|down|status``).
* :func:`dsn_from_env` builds a connection string from the reference ``PG_*`` variables.
"""

from __future__ import annotations

from ._config import dsn_from_env
from ._migrate import MigrationReport, MigrationStatus, Migrator

__all__ = ["MigrationReport", "MigrationStatus", "Migrator", "dsn_from_env"]
