"""Numeric metadata on release, abort and rollback events so the asset page plots them: how long
the run took, how long a commit waited before it served users, how many requests failed during the
rollout, how far a canary got, plus a link to the run. Steps call `event_metrics` with what they
know; everything else is read here."""

from __future__ import annotations

import time

from dagster import MetadataValue

from deploy_pipelines.analysis import fill
from deploy_pipelines.catalog.models import Canary


def run_duration_s(instance, run_id: str, now: float) -> float | None:
    """Seconds since the run started (the event is recorded at the end of the run's last step)."""
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        return None
    start = record.start_time or record.create_timestamp.timestamp()
    return round(now - start, 3)


def canary_steps_reached(checks: list[dict], strategy) -> int | None:
    """How many canary steps a release walked: every step when it was promoted (all passed), or
    the distinct `canary N%` stages its checks name when it stopped early."""
    if not isinstance(strategy, Canary):
        return None
    stages = {c["check"].split(":", 1)[0] for c in checks if str(c.get("check", "")).startswith("canary ")}
    return len(stages)


def failed_requests(target, metrics, window_s: float | None, log) -> float | None:
    """Requests that failed during the rollout, by the catalog's `verify.failed_requests` query over
    the run so far; None (no plot point) when the catalog has none or the source cannot answer."""
    query = target.spec.verify.failed_requests
    if not query or not window_s:
        return None
    labels = {"service": target.service, "environment": target.environment, "window": f"{max(1, round(window_s))}s"}
    # Filled like a verify rule's query, but read as one instant value: a count, not a verdict
    # against a threshold over a `for` window, so analysis.measure/judge do not apply.
    try:
        value = metrics.query(fill(query, **labels))
    except Exception as exc:  # noqa: BLE001 - evidence for the history, never a reason to fail a release
        log(f"failed requests during the rollout: unknown ({type(exc).__name__}: {exc})")
        return None
    if value is not None:
        log(f"failed requests during the rollout ({labels['window']}): {value:.0f}")
    return None if value is None else round(value, 1)


def event_metrics(context, *, commit_time: float | None = None, steps_reached: int | None = None,
                  target=None, metrics=None) -> dict:
    """Metadata to merge into a deploy/<env>/<service> event: floats and ints only where the value
    is known, so the UI's plots have no gaps filled with zeros."""
    now = time.time()
    meta: dict = {"run": MetadataValue.dagster_run(context.run_id)}
    duration = run_duration_s(context.instance, context.run_id, now)
    if duration is not None:
        meta["duration_s"] = MetadataValue.float(duration)
    if commit_time:
        meta["lead_time_s"] = MetadataValue.float(round(now - commit_time, 3))
        meta["commit_time"] = MetadataValue.timestamp(commit_time)
    if target is not None and metrics is not None:
        failed = failed_requests(target, metrics, duration, context.log.info)
        if failed is not None:
            meta["failed_requests"] = MetadataValue.float(failed)
    if steps_reached is not None:
        meta["canary_steps_reached"] = MetadataValue.int(steps_reached)
    return meta
