"""The PostgreSQL backend (in progress: migrations, transactions). Needs ``msstore[postgres]``.

* :class:`Migrator` applies, rolls back and reports msstore's versioned migrations
  (``msstore migrate up|down|status``).
* :func:`transaction` runs a function in one transaction at an isolation level, retrying
  serialization failures, deadlocks and lost connections.
* :func:`dsn_from_env` builds a connection string from the reference ``PG_*`` variables.
"""

from __future__ import annotations

from ._config import dsn_from_env
from ._migrate import MigrationReport, MigrationStatus, Migrator
from ._tx import Isolation, classify, transaction

__all__ = [
    "Isolation",
    "MigrationReport",
    "MigrationStatus",
    "Migrator",
    "classify",
    "dsn_from_env",
    "transaction",
]
