"""PostgreSQL connection settings from the reference design's environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping

from msstore.errors import InvalidArgument

__all__ = ["dsn_from_env"]

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
    """A libpq connection string from ``PG_HOST``, ``PG_PORT``, ``PG_DATABASE``, ``PG_USER``,
    ``PG_PASSWORD``, ``PG_APP_NAME``, ``PG_SSL_ROOT_CERT`` and ``PG_CONNECT_TIMEOUT``
    (``PG_STATEMENT_TIMEOUT``, in milliseconds, becomes a session ``statement_timeout``)."""
    from psycopg.conninfo import make_conninfo  # noqa: PLC0415

    env = os.environ if environ is None else environ
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
            "no PostgreSQL settings: pass a DSN or set PG_HOST, PG_DATABASE, "
            "PG_USER (and PG_PASSWORD, PG_PORT ...)"
        )
    return make_conninfo(**params)
