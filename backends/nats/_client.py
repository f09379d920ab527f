"""Connections to NATS, driven without a thread hop (default) or through the shared bridge.

``loop="per-thread"`` (default): each calling thread gets its own connection on its own loop and
drives it during the call (:mod:`msstore._internal.local_loops`); a blocking ``put`` costs what
an awaited one does. ``loop="shared"``: one connection on the process's bridge loop
(:mod:`msstore._internal.bridge`), one thread hop per call, one connection however many threads
call.
Watches always run on the bridge, since they deliver while the caller is elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import select
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Self, TypeVar

import attrs
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from msstore.coordination import ConsumerPlan, Handler, Subscription
from msstore.errors import ConnectionFailed, MsstoreError, NotFound
from msstore.ops import StreamFacts
from msstore.registry import redact_url
from msstore.spi import Bridge, LocalLoops, get_bridge, timed_out

from ._config import NatsConfig
from ._requests import Requests

__all__ = ["Conn", "NatsClient", "translate"]

T = TypeVar("T")
log = logging.getLogger("msstore.backends.nats")

# Per-message TTL (the Nats-TTL header, stream setting allow_msg_ttl) arrived in nats-server
# 2.11. Older servers accept the header and ignore it, so the version decides, never the header.
PER_KEY_TTL_SINCE = (2, 11)


class _InputProbe:
    """A connection's socket, polled without blocking (the poll object kept per socket)."""

    __slots__ = ("_fd", "_poller", "_sock")

    def __init__(self) -> None:
        self._sock: object = None
        self._fd = -1
        self._poller = select.poll()

    def has_input(self, nc: Client) -> bool:
        writer = getattr(nc._transport, "_io_writer", None)
        sock = writer.get_extra_info("socket") if writer is not None else None
        if sock is None:
            return False
        fd = sock.fileno()
        if fd < 0:  # closed under us (the server went away): let the loop see it
            return True
        if sock is not self._sock or fd != self._fd:  # a new socket after a reconnect
            self._poller = select.poll()
            self._poller.register(fd, select.POLLIN | select.POLLPRI)
            self._sock, self._fd = sock, fd
        return bool(self._poller.poll(0))


@attrs.frozen
class Conn:
    """One live connection and its JetStream context, bound to one event loop."""

    nc: Client
    js: JetStreamContext
    probe: _InputProbe = attrs.field(factory=_InputProbe, eq=False, repr=False)
    requests: Requests = attrs.field(
        default=attrs.Factory(lambda self: Requests(self.nc), takes_self=True),
        eq=False,
        repr=False,
    )


