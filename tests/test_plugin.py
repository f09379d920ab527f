"""The pytest plugin: servers that cannot start fail the tests that need them, never skip."""

from __future__ import annotations

import pytest


def test_unstartable_nats_fails_not_skips(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MSSTORE_TEST_NATS_URL", raising=False)
    pytester.makeconftest("""
        import msstore.embedded as e
        def broken(self, *, timeout=30.0):
            raise e.ServerStartError("nats-server exited with code 1 while starting")
        e.EmbeddedNats.start = broken
    """)
    pytester.makepyfile("""
        def test_needs_nats(msstore_nats_url):
            pass
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*could not start the embedded NATS server*"])


def test_unstartable_postgres_fails_not_skips(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MSSTORE_TEST_PG_DSN", raising=False)
    pytester.makeconftest("""
        import msstore.embedded as e
        def broken(self, *, timeout=60.0):
            raise e.ServerStartError("initdb failed (1): no space left on device")
        e.EmbeddedPostgres.start = broken
    """)
    pytester.makepyfile("""
        def test_needs_pg(msstore_postgres_dsn):
            pass
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*could not start the embedded PostgreSQL*no space left*"])


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
