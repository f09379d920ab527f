"""The lifecycle every store shares: open until ``close()``, a context manager, then refusing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, Self, TypeVar

import pytest

from msstore.errors import StoreClosed

__all__ = ["Closable", "check_closing"]


class Closable(Protocol):
    @property
    def closed(self) -> bool: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


S = TypeVar("S", bound=Closable)


def check_closing(make: Callable[[], S], use: Callable[[S], object]) -> None:
    """``make()`` gives an open store (``closed`` False); ``with`` hands back the store itself
    and closes it on the way out; after that ``closed`` is True, ``use(store)`` (which works
    while the store is open) raises ``StoreClosed``, and ``close()`` again is harmless."""
    store = make()
    assert store.closed is False
    with store as entered:
        assert entered is store
        use(store)
        assert store.closed is False
    assert store.closed is True
    with pytest.raises(StoreClosed):
        use(store)
    store.close()
    assert store.closed is True