def translate(
    err: BaseException, *, what: str, write: bool, limit: float | None = None
) -> MsstoreError:
    """A driver error as the msstore error a caller should see (``limit``: the request
    timeout a timed-out request ran into, named in the message)."""
    if isinstance(err, MsstoreError):
        return err
    if isinstance(err, (nats.errors.TimeoutError, TimeoutError)):
        return timed_out(f"{what} (request timeout)", limit or 0.0, write=write)
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
    """Access to a NATS server (or cluster): connects at once, so a bad URL fails here.

    Reconnects by itself (forever by default): requests made while the server is away wait in
    nats-py's pending buffer and go out after the reconnect, or time out.
    """

    def __init__(self, config: NatsConfig | None = None, *, bridge: Bridge | None = None) -> None:
        self.config = config or NatsConfig()
        self.bridge = bridge or get_bridge()
        self._closing = False
        self._lock = threading.Lock()
        self._watch_conn: Conn | None = None
        self._shared: Conn | None = None
        self._pool: LocalLoops[Conn] | None = None
        open_timeout = self.config.connect_timeout * 3 + 5
        if self.config.loop == "per-thread":
            self._pool = LocalLoops(
                opener=self._open, closer=_close, has_input=_has_input, open_timeout=open_timeout
            )
            first = _translated(self._pool.first_state, what="connect")
        else:
            first = _translated(
                lambda: self.bridge.run(self._open(), timeout=open_timeout, what="connect"),
                what="connect",
            )
            self._shared = first
        self.server_info: dict[str, Any] = dict(first.nc._server_info)
        version = first.nc.connected_server_version
        self.server_version: tuple[int, int, int] = (version.major, version.minor, version.patch)

    def __repr__(self) -> str:
        return (
            f"NatsClient({self.config!r}, server={'.'.join(map(str, self.server_version))}, "
            f"loop={self.config.loop})"
        )

    @property
    def closing(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closing

    @property
    def servers(self) -> str:
        """The servers it connects to, passwords masked."""
        return ", ".join(redact_url(s) for s in self.config.servers)

    @property
    def supports_per_key_ttl(self) -> bool:
        """True if the server honours per-message TTLs (nats-server 2.11 and later)."""
        return self.server_version[:2] >= PER_KEY_TTL_SINCE

    def run(
        self,
        make: Callable[[Conn], Coroutine[Any, Any, T]],
        *,
        write: bool,
        what: str,
        timeout: float | None = None,
    ) -> T:
        """Run ``make(conn)`` on this thread's connection; translate whatever it raises."""
        limit = timeout or self.config.request_timeout + 1.0
        try:
            if self._pool is not None:
                return self._pool.run(make, timeout=limit, write=write, what=what)
            assert self._shared is not None
            return self.bridge.run(make(self._shared), timeout=limit, write=write, what=what)
        except MsstoreError:
            raise
        except Exception as err:
            raise translate(err, what=what, write=write, limit=self.config.request_timeout) from err

    def run_shared(self, make: Callable[[Conn], Coroutine[Any, Any, T]], *, what: str) -> T:
        """Run ``make(conn)`` on the bridge's connection (for watches, which outlive a call)."""
        with self._lock:
            if self._watch_conn is None:
                self._watch_conn = self._shared or _translated(
                    lambda: self.bridge.run(
                        self._open(), what="connect", timeout=self.config.connect_timeout * 3 + 5
                    ),
                    what="connect",
                )
        conn = self._watch_conn
        try:
            return self.bridge.run(make(conn), timeout=self.config.request_timeout + 1.0, what=what)
        except MsstoreError:
            raise
        except Exception as err:
            raise translate(err, what=what, write=False) from err

    async def _open(self) -> Conn:
        cfg = self.config

        seen: list[Exception] = []  # what went wrong while connecting: the cause to report
        refused: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

        async def on_error(err: Exception) -> None:
            seen.append(err)
            if _refusal(err) and not refused.done():
                refused.set_result(err)  # a wrong password or certificate: no retry helps
            log.warning("NATS error (%s): %s", self.servers, _masked(err))

        async def on_disconnect() -> None:
            if not self._closing:
                log.warning("NATS disconnected from %s; reconnecting", self.servers)

        async def on_reconnect() -> None:
            log.info("NATS reconnected to %s", self.servers)

        async def on_close() -> None:
            log.debug("NATS connection to %s closed", self.servers)

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
        if cfg.nkey_seed:
            options["nkeys_seed"] = cfg.nkey_seed
        if cfg.tls_cert or cfg.ca_cert:
            context = ssl.create_default_context(cafile=cfg.ca_cert or None)
            if cfg.tls_cert:
                context.load_cert_chain(cfg.tls_cert, cfg.tls_key or None)
            options["tls"] = context
        # nats-py retries the first connect as often as it would reconnect (forever here):
        # bound it by the connect timeout, and stop at once when the server refuses us.
        connecting = asyncio.ensure_future(nats.connect(**options))
        either: set[asyncio.Future[Any]] = {connecting, refused}
        await asyncio.wait(
            either,
            timeout=cfg.connect_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        cause: BaseException | None = None
        if connecting.done():
            cause = connecting.exception()
        else:
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
            cause = refused.result() if refused.done() else (seen[-1] if seen else TimeoutError())
        if cause is not None:
            if isinstance(cause, nats.errors.NoServersError) and seen:
                cause = seen[-1]
            what = str(_masked(cause)) or f"no answer within {cfg.connect_timeout:g} s"
            raise ConnectionFailed(
                f"cannot connect to NATS at {self.servers}: {type(cause).__name__}: {what}",
                hint="check that the server is up and the URL, credentials and TLS files are right",
            )
        nc = connecting.result()
        return Conn(nc, nc.jetstream(timeout=cfg.request_timeout))

    def open_subscription(self, handler: Handler, plan: ConsumerPlan) -> Subscription:
        """A JetStream pull consumer running ``handler`` on its own thread (what
        :func:`msstore.coordination.subscribe` calls, with a checked plan)."""
        from ._consumers import NatsSubscription  # noqa: PLC0415 - (it imports this module)

        return NatsSubscription(self, handler, plan).start()

    # -- health (msstore.ops.JetStreamProbe) ------------------------------------------------

    def ping(self) -> float:
        """Milliseconds of one round trip to the server (a PING answered by a PONG)."""

        async def go(conn: Conn) -> float:
            start = time.perf_counter()
            await conn.nc.flush(timeout=max(1, round(self.config.request_timeout)))
            return (time.perf_counter() - start) * 1000

        return self.run(go, write=False, what="ping NATS")

    def account(self) -> dict[str, int]:
        """The JetStream account's usage: ``memory`` and ``storage`` bytes, ``streams``,
        ``consumers`` (``ConnectionFailed`` when JetStream is not enabled)."""

        async def go(conn: Conn) -> dict[str, int]:
            info = await conn.js.account_info()
            return {
                "memory": info.memory,
                "storage": info.storage,
                "streams": info.streams,
                "consumers": info.consumers,
            }

        return self.run(go, write=False, what="JetStream account info")

    def streams(
        self, *, buckets: Sequence[str], streams: Sequence[str] | None
    ) -> list[StreamFacts]:
        """Facts of each bucket's stream (``KV_`` + prefix + bucket) and each stream
        (``streams=None``: every stream on the server), in one trip."""
        names = [f"KV_{self.config.bucket_prefix}{b}" for b in buckets]

        async def go(conn: Conn) -> list[StreamFacts]:
            wanted = list(names)
            if streams is None:
                wanted += [i.config.name for i in await conn.js.streams_info() if i.config.name]
            else:
                wanted += list(streams)
            facts = []
            for name in dict.fromkeys(wanted):
                start = time.perf_counter()
                try:
                    info = await conn.js.stream_info(name)
                except nats.js.errors.NotFoundError:
                    facts.append(StreamFacts(name=name, exists=False))
                    continue
                latency = (time.perf_counter() - start) * 1000
                replicas = info.config.num_replicas or 1
                peers = info.cluster.replicas if info.cluster and info.cluster.replicas else []
                current = 1 + sum(1 for p in peers if p.current and not p.offline)
                facts.append(
                    StreamFacts(
                        name=name,
                        exists=True,
                        replicas=replicas,
                        current=min(current, replicas),
                        messages=info.state.messages,
                        bytes=info.state.bytes,
                        latency_ms=latency,
                    )
                )
            return facts

        return self.run(go, write=False, what="JetStream stream info")

    def close(self) -> None:
        """Drain and close every connection. Idempotent."""
        if self._closing:
            return
        self._closing = True
        if self._pool is not None:
            self._pool.close()
        for conn in {id(c): c for c in (self._shared, self._watch_conn) if c}.values():
            try:
                self.bridge.run(_close(conn), timeout=5.0, what="close")
            except MsstoreError as err:
                log.info("NATS close of %s: %s", self.servers, err)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _refusal(err: BaseException) -> bool:
    """Whether a connect error is the server refusing us (credentials, TLS), not its absence."""
    if isinstance(err, ssl.SSLError):
        return True
    text = str(err).lower()
    return "authorization" in text or "authentication" in text or "permissions" in text


def _masked(err: BaseException) -> str:
    """An error's text with any URL in it shown without its password."""
    return " ".join(redact_url(word) if "://" in word else word for word in str(err).split())


def _has_input(conn: Conn) -> bool:
    """True if the connection's socket has unread input (data, or the server's goodbye)."""
    return conn.probe.has_input(conn.nc)


async def _close(conn: Conn) -> None:
    # Drain (flush buffered writes, let subscriptions finish) when there is a server to drain
    # to; a connection that is down or reconnecting is just closed. A few loop turns first: an
    # idle per-thread loop may not have seen its server go.
    for _ in range(4):
        await asyncio.sleep(0)
    if conn.nc.is_connected:
        await conn.nc.drain()
    elif not conn.nc.is_closed:
        await conn.nc.close()


def _translated(open_: Callable[[], Conn], *, what: str) -> Conn:
    try:
        return open_()
    except MsstoreError:
        raise
    except Exception as err:
        raise translate(err, what=what, write=False) from err
