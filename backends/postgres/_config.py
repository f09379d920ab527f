"""PostgreSQL connection settings from the ``PG_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping

from msstore.errors import InvalidArgument

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "check_dsn", "dsn_from_env"]

DEFAULT_CONNECT_TIMEOUT = 5  # seconds: an unreachable server fails this fast, not a pool's 30 s

_ENV = {
    "PG_HOST": "host",
    "PG_PORT": "port",
    "PG_DATABASE": "dbname",
    "PG_USER": "user",
    "PG_PASSWORD": "password",
    "PG_APP_NAME": "application_name",
    "PG_SSL_ROOT_CERT": "sslrootcert",
    "PG_CONNECT_TIMEOUT": "connect_timeout",
}


def dsn_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The PostgreSQL server msstore's environment names: ``MSSTORE_PG_DSN`` (a whole
    connection string) when set, else a libpq connection string from ``PG_HOST``,
    ``PG_PORT``, ``PG_DATABASE``, ``PG_USER``, ``PG_PASSWORD``, ``PG_APP_NAME``,
    ``PG_SSL_ROOT_CERT`` and ``PG_CONNECT_TIMEOUT`` (``PG_STATEMENT_TIMEOUT``, in
    milliseconds, becomes a session ``statement_timeout``)."""
    from psycopg.conninfo import make_conninfo  # noqa: PLC0415

    env = os.environ if environ is None else environ
    if env.get("MSSTORE_PG_DSN"):
        return env["MSSTORE_PG_DSN"]
    params: dict[str, str] = {key: env[var] for var, key in _ENV.items() if env.get(var)}
    for var in ("PG_PORT", "PG_CONNECT_TIMEOUT", "PG_STATEMENT_TIMEOUT"):
        if env.get(var) and not env[var].isdigit():
            raise InvalidArgument(f"{var} must be a whole number, got {env[var]!r}")
    if env.get("PG_SSL_ROOT_CERT"):
        params.setdefault("sslmode", "verify-full")
    if env.get("PG_STATEMENT_TIMEOUT"):
        params["options"] = f"-c statement_timeout={env['PG_STATEMENT_TIMEOUT']}"
    if not params:
        raise InvalidArgument(
            "no PostgreSQL server named: set MSSTORE_PG_DSN (e.g. postgresql://user@host/db), "
            "or PG_HOST, PG_DATABASE, PG_USER (and PG_PASSWORD, PG_PORT ...)"
        )
    return make_conninfo(**params)


def check_dsn(dsn: object, *, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> str:
    """``dsn`` checked (a libpq key=value string or a ``postgresql://`` URL; anything else is an
    ``InvalidArgument`` saying so), with ``connect_timeout`` added where it names none."""
    from psycopg import ProgrammingError  # noqa: PLC0415
    from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: PLC0415

    from msstore.registry import redact_url  # noqa: PLC0415

    if not isinstance(dsn, str) or not dsn.strip():
        raise InvalidArgument(f"a PostgreSQL DSN must be a non-empty string, got {dsn!r}")
    scheme, sep, _ = dsn.partition("://")
    if sep and scheme not in ("postgresql", "postgres"):
        raise InvalidArgument(
            f"{redact_url(dsn)} is not a PostgreSQL DSN (scheme {scheme!r})",
            hint="use postgresql://user@host:5432/db or 'host=... dbname=...'",
        )
    try:
        params = conninfo_to_dict(dsn)
    except ProgrammingError as err:
        raise InvalidArgument(
            f"cannot read {redact_url(dsn) if sep else 'the DSN'} as a PostgreSQL DSN: "
            f"{str(err).strip().splitlines()[0]}",
            hint="use postgresql://user@host:5432/db or 'host=... dbname=...'",
        ) from None
    if params.get("connect_timeout"):
        return dsn
    if sep:  # keep the URL form (what repr and errors show, password redacted)
        return f"{dsn}{'&' if '?' in dsn else '?'}connect_timeout={connect_timeout}"
    return make_conninfo(dsn, connect_timeout=str(connect_timeout))
