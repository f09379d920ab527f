"""Every code block of README.md and docs/ runs as written, page by page, in order.

A page's blocks run against servers of the page's own (a fresh database on the test PostgreSQL,
a fresh NATS JetStream), named to them as a reader names theirs: ``MSSTORE_PG_DSN`` and
``NATS_SERVERS``. ``python`` blocks run in-process, ``bash`` blocks in a shell, in a scratch
directory of the page's. An HTML comment on the line before a fence says otherwise:

* ``<!-- docs: continue -->``: the block goes on from the page's previous Python block (its
  names are still defined);
* ``<!-- docs: not-run: REASON -->``: the block is not run (output shown, a command that runs
  until Ctrl-C, an install); the reason is required.

Any other fence (no language, another language) without a not-run reason fails the page.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("docs/guide/*.md")])
RUNNABLE = ("python", "bash")
_FENCE = re.compile(r"^```(\S*)\s*$")
_MARK = re.compile(r"^<!-- docs: (continue|not-run: (.+?)) -->$")


@attrs.frozen
class Block:
    """One fenced block: where it starts, its language, its text and what its marker says."""

    page: Path
    line: int
    language: str
    code: str
    continues: bool = False
    not_run: str | None = None

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The page's fenced blocks, in order, with their markers."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        start, language = i, fence.group(1)
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        mark = _MARK.match(lines[start - 1].strip()) if start else None
        found.append(
            Block(
                page=page,
                line=start + 1,
                language=language,
                code="\n".join(body) + "\n",
                continues=mark is not None and mark.group(1) == "continue",
                not_run=None if mark is None else mark.group(2),
            )
        )
    return found


ALL = [b for page in PAGES for b in blocks(page)]


def test_every_block_runs_or_says_why_not() -> None:
    unclear = [b.where() for b in ALL if b.not_run is None and b.language not in RUNNABLE]
    assert not unclear, f"blocks that neither run nor say why: {unclear}"
    run = [b for b in ALL if b.not_run is None]
    skipped = [b for b in ALL if b.not_run is not None]
    print(f"\ndocs: {len(run)} blocks run, {len(skipped)} not run:")
    for b in skipped:
        print(f"  {b.where()}: {b.not_run}")


@pytest.fixture
def page_servers(
    msstore_postgres_dsn: str, msstore_unique_name: str, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """A fresh database on the test PostgreSQL and a NATS JetStream of the page's own (or the
    external test server), as the environment variables a reader sets."""
    import psycopg

    from msstore.servers import EmbeddedNats

    name = msstore_unique_name.lower()
    with psycopg.connect(msstore_postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = psycopg.conninfo.make_conninfo(msstore_postgres_dsn, dbname=name)
    external = os.environ.get("MSSTORE_TEST_NATS_URL")
    nats = None if external else EmbeddedNats().start()
    try:
        yield {"MSSTORE_PG_DSN": dsn, "NATS_SERVERS": external or (nats.url if nats else "")}
    finally:
        if nats is not None:
            nats.close()
        with psycopg.connect(msstore_postgres_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _run_bash(block: Block, env: dict[str, str], cwd: Path) -> None:
    scripts = str(Path(sys.executable).parent)
    shell_env = {**os.environ, **env, "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code],
        cwd=cwd,
        env=shell_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, (
        f"{block.where()} exited {done.returncode}\n{block.code}\n"
        f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )


@pytest.mark.postgres
@pytest.mark.nats
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_a_pages_blocks_run_in_order(
    page: Path, page_servers: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("PG_HOST", "PG_DATABASE", "PG_USER", "PG_PASSWORD", "PG_PORT"):
        monkeypatch.delenv(var, raising=False)
    for var, value in page_servers.items():
        monkeypatch.setenv(var, value)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    for block in blocks(page):
        if block.not_run is not None or block.language not in RUNNABLE:
            continue  # (a block that neither runs nor says why fails the test above)
        if block.language == "bash":
            _run_bash(block, page_servers, tmp_path)
            continue
        if not block.continues:
            namespace = {"__name__": "__main__"}
        try:
            exec(compile(block.code, block.where(), "exec"), namespace)  # our own docs' code
        except Exception as err:
            raise AssertionError(f"{block.where()} raised {err!r}\n{block.code}") from err


_HISTORY = re.compile(
    r"\bissues?\s*#?\d+|\bsections?\s+\d+(\.\d+)?|\breference design\b|\bthe reference's\b",
    re.IGNORECASE,
)


def test_pages_speak_to_users_not_to_the_projects_history() -> None:
    """No issue numbers and no sections of a design document the reader does not have."""
    pages = [*PAGES, ROOT / "schema" / "README.md"]
    found = [
        f"{page.relative_to(ROOT)}:{n}: {line.strip()}"
        for page in pages
        for n, line in enumerate(page.read_text().splitlines(), 1)
        if _HISTORY.search(line)
    ]
    assert not found, "\n".join(found)
