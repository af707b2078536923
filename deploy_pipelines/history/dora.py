"""DORA metrics of one service in one environment, from its deploy/<env>/<service> events:
promotions and rollbacks (materializations) and aborted releases (observations).

Definitions, per window (the last day, the last 7 days, ending now):
- deployments: releases promoted in the window; frequency = deployments per day of the window.
- lead time: median of the promoted releases' `lead_time_s` (commit time to serving here).
- change failure rate: (aborted releases + rollbacks) / (promoted + aborted releases), at most 1:
  a release stopped by verify failed; a promoted release later rolled back failed too.
- time to restore: mean time from a failure (abort or rollback) in the window to the next promoted
  release after it (the next healthy release); failures not yet followed by one are left out.
- rollbacks: rollbacks in the window."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from dagster import AssetKey, AssetRecordsFilter

WINDOWS = {"1d": 86400.0, "7d": 7 * 86400.0}
FAILURES = ("aborted", "rolled_back")


@dataclass(frozen=True)
class HistoryEvent:
    timestamp: float
    outcome: str               # promoted | aborted | rolled_back
    version: str = ""
    lead_time_s: float | None = None


def read_events(instance, key: AssetKey, limit: int = 1000) -> list[HistoryEvent]:
    """Every promotion, rollback and abort recorded on the key, oldest first."""
    events = []
    flt = AssetRecordsFilter(asset_key=key)
    for record in instance.fetch_materializations(flt, limit=limit).records:
        events.append(_event(record.timestamp, record.asset_materialization.metadata))
    for record in instance.fetch_observations(flt, limit=limit).records:
        events.append(_event(record.timestamp, record.asset_observation.metadata))
    return sorted((e for e in events if e.outcome in ("promoted", *FAILURES)), key=lambda e: e.timestamp)


def _event(timestamp: float, metadata) -> HistoryEvent:
    value = {k: getattr(v, "value", v) for k, v in metadata.items()}
    lead = value.get("lead_time_s")
    return HistoryEvent(timestamp, str(value.get("outcome", "")), str(value.get("version", "")),
                        float(lead) if lead is not None else None)


def window_metrics(events: list[HistoryEvent], now: float, span_s: float) -> dict[str, float | int | None]:
    start = now - span_s
    inside = [e for e in events if start < e.timestamp <= now]
    promoted = [e for e in inside if e.outcome == "promoted"]
    aborted = sum(e.outcome == "aborted" for e in inside)
    rollbacks = sum(e.outcome == "rolled_back" for e in inside)
    leads = [e.lead_time_s for e in promoted if e.lead_time_s is not None]
    restores = []
    for failure in (e for e in inside if e.outcome in FAILURES):
        healthy = next((e for e in events if e.outcome == "promoted" and e.timestamp > failure.timestamp
                        and e.timestamp <= now), None)
        if healthy is not None:
            restores.append(healthy.timestamp - failure.timestamp)
    changes = len(promoted) + aborted
    return {
        "deployments": len(promoted),
        "deployment_frequency_per_day": len(promoted) / (span_s / 86400.0),
        "lead_time_median_s": statistics.median(leads) if leads else None,
        "change_failure_rate": min(1.0, (aborted + rollbacks) / changes) if changes else None,
        "time_to_restore_mean_s": statistics.fmean(restores) if restores else None,
        "rollbacks": rollbacks,
    }


def dora_metrics(events: list[HistoryEvent], now: float) -> dict[str, dict]:
    return {name: window_metrics(events, now, span) for name, span in WINDOWS.items()}


LABELS = {"deployments": "deployments", "deployment_frequency_per_day": "deployments per day",
          "lead_time_median_s": "lead time (median)", "change_failure_rate": "change failure rate",
          "time_to_restore_mean_s": "time to restore (mean)", "rollbacks": "rollbacks"}


def _fmt(name: str, value) -> str:
    if value is None:
        return "–"
    if name.endswith("_s"):
        return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"
    if name == "change_failure_rate":
        return f"{value:.0%}"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def markdown_summary(title: str, metrics: dict[str, dict]) -> str:
    names = list(next(iter(metrics.values())))
    lines = [f"### DORA: {title}", "", "| metric | " + " | ".join(f"last {w}" for w in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    lines += [f"| {LABELS.get(n, n)} | " + " | ".join(_fmt(n, m[n]) for m in metrics.values()) + " |"
              for n in names]
    return "\n".join(lines)
