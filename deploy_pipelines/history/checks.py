"""Asset checks on deploy/<env>/<service>: the state of a target at a glance.

- serves_recorded_release (drift): the platform serves the release the history recorded last
  (same version and digest) on at least one running instance.
- backup_is_fresh: the newest backup is younger than the backup schedule allows (one missed run
  fails it).
- restore_verified: the newest restore-verification run passed.

Each target's adapters are resources under per-target keys (`platform__<service>__<env>`), so one
checks job evaluates every target. serving_image_rescan (today's scan of the serving image) is in rescan.py."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from dagster import (AssetCheckResult, AssetCheckSeverity, AssetChecksDefinition, DagsterRunStatus, MetadataValue,
                     RunsFilter, asset_check)

from deploy_pipelines.catalog.models import Catalog
from deploy_pipelines.cron import ticks as cron_ticks
from deploy_pipelines.steps.common import deploy_history, history_key

GRACE_S = 3600.0     # a backup run may take a while after its tick


def resource_key(kind: str, service: str, environment: str) -> str:
    return f"{kind}__{service}__{environment}"


def recorded_release(instance, service: str, environment: str) -> dict | None:
    """What the history says serves: the newest promotion or rollback."""
    return next((meta for meta, _ in deploy_history(instance, service, environment)
                 if meta.get("outcome") in ("promoted", "rolled_back")), None)


def drift_result(recorded: dict | None, current, running: int) -> AssetCheckResult:
    want_version = (recorded or {}).get("version", "")
    want_digest = (recorded or {}).get("digest") or (recorded or {}).get("image", "").rpartition("@")[2]
    meta = {"recorded_version": want_version or "none", "serving_version": current.version if current else "none",
            "recorded_digest": want_digest or "none", "serving_digest": current.digest if current else "none",
            "running_instances": running}
    if recorded is None and current is None:
        return AssetCheckResult(passed=True, metadata={**meta, "detail": "nothing released, nothing runs"})
    if current is None or running == 0:
        detail = f"the history says {want_version or 'nothing'} serves, but no instance of it runs"
    elif recorded is None:
        detail = f"{current.version} serves, but the history records no release of it"
    elif current.version != want_version or current.digest != want_digest:
        detail = f"the history says {want_version} ({want_digest[:19]}) serves, the platform serves " \
                 f"{current.version} ({current.digest[:19]})"
    else:
        return AssetCheckResult(passed=True, metadata={**meta, "detail": f"{want_version} serves on {running} "
                                                                          "instance(s), as recorded"})
    return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR, metadata={**meta, "detail": detail},
                            description=detail)


def allowed_backup_age_s(cron: str, tz: str, now: float) -> float:
    """Time since the tick before the latest one, plus grace: a backup older than that means at
    least one scheduled backup is missing."""
    ticks = []
    for tick in cron_ticks(now - 40 * 86400, cron, tz):
        if tick.timestamp() > now:
            break
        ticks = (ticks + [tick.timestamp()])[-2:]
    return now - ticks[0] + GRACE_S if ticks else 40 * 86400.0


def _timestamp(iso: str) -> float:
    when = datetime.fromisoformat(iso)
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def build_checks(catalog: Catalog) -> list[AssetChecksDefinition]:
    from deploy_pipelines.history.rescan import rescan_check   # rescan.py reads recorded_release from here

    checks = []
    for service, svc in catalog.services.items():
        for environment in svc.targets:
            checks.append(_drift_check(service, environment))
            if svc.scan.scanners:
                checks.append(rescan_check(catalog, service, environment, resource_key("git", service, environment)))
            if svc.database is not None:
                checks += [_backup_check(service, environment, svc.database.backup.schedule, catalog.timezone),
                           _restore_check(service, environment)]
    return checks


def _drift_check(service: str, environment: str) -> AssetChecksDefinition:
    key = resource_key("platform", service, environment)

    @asset_check(asset=history_key(service, environment), name="serves_recorded_release",
                 required_resource_keys={key}, blocking=False,
                 description="The platform serves the release the history recorded last (version and digest)")
    def _check(context) -> AssetCheckResult:
        platform = getattr(context.resources, key)
        current = platform.current()
        running = platform.status().instances.get(current.version, 0) if current else 0
        return drift_result(recorded_release(context.instance, service, environment), current, running)

    return _check


def _backup_check(service: str, environment: str, cron: str, tz: str) -> AssetChecksDefinition:
    key = resource_key("backup_storage", service, environment)

    @asset_check(asset=history_key(service, environment), name="backup_is_fresh", required_resource_keys={key},
                 description=f"The newest database backup is younger than the schedule ({cron}, {tz}) allows")
    def _check(context) -> AssetCheckResult:
        now = time.time()
        allowed = allowed_backup_age_s(cron, tz, now)
        records = getattr(context.resources, key).list(f"{service}/{environment}/")
        if not records:
            return AssetCheckResult(passed=False, description="no backup exists",
                                    metadata={"allowed_age_s": MetadataValue.float(allowed)})
        newest = max(records, key=lambda r: r.created_at)
        age = now - _timestamp(newest.created_at)
        return AssetCheckResult(passed=age <= allowed, metadata={
            "newest_backup": newest.uri, "age_s": MetadataValue.float(round(age, 1)),
            "allowed_age_s": MetadataValue.float(round(allowed, 1))},
            description=None if age <= allowed else f"newest backup {newest.key} is {age / 3600:.1f} h old")

    return _check


def _restore_check(service: str, environment: str) -> AssetChecksDefinition:
    job_name = f"verify_backup_{service}_{environment}"

    @asset_check(asset=history_key(service, environment), name="restore_verified",
                 description=f"The newest restore-verification run ({job_name}) passed")
    def _check(context) -> AssetCheckResult:
        done = context.instance.get_run_records(
            RunsFilter(job_name=job_name, statuses=[DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE]), limit=1)
        if not done:
            return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN,
                                    description=f"no restore has been verified yet: run {job_name}")
        run = done[0].dagster_run
        return AssetCheckResult(passed=run.status == DagsterRunStatus.SUCCESS, metadata={
            "run": MetadataValue.dagster_run(run.run_id), "status": run.status.value})

    return _check
