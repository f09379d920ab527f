"""Alert rules, written once: rendered as a Prometheus alerting-rules file (shipped as
``msstore/ops/alerts.yml``) and evaluated in process over msstore's own metrics.

Each :class:`AlertRule` compares a figure (a gauge, a rate, a ratio of either, or a histogram
quantile), grouped by some labels, with a threshold, for a while. :func:`render_rules` writes
the PromQL; :class:`Alerts` evaluates the same definition over two scrapes of
:class:`~msstore.ops.metrics.MsstoreCollector` (rates and quantiles from what moved between
them) and calls back with each alert that starts firing::

    from msstore.ops.alerts import Alerts

    alerts = Alerts(lambda alert: print(alert.severity, alert.summary))
    alerts.start(interval=15.0)  # or alerts.evaluate() from your own loop
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import attrs

from msstore.errors import InvalidArgument
from msstore.spi import check_seconds

if TYPE_CHECKING:
    from msstore.ops.metrics import MsstoreCollector

__all__ = [
    "RULES",
    "RULES_FILE",
    "Alert",
    "AlertRule",
    "Alerts",
    "Gauge",
    "Quantile",
    "Rate",
    "render_rules",
    "samples",
]

log = logging.getLogger("msstore.ops.alerts")

Severity = Literal["critical", "high", "medium", "warning"]
Labels = tuple[tuple[str, str], ...]
Samples = Mapping[tuple[str, Labels], float]
"""A scrape: each sample's value by its name and its sorted labels."""

WINDOW: Final = "5m"
"""The range the rules' rates are taken over in PromQL."""


@attrs.frozen
class Gauge:
    """The value of ``metric`` (less ``minus`` when given), summed per group."""

    metric: str
    minus: str | None = None


@attrs.frozen
class Rate:
    """How fast counter ``metric`` (only its samples with the labels ``where``) grows per
    second, summed per group."""

    metric: str
    where: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class Quantile:
    """Quantile ``q`` of histogram ``metric`` over what it observed lately, per group."""

    q: float
    metric: str


Term = Gauge | Rate | Quantile


@attrs.frozen(kw_only=True)
class AlertRule:
    """``figure`` (divided by ``over`` when given), per ``by`` labels, ``op`` ``threshold``
    for ``for_seconds``: an alert of ``severity``."""

    name: str
    severity: Severity
    summary: str
    figure: Term
    op: Literal[">", "<"]
    threshold: float
    over: Gauge | Rate | None = None
    by: tuple[str, ...] = ()
    for_seconds: int = 60

    def promql(self) -> str:
        """The rule's expression in PromQL."""
        text = _promql(self.figure, self.by)
        if self.over is not None:
            over = _promql(self.over, self.by)
            # A group with no sample of the figure (a check never healthy) counts as 0.
            text = f"({text} or {over} * 0) / ({over})"
        return f"{text} {self.op} {self.threshold:g}"


@attrs.frozen
class Alert:
    """A rule that started firing: the rule, the group it fired for (``labels``) and the
    ``value`` it found."""

    rule: AlertRule
    labels: Mapping[str, str]
    value: float

    @property
    def severity(self) -> Severity:
        """The rule's severity."""
        return self.rule.severity

    @property
    def summary(self) -> str:
        """One line: the rule's summary, the group and the value."""
        where = "".join(f"{k}={v}, " for k, v in self.labels.items())
        return f"{self.rule.name}: {self.rule.summary} ({where}{self.value:.3g})"


