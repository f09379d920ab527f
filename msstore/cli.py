"""The ``msstore`` command line (click)."""

from __future__ import annotations

import json
import sys

import click

from msstore import __version__
from msstore.bench import BENCHMARKS

__all__ = ["main"]


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
def demo(agents: int, writes: int, as_json: bool) -> None:
    """Run a small multi-agent workload and print what happened."""
    import io  # noqa: PLC0415

    from msstore import demo as demo_module  # noqa: PLC0415

    out = io.StringIO() if as_json else sys.stdout
    figures = demo_module.run(agents=agents, writes=writes, out=out)
    if as_json:
        click.echo(json.dumps(figures))


@main.command()
@click.argument("name", type=click.Choice(sorted(BENCHMARKS)))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def bench(name: str, as_json: bool) -> None:
    """Run benchmark NAME and print its figures (with their raw baselines)."""
    from msstore.bench import load  # noqa: PLC0415

    figures = load(name)()
    if as_json:
        click.echo(json.dumps(figures))
    else:
        width = max(len(k) for k in figures)
        for key, value in figures.items():
            click.echo(f"{key:<{width}}  {value}")
