"""Test support shipped with msstore, for its own suite and for yours.

* :class:`FakeClock`: Unix seconds that move only when a test moves them; every store that
  takes ``clock=`` accepts one.
* :func:`eventually`: wait for a condition with a deadline, instead of a guessed sleep.
* :mod:`msstore.testing.plugin`: real PostgreSQL and NATS servers as pytest fixtures (pytest
  loads it automatically once msstore is installed, entry point ``pytest11``).
* :mod:`msstore.testing.conformance`: the suites every store of a protocol passes; a
  third-party backend proves itself by subclassing them.
* :mod:`msstore.testing.proxy` (a TCP proxy that blackholes and heals) and
  :mod:`msstore.testing.foreign` (bytes written the way another client would).

Waiting on a store's own signals: a task queue's ``waiting`` counts the claims blocked in
``claim(wait=...)``, so ``eventually(lambda: queue.waiting)`` returns once a worker waits.
"""

from __future__ import annotations

from ._clock import T0, FakeClock
from ._waiting import eventually

__all__ = ["T0", "FakeClock", "eventually"]
