"""Waiting for a condition in a test, with a deadline instead of a guessed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["eventually"]

T = TypeVar("T")


def eventually(
    check: Callable[[], T],
    *,
    timeout: float = 30.0,
    interval: float = 0.005,
    what: str | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``check`` until it returns a truthy value, and return that value.

    An ``AssertionError`` raised by ``check`` counts as "not yet", so ``check`` may assert; so
    do the exceptions of ``retry_on`` (say, ``ConnectionFailed`` while a server restarts).
    The pause between calls starts at ``interval`` and doubles up to 0.1 s, so a condition that
    holds soon is seen soon and a slow one does not spin. After ``timeout`` seconds
    ``AssertionError`` is raised, naming ``what`` (or ``check``) and carrying the last failure.
    The timeout is a ceiling for a busy machine, never an expectation: pick it generously.

    >>> eventually(lambda: 42)
    42
    """
    deadline = time.monotonic() + timeout
    pause = interval
    last: AssertionError | None = None
    while True:
        try:
            result = check()
        except AssertionError as err:
            last = err
        except retry_on as err:
            last = AssertionError(f"{type(err).__name__}: {err}")
        else:
            if result:
                return result
            last = None
        if time.monotonic() >= deadline:
            name = what or getattr(check, "__name__", repr(check))
            detail = f": {last}" if last is not None else ""
            raise AssertionError(f"{name} did not hold within {timeout:g} s{detail}") from last
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