RULES: Final[tuple[AlertRule, ...]] = (
    AlertRule(
        name="MsstorePoolUtilisationHigh",
        severity="high",
        summary="more than 90% of a PostgreSQL pool's connections are in use",
        figure=Gauge("msstore_pool_size", minus="msstore_pool_available"),
        over=Gauge("msstore_pool_size"),
        by=("pool",),
        op=">",
        threshold=0.9,
    ),
    AlertRule(
        name="MsstorePoolAcquisitionSlow",
        severity="medium",
        summary="requests wait more than 5 s on average for a PostgreSQL connection",
        figure=Rate("msstore_pool_request_wait_seconds_total"),
        over=Rate("msstore_pool_requests_total"),
        by=("pool",),
        op=">",
        threshold=5.0,
    ),
    AlertRule(
        name="MsstorePoolConnectionErrors",
        severity="high",
        summary="more than 5% of a PostgreSQL pool's requests meet a connection error",
        figure=Rate("msstore_pool_connection_errors_total"),
        over=Rate("msstore_pool_requests_total"),
        by=("pool",),
        op=">",
        threshold=0.05,
    ),
    AlertRule(
        name="MsstoreHealthChecksFailing",
        severity="critical",
        summary="fewer than 95% of a health check's runs find it healthy",
        figure=Rate("msstore_health_checks_total", where=(("status", "HEALTHY"),)),
        over=Rate("msstore_health_checks_total"),
        by=("check",),
        op="<",
        threshold=0.95,
    ),
    AlertRule(
        name="MsstoreFlushLagHigh",
        severity="medium",
        summary="writes take more than the 200 ms window (p95) to reach PostgreSQL",
        figure=Quantile(0.95, "msstore_flush_lag_seconds"),
        op=">",
        threshold=0.2,
        for_seconds=300,
    ),
    AlertRule(
        name="MsstoreFlushRowsRefused",
        severity="high",
        summary="PostgreSQL refuses flushed rows for good (see stats()['flush']['failures'])",
        figure=Rate("msstore_flush_rows_total", where=(("outcome", "refused"),)),
        op=">",
        threshold=0.0,
        for_seconds=0,
    ),
    AlertRule(
        name="MsstoreOutboxBehind",
        severity="high",
        summary="the oldest outbox event waits more than 60 s (is the relay running?)",
        figure=Gauge("msstore_outbox_oldest_age_seconds"),
        op=">",
        threshold=60.0,
    ),
    AlertRule(
        name="MsstoreTaskLeasesStuck",
        severity="medium",
        summary="running tasks are past their lease: their workers stopped",
        figure=Gauge("msstore_task_stuck_leases"),
        op=">",
        threshold=0.0,
        for_seconds=120,
    ),
)
"""The shipped rules: the design's pool and health thresholds and msstore's own."""

RULES_FILE: Final = Path(__file__).with_name("alerts.yml")
"""The rules as a Prometheus alerting-rules file (``rule_files:`` in prometheus.yml)."""


def _selector(metric: str, where: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in where)
    return f"{metric}{{{inner}}}" if inner else metric


def _promql(term: Term, by: Sequence[str]) -> str:
    group = f"sum by ({', '.join(by)}) " if by else "sum "
    if isinstance(term, Gauge):
        text = f"{group}({term.metric})"
        return f"{text} - {group}({term.minus})" if term.minus else text
    if isinstance(term, Rate):
        return f"{group}(rate({_selector(term.metric, term.where)}[{WINDOW}]))"
    labels = ", ".join(("le", *by))
    return (
        f"histogram_quantile({term.q:g}, sum by ({labels}) (rate({term.metric}_bucket[{WINDOW}])))"
    )


def render_rules(rules: Sequence[AlertRule] = RULES) -> str:
    """The rules as a Prometheus alerting-rules file (YAML)."""
    lines = ["# Generated from msstore.ops.alerts.RULES; do not edit.", "groups:"]
    lines += ["  - name: msstore", "    rules:"]
    for rule in rules:
        lines += [
            f"      - alert: {rule.name}",
            f"        expr: '{rule.promql()}'",
            f"        for: {rule.for_seconds}s",
            "        labels:",
            f"          severity: {rule.severity}",
            "        annotations:",
            f"          summary: '{rule.summary.replace(chr(39), chr(39) * 2)}'",
        ]
    return "\n".join(lines) + "\n"


# -- evaluating in process ---------------------------------------------------------------------


def _group(labels: Labels, by: Sequence[str]) -> Labels:
    found = dict(labels)
    return tuple((k, found.get(k, "")) for k in by)


def _sum(samples: Samples, name: str, by: Sequence[str], where: Labels = ()) -> dict[Labels, float]:
    out: dict[Labels, float] = {}
    for (sample, labels), value in samples.items():
        if sample != name or not set(where) <= set(labels):
            continue
        key = _group(labels, by)
        out[key] = out.get(key, 0.0) + value
    return out


