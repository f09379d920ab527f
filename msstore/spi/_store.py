"""The lifecycle every store shares: open until :meth:`StoreBase.close`, a context manager."""

from __future__ import annotations

import threading
from typing import Self

from msstore.errors import StoreClosed

__all__ = ["StoreBase"]


class StoreBase:
    """Open/closed bookkeeping and the context-manager protocol, for every kind of store.

    ``close()`` marks the store closed and calls :meth:`_release` once, however many times it
    is called and from however many threads; every later call that needs the store raises
    :class:`~msstore.errors.StoreClosed` (a subclass calls :meth:`_check_open` first).
    Implementers free their connections, threads and pools in :meth:`_release`.
    """

    _closed: bool = False
    _closing_lock = threading.Lock()  # (class-wide: taken only to close, so it is never hot)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _check_open(self) -> None:
        """Raise ``StoreClosed`` if the store was closed."""
        if self._closed:
            raise StoreClosed(f"{self!r} is closed", hint="open a new store")

    def close(self) -> None:
        """Release the store's resources; later calls raise ``StoreClosed``. Idempotent."""
        with StoreBase._closing_lock:
            if self._closed:
                return
            self._closed = True
        self._release()

    def _release(self) -> None:
        """Free what the store holds; called once, by the first :meth:`close`."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
