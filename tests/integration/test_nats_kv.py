"""The NATS backend against a real JetStream: each nats-py 2.16 trap the issue names, connection
failures, capability detection by server version, and the bridge's rules."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from msstore.backends.nats import BatchError, NatsClient, NatsConfig, NatsKV
from msstore.buckets import BucketConfig
from msstore.capabilities import Capability
from msstore.errors import ConnectionFailed, DuplicateKey, Unsupported, VersionConflict
from msstore.records import Operation
from msstore.testing import eventually

pytestmark = pytest.mark.nats


@pytest.fixture
def bucket(nats_client: NatsClient, msstore_unique_name: str) -> Iterator[NatsKV]:
    kv = NatsKV.open(nats_client, BucketConfig(name=msstore_unique_name, history=5))
    yield kv
    kv.destroy()


def raw(url: str, body: Any) -> Any:
    """Run ``body(js)`` on a separate raw nats-py connection: "another tool"."""
    import nats

    async def main() -> Any:
        nc = await nats.connect(url)
        try:
            return await body(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(main())


def test_limit_marker_after_ttl_reads_as_absent(
    msstore_nats_url: str, nats_client: NatsClient, msstore_unique_name: str
) -> None:
    name = msstore_unique_name

    async def make(js: Any) -> None:  # a bucket whose expiries leave server-placed markers
        kv = await js.create_key_value(bucket=name, history=1, limit_marker_ttl=5)
        await kv.create("short", b'"v"', msg_ttl=1)

    raw(msstore_nats_url, make)
    kv = NatsKV.open(nats_client, BucketConfig(name=name, history=1))
    try:
        eventually(lambda: kv.get("short") is None, timeout=30, what="the 1 s TTL running out")
        hist = kv.history("short")
        assert hist and hist[-1].operation is not Operation.PUT  # the marker is there ...
        assert kv.keys() == []  # ... and is not a live key
        kv.create("short", "again")  # creating over a marker works
        entry = kv.get("short")
        assert entry is not None and entry.value == "again"
    finally:
        kv.destroy()


def test_empty_values_round_trip_and_markers_are_not_values(
    bucket: NatsKV, msstore_nats_url: str
) -> None:
    values: tuple[object, ...] = ("", {}, [], 0, False, None)
    for value in values:
        bucket.put("e", value)
        entry = bucket.get("e")
        assert entry is not None and entry.value == value and type(entry.value) is type(value)
    stored = raw(msstore_nats_url, lambda js: _raw_get(js, bucket.name, "e"))
    assert stored == b"null"  # JSON on the wire, readable by any tool
    bucket.delete("e")
    assert bucket.get("e") is None  # the marker's empty payload is not an empty value


async def _raw_get(js: Any, name: str, key: str) -> bytes:
    kv = await js.key_value(name)
    return (await kv.get(key)).value  # type: ignore[no-any-return]


def test_cas_delete_with_wrong_revision_is_a_version_conflict(bucket: NatsKV) -> None:
    rev = bucket.put("k", 1)
    bucket.put("k", 2)
    with pytest.raises(VersionConflict) as info:
        bucket.delete("k", expected_revision=rev)  # nats-py raises a raw BadRequestError here
    assert info.value.current == rev + 1
    with pytest.raises(VersionConflict):
        bucket.purge("k", expected_revision=rev)
    entry = bucket.get("k")
    assert entry is not None and entry.value == 2


def test_empty_bucket_lists_nothing(bucket: NatsKV) -> None:
    assert bucket.keys() == []  # nats-py raises NoKeysError
    assert bucket.keys("a.*") == []
    assert bucket.history("absent") == []  # likewise


def test_key_filters_are_subject_wildcards_not_substrings(bucket: NatsKV) -> None:
    for key in ("agent.a1.state", "xagent.a1.state", "agent.a1.statex", "agent.a1.state.old"):
        bucket.put(key, 1)
    assert bucket.keys("agent.a1.state") == ["agent.a1.state"]
    assert bucket.keys("agent.*.state") == ["agent.a1.state"]
    assert bucket.keys("agent.>") == ["agent.a1.state", "agent.a1.state.old", "agent.a1.statex"]


@pytest.mark.parametrize("ttl", [0.5, 0.001, 0])
def test_sub_second_ttls_are_refused(bucket: NatsKV, ttl: float) -> None:
    from msstore.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="at least 1 second"):
        bucket.put("t", 1, ttl=ttl)
    assert bucket.get("t") is None


def test_fractional_ttls_round_up(bucket: NatsKV) -> None:
    bucket.put("t", 1, ttl=1.2)  # lives 2 s, never shorter than asked
    entry = bucket.get("t")
    assert entry is not None and entry.expires_at is not None
    assert entry.expires_at - entry.created == pytest.approx(2, abs=0.01)


def test_existing_bucket_with_other_settings_is_opened_not_clobbered(
    msstore_nats_url: str,
    nats_client: NatsClient,
    msstore_unique_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = msstore_unique_name

    async def make(js: Any) -> None:
        kv = await js.create_key_value(bucket=name, history=3)
        await kv.put("kept", b'"from another tool"')

    raw(msstore_nats_url, make)
    with caplog.at_level(logging.WARNING, logger="msstore.backends.nats"):
        kv = NatsKV.open(nats_client, BucketConfig(name=name, history=5, ttl=60))
    try:
        assert any("history 3 (wanted 5)" in d for d in kv.differences)
        assert any("ttl" in d for d in kv.differences)
        assert "exists with other settings" in caplog.text
        assert kv.config.history == 3  # the server's settings rule
        entry = kv.get("kept")
        assert entry is not None and entry.value == "from another tool"
    finally:
        kv.destroy()


def test_missing_bucket_without_create_is_not_found(
    nats_client: NatsClient, msstore_unique_name: str
) -> None:
    from msstore.errors import NotFound

    with pytest.raises(NotFound, match="provision"):
        NatsKV.open(nats_client, BucketConfig(name=msstore_unique_name), create=False)


def test_old_server_never_claims_per_key_ttl(
    nats_client: NatsClient, msstore_unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Debian's nats-server 2.9.10 accepts a Nats-TTL header and silently ignores it.
    monkeypatch.setattr(nats_client, "server_version", (2, 9, 10))
    kv = NatsKV.open(nats_client, BucketConfig(name=msstore_unique_name))
    try:
        assert Capability.PER_KEY_TTL not in kv.capabilities
        with pytest.raises(Unsupported) as info:
            kv.put("k", 1, ttl=5)
        assert info.value.capability == "per_key_ttl"
        assert kv.get("k") is None
        kv.put("k", 1)  # everything else works
    finally:
        kv.destroy()


def test_create_races_resolve_to_one_winner(bucket: NatsKV) -> None:
    import threading

    winners: list[int] = []
    losers: list[BaseException] = []

    def create(i: int) -> None:
        try:
            bucket.create("race", i)
            winners.append(i)
        except DuplicateKey as err:
            losers.append(err)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(losers) == 5
    entry = bucket.get("race")
    assert entry is not None and entry.value == winners[0]


def test_connection_failure_names_server_without_password() -> None:
    from msstore.servers import free_port

    port = free_port()
    with pytest.raises(ConnectionFailed) as info:
        NatsClient(
            NatsConfig(
                servers=[f"nats://app:s3cret@127.0.0.1:{port}"],
                connect_timeout=0.5,
                max_reconnect_attempts=0,
            )
        )
    text = str(info.value)
    assert f"127.0.0.1:{port}" in text and "s3cret" not in text and "***" in text
    assert info.value.retryable


def test_batch_crosses_once_and_reports_per_key_errors(
    bucket: NatsKV, monkeypatch: pytest.MonkeyPatch
) -> None:
    crossings = 0
    original = bucket._client.run

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal crossings
        crossings += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(bucket._client, "run", counting)
    revs = bucket.put_many({f"b.{i}": i for i in range(300)})
    got = bucket.get_many([f"b.{i}" for i in range(300)])
    assert crossings == 2 and len(revs) == 300
    assert [got[f"b.{i}"].value for i in range(300)] == list(range(300))  # type: ignore[union-attr]

    real_publish = bucket._publish

    async def flaky(c: Any, key: str, raw_value: bytes, headers: Any) -> int:
        if key == "b.13":
            raise VersionConflict("injected", key=key)
        return await real_publish(c, key, raw_value, headers)

    monkeypatch.setattr(bucket, "_publish", flaky)
    with pytest.raises(BatchError) as info:
        bucket.put_many([("b.12", "x"), ("b.13", "y"), ("b.14", "z")])
    results = info.value.results
    assert isinstance(results[0], int) and isinstance(results[2], int)
    assert isinstance(results[1], VersionConflict)
    assert info.value.failed == ["b.13"]


def test_open_by_url(msstore_nats_url: str, msstore_unique_name: str) -> None:
    import msstore

    kv = msstore.open_kv(f"{msstore_nats_url}/{msstore_unique_name}?history=3&ttl=60")
    try:
        assert isinstance(kv, NatsKV)
        assert (kv.config.history, kv.config.ttl) == (3, 60)
        kv.put("u", {"ok": True})
        entry = kv.get("u")
        assert entry is not None and entry.value == {"ok": True}
    finally:
        kv.destroy()  # type: ignore[attr-defined]
        kv.close()


def test_interpreter_exit_closes_connections_cleanly(
    msstore_nats_url: str, msstore_unique_name: str, nats_client: NatsClient
) -> None:
    import subprocess
    import sys

    script = (
        "import msstore\n"
        f"kv = msstore.open_kv({msstore_nats_url + '/' + msstore_unique_name!r})\n"
        "kv.put('left.open', {'bye': True})\n"  # no close(): exit must tidy up
    )
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == ""
    kv = NatsKV.open(nats_client, BucketConfig(name=msstore_unique_name), create=False)
    try:
        entry = kv.get("left.open")
        assert entry is not None and entry.value == {"bye": True}
    finally:
        kv.destroy()
