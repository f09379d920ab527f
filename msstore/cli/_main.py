"""The ``msstore`` command line (click)."""

from __future__ import annotations

import json
import sys

import click

from msstore import __version__
from msstore.bench import BENCHMARKS

__all__ = ["main"]


class _Failed(click.ClickException):
    """One line on stderr, no traceback: exit 2 for bad input (as click does for bad options),
    1 for everything else (a server down, a refused migration)."""

    def __init__(self, err: Exception) -> None:
        from msstore.errors import InvalidArgument  # noqa: PLC0415

        super().__init__(" ".join(str(err).split()))
        self.bad_input = isinstance(err, InvalidArgument)

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return 2 if self.bad_input else 1


# Options several commands share.
_DSN_OPTION = click.option(
    "--dsn",
    envvar="MSSTORE_PG_DSN",
    help="PostgreSQL connection string (or MSSTORE_PG_DSN, or the PG_* variables).",
)
_NATS_OPTION = click.option(
    "--nats",
    "nats_url",
    envvar="NATS_URL",
    required=True,
    help="Server URL, e.g. nats://127.0.0.1:4222 (or NATS_URL).",
)


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
def demo(agents: int, writes: int, as_json: bool, backend: str) -> None:
    """Run a small multi-agent workload and print what happened."""
    import io  # noqa: PLC0415

    from msstore.cli import _demo as demo_module  # noqa: PLC0415

    if backend == "embedded" and not demo_module.embedded_available():
        raise click.UsageError("--backend embedded needs: pip install 'msstore[all]'")
    out = io.StringIO() if as_json else sys.stdout
    figures = demo_module.run(agents=agents, writes=writes, out=out, backend=backend)
    if as_json:
        click.echo(json.dumps(figures))


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
    from msstore.errors import MsstoreError  # noqa: PLC0415

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
def provision(nats_url: str, config_path: str | None, dry_run: bool) -> None:
    """Create the JetStream buckets, streams and consumers that are missing (idempotent)."""
    from msstore.errors import MsstoreError  # noqa: PLC0415
    from msstore.ops import _provisioning as provisioning  # noqa: PLC0415

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
    from msstore.errors import MsstoreError  # noqa: PLC0415

    try:
        from msstore.backends.postgres import Migrator, dsn_from_env  # noqa: PLC0415
    except ImportError as err:
        if not (err.name or "").startswith("psycopg"):
            raise
        raise click.ClickException(
            "migrations need psycopg: pip install 'msstore[postgres]'"
        ) from None
    try:
        migrator = Migrator(dsn or dsn_from_env(), embedding_dim=embedding_dim)
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


@main.group()
def relay() -> None:
    """Publish the PostgreSQL outbox to NATS JetStream (run), or report on it (status)."""


def _dsn(dsn: str | None) -> str:
    try:
        from msstore.backends.postgres import dsn_from_env  # noqa: PLC0415
    except ImportError as err:
        if not (err.name or "").startswith("psycopg"):
            raise
        raise click.ClickException("the relay needs psycopg: pip install 'msstore[all]'") from None
    return dsn or dsn_from_env()


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
    nats_url: str,
    once: bool,
    batch_size: int,
    poll_interval: float,
    keep_published: float,
) -> None:
    """Relay outbox events to their streams until interrupted (SIGINT/SIGTERM)."""
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from msstore.coordination import OutboxRelay  # noqa: PLC0415
    from msstore.errors import MsstoreError  # noqa: PLC0415

    stop = threading.Event()
    if not once:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    said = False
    while True:
        try:
            outbox = OutboxRelay.connect(
                dsn=_dsn(dsn),
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
            except MsstoreError as err:
                raise _Failed(err) from None
            click.echo(f"published {total} event(s); {failed} set aside as failed")
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
@click.option("--nats", "nats_url", envvar="NATS_URL", help="Also check that NATS answers.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def relay_status(dsn: str | None, nats_url: str | None, as_json: bool) -> None:
    """Outbox depth, the oldest waiting event's age, failed rows and (with --nats) health;
    exits 1 when NATS cannot be reached."""
    import time  # noqa: PLC0415

    from msstore.coordination import relay_health  # noqa: PLC0415
    from msstore.errors import MsstoreError  # noqa: PLC0415

    try:
        from msstore.backends.postgres import PostgresOutbox  # noqa: PLC0415

        with PostgresOutbox(_dsn(dsn)) as outbox:
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
    age = (
        None if stats.oldest_created_at is None else max(0.0, time.time() - stats.oldest_created_at)
    )
    health, reason = relay_health(oldest_age=age, reachable=reachable, window=1.0)
    figures = {
        "depth": stats.depth,
        "oldest_age_s": age,
        "failed_rows": stats.failed,
        "health": health.value if nats_url else None,
        "reason": reason if nats_url else None,
        "failures": [
            {"outbox_id": e.outbox_id, "subject": e.subject, "reason": r} for e, r in failures
        ],
    }
    unhealthy = bool(nats_url) and health.value == "UNHEALTHY"
    if as_json:
        click.echo(json.dumps(figures))
    else:
        _print_status(stats.depth, age, stats.failed, health.value if nats_url else None, reason)
        for event, why in failures:
            click.echo(f"  failed #{event.outbox_id} {event.subject[:60]}: {why}")
    if unhealthy:  # a monitor can act on the exit status
        sys.exit(1)


def _print_status(
    depth: int, age: float | None, failed: int, health: str | None, reason: str
) -> None:
    click.echo(f"waiting      {depth}")
    click.echo(f"oldest       {'-' if age is None else f'{age:.3f} s'}")
    click.echo(f"failed rows  {failed}")
    if health is not None:
        click.echo(f"health       {health} ({reason})")
