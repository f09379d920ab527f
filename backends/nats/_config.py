"""NATS connection settings: keyword arguments or the ``NATS_*`` environment variables."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Literal

import attrs

from msstore.errors import InvalidArgument
from msstore.registry import redact_url

__all__ = ["NatsConfig", "parse_size"]

_SIZE = re.compile(r"\s*(\d+)\s*([KMGT]?I?B?)?\s*", re.IGNORECASE)
_UNITS = {
    "": 1,
    "B": 1,
    "K": 1024,
    "KB": 1024,
    "KIB": 1024,
    "M": 1024**2,
    "MB": 1024**2,
    "MIB": 1024**2,
    "G": 1024**3,
    "GB": 1024**3,
    "GIB": 1024**3,
    "T": 1024**4,
    "TB": 1024**4,
    "TIB": 1024**4,
}


def parse_size(text: str) -> int:
    """``"1GB"`` -> 1073741824 (binary units)."""
    m = _SIZE.fullmatch(text)
    unit = (m.group(2) or "").upper() if m else None
    if m is None or unit not in _UNITS:
        raise InvalidArgument(f"cannot read {text!r} as a size (e.g. 512MB, 1GB)")
    return int(m.group(1)) * _UNITS[unit]


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not 0 < value < float("inf")
    ):
        raise InvalidArgument(
            f"{attribute.name} must be a finite number of seconds > 0, got {value!r}"
        )


def _whole(name: str, value: object, *, minimum: int, maximum: int | None = None) -> bool:
    if type(value) is not int or value < minimum or (maximum is not None and value > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise InvalidArgument(f"{name} must be an int {bound}, got {value!r}")
    return True


def _servers(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [s for s in value.split(",") if s.strip()]
    if not isinstance(value, (list, tuple)):
        raise InvalidArgument(
            f"servers must be a nats:// URL or a list of them, got {value!r}",
            hint="servers=['nats://127.0.0.1:4222'] (or NATS_SERVERS)",
        )
    servers = tuple(str(s).strip() for s in value)
    if not servers or not all(
        s.startswith(("nats://", "tls://", "ws://", "wss://")) for s in servers
    ):
        raise InvalidArgument(f"servers must be nats:// URLs, got {value!r}")
    return servers


@attrs.frozen(kw_only=True)
class NatsConfig:
    """How to reach NATS and what new buckets default to.

    ``request_timeout`` bounds every operation (a write past it raises ``OutcomeUnknown``).
    ``loop`` picks how blocking calls reach nats-py: ``"per-thread"`` (default) gives each
    calling thread its own connection, driven on that thread with no hop (raw nats-py speed);
    ``"shared"`` runs one connection on the process's bridge thread (one hop per call, ~0.6x of
    raw for single calls on a small VM, one connection however many threads).
    Credentials: a user and password or a token in the URL (``nats://user:pass@host``), an
    nkey seed file (``nkey_seed``) or a JWT creds file (``creds_file``); TLS: ``ca_cert`` (the
    server is verified against it, host name included) and, for client certificates,
    ``tls_cert`` and ``tls_key``. None of them is ever shown: the repr and every error mask the
    URL's password and name files only.
    ``bucket_prefix`` is prepended to bucket names (``NATS_KV_PREFIX``). The ``kv_*`` settings are
    defaults for buckets msstore creates: TTL, replicas and the bucket's size cap.
    """

    servers: tuple[str, ...] = attrs.field(default=("nats://127.0.0.1:4222",), converter=_servers)
    name: str = "msstore"
    creds_file: str | None = None
    nkey_seed: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    ca_cert: str | None = None
    connect_timeout: float = attrs.field(default=2.0, validator=_positive)
    request_timeout: float = attrs.field(default=5.0, validator=_positive)
    reconnect_wait: float = attrs.field(default=0.25, validator=_positive)
    max_reconnect_attempts: int = attrs.field(  # -1: forever, a restarted server is picked up
        default=-1, validator=lambda _, a, v: _whole(a.name, v, minimum=-1)
    )
    bucket_prefix: str = ""
    kv_ttl_minutes: int | None = attrs.field(
        default=None, validator=lambda _, a, v: v is None or _whole(a.name, v, minimum=1)
    )
    kv_replicas: int = attrs.field(
        default=1, validator=lambda _, a, v: _whole(a.name, v, minimum=1, maximum=5)
    )
    kv_max_bytes: int = attrs.field(
        default=-1, validator=lambda _, a, v: v == -1 or _whole(a.name, v, minimum=1)
    )
    loop: Literal["per-thread", "shared"] = attrs.field(default="per-thread")

    @loop.validator
    def _check_loop(self, _: object, value: str) -> None:
        if value not in ("per-thread", "shared"):
            raise InvalidArgument(f"loop must be 'per-thread' or 'shared', got {value!r}")

    def __repr__(self) -> str:
        shown = ", ".join(redact_url(s) for s in self.servers)
        return f"NatsConfig(servers=[{shown}], name={self.name!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> NatsConfig:
        """Read ``NATS_SERVERS``, ``NATS_CREDS_FILE``, ``NATS_NKEY_SEED``, ``NATS_TLS_CERT``,
        ``NATS_TLS_KEY``, ``NATS_CA_CERT``, ``NATS_KV_PREFIX``, ``NATS_KV_TTL_MINUTES``,
        ``NATS_KV_REPLICAS`` and ``NATS_KV_MAX_SIZE``; keyword arguments win over the
        environment."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if env.get("NATS_SERVERS"):
            values["servers"] = env["NATS_SERVERS"]
        for var, field in (
            ("NATS_CREDS_FILE", "creds_file"),
            ("NATS_NKEY_SEED", "nkey_seed"),
            ("NATS_TLS_CERT", "tls_cert"),
            ("NATS_TLS_KEY", "tls_key"),
            ("NATS_CA_CERT", "ca_cert"),
            ("NATS_KV_PREFIX", "bucket_prefix"),
        ):
            if env.get(var):
                values[field] = env[var]
        for var, field in (
            ("NATS_KV_TTL_MINUTES", "kv_ttl_minutes"),
            ("NATS_KV_REPLICAS", "kv_replicas"),
        ):
            if env.get(var):
                try:
                    values[field] = int(env[var])
                except ValueError:
                    raise InvalidArgument(f"{var} must be an integer, got {env[var]!r}") from None
        if env.get("NATS_KV_MAX_SIZE"):
            values["kv_max_bytes"] = parse_size(env["NATS_KV_MAX_SIZE"])
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
