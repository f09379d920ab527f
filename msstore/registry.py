"""Open backends by URL scheme: ``memory://``, ``nats://``, ``postgresql://``, ``pgvector://``.

Built-in schemes map to modules that are imported only when first used, so ``import msstore``
pulls in no driver. A third-party package adds a scheme through the ``msstore.backends`` entry-point
group (``redis = "msstore_redis:RedisBackend"``) or at run time with :func:`register_backend`.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

from msstore.errors import InvalidArgument, Unsupported
from msstore.protocols import DataStorage, KeyValueStore, VectorIndex

__all__ = [
    "Backend",
    "known_schemes",
    "open_kv",
    "open_storage",
    "open_store",
    "open_vector",
    "redact_url",
    "register_backend",
]

ENTRY_POINT_GROUP = "msstore.backends"

# Built-in backends are found as third-party ones are: through the entry-point group (msstore's
# own pyproject lists memory, nats, tls, postgresql, postgres and pgvector), so there is one table.
_registered: dict[str, object] = {}
_loaded: dict[str, Backend] = {}
_lock = threading.Lock()


@runtime_checkable
class Backend(Protocol):
    """What a scheme's factory provides. A kind it cannot open raises ``Unsupported``.

    ``url`` is already split; ``options`` are the query parameters merged with keyword arguments
    (keywords win), all for the backend to validate.
    """

    def open_kv(self, url: SplitResult, options: Mapping[str, Any]) -> KeyValueStore:
        """The KV bucket ``url`` names (what :func:`msstore.open_kv` returns)."""
        ...

    def open_storage(self, url: SplitResult, options: Mapping[str, Any]) -> DataStorage:
        """The table store ``url`` names (what :func:`msstore.open_storage` returns)."""
        ...

    def open_vector(self, url: SplitResult, options: Mapping[str, Any]) -> VectorIndex:
        """The vector index ``url`` names (what :func:`msstore.open_vector` returns)."""
        ...


# The secrets a connection string can carry (libpq's password, sslpassword, OAuth secret and
# SCRAM keys): as key=value words and as URL query parameters.
_SECRET_KEYS = r"(?:password|sslpassword|oauth_client_secret|scram_client_key|scram_server_key)"
_KV_PASSWORD = re.compile(rf"(\b{_SECRET_KEYS}\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")
_QUERY_SECRET = re.compile(rf"((?:^|&){_SECRET_KEYS}=)[^&]*")
# A NATS URL's user part alone is a token (nats://TOKEN@host).
_TOKEN_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})


def redact_url(url: str) -> str:
    """``url`` with any password, token or key replaced by ``***``: the only form msstore logs
    or raises (a libpq ``key=value`` string's ``password`` and ``sslpassword`` too, a URL's
    ``?password=``, and a NATS URL's token)."""
    if "://" not in url:
        return _KV_PASSWORD.sub(r"\1***", url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.query:
        parts = parts._replace(query=_QUERY_SECRET.sub(r"\1***", parts.query))
    if "@" not in parts.netloc:
        return urlunsplit(parts)
    userinfo, host = parts.netloc.rsplit("@", 1)
    if parts.password is not None:
        userinfo = f"{userinfo.split(':', 1)[0]}:***"
    elif parts.scheme in _TOKEN_SCHEMES:
        userinfo = "***"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


def register_backend(scheme: str, factory: object) -> None:
    """Make ``scheme://`` open through ``factory``: a Backend, a class, or ``"module:attr"``."""
    if not scheme.isidentifier() and not scheme.replace("+", "").replace("-", "").isalnum():
        raise InvalidArgument(f"invalid URL scheme {scheme!r}")
    with _lock:
        _registered[scheme] = factory
        _loaded.pop(scheme, None)


def _entry_point_schemes() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_schemes() -> list[str]:
    """Every scheme that can be opened: built in, registered, or from entry points."""
    return sorted({*_registered, *_entry_point_schemes()})


def _resolve(target: object) -> Backend:
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
    elif hasattr(target, "load") and hasattr(target, "group"):  # an EntryPoint
        target = target.load()
    if isinstance(target, type):
        target = target()
    if not isinstance(target, Backend):
        raise InvalidArgument(f"{target!r} does not implement msstore.registry.Backend")
    return target


def _backend(scheme: str) -> Backend:
    with _lock:
        found = _loaded.get(scheme)
        if found is not None:
            return found
        target = _registered.get(scheme) or _entry_point_schemes().get(scheme)
        if target is None:
            raise InvalidArgument(
                f"no backend for scheme {scheme!r}; known schemes: {', '.join(known_schemes())}",
                hint="install the package that provides it or call register_backend()",
            )
        try:
            backend = _resolve(target)
        except ImportError as err:
            raise Unsupported(
                f"the {scheme}:// backend cannot be imported: {err}",
                capability=scheme,
                hint=f"pip install 'msstore[{scheme}]' or the package providing it",
            ) from err
        _loaded[scheme] = backend
        return backend


def _split(url: str, options: Mapping[str, Any]) -> tuple[Backend, SplitResult, dict[str, Any]]:
    if not isinstance(url, str) or "://" not in url:
        raise InvalidArgument(f"expected a URL such as memory://bucket, got {url!r}")
    try:
        parts = urlsplit(url)
    except ValueError as err:
        raise InvalidArgument(f"cannot parse URL {redact_url(url)}: {err}") from None
    merged: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
    merged.update(options)
    return _backend(parts.scheme), parts, merged


def open_kv(url: str, **options: Any) -> KeyValueStore:
    """Open the KV bucket ``url`` names, e.g. ``memory://agents?history=5&ttl=1800``."""
    backend, parts, merged = _split(url, options)
    return backend.open_kv(parts, merged)


def open_storage(url: str, **options: Any) -> DataStorage:
    """Open the table store ``url`` names, e.g. ``memory://state``."""
    backend, parts, merged = _split(url, options)
    return backend.open_storage(parts, merged)


def open_vector(url: str, **options: Any) -> VectorIndex:
    """Open the vector index ``url`` names, e.g. ``memory://facts?dim=384&metric=cosine``."""
    backend, parts, merged = _split(url, options)
    return backend.open_vector(parts, merged)


def open_store(kind: str, url: str, **options: Any) -> object:
    """Open what ``url`` names as a store of ``kind`` through the scheme's backend, which
    provides it as ``open_<kind>(url, options)`` (``Unsupported`` when it does not).

    The capability packages wrap this with a typed opener that checks what comes back
    (:func:`msstore.coordination.open_outbox`, :func:`~msstore.coordination.open_event_sink`);
    a third-party backend adds a kind by defining its ``open_<kind>``.
    """
    if type(kind) is not str or not kind.isidentifier():
        raise InvalidArgument(f"a store kind is an identifier such as 'outbox', got {kind!r}")
    backend, parts, merged = _split(url, options)
    opener = getattr(backend, f"open_{kind}", None)
    if not callable(opener):
        raise Unsupported(
            f"the {parts.scheme}:// backend has no {kind.replace('_', ' ')}",
            capability=kind,
            hint=f"schemes: {', '.join(known_schemes())}",
        )
    return opener(parts, merged)
