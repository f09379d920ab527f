"""A KeyValueStore on a JetStream KV bucket, blocking, over nats-py's JetStream primitives.

Why not nats-py's ``KeyValue`` class: it hides the headers msstore needs (operation, markers,
timestamps, per-message TTL), ``put`` cannot take a TTL, ``delete`` does not return a revision,
``b""`` comes back as ``None``, ``keys()`` filters client-side and raises on an empty bucket, and a
CAS ``delete`` surfaces a raw ``BadRequestError``. Each operation here is one JetStream request:
publish with ``Nats-Expected-Last-Subject-Sequence`` for CAS, ``KV-Operation`` for markers,
``Nats-TTL`` for per-key TTL (servers 2.11+), and direct gets for reads. Listings, history and
watches use ordered consumers filtered on the server by subject wildcard.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, Final

import nats.errors
import nats.js.errors
import orjson
from nats.aio.msg import Msg
from nats.js import api

from msstore import keys as keygrammar
from msstore.buckets import BucketConfig
from msstore.capabilities import Capability
from msstore.codec import Codec
from msstore.errors import (
    BatchError,
    DuplicateKey,
    InvalidArgument,
    MsstoreError,
    NotFound,
    SerializationError,
    VersionConflict,
)
from msstore.protocols import ChangeFeed
from msstore.records import Entry, FeedState, Operation
from msstore.spi import KV_CAPABILITIES, KVBase, QueueWatcher, check_revision, stale_revision

from ._client import Conn, NatsClient, translate
from ._streams import compare, stream_config, wait_for_leader
from ._wire import (
    EXPECTED_LAST,
    KV_OP,
    ROLLUP,
    WRONG_LAST_SEQUENCE,
    decode_entry,
    drain,
    from_raw,
    ttl_headers,
)

__all__ = ["BatchError", "NatsKV"]

log = logging.getLogger("msstore.backends.nats")

NO_RESPONDERS_BACKOFF: Final = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, None)  # ~1 s, then give up


class NatsKV(KVBase, ChangeFeed):
    """A JetStream KV bucket as a :class:`~msstore.protocols.KeyValueStore`.

    Open with :meth:`open` (creates the bucket from ``config`` if missing; an existing bucket is
    used as it is and differences are logged and kept in ``differences``). ``capabilities``
    includes ``per_key_ttl`` only when the server is 2.11+ and the bucket allows message TTLs.
    """

    def __init__(
        self,
        client: NatsClient,
        config: BucketConfig,
        *,
        direct: bool,
        per_key_ttl: bool,
        differences: list[str],
        owns_client: bool,
    ) -> None:
        self._client = client
        self.config = config
        self._codec = Codec(max_value_bytes=config.max_value_bytes)
        self._stream = f"KV_{config.name}"
        self._pre = f"$KV.{config.name}."
        self._direct = direct
        self._owns_client = owns_client
        self.differences = differences
        caps = set(KV_CAPABILITIES)
        if per_key_ttl:
            caps.add(Capability.PER_KEY_TTL)
        self._caps = frozenset(caps)
        self._timeout = client.config.request_timeout
        self._watchers: list[QueueWatcher] = []

    # Opening ---------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        client: NatsClient,
        config: BucketConfig,
        *,
        create: bool = True,
        owns_client: bool = False,
    ) -> NatsKV:
        """Open bucket ``config.name``, creating it from ``config`` if it is missing."""
        return client.run(
            lambda c: cls._open(c, client, config, create, owns_client),
            write=True,
            what=f"open bucket {config.name}",
        )

    @classmethod
    async def _open(
        cls, c: Conn, client: NatsClient, config: BucketConfig, create: bool, owns_client: bool
    ) -> NatsKV:
        js = c.js
        stream = f"KV_{config.name}"
        try:
            info = await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            if not create:
                raise NotFound(
                    f"no KV bucket {config.name!r} on {client.servers}",
                    hint="create it (msstore provision) or open with create=True",
                ) from None
            info = await js.add_stream(stream_config(config, client))
            if config.replicas > 1:
                info = await wait_for_leader(js, stream, client.config.request_timeout)
            differences: list[str] = []
        else:
            differences = compare(config, info.config)
            if differences:
                log.warning(
                    "bucket %s exists with other settings (kept as they are): %s",
                    config.name,
                    "; ".join(differences),
                )
        sc = info.config
        actual = BucketConfig(
            name=config.name,
            history=sc.max_msgs_per_subject or 1,
            ttl=int(sc.max_age) if sc.max_age else None,
            max_value_bytes=sc.max_msg_size
            if sc.max_msg_size and sc.max_msg_size > 0
            else config.max_value_bytes,
            per_key_ttl=bool(sc.allow_msg_ttl) and client.supports_per_key_ttl,
            storage="memory" if sc.storage == api.StorageType.MEMORY else "file",
            replicas=sc.num_replicas or 1,
            compression=config.compression,
        )
        return cls(
            client,
            actual,
            # With more than one replica, every replica answers direct gets, followers
            # included, so a writer could read a state without its own last write and a CAS
            # loop would build on it. Replicated buckets read through the stream leader.
            direct=bool(sc.allow_direct) and (sc.num_replicas or 1) == 1,
            per_key_ttl=actual.per_key_ttl,
            differences=differences,
            owns_client=owns_client,
        )

    def __repr__(self) -> str:
        return f"NatsKV(name={self.name!r}, servers={self._client.servers})"

    async def _publish(self, c: Conn, key: str, raw: bytes, headers: dict[str, str] | None) -> int:
        for wait in NO_RESPONDERS_BACKOFF:
            try:
                msg = await c.requests.request(
                    self._pre + key, raw, timeout=self._timeout, headers=headers
                )
                break
            except nats.errors.NoRespondersError:
                # Nothing received the message, so sending it again cannot duplicate it. A new
                # replicated bucket's subjects take a moment to reach every server.
                if wait is None:
                    raise
                await asyncio.sleep(wait)
        ack = orjson.loads(msg.data)
        error = ack.get("error")
        if error is None:
            return int(ack["seq"])
        code = error.get("err_code")
        text = f"{error.get('description', 'JetStream error')} (err_code {code})"
        if code in WRONG_LAST_SEQUENCE:
            raise VersionConflict(f"{key!r}: {text}", key=key)
        if code == 10054 or ("maximum" in text and "size" in text):
            raise SerializationError(f"{key!r}: the server refused the value: {text}", key=key)
        raise MsstoreError(f"write of {key!r} to bucket {self.name} failed: {text}", key=key)

    def _entry(self, msg: Msg | Any, key: str | None = None) -> Entry:
        return decode_entry(msg, self.name, len(self._pre), self.config.ttl, key)

    async def _get(self, c: Conn, key: str, revision: int | None = None) -> Entry | None:
        if self._direct:
            if revision is None:
                subject, payload = f"$JS.API.DIRECT.GET.{self._stream}.{self._pre}{key}", b""
            else:
                subject = f"$JS.API.DIRECT.GET.{self._stream}"
                payload = orjson.dumps({"seq": revision})
            msg = await c.requests.request(subject, payload, timeout=self._timeout)
            status = (msg.headers or {}).get("Status")
            if status == "404":
                return None
            if status is not None:
                raise MsstoreError(
                    f"direct get of {key!r} failed with status {status}: "
                    f"{(msg.headers or {}).get('Description', '')}",
                    key=key,
                )
        else:
            try:
                raw_msg = await c.js.get_msg(
                    self._stream,
                    seq=revision,
                    subject=None if revision is not None else self._pre + key,
                )
            except nats.js.errors.NotFoundError:
                return None
            msg = from_raw(c, raw_msg)
        entry = self._entry(msg)
        if entry.key != key:
            return None
        return entry

    async def _leader_entries(self, c: Conn, subject_filter: str) -> list[Entry]:
        """The latest entry of each key under ``subject_filter``, as the stream leader has it.

        Consumers of a replicated stream may be served from a lagging follower, so a replicated
        bucket lists through the leader: its subject index, then a leader get per key.
        """
        info = await c.js.stream_info(self._stream, subjects_filter=subject_filter)
        subjects = sorted((info.state.subjects or {}) if info.state else {})
        keys = [s[len(self._pre) :] for s in subjects]
        found = await asyncio.gather(*(self._get(c, k) for k in keys))
        return [e for e in found if e is not None]

    async def _leader_history(self, c: Conn, key: str) -> list[Entry]:
        entries: list[Entry] = []
        seq = 1
        while True:
            try:
                raw_msg = await c.js.get_msg(
                    self._stream, seq=seq, subject=self._pre + key, next=True
                )
            except nats.js.errors.NotFoundError:
                return entries
            entries.append(self._entry(from_raw(c, raw_msg), key))
            seq = (raw_msg.seq or seq) + 1

    # KeyValueStore ---------------------------------------------------------------------------

    def get(self, key: str, *, revision: int | None = None) -> Entry | None:
        keygrammar.check_key(key)
        if revision is not None:
            self._require(Capability.HISTORY)
            if type(revision) is not int or revision < 1:
                raise InvalidArgument(f"revision must be an int >= 1, got {revision!r}")
        self._check_open()
        entry = self._client.run(
            lambda c: self._get(c, key, revision), write=False, what=f"get {key!r} from {self.name}"
        )
        if entry is None or (revision is None and entry.is_marker):
            return None
        return entry

    def put(self, key: str, value: Any, *, ttl: float | None = None) -> int:
        raw, seconds = self._prepare(key, value, ttl)
        headers = None if seconds is None else ttl_headers(seconds)
        return self._client.run(
            lambda c: self._publish(c, key, raw, headers),
            write=True,
            what=f"put {key!r} to {self.name}",
        )

    def _foreign_put(self, key: str, raw: bytes) -> int:
        """``raw`` published to ``key``'s subject, unchecked, as any NATS client could
        (:func:`msstore.testing.foreign.foreign_put`)."""
        keygrammar.check_key(key)
        self._check_open()
        return self._client.run(
            lambda c: self._publish(c, key, bytes(raw), None), write=True, what=f"put {key!r}"
        )

    def create(self, key: str, value: Any, *, ttl: float | None = None) -> int:
        raw, seconds = self._prepare(key, value, ttl, cas=True)
        return self._client.run(
            lambda c: self._create(c, key, raw, seconds),
            write=True,
            what=f"create {key!r} in {self.name}",
        )

    async def _create(self, c: Conn, key: str, raw: bytes, seconds: int | None) -> int:
        headers = {EXPECTED_LAST: "0"}
        if seconds is not None:
            headers.update(ttl_headers(seconds))
        try:
            return await self._publish(c, key, raw, headers)
        except VersionConflict:
            pass
        # The key has messages: creating is still right if the latest is a marker.
        latest = await self._get(c, key)
        if latest is None or latest.operation is Operation.PUT:
            rev = latest.revision if latest else None
            raise DuplicateKey(
                f"{key!r} already exists in {self.name} (revision {rev})",
                key=key,
                hint="use put() to overwrite or update() for CAS",
            )
        headers[EXPECTED_LAST] = str(latest.revision)
        try:
            return await self._publish(c, key, raw, headers)
        except VersionConflict:
            raise DuplicateKey(
                f"{key!r} was created concurrently in {self.name}",
                key=key,
                hint="use put() to overwrite or update() for CAS",
            ) from None

    def update(
        self, key: str, value: Any, *, expected_revision: int, ttl: float | None = None
    ) -> int:
        raw, seconds = self._prepare(key, value, ttl, cas=True, expected_revision=expected_revision)
        headers = {EXPECTED_LAST: str(expected_revision)}
        if seconds is not None:
            headers.update(ttl_headers(seconds))
        return self._client.run(
            lambda c: self._cas(c, key, raw, headers, expected_revision),
            write=True,
            what=f"update {key!r} in {self.name}",
        )

    async def _cas(
        self, c: Conn, key: str, raw: bytes, headers: dict[str, str], expected: int
    ) -> int:
        try:
            return await self._publish(c, key, raw, headers)
        except VersionConflict:
            raise stale_revision(key, expected, await self._latest_any(c, key)) from None

    async def _latest_any(self, c: Conn, key: str) -> int | None:
        try:
            entry = await self._get(c, key)
        except MsstoreError:
            return None
        return None if entry is None else entry.revision

    def _marker(self, key: str, op: Operation, expected_revision: int | None) -> int:
        keygrammar.check_key(key)
        headers = {KV_OP: op.value}
        if op is Operation.PURGE:
            headers[ROLLUP] = "sub"
        if expected_revision is not None:
            self._require(Capability.CAS)
            check_revision(expected_revision)
            headers[EXPECTED_LAST] = str(expected_revision)
            expected = expected_revision

            def make(c: Conn) -> Coroutine[Any, Any, int]:
                return self._cas(c, key, b"", headers, expected)
        else:

            def make(c: Conn) -> Coroutine[Any, Any, int]:
                return self._publish(c, key, b"", headers)

        self._check_open()
        return self._client.run(make, write=True, what=f"{op.value.lower()} {key!r} in {self.name}")

    def delete(self, key: str, *, expected_revision: int | None = None) -> int:
        return self._marker(key, Operation.DEL, expected_revision)

    def purge(self, key: str, *, expected_revision: int | None = None) -> int:
        self._require(Capability.PURGE)
        return self._marker(key, Operation.PURGE, expected_revision)

    async def _scan(
        self, c: Conn, filter_subject: str, *, last_per_subject: bool, headers_only: bool
    ) -> list[Msg]:
        """Every message an ordered consumer delivers for ``filter_subject``, until caught up."""
        js = c.js
        policy = api.DeliverPolicy.LAST_PER_SUBJECT if last_per_subject else api.DeliverPolicy.ALL
        sub = await js.subscribe(
            filter_subject,
            ordered_consumer=True,
            deliver_policy=policy,
            headers_only=headers_only,
            stream=self._stream,
        )
        return await drain(sub, timeout=self._timeout)

    def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]:
        self._check_listing(pattern, prefix)
        if pattern is not None:
            subject = self._pre + pattern
        elif prefix and prefix.endswith("."):
            subject = self._pre + prefix + ">"
        else:
            subject = self._pre + ">"
        entries = self._client.run(
            lambda c: self._latest_entries(c, subject),
            write=False,
            what=f"list keys of {self.name}",
        )
        now = _now()
        return sorted(
            e.key
            for e in entries
            if e.operation is Operation.PUT
            and (e.expires_at is None or e.expires_at > now)
            and (prefix is None or e.key.startswith(prefix))
        )

    async def _latest_entries(self, c: Conn, subject: str) -> list[Entry]:
        if self.config.replicas > 1:
            return await self._leader_entries(c, subject)
        msgs = await self._scan(c, subject, last_per_subject=True, headers_only=True)
        return [self._entry(m) for m in msgs]

    def history(self, key: str) -> list[Entry]:
        self._require(Capability.HISTORY)
        keygrammar.check_key(key)
        self._check_open()
        return self._client.run(
            lambda c: self._history(c, key), write=False, what=f"history of {key!r} in {self.name}"
        )

    async def _history(self, c: Conn, key: str) -> list[Entry]:
        if self.config.replicas > 1:
            return await self._leader_history(c, key)
        msgs = await self._scan(c, self._pre + key, last_per_subject=False, headers_only=False)
        return [self._entry(m, key) for m in msgs]

    def watch(self, pattern: str = ">", *, include_history: bool = False) -> QueueWatcher:
        self._require(Capability.WATCH)
        keygrammar.check_pattern(pattern)
        self._check_open()
        subscription: list[Any] = []

        def unsubscribe(_: QueueWatcher) -> None:
            if subscription and not self._client._closing:
                sub = subscription.pop()
                try:
                    self._client.run_shared(lambda _: sub.unsubscribe(), what="stop watch")
                except MsstoreError as err:
                    log.info("stopping a watch on %s: %s", self.name, err)

        watcher = QueueWatcher(pattern, on_stop=unsubscribe)

        async def on_msg(msg: Msg) -> None:
            watcher.deliver(self._entry(msg))

        async def start(c: Conn) -> Any:
            policy = (
                api.DeliverPolicy.ALL if include_history else api.DeliverPolicy.LAST_PER_SUBJECT
            )
            return await c.js.subscribe(
                self._pre + pattern,
                cb=on_msg,
                ordered_consumer=True,
                deliver_policy=policy,
                stream=self._stream,
            )

        subscription.append(self._client.run_shared(start, what=f"watch {self.name}"))
        self._watchers.append(watcher)
        return watcher

    # ChangeFeed -------------------------------------------------------------------------------

    def feed_state(self) -> FeedState:
        self._check_open()

        async def state(c: Conn) -> FeedState:
            info = await c.js.stream_info(self._stream)
            created = info.created.isoformat() if info.created else "unknown"
            return FeedState(f"nats:{self._stream}:{created}", info.state.last_seq or 0)

        result: FeedState = self._client.run(state, write=False, what=f"state of {self.name}")
        return result

    def latest(self, key: str) -> Entry | None:
        keygrammar.check_key(key)
        self._check_open()
        entry: Entry | None = self._client.run(
            lambda c: self._get(c, key), write=False, what=f"get {key!r} from {self.name}"
        )
        return entry

    def latest_many(self, keys: Iterable[str]) -> dict[str, Entry | None]:
        wanted = self._check_keys(keys)

        async def batch(c: Conn) -> list[Entry | BaseException | None]:
            return await asyncio.gather(*(self._get(c, k) for k in wanted), return_exceptions=True)

        results = self._client.run(
            batch,
            write=False,
            what=f"get {len(wanted)} keys from {self.name}",
            timeout=self._timeout * 2 + 1,
        )
        entries = _batch_results(results, wanted, what="latest_many", write=False)
        return dict(zip(wanted, entries, strict=True))

    def changes(self, after: int, *, limit: int = 10_000) -> list[Entry]:
        if type(after) is not int or after < 0 or type(limit) is not int or limit < 1:
            raise InvalidArgument(f"changes needs after >= 0 and limit >= 1, got {after}, {limit}")
        self._check_open()

        async def replay(c: Conn) -> list[Entry]:
            stream = await c.js.stream_info(self._stream)
            if (stream.state.last_seq or 0) <= after or not stream.state.messages:
                return []
            sub = await c.js.subscribe(
                self._pre + ">",
                ordered_consumer=True,
                stream=self._stream,
                config=api.ConsumerConfig(
                    deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1
                ),
            )
            return [self._entry(m) for m in await drain(sub, timeout=self._timeout, limit=limit)]

        result: list[Entry] = self._client.run(
            replay, write=False, what=f"replay {self.name} after {after}"
        )
        return result

    def put_many(
        self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], *, ttl: float | None = None
    ) -> list[int]:
        encoded, seconds = self._prepare_batch(items, ttl)
        headers = None if seconds is None else ttl_headers(seconds)

        async def batch(c: Conn) -> list[int | BaseException]:
            return await asyncio.gather(
                *(self._publish(c, k, raw, headers) for k, raw in encoded), return_exceptions=True
            )

        results = self._client.run(
            batch,
            write=True,
            what=f"put {len(encoded)} keys to {self.name}",
            timeout=self._timeout * 2 + 1,
        )
        return _batch_results(results, [k for k, _ in encoded], what="put_many", write=True)

    def get_many(self, keys: Iterable[str]) -> dict[str, Entry | None]:
        return {
            k: (e if e is not None and not e.is_marker else None)
            for k, e in self.latest_many(keys).items()
        }

    def _release(self) -> None:
        for watcher in self._watchers:
            watcher.stop()
        self._watchers.clear()
        if self._owns_client:
            self._client.close()

    def destroy(self) -> None:
        """Delete the bucket and everything in it (tests and tooling)."""
        self._client.run(
            lambda c: c.js.delete_stream(self._stream),
            write=True,
            what=f"delete bucket {self.name}",
        )


def _now() -> float:
    return datetime.datetime.now(datetime.UTC).timestamp()


def _batch_results(results: list[Any], keys: list[str], *, what: str, write: bool) -> list[Any]:
    if not any(isinstance(r, BaseException) for r in results):
        return results
    mapped = [
        translate(r, what=f"{what} {k!r}", write=write) if isinstance(r, BaseException) else r
        for r, k in zip(results, keys, strict=True)
    ]
    failed = [k for k, r in zip(keys, mapped, strict=True) if isinstance(r, MsstoreError)]
    raise BatchError(
        f"{what}: {len(failed)} of {len(keys)} keys failed (first: {failed[0]!r}: "
        f"{next(r for r in mapped if isinstance(r, MsstoreError))})",
        results=mapped,
        failed=failed,
        hint="the other keys succeeded; see .results",
    )
