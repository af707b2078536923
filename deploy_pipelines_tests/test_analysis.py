"""Verdicts of metric rules (Prometheus-alert semantics: a breach counts only when it held for the
whole `for` window) from sample series. Querying a real Prometheus is covered by the platform and
release end-to-end tests, not here."""

from __future__ import annotations

from deploy_pipelines.analysis import FAILED, INCONCLUSIVE, PENDING, SUCCESSFUL, judge, render
from deploy_pipelines.catalog.models import Rule

ERR = Rule(name="error_rate", query='x{version="{version}",service="{service}"}', max=0.05, **{"for": "10s"})
AVAIL = Rule(name="availability", query="up", min=0.95, **{"for": "4s"})


def series(*values, start=1000.0):
    return [(start + i, v) for i, v in enumerate(values)]


def test_healthy_series_is_successful():
    m = judge(ERR, series(*[0.01] * 11))
    assert m.result == SUCCESSFUL and m.value == 0.01
    assert m.narrate() == "error_rate 1.0% (max 0.05) over 10s: ok"


def test_breach_that_held_for_the_window_fails():
    assert judge(ERR, series(*[0.3] * 11)).result == FAILED


def test_breach_shorter_than_the_window_is_pending_not_failed():
    m = judge(ERR, series(*([0.0] * 6 + [0.3] * 5)))
    assert m.result == PENDING
    assert "breaching for 4s of 10s" in m.detail


def test_a_single_good_sample_resets_the_breach():
    assert judge(ERR, series(*([0.3] * 5 + [0.01] + [0.3] * 5))).result == PENDING


def test_recovered_latest_sample_is_successful():
    assert judge(ERR, series(*([0.3] * 10 + [0.0]))).result == SUCCESSFUL


def test_min_rules_breach_below():
    assert judge(AVAIL, series(0.5, 0.5, 0.5, 0.5, 0.5)).result == FAILED
    assert judge(AVAIL, series(1, 1, 1, 1, 1)).result == SUCCESSFUL


def test_no_data_is_inconclusive_with_the_reason():
    m = judge(ERR, [], detail="Prometheus at http://127.0.0.1:9 did not answer")
    assert m.result == INCONCLUSIVE and "did not answer" in m.narrate()


def test_dry_run_is_reported_as_such():
    rule = Rule(name="p99_latency_ms", query="q", max=500, dry_run=True, **{"for": "2s"})
    m = judge(rule, series(900, 900, 900))
    assert m.result == FAILED and m.dry_run and "never aborts" in m.narrate()


def test_render_fills_labels():
    assert render(ERR, version="v1.2.0", service="app") == 'x{version="v1.2.0",service="app"}'
