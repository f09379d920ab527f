"""The alert rules: the shipped file is what the rules render, Prometheus reads it, and the same
rules evaluated in process fire (once) and clear at their thresholds."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping

import pytest
import yaml  # type: ignore[import-untyped]
from hypothesis import stateful
from hypothesis import strategies as st

from msstore.backends.memory import MemoryTaskQueue
from msstore.errors import InvalidArgument
from msstore.ops.alerts import (
    RULES,
    RULES_FILE,
    Alert,
    AlertRule,
    Alerts,
    Gauge,
    Labels,
    Quantile,
    Rate,
    render_rules,
    samples,
)
from msstore.ops.metrics import MsstoreCollector
from msstore.testing import FakeClock

Scrape = dict[tuple[str, Labels], float]


def rule(name: str) -> AlertRule:
    return next(r for r in RULES if r.name == name)


class Feed:
    """Scrapes to evaluate, set by the test between evaluations."""

    def __init__(self) -> None:
        self.now: Scrape = {}

    def set(self, name: str, value: float, **labels: str) -> None:
        self.now[(name, tuple(sorted(labels.items())))] = value

    def __call__(self) -> Mapping[tuple[str, Labels], float]:
        return dict(self.now)


def alerts_on(*rules: AlertRule) -> tuple[Alerts, Feed, FakeClock, list[Alert]]:
    fired: list[Alert] = []
    feed, clock = Feed(), FakeClock(0.0)
    return Alerts(fired.append, rules=rules, source=feed, clock=clock), feed, clock, fired


def test_the_shipped_file_is_what_the_rules_render() -> None:
    assert RULES_FILE.read_text() == render_rules()


def test_the_rules_file_has_prometheus_shape() -> None:
    doc = yaml.safe_load(RULES_FILE.read_text())
    (group,) = doc["groups"]
    assert group["name"] == "msstore"
    assert [r["alert"] for r in group["rules"]] == [r.name for r in RULES]
    for entry in group["rules"]:
        assert set(entry) == {"alert", "expr", "for", "labels", "annotations"}
        assert re.fullmatch(r"\d+s", entry["for"])
        assert entry["labels"]["severity"] in {"critical", "high", "medium", "warning"}
        assert entry["annotations"]["summary"]
        assert entry["expr"].count("(") == entry["expr"].count(")")
        assert re.search(r" [<>] [0-9.]+$", entry["expr"])


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's prometheus package; CI installs it)")
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in done.stdout


def test_the_design_thresholds_are_there() -> None:
    assert rule("MsstorePoolUtilisationHigh").threshold == 0.9
    assert rule("MsstorePoolAcquisitionSlow").threshold == 5.0
    assert rule("MsstorePoolConnectionErrors").threshold == 0.05
    assert rule("MsstoreHealthChecksFailing").threshold == 0.95
    assert rule("MsstoreFlushLagHigh").threshold == 0.2  # the 200 ms consistency window


def test_a_gauge_rule_fires_after_its_for_once_and_clears() -> None:
    alerts, feed, clock, fired = alerts_on(rule("MsstorePoolUtilisationHigh"))
    feed.set("msstore_pool_size", 10, pool="primary")
    feed.set("msstore_pool_available", 0, pool="primary")
    feed.set("msstore_pool_size", 10, pool="background")
    feed.set("msstore_pool_available", 5, pool="background")
    assert alerts.evaluate() == [] and fired == []  # true, but not for 60 s yet
    clock.advance(59)
    assert alerts.evaluate() == []
    clock.advance(1)
    (alert,) = alerts.evaluate()
    assert fired == [alert]
    assert alert.labels == {"pool": "primary"} and alert.value == 1.0
    assert alert.severity == "high" and "pool=primary" in alert.summary
    clock.advance(15)
    assert len(alerts.evaluate()) == 1 and len(fired) == 1  # still firing: no second call
    feed.set("msstore_pool_available", 9, pool="primary")
    assert alerts.evaluate() == []
    feed.set("msstore_pool_available", 0, pool="primary")
    alerts.evaluate()
    clock.advance(60)
    alerts.evaluate()
    assert len(fired) == 2  # cleared, then true for 60 s again: a new alert


def test_a_ratio_of_rates_counts_a_group_that_was_never_healthy() -> None:
    alerts, feed, clock, fired = alerts_on(rule("MsstoreHealthChecksFailing"))
    name = "msstore_health_checks_total"
    feed.set(name, 100, check="postgres.primary", status="HEALTHY")
    feed.set(name, 0, check="nats", status="UNHEALTHY")
    alerts.evaluate()  # rates need a previous scrape
    for step in range(1, 4):
        clock.advance(30)
        feed.set(name, 100 + 30 * step, check="postgres.primary", status="HEALTHY")
        feed.set(name, 2 * step, check="postgres.primary", status="DEGRADED")
        feed.set(name, 30 * step, check="nats", status="UNHEALTHY")
        alerts.evaluate()
    # postgres: 30 healthy of 32 a tick (0.94 < 0.95); nats: never healthy (0).
    assert sorted(a.labels["check"] for a in fired) == ["nats", "postgres.primary"]
    assert {a.labels["check"]: round(a.value, 3) for a in fired} == {
        "nats": 0.0,
        "postgres.primary": 0.938,
    }


def test_a_rate_rule_survives_a_counter_reset() -> None:
    alerts, feed, clock, fired = alerts_on(rule("MsstoreFlushRowsRefused"))
    feed.set("msstore_flush_rows_total", 50, outcome="refused")
    alerts.evaluate()
    clock.advance(10)
    feed.set("msstore_flush_rows_total", 50, outcome="refused")
    assert alerts.evaluate() == []
    clock.advance(10)
    feed.set("msstore_flush_rows_total", 2, outcome="refused")  # a restarted process
    (alert,) = alerts.evaluate()
    assert alert.value == pytest.approx(0.2) and fired == [alert]


def test_a_quantile_rule_reads_what_the_histogram_observed_lately() -> None:
    lag = AlertRule(
        name="Lag", severity="medium", summary="slow", figure=Quantile(0.95, "h"), op=">",
        threshold=0.2, for_seconds=0,
    )  # fmt: skip
    alerts, feed, clock, _ = alerts_on(lag)

    def buckets(fast: int, slow: int) -> None:
        feed.set("h_bucket", fast, le="0.1")
        feed.set("h_bucket", fast, le="0.2")
        feed.set("h_bucket", fast + slow, le="0.5")
        feed.set("h_bucket", fast + slow, le="+Inf")

    buckets(1000, 0)  # a slow past does not count: only what moved between scrapes
    alerts.evaluate()
    clock.advance(10)
    buckets(1100, 0)
    assert alerts.evaluate() == []
    clock.advance(10)
    buckets(1190, 10)  # 10 of 100 over 0.2 s: p95 is in the (0.2, 0.5] bucket
    (alert,) = alerts.evaluate()
    assert 0.2 < alert.value <= 0.5


def test_rules_render_to_promql() -> None:
    assert rule("MsstoreOutboxBehind").promql() == "sum (msstore_outbox_oldest_age_seconds) > 60"
    ratio = AlertRule(
        name="R", severity="warning", summary="s", figure=Rate("a_total", (("x", "1"),)),
        over=Gauge("b"), by=("pool",), op="<", threshold=0.5,
    )  # fmt: skip
    assert ratio.promql() == (
        '(sum by (pool) (rate(a_total{x="1"}[5m])) or sum by (pool) (b) * 0) / '
        "(sum by (pool) (b)) < 0.5"
    )


def test_stuck_leases_fire_from_a_real_scrape() -> None:
    clock = FakeClock(1000.0)
    queue = MemoryTaskQueue(clock=clock)
    queue.enqueue("t", {})
    queue.claim("worker", lease=10.0)
    collector = MsstoreCollector(queue=queue)
    fired: list[Alert] = []
    ticks = FakeClock(0.0)
    alerts = Alerts(
        fired.append,
        rules=[rule("MsstoreTaskLeasesStuck")],
        source=lambda: samples(collector),
        clock=ticks,
    )
    alerts.evaluate()
    clock.advance(11.0)  # the lease runs out: the worker stopped
    alerts.evaluate()
    ticks.advance(120)
    (alert,) = alerts.evaluate()
    assert fired == [alert] and alert.value == 1.0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="on_alert"):
        Alerts("print")  # type: ignore[arg-type]
    alerts = Alerts(lambda alert: None, source=dict)
    with pytest.raises(InvalidArgument, match="interval"):
        alerts.start(interval=0)


class AlertsModel(stateful.RuleBasedStateMachine):
    """Evaluations of a gauge rule over two pools, against a model: an alert fires once its
    condition held for ``for_seconds``, calls back once, and clears when the condition goes."""

    RULE = AlertRule(
        name="Busy", severity="high", summary="busy", figure=Gauge("g"), by=("pool",), op=">",
        threshold=0.5, for_seconds=30,
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.alerts, self.feed, self.clock, self.fired = alerts_on(self.RULE)
        self.values = {"a": 0.0, "b": 0.0}
        self.since: dict[str, float] = {}
        self.firing: set[str] = set()
        self.calls = 0
        for pool in self.values:
            self.feed.set("g", 0.0, pool=pool)

    @stateful.rule(pool=st.sampled_from(["a", "b"]), value=st.sampled_from([0.0, 0.5, 0.51, 1.0]))
    def set_value(self, pool: str, value: float) -> None:
        self.values[pool] = value
        self.feed.set("g", value, pool=pool)

    @stateful.rule(seconds=st.sampled_from([0, 1, 15, 29, 30, 45]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @stateful.rule()
    def evaluate(self) -> None:
        now = self.clock()
        firing = {a.labels["pool"] for a in self.alerts.evaluate()}
        expected = set()
        for pool, value in self.values.items():
            if value > 0.5:
                since = self.since.setdefault(pool, now)
                if now - since >= 30:
                    expected.add(pool)
                    if pool not in self.firing:
                        self.calls += 1
            else:
                self.since.pop(pool, None)
        self.firing = expected
        assert firing == expected
        assert len(self.fired) == self.calls


TestAlertsModel = AlertsModel.TestCase
