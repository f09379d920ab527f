"""The ``msstore`` command line (click)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from msstore import __version__
from msstore.bench import BENCHMARKS
from msstore.errors import InvalidArgument, MsstoreError

__all__ = ["main"]


class _Failed(click.ClickException):
    """One line on stderr, no traceback: exit 2 for bad input (as click does for bad options),
    1 for everything else (a server down, a refused migration)."""

    def __init__(self, err: Exception) -> None:
        super().__init__(" ".join(str(err).split()))
        self.bad_input = isinstance(err, InvalidArgument)

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return 2 if self.bad_input else 1


# Options several commands share, and the one way each names its server.
_DSN_OPTION = click.option(
    "--dsn",
    envvar="MSSTORE_PG_DSN",
    help="PostgreSQL connection string (default: MSSTORE_PG_DSN, else the PG_* variables).",
)
_NATS_OPTION = click.option(
    "--nats",
    "nats_url",
    envvar="NATS_SERVERS",
    help="NATS server URL, e.g. nats://127.0.0.1:4222 (default: NATS_SERVERS).",
)
_NO_DSN = (
    "no PostgreSQL server named: pass --dsn postgresql://user@host/db, or set MSSTORE_PG_DSN "
    "(or PG_HOST, PG_DATABASE, PG_USER ...)"
)
_NO_NATS = "no NATS server named: pass --nats nats://host:4222, or set NATS_SERVERS"


def _postgres(what: str) -> Any:
    """``msstore.backends.postgres``, or one line saying which extra brings it."""
    try:
        from msstore.backends import postgres  # noqa: PLC0415
    except ImportError as err:
        if not (err.name or "").startswith("psycopg"):
            raise
        raise click.ClickException(f"{what} needs psycopg: pip install 'msstore[all]'") from None
    return postgres


def _dsn(dsn: str | None, what: str = "this command") -> str:
    """The DSN from --dsn / MSSTORE_PG_DSN, else from the PG_* variables; exit 2 naming both
    when there is none."""
    if dsn:
        return dsn
    if not any(os.environ.get(var) for var in ("PG_HOST", "PG_DATABASE", "PG_USER")):
        raise click.UsageError(_NO_DSN)
    try:
        return str(_postgres(what).dsn_from_env())
    except MsstoreError as err:
        raise _Failed(err) from None


def _nats(nats_url: str | None) -> str:
    """The NATS URL from --nats / NATS_SERVERS; exit 2 naming both when there is none."""
    if not nats_url:
        raise click.UsageError(_NO_NATS)
    return nats_url


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="msstore")
def main() -> None:
    """msstore: persistence for AI agent state (NATS JetStream KV + PostgreSQL + pgvector)."""


@main.command()
@click.option("--agents", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option(
    "--writes",
    default=50,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="State writes per agent.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON only.")
@click.option(
    "--backend",
    type=click.Choice(["auto", "embedded", "memory"]),
    default="auto",
    show_default=True,
    help="embedded: NATS + PostgreSQL from the wheels (msstore[embedded]); auto: embedded "
    "when installed, else memory.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics while the demo runs.",
)
def demo(agents: int, writes: int, as_json: bool, backend: str, metrics_port: int | None) -> None:
    """Run a small multi-agent workload and print what happened."""
    import io  # noqa: PLC0415

    from msstore.cli import _demo as demo_module  # noqa: PLC0415

    if backend == "embedded" and not demo_module.embedded_available():
        raise click.UsageError("--backend embedded needs: pip install 'msstore[all]'")
    if metrics_port is not None:
        from msstore.ops import metrics as exporter  # noqa: PLC0415

        try:
            server = exporter.serve(metrics_port)
        except MsstoreError as err:
            raise _Failed(err) from None
        except OSError as err:
            raise click.ClickException(f"cannot listen on port {metrics_port}: {err}") from None
        click.echo(f"metrics on {server.url}", err=True)
    out = io.StringIO() if as_json else sys.stdout
    figures = demo_module.run(agents=agents, writes=writes, out=out, backend=backend)
    if as_json:
        click.echo(json.dumps(figures))


@main.command()
@click.option("--pg-port", type=click.IntRange(1, 65535), help="PostgreSQL's port (default: free).")
@click.option("--nats-port", type=click.IntRange(1, 65535), help="NATS's port (default: free).")
def servers(pg_port: int | None, nats_port: int | None) -> None:
    """Run throwaway PostgreSQL (with pgvector) and NATS JetStream servers until Ctrl-C, for
    trying msstore out: prints the two variables that point msstore at them. Their data lives in
    a temporary directory, deleted when they stop (and fsync is off: not for data you keep)."""
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from msstore.servers import EmbeddedNats, EmbeddedPostgres  # noqa: PLC0415

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with EmbeddedPostgres(port=pg_port) as pg, EmbeddedNats(port=nats_port) as nats:
            click.echo(f"export MSSTORE_PG_DSN='{pg.dsn}'")
            click.echo(f"export NATS_SERVERS='{nats.url}'", nl=True)
            sys.stdout.flush()
            click.echo(
                "servers running (paste the two lines above into your shell); Ctrl-C stops them "
                "and deletes their data",
                err=True,
            )
            while not stop.wait(1.0):
                for server in (pg, nats):
                    if not server.running:
                        raise click.ClickException(f"{server.name} stopped on its own")
    except MsstoreError as err:
        raise _Failed(err) from None
    click.echo("servers stopped", err=True)


@main.command()
@click.argument("name", type=click.Choice(sorted(BENCHMARKS)))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    help="Also write a PNG chart to this file (flush-thresholds; needs msstore[plot]).",
)
def bench(name: str, as_json: bool, plot: str | None) -> None:
    """Run benchmark NAME and print its figures (with their raw baselines)."""
    from msstore.bench import PLOTTABLE, load  # noqa: PLC0415

    if plot and name not in PLOTTABLE:
        raise click.UsageError(f"--plot works with {', '.join(PLOTTABLE)}, not {name}")
    try:
        figures = load(name)(plot=plot) if plot else load(name)()
    except MsstoreError as err:
        raise _Failed(err) from None
    if as_json:
        click.echo(json.dumps(figures))
    else:
        width = max(len(k) for k in figures)
        for key, value in figures.items():
            click.echo(f"{key:<{width}}  {value}")


@main.command()
@_NATS_OPTION
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="TOML or JSON file of buckets, streams and consumers (default: msstore's own).",
)
@click.option("--dry-run", is_flag=True, help="Report what would change; change nothing.")
def provision(nats_url: str | None, config_path: str | None, dry_run: bool) -> None:
    """Create the JetStream buckets, streams and consumers that are missing (idempotent)."""
    from msstore.coordination import _provisioning as provisioning  # noqa: PLC0415

    nats_url = _nats(nats_url)
    try:
        from msstore.backends.nats import NatsClient, NatsConfig  # noqa: PLC0415
        from msstore.backends.nats import provision as apply  # noqa: PLC0415

        config = provisioning.load(config_path) if config_path else provisioning.DEFAULT
        client = NatsClient(NatsConfig.from_env(servers=nats_url))
    except ImportError as err:
        if not (err.name or "").startswith("nats"):
            raise
        raise click.ClickException(
            "provisioning needs nats-py: pip install 'msstore[nats]'"
        ) from None
    except MsstoreError as err:
        raise _Failed(err) from None
    try:
        report = apply(client, config, dry_run=dry_run)
    except MsstoreError as err:
        raise _Failed(err) from None
    finally:
        client.close()
    for change in report:
        click.echo(str(change))
    acted = [c for c in report if c.action in ("created", "would create")]
    drift = [c for c in report if c.action == "differs"]
    if not acted and not drift:
        click.echo("nothing to change: every resource is already as configured")
    elif drift:
        click.echo(
            f"{len(drift)} resource(s) differ from the configuration and were left as they are"
        )


@main.command()
@click.argument("direction", type=click.Choice(["up", "down", "status"]))
@_DSN_OPTION
@click.option("--dry-run", is_flag=True, help="Say what would run; change nothing.")
@click.option(
    "--steps",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="How many migrations 'down' rolls back.",
)
@click.option("--target", type=click.IntRange(1), help="Apply 'up' only up to this version.")
@click.option(
    "--embedding-dim",
    default=1536,
    show_default=True,
    type=click.IntRange(1, 16000),
    help="Dimension of the knowledge-base embedding column.",
)
def migrate(  # noqa: PLR0917 - click passes every option positionally
    direction: str,
    dsn: str | None,
    dry_run: bool,
    steps: int,
    target: int | None,
    embedding_dim: int,
) -> None:
    """Apply (up), roll back (down) or list (status) the schema migrations."""
    postgres = _postgres("migrations")
    url = _dsn(dsn, "migrations")
    try:
        migrator = postgres.Migrator(url, embedding_dim=embedding_dim)
        if direction == "status":
            for row in migrator.status():
                click.echo(
                    f"{row.version:04d}_{row.name:<32} {row.state:<8} {row.applied_at or ''}"
                )
            return
        report = (
            migrator.up(target=target, dry_run=dry_run)
            if direction == "up"
            else migrator.down(steps=steps, dry_run=dry_run)
        )
    except MsstoreError as err:
        raise _Failed(err) from None
    verb = {"up": "applied", "down": "rolled back"}[direction]
    if dry_run:
        verb = f"would be {verb}"
    for label in report.done:
        click.echo(f"{verb}: {label}")
    for line in report.skipped:
        click.echo(f"skipped: {line}")
    if not report.done and not report.skipped:
        click.echo(
            "nothing to do: the database is up to date"
            if direction == "up"
            else "nothing to roll back"
        )


_TIMEOUT_OPTION = click.option(
    "--timeout",
    default=5,
    show_default=True,
    type=click.IntRange(2, 300),
    help="Connect timeout per server, seconds (libpq's least is 2).",
)


@main.command()
@_DSN_OPTION
@_NATS_OPTION
@click.option(
    "--bucket",
    "buckets",
    multiple=True,
    help="A KV bucket to check (repeatable).",
)
@click.option(
    "--stream",
    "streams",
    multiple=True,
    help="A stream to check (repeatable; default: every stream on the server).",
)
@_TIMEOUT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def health(  # noqa: PLR0917 - click passes every option positionally
    dsn: str | None,
    nats_url: str | None,
    buckets: tuple[str, ...],
    streams: tuple[str, ...],
    timeout: int,
    as_json: bool,
) -> None:
    """Check PostgreSQL (round trip; the outbox and the task queue) and NATS JetStream (ping,
    account, buckets and streams); exit 0 healthy, 1 degraded, 2 unhealthy."""
    import contextlib  # noqa: PLC0415

    from msstore import ops  # noqa: PLC0415

    with contextlib.ExitStack() as stack:
        servers = _Servers(stack, dsn, nats_url, timeout, what="msstore health")
        report = ops.health(buckets=buckets, streams=streams or None, **servers.checks())
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        for line in report.lines():
            click.echo(line)
    sys.exit(ops.EXIT_CODES[report.status])


class _Unreachable:
    """A JetStream probe for a server that could not be reached: every check fails with the
    connect error (so the relay's check knows it too)."""

    def __init__(self, err: MsstoreError) -> None:
        self.err = err

    def ping(self) -> float:
        raise self.err

    def account(self) -> dict[str, int]:
        raise self.err

    def streams(self, *, buckets: Any, streams: Any) -> list[Any]:
        raise self.err


class _Servers:
    """What `health` and `metrics serve` read, opened on ``stack``: a NATS client (or, when it
    cannot connect, a probe that reports why), and for PostgreSQL a health probe, the outbox and
    the task queue. Bad input exits 2; no server named at all is a usage error."""

    def __init__(
        self,
        stack: Any,
        dsn: str | None,
        nats_url: str | None,
        timeout: int,
        *,
        what: str,
        shared: bool = False,
    ) -> None:
        if not dsn and not nats_url and not os.environ.get("PG_HOST"):
            raise click.UsageError(f"{_NO_DSN}; or {_NO_NATS}")
        self.nats: Any = None
        self.probe = self.outbox = self.queue = None
        try:
            if nats_url:
                from msstore.backends.nats import NatsClient, NatsConfig  # noqa: PLC0415

                # shared: one connection, whichever thread asks (an exporter's scrapes)
                config = NatsConfig.from_env(
                    servers=nats_url,
                    connect_timeout=float(timeout),
                    loop="shared" if shared else "per-thread",
                )
                try:
                    self.nats = stack.enter_context(NatsClient(config))
                except MsstoreError as err:
                    # A health report says NATS is down; an exporter, which would never
                    # reconnect to it, exits 1.
                    if isinstance(err, InvalidArgument) or shared:
                        raise
                    self.nats = _Unreachable(err)
            if dsn or os.environ.get("PG_HOST"):
                postgres = _postgres(what)
                url = _dsn(dsn, what)
                self.probe = stack.enter_context(postgres.HealthProbe(url, connect_timeout=timeout))
                self.outbox = stack.enter_context(
                    postgres.PostgresOutbox(url, connect_timeout=timeout)
                )
                self.queue = stack.enter_context(
                    postgres.PostgresTaskQueue(url, connect_timeout=timeout)
                )
        except MsstoreError as err:
            raise _Failed(err) from None

    def checks(self) -> dict[str, Any]:
        """``msstore.ops.health``'s keyword arguments."""
        return {
            "postgres": self.probe,
            "nats": self.nats,
            "outbox": self.outbox,
            "queue": self.queue,
        }


@main.group()
def metrics() -> None:
    """Prometheus metrics (needs msstore[metrics])."""


@metrics.command("serve")
@_DSN_OPTION
@_NATS_OPTION
@click.option("--port", default=9464, show_default=True, type=click.IntRange(0, 65535))
@click.option("--addr", default="127.0.0.1", show_default=True, help="Address to listen on.")
@_TIMEOUT_OPTION
def metrics_serve(
    dsn: str | None, nats_url: str | None, port: int, addr: str, timeout: int
) -> None:
    """Serve /metrics until interrupted: the outbox, the task queue and the health checks of
    the PostgreSQL named, and the streams of the NATS named."""
    import contextlib  # noqa: PLC0415
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from msstore import ops  # noqa: PLC0415
    from msstore.ops import metrics as exporter  # noqa: PLC0415

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with contextlib.ExitStack() as stack:
        servers = _Servers(stack, dsn, nats_url, timeout, what="msstore metrics", shared=True)
        checks = servers.checks()
        try:
            server = exporter.serve(
                port,
                addr=addr,
                health=lambda: ops.health(**checks),
                **{k: v for k, v in checks.items() if k != "postgres" and v is not None},
            )
        except MsstoreError as err:
            raise _Failed(err) from None
        except OSError as err:
            raise click.ClickException(f"cannot listen on {addr}:{port}: {err}") from None
        click.echo(f"serving metrics on {server.url} (Ctrl-C to stop)", err=True)
        stop.wait()
        server.close()


@main.group()
def relay() -> None:
    """Publish the PostgreSQL outbox to NATS JetStream (run), report on it (status), put
    failed events back in line (retry-failed)."""


@relay.command("run")
@_DSN_OPTION
@_NATS_OPTION
@click.option("--once", is_flag=True, help="Publish what is waiting now, then exit.")
@click.option("--batch-size", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option(
    "--poll-interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.01, 3600),
    help="Seconds between looks when no notification comes.",
)
@click.option(
    "--keep-published",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(0, None),
    help="Seconds a published row is kept (0: deleted when published).",
)
def relay_run(  # noqa: PLR0917 - click passes every option positionally
    dsn: str | None,
    nats_url: str | None,
    once: bool,
    batch_size: int,
    poll_interval: float,
    keep_published: float,
) -> None:
    """Relay outbox events to their streams until interrupted (SIGINT/SIGTERM)."""
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from msstore.coordination import OutboxRelay  # noqa: PLC0415

    url, nats_url = _dsn(dsn, "the relay"), _nats(nats_url)
    stop = threading.Event()
    if not once:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    said = False
    while True:
        try:
            outbox = OutboxRelay.connect(
                dsn=url,
                nats_url=nats_url,
                keep_published=keep_published,
                batch_size=batch_size,
                poll_interval=poll_interval,
            )
            break
        except MsstoreError as err:
            # A service waits for its servers (events wait in the outbox meanwhile);
            # --once and bad input fail at once.
            if once or not err.retryable or stop.is_set():
                raise _Failed(err) from None
            if not said:
                click.echo(f"waiting for the servers: {' '.join(str(err).split())}", err=True)
                said = True
            stop.wait(1.0)
    with outbox:
        if once:
            total = failed = 0
            try:
                while True:
                    report = outbox.run_once()
                    total += report.published
                    failed += report.failed
                    if report.retried:
                        raise click.ClickException(
                            f"published {total}; {report.retried} event(s) wait: "
                            f"{report.retry_reason}"
                        )
                    if report.claimed < batch_size and not report.held_back:
                        break
                first = outbox.source.failures(limit=1) if failed else []
            except MsstoreError as err:
                raise _Failed(err) from None
            click.echo(f"published {total} event(s); {failed} set aside as failed")
            if first:  # exit 1: a script must notice events that did not go out
                raise click.ClickException(f"{failed} event(s) set aside as failed: {first[0][1]}")
            return
        click.echo(f"relaying outbox events to {nats_url} (Ctrl-C to stop)", err=True)
        outbox.run(stop)
        stats = outbox.stats()
        click.echo(
            f"stopped: published {stats['published']} (duplicates {stats['duplicates']}), "
            f"failed {stats['failed']}, waiting {stats['depth']}",
            err=True,
        )


@relay.command("status")
@_DSN_OPTION
@click.option(
    "--nats",
    "nats_url",
    envvar="NATS_SERVERS",
    help="Also check that NATS answers (default: NATS_SERVERS).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def relay_status(dsn: str | None, nats_url: str | None, as_json: bool) -> None:
    """Outbox depth, the oldest waiting event's age, failed rows and health (DEGRADED while
    events lag or sit failed; NATS checked with --nats); exits 1 when NATS cannot be reached."""
    import time  # noqa: PLC0415

    from msstore.coordination import relay_health  # noqa: PLC0415

    postgres = _postgres("the relay")
    url = _dsn(dsn, "the relay")
    try:
        with postgres.PostgresOutbox(url) as outbox:
            stats = outbox.stats()
            failures = outbox.failures(limit=5)
        reachable = True
        if nats_url:
            from msstore.backends.nats import JetStreamSink, NatsClient, NatsConfig  # noqa: PLC0415

            try:
                client = NatsClient(NatsConfig.from_env(servers=nats_url))
            except MsstoreError:
                reachable = False
            else:
                reachable = JetStreamSink(client, owns_client=True).reachable()
                client.close()
    except MsstoreError as err:
        raise _Failed(err) from None
    age = stats.oldest_age(time.time())
    health, reason = relay_health(
        oldest_age=age, reachable=reachable, window=1.0, failed=stats.failed
    )
    if not nats_url and health.value == "HEALTHY":
        reason += " (NATS not checked: pass --nats)"
    figures = {
        "depth": stats.depth,
        "oldest_age_s": age,
        "failed_rows": stats.failed,
        "health": health.value,
        "reason": reason,
        "nats_checked": bool(nats_url),
        "failures": [
            {"outbox_id": e.outbox_id, "subject": e.subject, "reason": r} for e, r in failures
        ],
    }
    if as_json:
        click.echo(json.dumps(figures))
    else:
        _print_status(stats.depth, age, stats.failed, health.value, reason)
        for event, why in failures:
            click.echo(f"  failed #{event.outbox_id} {event.subject[:60]}: {why}")
    if health.value == "UNHEALTHY":  # a monitor can act on the exit status
        sys.exit(1)


@relay.command("retry-failed")
@_DSN_OPTION
@click.option(
    "--id",
    "outbox_ids",
    multiple=True,
    type=click.IntRange(1),
    help="Only this outbox row (repeatable); default: every failed row.",
)
def relay_retry_failed(dsn: str | None, outbox_ids: tuple[int, ...]) -> None:
    """Put the events set aside as failed back in line (once their cause is fixed: a stream
    added with `msstore provision`, a limit raised); the relay publishes them next."""
    postgres = _postgres("the relay")
    url = _dsn(dsn, "the relay")
    try:
        with postgres.PostgresOutbox(url) as outbox:
            count = outbox.retry_failed(list(outbox_ids) if outbox_ids else None)
    except MsstoreError as err:
        raise _Failed(err) from None
    click.echo(f"{count} failed event(s) back in line")


def _print_status(depth: int, age: float | None, failed: int, health: str, reason: str) -> None:
    click.echo(f"waiting      {depth}")
    click.echo(f"oldest       {'-' if age is None else f'{age:.3f} s'}")
    click.echo(f"failed rows  {failed}")
    click.echo(f"health       {health} ({reason})")


@main.group()
def sagas() -> None:
    """The saga log: list sagas, show one, resume or compensate the ones a stopped process
    left (see docs/guide/sagas.md)."""


_SAGAS_OPTION = click.option(
    "--sagas",
    "definitions",
    required=True,
    metavar="MODULE:NAME",
    help="Where your saga definitions are: a module and a Saga or a list of them in it, "
    "e.g. myagents.flows:SAGAS.",
)
_STATUSES = ("running", "compensating", "completed", "rolled_back", "compensation_failed")


def _saga_log(dsn: str | None) -> Any:
    return _postgres("the saga log").PostgresSagaLog(_dsn(dsn, "the saga log"))


def _definitions(spec: str) -> list[Any]:
    """The sagas named by ``MODULE:NAME``; exit 2 in one line when it names none."""
    import importlib  # noqa: PLC0415

    from msstore.coordination import Saga  # noqa: PLC0415

    module, _, name = spec.partition(":")
    if not module or not name:
        raise click.BadParameter(f"expected MODULE:NAME, got {spec!r}", param_hint="--sagas")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise click.BadParameter(f"{spec}: {err}", param_hint="--sagas") from None
    if isinstance(found, Saga):
        found = [found]
    sagas_found = list(found) if isinstance(found, list | tuple) else []
    if not sagas_found or not all(isinstance(s, Saga) for s in sagas_found):
        raise click.BadParameter(f"{spec} is not a Saga or a list of them", param_hint="--sagas")
    return sagas_found


def _result_line(result: Any) -> str:
    line = f"{result.saga_id} {result.status.value}"
    if result.reason:
        line += f": {result.reason}"
    if result.steps_left:
        line += f" (left to compensate: {', '.join(result.steps_left)})"
    return line


@sagas.command("list")
@_DSN_OPTION
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(_STATUSES),
    help="Only sagas in this status (repeatable); default: all.",
)
@click.option("--limit", default=100, type=click.IntRange(1, 10_000), show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per saga.")
def sagas_list(dsn: str | None, statuses: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Sagas, oldest first: id, name, status, step and why it stopped; the ones waiting for a
    person (compensation_failed) with what is left to compensate."""
    from msstore.coordination import SagaRunner, SagaStatus  # noqa: PLC0415

    try:
        with _saga_log(dsn) as log:
            wanted = [SagaStatus(s) for s in statuses] or None
            runner = SagaRunner(log)
            for state in log.sagas(wanted, limit=limit):
                result = runner.result(state.saga_id)
                if as_json:
                    click.echo(
                        json.dumps(
                            {
                                "saga_id": state.saga_id,
                                "name": state.name,
                                "status": state.status.value,
                                "step": state.step,
                                "reason": state.reason,
                                "steps_left": list(result.steps_left),
                                "owner": state.owner,
                                "created_at": state.created_at,
                            }
                        )
                    )
                else:
                    click.echo(f"{state.name} step {state.step} {_result_line(result)}")
    except MsstoreError as err:
        raise _Failed(err) from None


@sagas.command("show")
@_DSN_OPTION
@click.argument("saga_id")
@click.option("--json", "as_json", is_flag=True, help="The saga and its steps as JSON.")
def sagas_show(dsn: str | None, saga_id: str, as_json: bool) -> None:
    """One saga: its row and every step outcome, in the order they were recorded."""
    try:
        with _saga_log(dsn) as log:
            loaded = log.load(saga_id)
            if loaded is None:
                raise click.BadParameter(f"no saga {saga_id}", param_hint="SAGA_ID")
            state, records = loaded
            steps = [
                {
                    "index": r.index,
                    "name": r.name,
                    "phase": r.phase.value,
                    "state": r.state.value,
                    "detail": r.detail,
                    "error": r.error,
                }
                for r in records
                if r.index >= 0
            ]
    except MsstoreError as err:
        raise _Failed(err) from None
    if as_json:
        head = {"saga_id": state.saga_id, "name": state.name, "status": state.status.value}
        click.echo(json.dumps({**head, "reason": state.reason, "steps": steps}, default=str))
        return
    click.echo(
        f"{state.name} {state.saga_id} {state.status.value}"
        + (f": {state.reason}" if state.reason else "")
    )
    for step in steps:
        error = f" ({step['error']})" if step["error"] else ""
        click.echo(f"  {step['index']} {step['name']} {step['phase']} {step['state']}{error}")


@sagas.command("resume")
@_DSN_OPTION
@_SAGAS_OPTION
def sagas_resume(dsn: str | None, definitions: str) -> None:
    """Take over the sagas whose process stopped (lease run out) and drive each to its end."""
    from msstore.coordination import SagaRunner  # noqa: PLC0415

    found = _definitions(definitions)
    try:
        with _saga_log(dsn) as log:
            results = SagaRunner(log, sagas=found).recover()
    except MsstoreError as err:
        raise _Failed(err) from None
    for result in results:
        click.echo(_result_line(result))
    click.echo(f"{len(results)} saga(s) resumed")


@sagas.command("compensate")
@_DSN_OPTION
@_SAGAS_OPTION
@click.argument("saga_id")
def sagas_compensate(dsn: str | None, definitions: str, saga_id: str) -> None:
    """Compensate one saga that no live process holds (one that waits for a person, once its
    cause is fixed)."""
    from msstore.coordination import SagaRunner  # noqa: PLC0415

    found = _definitions(definitions)
    try:
        with _saga_log(dsn) as log:
            if log.load(saga_id) is None:
                raise click.BadParameter(f"no saga {saga_id}", param_hint="SAGA_ID")
            result = SagaRunner(log, sagas=found).compensate(saga_id)
    except MsstoreError as err:
        raise _Failed(err) from None
    click.echo(_result_line(result))
    if result.status.value == "compensation_failed":
        sys.exit(1)
