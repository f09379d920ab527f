"""Versioned SQL migrations: discovery, checksums and planning (no database here).

A migration is a file ``NNNN_name.sql`` (the *up* script) with an optional ``NNNN_name.down.sql``
beside it. Versions are the integer prefix, applied in ascending order; the history records
each as ``"N.0.0"`` (the history table's versions are ``x.y.z``). A file's SHA-256 is kept
when it is applied: a file changed after that is refused, since the database no longer matches
it. Directives in leading ``-- msstore:`` comment lines:

* ``-- msstore: requires-extension vector`` - skip, with a message, where the server cannot
  create that extension (the migration stays pending and applies once it can);
* ``-- msstore: type index`` - the history's migration type (schema, data, index, partition,
  function; default schema).

``{{name}}`` placeholders are filled from the migrator's parameters (``{{embedding_dim}}``,
default 1536); the checksum covers the file as written.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib.resources.abc import Traversable
from pathlib import Path

import attrs

from msstore.errors import InvalidArgument, MigrationError

__all__ = [
    "Applied",
    "Migration",
    "MigrationError",
    "discover",
    "plan_down",
    "plan_up",
    "render",
    "verify",
]

_NAME = re.compile(r"(?P<version>\d{4})_(?P<name>[a-z0-9_]+)(?P<down>\.down)?\.sql")
_DIRECTIVE = re.compile(r"--\s*msstore:\s*(?P<key>[a-z-]+)\s+(?P<value>\S+)\s*$")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
TYPES = ("schema", "data", "index", "partition", "function")
DEFAULT_PARAMETERS: Mapping[str, str] = {"embedding_dim": "1536"}
"""The migration placeholders' defaults (embedding_dim 1536)."""


@attrs.frozen
class Migration:
    """One migration file: its version, name, the SQL to apply and the SQL to roll it back
    (``None`` when it has none), and its checksum."""

    version: int
    name: str
    up_sql: str
    down_sql: str | None
    checksum: str
    requires_extensions: tuple[str, ...] = ()
    type: str = "schema"

    @property
    def label(self) -> str:
        """``0007_knowledge_vectors``: the version and the name."""
        return f"{self.version:04d}_{self.name}"

    @property
    def history_version(self) -> str:
        """The version as recorded in the migration history table."""
        return f"{self.version}.0.0"


@attrs.frozen
class Applied:
    """One row of the history: what was applied, under which checksum."""

    version: int
    name: str
    checksum: str


def _directives(sql: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in sql.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        m = _DIRECTIVE.match(stripped)
        if m:
            found.setdefault(m["key"], []).append(m["value"])
    return found


def discover(files: Iterable[Path | Traversable]) -> list[Migration]:
    """Migrations from files named ``NNNN_name.sql`` / ``NNNN_name.down.sql``, in order."""
    ups: dict[int, tuple[str, str]] = {}
    downs: dict[int, str] = {}
    for file in files:
        m = _NAME.fullmatch(file.name)
        if m is None:
            if file.name.endswith(".sql"):
                raise MigrationError(f"migration file {file.name!r} is not NNNN_name[.down].sql")
            continue
        version = int(m["version"])
        text = file.read_text(encoding="utf-8")
        if m["down"]:
            downs[version] = text
        elif version in ups:
            raise MigrationError(f"two migrations have version {version:04d}")
        else:
            ups[version] = (m["name"], text)
    orphans = set(downs) - set(ups)
    if orphans:
        raise MigrationError(f"down scripts without an up script: {sorted(orphans)}")
    migrations = []
    for version in sorted(ups):
        name, text = ups[version]
        directives = _directives(text)
        kind = (directives.get("type") or ["schema"])[0]
        if kind not in TYPES:
            raise MigrationError(f"{version:04d}_{name}: unknown migration type {kind!r}")
        migrations.append(
            Migration(
                version=version,
                name=name,
                up_sql=text,
                down_sql=downs.get(version),
                checksum=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                requires_extensions=tuple(directives.get("requires-extension", [])),
                type=kind,
            )
        )
    return migrations


def render(sql: str, parameters: Mapping[str, str]) -> str:
    """Fill ``{{name}}`` placeholders; an unknown one is an error, not an empty string."""

    def fill(m: re.Match[str]) -> str:
        if m[1] not in parameters:
            raise InvalidArgument(
                f"migration placeholder {{{{{m[1]}}}}} has no value",
                hint=f"known: {', '.join(sorted(parameters))}",
            )
        return parameters[m[1]]

    return _PLACEHOLDER.sub(fill, sql)


def verify(available: Sequence[Migration], applied: Sequence[Applied]) -> None:
    """Refuse a history that the files no longer describe (changed or missing files)."""
    by_version = {m.version: m for m in available}
    for row in applied:
        migration = by_version.get(row.version)
        if migration is None:
            raise MigrationError(
                f"migration {row.version:04d}_{row.name} is applied but its file is gone",
                hint="restore the file; applied migrations are never deleted",
            )
        if migration.checksum != row.checksum:
            raise MigrationError(
                f"{migration.label}.sql changed after it was applied (checksum "
                f"{row.checksum[:12]}... in the database, {migration.checksum[:12]}... on disk)",
                hint="never edit an applied migration: add a new one",
            )


def plan_up(
    available: Sequence[Migration], applied: Sequence[Applied], target: int | None = None
) -> list[Migration]:
    """The migrations to apply, in order, up to ``target`` (all when ``None``). A ``target``
    below the newest applied migration asks ``up`` for a downgrade: ``InvalidArgument``."""
    if target is not None:
        versions = [m.version for m in available]
        if type(target) is not int or target < 0:
            raise InvalidArgument(f"target must be an int >= 0 (a version), got {target!r}")
        if versions and target > max(versions):
            raise InvalidArgument(f"target {target} is past the newest migration ({max(versions)})")
    verify(available, applied)
    done = {row.version for row in applied}
    newest = max(done, default=0)
    if target is not None and target < newest:
        raise InvalidArgument(
            f"target {target} is below the newest applied migration ({newest}): up never "
            "rolls back",
            hint=f"to go back, run down (steps={sum(v > target for v in done)})",
        )
    return [
        m for m in available if m.version not in done and (target is None or m.version <= target)
    ]


def plan_down(
    available: Sequence[Migration], applied: Sequence[Applied], steps: int = 1
) -> list[Migration]:
    """The last ``steps`` applied migrations, newest first; each needs a down script."""
    if type(steps) is not int or steps < 1:
        raise InvalidArgument(f"steps must be an int >= 1, got {steps!r}")
    verify(available, applied)
    by_version = {m.version: m for m in available}
    chosen = [by_version[row.version] for row in sorted(applied, key=lambda r: -r.version)]
    chosen = chosen[:steps]
    missing = [m.label for m in chosen if m.down_sql is None]
    if missing:
        raise MigrationError(
            f"cannot roll back {', '.join(missing)}: no down script",
            hint="add NNNN_name.down.sql beside the migration",
        )
    return chosen
