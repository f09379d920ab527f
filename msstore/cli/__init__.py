"""The ``msstore`` command line: demo, bench, migrate, provision."""

from __future__ import annotations

from ._main import main

__all__ = [
    "main",
]