def _quantile(q: float, buckets: Mapping[float, float]) -> float:
    """Prometheus' histogram_quantile over cumulative ``buckets`` (``le`` -> count)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return math.nan
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            span = count - below
            return bound if span <= 0 else lower + (bound - lower) * (rank - below) / span
        lower, below = bound, count
    return lower


class Alerts:
    """The rules evaluated in process; ``on_alert`` is called with each :class:`Alert` as it
    starts firing (once, until its condition clears). ``source``: a function returning a scrape
    (default: msstore's collector over this process); ``clock``: monotonic seconds."""

    def __init__(
        self,
        on_alert: Callable[[Alert], None],
        *,
        rules: Sequence[AlertRule] = RULES,
        source: Callable[[], Samples] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not callable(on_alert):
            raise InvalidArgument(f"on_alert must be callable, got {on_alert!r}")
        self.rules = tuple(rules)
        self._on_alert = on_alert
        self._source = source or samples
        self._clock = clock
        self._previous: tuple[float, Samples] | None = None
        self._since: dict[tuple[str, Labels], float] = {}
        self._firing: set[tuple[str, Labels]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def evaluate(self) -> list[Alert]:
        """Scrape, evaluate every rule, call back for alerts that start firing; return every
        alert firing now. Rates and quantiles need a previous scrape (none on the first call)."""
        now, samples = self._clock(), self._source()
        previous, self._previous = self._previous, (now, samples)
        firing: list[Alert] = []
        for rule in self.rules:
            for labels, value in self._values(rule, samples, previous, now).items():
                key = (rule.name, labels)
                if not (value > rule.threshold if rule.op == ">" else value < rule.threshold):
                    self._since.pop(key, None)
                    self._firing.discard(key)
                    continue
                since = self._since.setdefault(key, now)
                if now - since < rule.for_seconds:
                    continue
                alert = Alert(rule, dict(labels), value)
                firing.append(alert)
                if key not in self._firing:
                    self._firing.add(key)
                    self._on_alert(alert)
        return firing

    def _values(
        self, rule: AlertRule, samples: Samples, previous: tuple[float, Samples] | None, now: float
    ) -> dict[Labels, float]:
        figure = self._term(rule.figure, rule.by, samples, previous, now)
        if rule.over is None:
            return figure
        over = self._term(rule.over, rule.by, samples, previous, now)
        return {k: figure.get(k, 0.0) / v for k, v in over.items() if v}

    @staticmethod
    def _term(
        term: Term,
        by: Sequence[str],
        samples: Samples,
        previous: tuple[float, Samples] | None,
        now: float,
    ) -> dict[Labels, float]:
        if isinstance(term, Gauge):
            values = _sum(samples, term.metric, by)
            if term.minus:
                minus = _sum(samples, term.minus, by)
                values = {k: v - minus.get(k, 0.0) for k, v in values.items()}
            return values
        if previous is None or now <= previous[0]:
            return {}
        then, old = previous
        if isinstance(term, Rate):
            current = _sum(samples, term.metric, by, term.where)
            before = _sum(old, term.metric, by, term.where)
            # A counter that went down was reset (a new process): count from zero.
            return {
                k: (v - before.get(k, 0.0) if v >= before.get(k, 0.0) else v) / (now - then)
                for k, v in current.items()
            }
        buckets: dict[Labels, dict[float, float]] = {}
        for (name, labels), value in samples.items():
            if name != f"{term.metric}_bucket":
                continue
            le = float(dict(labels)["le"])
            grown = value - old.get((name, labels), 0.0)
            group = buckets.setdefault(_group(labels, by), {})
            group[le] = group.get(le, 0.0) + grown
        found = {k: _quantile(term.q, b) for k, b in buckets.items()}
        return {k: v for k, v in found.items() if not math.isnan(v)}

    def start(self, interval: float = 15.0) -> Alerts:
        """Evaluate every ``interval`` seconds on a daemon thread until :meth:`stop`."""
        interval = check_seconds(interval, field="interval")

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.evaluate()
                except Exception:
                    log.exception("alert evaluation failed")

        self._stop.clear()
        self._thread = threading.Thread(target=loop, name="msstore-alerts", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread :meth:`start` started."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None


def samples(collector: MsstoreCollector | None = None) -> Samples:
    """A scrape of ``collector`` (default: msstore's collector over this process), as the
    samples :class:`Alerts` reads."""
    from msstore.ops.metrics import MsstoreCollector  # noqa: PLC0415

    out: dict[tuple[str, Labels], float] = {}
    for family in (collector or MsstoreCollector()).collect():
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out
