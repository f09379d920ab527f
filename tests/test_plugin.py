"""The pytest plugin: servers that cannot start fail the tests that need them, never skip."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("server", "fixture", "env", "reason", "expected"),
    [
        (
            "EmbeddedNats",
            "msstore_nats_url",
            "MSSTORE_TEST_NATS_URL",
            "nats-server exited with code 1 while starting",
            "*could not start the embedded NATS*",
        ),
        (
            "EmbeddedPostgres",
            "msstore_postgres_dsn",
            "MSSTORE_TEST_PG_DSN",
            "initdb failed (1): no space left on device",
            "*could not start the embedded PostgreSQL*no space left*",
        ),
        (
            "EmbeddedNatsCluster",
            "msstore_nats_cluster",
            "MSSTORE_TEST_NATS_CLUSTER_URLS",
            "cluster node exited while starting",
            "*could not start the embedded 3-node NATS*",
        ),
    ],
)
def test_unstartable_server_fails_not_skips(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    server: str,
    fixture: str,
    env: str,
    reason: str,
    expected: str,
) -> None:
    monkeypatch.delenv(env, raising=False)
    pytester.makeconftest(f"""
        import msstore.servers._embedded as e
        def broken(self, *, timeout=30.0):
            raise e.ServerStartError({reason!r})
        e.{server}.start = broken
    """)
    pytester.makepyfile(f"""
        def test_needs_server({fixture}):
            pass
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([expected])


def test_external_servers_are_used_as_given(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSSTORE_TEST_PG_DSN", "postgresql://u:secret@db.invalid:5432/x")
    monkeypatch.setenv("MSSTORE_TEST_NATS_URL", "nats://nats.invalid:4222")
    pytester.makepyfile("""
        def test_urls(msstore_postgres_dsn, msstore_nats_url):
            assert msstore_postgres_dsn == "postgresql://u:secret@db.invalid:5432/x"
            assert msstore_nats_url == "nats://nats.invalid:4222"
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["msstore: postgres=postgresql://u:***@db.invalid:5432/x*"])
    assert "secret" not in result.stdout.str()
