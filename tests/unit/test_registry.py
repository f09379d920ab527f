from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult

import pytest

import msstore
from msstore.errors import InvalidArgument, Unsupported
from msstore.registry import known_schemes, redact_url, register_backend


def test_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(InvalidArgument, match=r"known schemes: .*memory"):
        msstore.open_kv("redis://localhost/bucket")


def test_open_memory_backends_by_url() -> None:
    kv = msstore.open_kv("memory://agents?history=5&ttl=60")
    assert kv.name == "agents"
    for i in range(7):
        kv.put("k", i)
    assert [e.value for e in kv.history("k")] == [2, 3, 4, 5, 6]
    table = msstore.open_storage("memory://state")
    assert table.store("k", 1).version == 1
    with pytest.raises(InvalidArgument, match="no option"):
        msstore.open_kv("memory://agents?histroy=5")
    with pytest.raises(InvalidArgument, match="history"):
        msstore.open_kv("memory://agents?history=65")
    with pytest.raises(InvalidArgument):
        msstore.open_kv("not a url")


class _Echo:
    def open_kv(self, url: SplitResult, options: Mapping[str, Any]) -> Any:
        return ("kv", url.netloc, dict(options))

    def open_storage(self, url: SplitResult, options: Mapping[str, Any]) -> Any:
        raise Unsupported("echo has no storage")

    def open_vector(self, url: SplitResult, options: Mapping[str, Any]) -> Any:
        raise Unsupported("echo has no vectors")


def test_register_backend_extends_schemes() -> None:
    register_backend("echo", _Echo)
    assert "echo" in known_schemes()
    assert msstore.open_kv("echo://host?a=1", b=2) == ("kv", "host", {"a": "1", "b": 2})  # type: ignore[comparison-overlap]
    with pytest.raises(Unsupported):
        msstore.open_storage("echo://host")


def test_unimportable_backend_is_unsupported() -> None:
    register_backend("ghost", "msstore_ghost_backend_not_installed:Backend")
    with pytest.raises(Unsupported, match="cannot be imported"):
        msstore.open_kv("ghost://x")


def test_passwords_are_redacted() -> None:
    assert redact_url("postgresql://app:s3cret@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact_url("nats://host:4222") == "nats://host:4222"
    assert redact_url("postgresql://app@db/x") == "postgresql://app@db/x"  # a user is no secret
    assert redact_url("nats://s3cret-token@host:4222") == "nats://***@host:4222"  # a token is
    assert redact_url("nats://agent:s3cret@host") == "nats://agent:***@host"
    assert (
        redact_url("postgresql://db/x?sslmode=verify-full&password=s3cret&sslpassword=k3y")
        == "postgresql://db/x?sslmode=verify-full&password=***&sslpassword=***"
    )
    assert redact_url("host=db password='a b' sslpassword=k3y") == (
        "host=db password=*** sslpassword=***"
    )


def test_postgres_urls_keep_their_libpq_parameters() -> None:
    pytest.importorskip("psycopg", reason="needs msstore[postgres]")
    from msstore.coordination import open_outbox

    url = "postgresql://app:s3cret@127.0.0.1:1/x?sslmode=verify-full&sslrootcert=/ca.pem"
    outbox = open_outbox(url, connect_timeout=1)
    try:
        shown = repr(outbox)
        assert "sslmode=verify-full" in shown and "sslrootcert=%2Fca.pem" in shown
        assert "s3cret" not in shown
    finally:
        outbox.close()
    with pytest.raises(InvalidArgument, match="no option"):
        open_outbox("postgresql://app@127.0.0.1:1/x?sslmod=verify-full")


def test_import_loads_no_driver() -> None:
    code = (
        "import msstore, msstore.registry, msstore.state._routing, sys; "
        "bad = {'psycopg', 'nats', 'numpy', 'psycopg_pool'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names_are_sorted() -> None:
    assert msstore.__all__ == sorted(msstore.__all__)
    for name in msstore.__all__:
        assert hasattr(msstore, name)
