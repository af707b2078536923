"""The history's part of the code location: deploy assets, DORA assets, asset checks, the job that
refreshes them, its schedule, and sensors that refresh after every release, rollback, patch or
restore verification. definitions.py merges this in."""

from __future__ import annotations

from dagster import (AssetSelection, DagsterRunStatus, DefaultScheduleStatus, DefaultSensorStatus, Definitions,
                     JobDefinition, RunRequest, ScheduleDefinition, define_asset_job, in_process_executor,
                     run_status_sensor, with_resources)

from deploy_pipelines.catalog.models import Catalog
from deploy_pipelines.history.assets import deploy_specs, dora_assets
from deploy_pipelines.history.checks import build_checks, resource_key
from deploy_pipelines.resources import resources_for

REFRESH_JOB = "refresh_deploy_history"
REFRESHED_BY = ("release", "rollback", "patch", "verify_backup")   # job name prefixes


def build_history_definitions(catalog: Catalog, catalog_path: str, on: bool) -> Definitions:
    checks = build_checks(catalog)
    dora = dora_assets(catalog)
    refresh = define_asset_job(REFRESH_JOB, selection=AssetSelection.assets(*dora) | AssetSelection.checks(*checks),
                               executor_def=in_process_executor,
                               description="Recompute DORA metrics and evaluate the deploy asset checks "
                                           "(drift, backup age, restore verification, rescan of the serving image)")
    schedule = ScheduleDefinition(name=f"{REFRESH_JOB}_hourly_schedule", job=refresh, cron_schedule="0 * * * *",
                                  execution_timezone=catalog.timezone,
                                  default_status=DefaultScheduleStatus.RUNNING if on else DefaultScheduleStatus.STOPPED)
    resources = {}
    for service, svc in catalog.services.items():
        for environment in svc.targets:
            adapters = resources_for(catalog, catalog_path, service, environment)
            resources[resource_key("platform", service, environment)] = adapters["platform"]
            resources[resource_key("backup_storage", service, environment)] = adapters["backup_storage"]
            resources[resource_key("git", service, environment)] = adapters["git"]
    # Each check bound to the one resource it uses, not all of them top-level: Dagster merges a
    # repository's top-level resources into every asset and check (checks x resources: ~47 CPU s
    # at 200 services x 3 environments, ~1 s bound one by one).
    bound = [with_resources([c], {k: resources[k] for k in c.required_resource_keys if k in resources})[0]
             for c in checks]
    return Definitions(assets=[*deploy_specs(catalog), *dora], asset_checks=bound, jobs=[refresh],
                       schedules=[schedule])


def build_history_sensors(jobs: list[JobDefinition], history, on: bool) -> list:
    """Refresh after every release, rollback, patch or restore verification (the jobs are built
    lazily, so these sensors come with the other triggers)."""
    watched = [j for j in jobs if j.name.startswith(REFRESHED_BY)]
    refresh = history.get_job(REFRESH_JOB)
    return [_refresh_after(status, watched, refresh, on) for status in
            (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE)] if watched else []


def _refresh_after(status: DagsterRunStatus, watched: list[JobDefinition], refresh, on: bool):
    @run_status_sensor(name=f"{REFRESH_JOB}_on_{status.value.lower()}", run_status=status, monitored_jobs=watched,
                       request_job=refresh, minimum_interval_seconds=5,
                       default_status=DefaultSensorStatus.RUNNING if on else DefaultSensorStatus.STOPPED,
                       description=f"Refresh DORA metrics and deploy checks after a release, rollback, patch or "
                                   f"restore verification ends with {status.value}")
    def _sensor(context):
        return RunRequest(run_key=f"{REFRESH_JOB}:{context.dagster_run.run_id}")

    return _sensor
