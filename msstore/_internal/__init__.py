"""msstore's own plumbing: TTL and option parsing, the sync/async bridge, per-thread loops.

Nothing here is public API; backends and the core import it.
"""

from __future__ import annotations

__all__: list[str] = []
