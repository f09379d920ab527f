"""One nats-py connection, driven through the sync bridge, with errors translated to msstore's."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client

from msstore.bridge import Bridge, get_bridge
from msstore.errors import ConnectionFailed, MsstoreError, NotFound, OutcomeUnknown
from msstore.registry import redact_url

from ._config import NatsConfig

__all__ = ["NatsClient", "translate"]

T = TypeVar("T")
log = logging.getLogger("msstore.nats")

# Per-message TTL (the Nats-TTL header, stream setting allow_msg_ttl) arrived in nats-server
# 2.11. Older servers accept the header and ignore it, so the version decides, never the header.
PER_KEY_TTL_SINCE = (2, 11)


def translate(err: BaseException, *, what: str, write: bool) -> MsstoreError:  # noqa: PLR0911
    """A driver error as the msstore error a caller should see."""
    if isinstance(err, MsstoreError):
        return err
    if isinstance(err, (nats.errors.TimeoutError, TimeoutError)):
        if write:
            return OutcomeUnknown(
                f"{what}: no answer in time",
                hint="the write may still land; re-read before writing again",
            )
        return ConnectionFailed(
            f"{what}: no answer in time", hint="the NATS server may be down or overloaded"
        )
    if isinstance(err, nats.errors.NoRespondersError):
        return ConnectionFailed(
            f"{what}: no JetStream responder",
            hint="the bucket may not exist, or JetStream is unavailable",
        )
    if isinstance(err, nats.js.errors.NotFoundError):
        return NotFound(f"{what}: not found")
    if isinstance(
        err,
        (
            nats.errors.ConnectionClosedError,
            nats.errors.StaleConnectionError,
            nats.errors.OutboundBufferLimitError,
            nats.errors.NoServersError,
            ConnectionError,
            OSError,
        ),
    ):
        return ConnectionFailed(f"{what}: {type(err).__name__}: {err}")
    return MsstoreError(f"{what}: {type(err).__name__}: {err}")


class NatsClient:
    """A connection to a NATS server (or cluster), opened on the process's bridge.

    Reconnects by itself (forever by default): requests made while the server is away wait in
    nats-py's pending buffer and go out after the reconnect, or time out.
    """

    def __init__(self, config: NatsConfig | None = None, *, bridge: Bridge | None = None) -> None:
        self.config = config or NatsConfig()
        self.bridge = bridge or get_bridge()
        self._closing = False
        self.nc: Client = self.call(
            self._connect(),
            write=False,
            what="connect",
            timeout=self.config.connect_timeout * 3 + 1,
        )
        version = self.nc.connected_server_version
        self.server_version: tuple[int, int, int] = (version.major, version.minor, version.patch)
        self.jetstream = self.nc.jetstream(timeout=self.config.request_timeout)

    def __repr__(self) -> str:
        return f"NatsClient({self.config!r}, server={'.'.join(map(str, self.server_version))})"

    @property
    def servers(self) -> str:
        return ", ".join(redact_url(s) for s in self.config.servers)

    @property
    def supports_per_key_ttl(self) -> bool:
        return self.server_version[:2] >= PER_KEY_TTL_SINCE

    def call(
        self, coro: Coroutine[Any, Any, T], *, write: bool, what: str, timeout: float | None = None
    ) -> T:
        """Run ``coro`` on the bridge; translate whatever it raises."""
        try:
            return self.bridge.run(
                coro, timeout=timeout or self.config.request_timeout + 1.0, write=write, what=what
            )
        except MsstoreError:
            raise
        except Exception as err:
            raise translate(err, what=what, write=write) from err

    async def _connect(self) -> Client:
        cfg = self.config

        async def on_error(err: Exception) -> None:
            log.warning("NATS error (%s): %s", self.servers, err)

        async def on_disconnect() -> None:
            if self._closing:
                return
            log.warning("NATS disconnected from %s; reconnecting", self.servers)

        async def on_reconnect() -> None:
            log.info("NATS reconnected to %s", self.servers)

        async def on_close() -> None:
            log.info("NATS connection to %s closed", self.servers)

        options: dict[str, Any] = {
            "servers": list(cfg.servers),
            "name": cfg.name,
            "connect_timeout": cfg.connect_timeout,
            "reconnect_time_wait": cfg.reconnect_wait,
            "max_reconnect_attempts": cfg.max_reconnect_attempts,
            "allow_reconnect": True,
            "error_cb": on_error,
            "disconnected_cb": on_disconnect,
            "reconnected_cb": on_reconnect,
            "closed_cb": on_close,
        }
        if cfg.creds_file:
            options["user_credentials"] = cfg.creds_file
        if cfg.tls_cert or cfg.ca_cert:
            context = ssl.create_default_context(cafile=cfg.ca_cert or None)
            if cfg.tls_cert:
                context.load_cert_chain(cfg.tls_cert, cfg.tls_key or None)
            options["tls"] = context
        try:
            # nats-py retries the first connect as often as it would reconnect (forever here):
            # bound it, so a wrong URL fails fast and names the server.
            async with asyncio.timeout(cfg.connect_timeout * 2):
                return await nats.connect(**options)
        except Exception as err:
            raise ConnectionFailed(
                f"cannot connect to NATS at {self.servers}: {type(err).__name__}: {err}",
                hint="check that the server is up and the URL, credentials and TLS files are right",
            ) from None

    def close(self) -> None:
        """Drain and close the connection. Idempotent."""
        if self.nc.is_closed:
            return
        self._closing = True
        try:
            self.call(self.nc.drain(), write=False, what="close", timeout=5.0)
        except MsstoreError as err:
            log.info("NATS close of %s: %s", self.servers, err)
