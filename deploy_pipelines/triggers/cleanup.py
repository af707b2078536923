"""keep_previous, enforced: for blue-green targets, a sensor that launches cleanup_<service>_<env>
(jobs.py) once the newest promotion's grace period (recorded on the release event as
`keep_previous_until`) has passed. The run key names the release, so each warm previous release is
cleaned up once, and the run is visible in the UI."""

import time

from dagster import DefaultSensorStatus, RunRequest, SkipReason, sensor

from deploy_pipelines.catalog.models import BlueGreen, Catalog
from deploy_pipelines.jobs import cleanup_job_name
from deploy_pipelines.steps.common import KIND_TAG, TARGET_TAG, TRIGGER_TAG, deploy_history, target_key


def evaluate_cleanup(instance, service: str, environment: str, now: float | None = None):
    now = time.time() if now is None else now
    newest = next((meta for meta, _ in deploy_history(instance, service, environment, limit=5)
                   if meta.get("outcome") in ("promoted", "rolled_back")), None)
    until = float((newest or {}).get("keep_previous_until") or 0)
    if not newest or not until:
        return SkipReason(f"{service} in {environment}: nothing kept warm")
    if now < until:
        return SkipReason(f"{service} in {environment}: {newest.get('previous_version')} kept warm for "
                          f"{until - now:.0f}s more")
    return RunRequest(run_key=f"cleanup:{service}:{environment}:{newest['release_id']}",
                      job_name=cleanup_job_name(service, environment),
                      tags={TARGET_TAG: target_key(service, environment), KIND_TAG: "cleanup",
                            TRIGGER_TAG: "schedule"})


def build_cleanup_sensors(catalog: Catalog, default_on: bool, interval: int = 30) -> list:
    status = DefaultSensorStatus.RUNNING if default_on else DefaultSensorStatus.STOPPED
    sensors = []
    for service, svc in catalog.services.items():
        for environment, target in svc.targets.items():
            if not isinstance(target.strategy, BlueGreen):
                continue

            def _sense(context, service=service, environment=environment):
                return evaluate_cleanup(context.instance, service, environment)

            sensors.append(sensor(name=f"cleanup_{service}_{environment}",
                                  job_name=cleanup_job_name(service, environment),
                                  minimum_interval_seconds=interval, default_status=status,
                                  description=f"{service} in {environment}: removes the warm previous release "
                                              "when keep_previous has passed")(_sense))
    return sensors
