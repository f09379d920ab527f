"""Run a check in a forked child: what each fork-safety test needs."""

from __future__ import annotations

import os
from collections.abc import Callable


def in_child(check: Callable[[], bool]) -> bool:
    """Fork, run ``check`` in the child and return its verdict (False if it raised)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: whatever threads the parent had do not exist here
        try:
            os.write(write, b"ok" if check() else b"bad")
        finally:
            os._exit(0)
    os.close(write)
    try:
        _, status = os.waitpid(pid, 0)
        return os.read(read, 10) == b"ok" and status == 0
    finally:
        os.close(read)
