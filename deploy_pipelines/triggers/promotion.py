"""Promotion: a successful release to an environment that another one requires (staging) becomes
the release to that one (production), or waits for an approve_<service>_<env> run where the
catalog says `approval: manual`. Branch builds and pre-releases are never promoted; the
production release's own scan refuses any version that did not pass the required environment."""

from dagster import DagsterRunStatus, DefaultSensorStatus, JobDefinition, SkipReason, run_status_sensor

from deploy_pipelines.catalog.models import Catalog
from deploy_pipelines.steps.common import VERSION_TAG, parse_version
from deploy_pipelines.triggers.tags import release_request


def promotion_decision(catalog: Catalog, service: str, environment: str, job_name: str, tags: dict[str, str],
                       approve_job: str):
    """-> RunRequest or SkipReason for one successful run of a monitored job."""
    svc = catalog.services[service]
    env = catalog.environments[environment]
    version = tags.get(VERSION_TAG, "")
    commit = tags.get("deploy/commit", "")
    try:
        parsed = parse_version(version, svc)
    except ValueError:
        return SkipReason(f"{service} {version or '(no version)'} is not a release tag (a branch build?): "
                          f"only tags are promoted to {environment}")
    if parsed.prerelease:
        return SkipReason(f"{service} {version} is a pre-release: it stays in {env.requires}")
    if job_name == approve_job:
        return release_request(service, environment, version, commit, "approval")
    if env.approval == "manual":
        return SkipReason(f"{service} {version} passed {env.requires}; {environment} needs approval: launch "
                          f"{approve_job} with version {version}")
    return release_request(service, environment, version, commit, "promotion")


def build_promotion_sensors(catalog: Catalog, jobs: dict[str, JobDefinition], default_on: bool,
                            interval: int = 5) -> list:
    status = DefaultSensorStatus.RUNNING if default_on else DefaultSensorStatus.STOPPED
    sensors = []
    for service, svc in catalog.services.items():
        for environment in catalog.environment_order():
            required = catalog.environments[environment].requires
            if environment not in svc.targets or not required:
                continue
            approve_job = f"approve_{service}_{environment}"
            monitored = [jobs[f"release_{service}_{required}"], jobs[approve_job]]

            def _promote(context, service=service, environment=environment, approve_job=approve_job):
                run = context.dagster_run
                return promotion_decision(catalog, service, environment, run.job_name, dict(run.tags), approve_job)

            sensors.append(run_status_sensor(
                run_status=DagsterRunStatus.SUCCESS, name=f"promote_{service}_{environment}",
                monitored_jobs=monitored, request_job=jobs[f"release_{service}_{environment}"],
                minimum_interval_seconds=interval, default_status=status,
                description=f"{service}: a successful {required} release (or an approval) -> release to "
                            f"{environment}")(_promote))
    return sensors
