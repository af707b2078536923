"""Metric analysis with Prometheus-alert semantics: a rule is breached only when its condition
held over the whole `for` window. One measurement of one rule gives one of four results, in
Argo Rollouts' words: successful, failed, inconclusive (no data, metrics source down) or pending
(breaching, but not yet for the whole window)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from deploy_pipelines.adapters.metrics import MetricsSource, MetricsUnavailable
from deploy_pipelines.catalog.models import Analysis, Rule

SUCCESSFUL, FAILED, INCONCLUSIVE, PENDING = "successful", "failed", "inconclusive", "pending"


@dataclass
class Measurement:
    rule: str
    result: str
    value: float | None
    threshold: str            # "max 0.05" / "min 0.95"
    window: float             # seconds of data the verdict covers
    dry_run: bool = False
    detail: str = ""

    def narrate(self) -> str:
        shown = "no data" if self.value is None else _fmt(self.rule, self.value)
        suffix = " (dry run: reported, never aborts)" if self.dry_run else ""
        return (f"{self.rule} {shown} ({self.threshold}) over {self.window:.0f}s: "
                f"{'ok' if self.result == SUCCESSFUL else self.result}{suffix}"
                + (f" - {self.detail}" if self.detail else ""))


def _fmt(name: str, value: float) -> str:
    if ("rate" in name or "availability" in name) and 0 <= value <= 1:
        return f"{value * 100:.1f}%"
    return f"{value:.4g}"


def fill(query: str, **labels: str) -> str:
    """Fill {service} {environment} {version} {track} {window} into a catalog query; other braces
    (PromQL label matchers) stay as they are."""
    for k, v in labels.items():
        query = query.replace("{" + k + "}", v)
    return query


def render(rule: Rule, **labels: str) -> str:
    """Fill {service} {environment} {version} {track} into a rule's PromQL."""
    return fill(rule.query, **labels)


def breaches(rule: Rule, value: float) -> bool:
    return (rule.max is not None and value > rule.max) or (rule.min is not None and value < rule.min)


def judge(rule: Rule, samples: list[tuple[float, float]], step: float = 1.0, detail: str = "") -> Measurement:
    """The verdict on one rule from its samples over the window (oldest first)."""
    threshold = f"max {rule.max:g}" if rule.max is not None else f"min {rule.min:g}"
    if not samples:
        return Measurement(rule.name, INCONCLUSIVE, None, threshold, 0, rule.dry_run, detail or "no data")
    latest = samples[-1][1]
    covered = samples[-1][0] - samples[0][0]
    if not breaches(rule, latest):
        return Measurement(rule.name, SUCCESSFUL, latest, threshold, covered, rule.dry_run)
    # The breach must hold for the whole window: how long has it held without a break?
    held_since = samples[-1][0]
    for ts, value in reversed(samples):
        if not breaches(rule, value):
            break
        held_since = ts
    held = samples[-1][0] - held_since
    if held + step >= rule.for_:
        return Measurement(rule.name, FAILED, latest, threshold, held, rule.dry_run)
    return Measurement(rule.name, PENDING, latest, threshold, held, rule.dry_run,
                       f"breaching for {held:.0f}s of {rule.for_:.0f}s")


def measure(rule: Rule, metrics: MetricsSource, labels: dict[str, str], now: float | None = None,
            since: float | None = None, step: float = 1.0) -> Measurement:
    """One measurement: samples over [now - for, now] (not before `since`, the version's start)."""
    now = time.time() if now is None else now
    start = now - rule.for_
    if since is not None:
        start = max(start, since)
    try:
        samples = metrics.query_range(render(rule, **labels), start, now, max(step, 0.5))
    except MetricsUnavailable as exc:
        return judge(rule, [], step, str(exc))
    return judge(rule, samples, step)


@dataclass
class AnalysisRun:
    ok: bool
    reason: str
    measurements: list[Measurement]
    failed: Measurement | None = None


