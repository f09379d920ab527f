"""Test support shipped with msstore: real-server fixtures and the backend conformance kit.

The fixtures live in :mod:`msstore.testing.plugin`, which pytest loads automatically once msstore
is installed (entry point ``pytest11``). The suites live in :mod:`msstore.testing.conformance`:
a third-party backend proves itself by subclassing them.
"""

__all__: list[str] = []
