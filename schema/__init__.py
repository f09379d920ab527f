"""msstore's versioned SQL migrations, shipped as package data (``msstore.schema``)."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

__all__ = ["migration_files"]


def migration_files() -> list[Traversable]:
    """The shipped ``NNNN_name.sql`` migration files, in version order."""
    return sorted(
        (f for f in files(__name__).iterdir() if f.name.endswith(".sql")), key=lambda f: f.name
    )