def _pause(rule: Rule, m: Measurement, metrics: MetricsSource, labels: dict[str, str], analysis: Analysis,
           log: Callable[[str], None], prefix: str, since: float | None, sleep: Callable[[float], None],
           seen: list[Measurement]) -> Measurement:
    """Argo Rollouts' Inconclusive pause: hold the current traffic step until the rule can be
    judged again; returns the first conclusive measurement, or the last inconclusive one when
    pause_timeout ran out."""
    log(f"{prefix}paused: {rule.name} is inconclusive ({m.detail}); traffic stays as it is "
        f"until it can be judged, at most {analysis.pause_timeout:.0f}s")
    held = time.monotonic()
    while m.result == INCONCLUSIVE and time.monotonic() - held < analysis.pause_timeout:
        sleep(analysis.interval)
        m = measure(rule, metrics, labels, since=since)
        seen.append(m)
        log(f"{prefix}(paused) {m.narrate()}")
    if m.result != INCONCLUSIVE:
        log(f"{prefix}resumed after {time.monotonic() - held:.0f}s: {rule.name} {m.result}")
    return m


def run_analysis(rules: list[Rule], metrics: MetricsSource, labels: dict[str, str], analysis: Analysis,
                 log: Callable[[str], None], prefix: str = "", since: float | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> AnalysisRun:
    """Measure every rule `count` times, `interval` apart. A rule fails the run when its failed
    measurements exceed failure_limit, or its inconclusive ones exceed inconclusive_limit (then
    on_inconclusive decides: abort, or continue). A rule still pending at the end keeps being
    measured until its `for` window resolves it, so a breach shorter than `for` never aborts and a
    longer one always does."""
    failures: dict[str, int] = {}
    inconclusive: dict[str, int] = {}
    all_measurements: list[Measurement] = []
    if not rules:
        return AnalysisRun(True, "no rules", [])
    deadline_extra = max(r.for_ for r in rules) + analysis.interval
    if analysis.initial_delay:
        log(f"{prefix}analysis starts in {analysis.initial_delay:.0f}s (initial_delay)")
        sleep(analysis.initial_delay)
    started = time.monotonic()
    i = 0
    while True:
        i += 1
        pending = False
        for rule in rules:
            m = measure(rule, metrics, labels, since=since)
            all_measurements.append(m)
            log(f"{prefix}{m.narrate()}")
            if m.dry_run:
                continue
            if m.result == INCONCLUSIVE:
                inconclusive[rule.name] = inconclusive.get(rule.name, 0) + 1
                if inconclusive[rule.name] > analysis.inconclusive_limit and analysis.on_inconclusive == "abort":
                    reason = (f"rule {rule.name}: inconclusive {inconclusive[rule.name]} times "
                              f"(limit {analysis.inconclusive_limit}): {m.detail}")
                    return AnalysisRun(False, reason, all_measurements, m)
                if inconclusive[rule.name] > analysis.inconclusive_limit and analysis.on_inconclusive == "pause":
                    m = _pause(rule, m, metrics, labels, analysis, log, prefix, since, sleep, all_measurements)
                    if m.result == INCONCLUSIVE:
                        reason = (f"rule {rule.name}: still inconclusive after a {analysis.pause_timeout:.0f}s "
                                  f"pause: {m.detail}")
                        return AnalysisRun(False, reason, all_measurements, m)
                    inconclusive[rule.name] = 0
            if m.result == FAILED:
                failures[rule.name] = failures.get(rule.name, 0) + 1
                if failures[rule.name] > analysis.failure_limit:
                    reason = (f"rule {rule.name}: {m.value:.4g} breached {m.threshold} for "
                              f"{m.window:.0f}s (window {rule.for_:.0f}s)")
                    return AnalysisRun(False, reason, all_measurements, m)
            elif m.result == PENDING:
                pending = True
        if i >= analysis.count and not pending:
            break
        if i >= analysis.count and time.monotonic() - started > analysis.count * analysis.interval + deadline_extra:
            break
        sleep(analysis.interval)
    return AnalysisRun(True, f"{len(rules)} rule(s) held over {i} measurement(s)", all_measurements)
