"""Job factories: release_<service>_<env> and rollback_<service>_<env>, one per catalog target."""

from __future__ import annotations

from dagster import JobDefinition, in_process_executor, job

from deploy_pipelines.catalog.models import Catalog
from deploy_pipelines.resources import resources_for
from deploy_pipelines.steps.backup import backup
from deploy_pipelines.steps.build import build
from deploy_pipelines.steps.common import KIND_TAG, TARGET_TAG, target_key
from deploy_pipelines.steps.deploy import deploy
from deploy_pipelines.steps.migrate import migrate
from deploy_pipelines.steps.promote import promote
from deploy_pipelines.steps.rollback import rollback
from deploy_pipelines.steps.scan import scan
from deploy_pipelines.steps.verify import verify


def release_job_name(service: str, environment: str) -> str:
    return f"release_{service}_{environment}"


def rollback_job_name(service: str, environment: str) -> str:
    return f"rollback_{service}_{environment}"


def build_release_job(catalog: Catalog, catalog_path: str, service: str, environment: str) -> JobDefinition:
    target = catalog.services[service].targets[environment]

    # In-process: a process per step costs ~3 s each on a 2-core machine (LOCAL_STACK.md).
    @job(name=release_job_name(service, environment),
         description=f"Release {service} to {environment}: scan, build, backup, migrate, deploy "
                     f"({target.strategy.kind}), verify, promote.",
         tags={TARGET_TAG: target_key(service, environment), KIND_TAG: "release"},
         resource_defs=resources_for(catalog, catalog_path, service, environment),
         executor_def=in_process_executor)
    def _release():
        release = scan()
        image = build(release)
        dump = backup(release, image)
        applied = migrate(release, dump)
        deployed = deploy(release, image, applied)
        checks = verify(release, deployed)
        promote(release, image, deployed, checks, dump, applied)

    return _release


def build_rollback_job(catalog: Catalog, catalog_path: str, service: str, environment: str) -> JobDefinition:
    @job(name=rollback_job_name(service, environment),
         description=f"Roll {service} in {environment} back to the previous (or a given) release.",
         tags={TARGET_TAG: target_key(service, environment), KIND_TAG: "rollback"},
         resource_defs=resources_for(catalog, catalog_path, service, environment),
         executor_def=in_process_executor)
    def _rollback():
        rollback()

    return _rollback


def build_jobs(catalog: Catalog, catalog_path: str) -> list[JobDefinition]:
    jobs = []
    for service, svc in catalog.services.items():
        for environment in catalog.environment_order():
            if environment in svc.targets:
                jobs.append(build_release_job(catalog, catalog_path, service, environment))
                jobs.append(build_rollback_job(catalog, catalog_path, service, environment))
    return jobs
