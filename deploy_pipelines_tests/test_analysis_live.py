"""The analysis loop (interval, count, failure_limit, inconclusive_limit, on_inconclusive,
dry_run) against a real Prometheus scraping a real exporter, with the three rule kinds of the
seeds: error rate, p95 latency (histogram_quantile over a real histogram), availability (`up`)."""

import threading
import time

import pytest

from deploy_pipelines.adapters.metrics import PrometheusMetrics
from deploy_pipelines.analysis import run_analysis
from deploy_pipelines.catalog.models import Analysis, Rule
from deploy_pipelines_tests.fixtures_metrics import exporter, prometheus, reporting  # noqa: F401 - fixtures


def rule(name, query, for_="2s", **bound):
    return Rule(name=name, query=query, **bound, **{"for": for_})


ERROR = rule("error_rate", 'max(app_error_ratio{service="{service}",version="{version}"})', max=0.05)
P95 = rule("p95_latency_ms", '1000 * histogram_quantile(0.95, sum by (le) (rate(app_latency_seconds_bucket'
                             '{service="{service}",version="{version}"}[5s])))', max=500)
AVAILABLE = rule("availability", 'min(up{job="services"})', min=0.95)
FAST = Analysis(initial_delay=0, interval=1, count=2, failure_limit=0, inconclusive_limit=0)


def labels(version: str, service: str = "svc") -> dict[str, str]:
    return {"service": service, "environment": "test", "version": version}


@pytest.fixture
def metrics(prometheus):  # noqa: F811
    return PrometheusMetrics(url=prometheus.url)


def test_healthy_version_passes_all_three_rule_kinds(exporter, metrics):  # noqa: F811
    with reporting(exporter, metrics, "good", error_ratio=0.01, latency_s=0.08):
        time.sleep(3)
        log: list[str] = []
        result = run_analysis([ERROR, P95, AVAILABLE], metrics, labels("good"), FAST, log.append,
                              since=time.time() - 3)
    assert result.ok, result.reason
    text = "\n".join(log)
    assert "error_rate 1.0% (max 0.05)" in text and "availability 100.0% (min 0.95)" in text
    p95 = [m.value for m in result.measurements if m.rule == "p95_latency_ms"][-1]
    assert 50 <= p95 <= 100, p95         # 80 ms observations land in the 50-100 ms bucket


def test_slow_version_fails_on_p95_latency(exporter, metrics):  # noqa: F811
    with reporting(exporter, metrics, "slow", error_ratio=0.0, latency_s=0.9):
        time.sleep(4)
        result = run_analysis([ERROR, P95], metrics, labels("slow"), FAST, lambda _m: None, since=time.time() - 4)
    assert not result.ok and result.failed.rule == "p95_latency_ms"
    assert "breached max 500" in result.reason


def test_dry_run_rule_is_measured_but_never_aborts(exporter, metrics):  # noqa: F811
    with reporting(exporter, metrics, "dry", error_ratio=0.5):
        time.sleep(3)
    shadow = rule("error_rate_shadow", ERROR.query, max=0.05, dry_run=True)
    result = run_analysis([shadow], metrics, labels("dry"), FAST, lambda _m: None, since=time.time() - 3)
    assert result.ok
    assert any(m.result == "failed" and m.dry_run for m in result.measurements)


def test_failure_limit_tolerates_that_many_failed_measurements(exporter, metrics):  # noqa: F811
    with reporting(exporter, metrics, "flaky", error_ratio=0.2):
        time.sleep(3)
    lenient = Analysis(initial_delay=0, interval=1, count=2, failure_limit=5)
    assert run_analysis([ERROR], metrics, labels("flaky"), lenient, lambda _m: None, since=time.time() - 3).ok
    strict = Analysis(initial_delay=0, interval=1, count=2, failure_limit=1)
    result = run_analysis([ERROR], metrics, labels("flaky"), strict, lambda _m: None, since=time.time() - 3)
    assert not result.ok and "error_rate" in result.reason


@pytest.mark.parametrize("mode,ok", [("abort", False), ("continue", True)])
def test_no_data_is_inconclusive_abort_by_default_or_continue(metrics, mode, ok):
    analysis = Analysis(initial_delay=0, interval=0.5, count=2, inconclusive_limit=1, on_inconclusive=mode)
    result = run_analysis([ERROR], metrics, labels("never-deployed"), analysis, lambda _m: None)
    assert result.ok is ok
    if not ok:
        assert "inconclusive 2 times (limit 1)" in result.reason


def test_prometheus_down_is_inconclusive_not_a_pass():
    down = PrometheusMetrics(url="http://127.0.0.1:9", timeout_seconds=1)
    result = run_analysis([ERROR], down, labels("x"), FAST, lambda _m: None)
    assert not result.ok and "inconclusive" in result.reason and "did not answer" in result.reason


def test_pause_holds_until_data_arrives_then_judges(exporter, metrics):  # noqa: F811
    analysis = Analysis(initial_delay=0, interval=1, count=2, on_inconclusive="pause", pause_timeout=30)
    log: list[str] = []
    timer = threading.Timer(3, lambda: exporter.gauge.labels("svc", "test", "late").set(0.3))
    timer.start()
    started = time.monotonic()
    result = run_analysis([ERROR], metrics, labels("late"), analysis, log.append)
    held = time.monotonic() - started
    # Paused while there was no data, then judged the breach it found.
    assert any("paused: error_rate is inconclusive" in line for line in log)
    assert any("resumed after" in line for line in log)
    assert not result.ok and "breached max 0.05" in result.reason and held >= 3


def test_pause_gives_up_after_its_timeout(metrics):
    analysis = Analysis(initial_delay=0, interval=0.5, count=2, on_inconclusive="pause", pause_timeout=2)
    result = run_analysis([ERROR], metrics, labels("never"), analysis, lambda _m: None)
    assert not result.ok and "still inconclusive after a 2s pause" in result.reason
