"""Job factories: release_<service>_<env> and rollback_<service>_<env>, one per catalog target."""

from __future__ import annotations

from pathlib import Path

from dagster import JobDefinition, in_process_executor, job

from deploy_pipelines.catalog.models import Catalog
from deploy_pipelines.resources import resources_for
from deploy_pipelines.steps.backup import backup
from deploy_pipelines.steps.build import build
from deploy_pipelines.catalog import catalog_digest, read_catalog_bytes
from deploy_pipelines.steps.common import CATALOG_TAG, KIND_TAG, TARGET_TAG, target_key
from deploy_pipelines.steps.deploy import deploy
from deploy_pipelines.steps.migrate import migrate
from deploy_pipelines.steps.promote import promote
from deploy_pipelines.steps.rollback import rollback
from deploy_pipelines.steps.scan import scan
from deploy_pipelines.steps.verify import verify
from deploy_pipelines.steps.approve import approve
from deploy_pipelines.steps.maintenance import apply_retention, patch_build, patch_source, scheduled_backup, verify_backup


def release_job_name(service: str, environment: str) -> str:
    return f"release_{service}_{environment}"


def rollback_job_name(service: str, environment: str) -> str:
    return f"rollback_{service}_{environment}"


def _catalog_tag(catalog_path: str) -> dict[str, str]:
    """The catalog's sha256 as a job tag: every run records the file it was launched with
    (DeployTarget refuses to run on a file changed since)."""
    return {CATALOG_TAG: catalog_digest(read_catalog_bytes(Path(catalog_path)))}


def deliver(release, image) -> None:
    """The steps after the image exists, shared by releases and patches: no deploy without a
    backup, no traffic on a version that failed verification."""
    dump = backup(release, image)
    applied = migrate(release, dump)
    deployed = deploy(release, image, applied)
    checks = verify(release, deployed)
    promote(release, image, deployed, checks, dump, applied)


def build_release_job(catalog: Catalog, catalog_path: str, service: str, environment: str) -> JobDefinition:
    target = catalog.services[service].targets[environment]

    # In-process: a process per step costs ~3 s each on a 2-core machine (LOCAL_STACK.md).
    @job(name=release_job_name(service, environment),
         description=f"Release {service} to {environment}: scan, build, backup, migrate, deploy "
                     f"({target.strategy.kind}), verify, promote.",
         tags={TARGET_TAG: target_key(service, environment), KIND_TAG: "release", **_catalog_tag(catalog_path)},
         resource_defs=resources_for(catalog, catalog_path, service, environment),
         executor_def=in_process_executor)
    def _release():
        release = scan()
        deliver(release, build(release))

    return _release


def build_rollback_job(catalog: Catalog, catalog_path: str, service: str, environment: str) -> JobDefinition:
    @job(name=rollback_job_name(service, environment),
         description=f"Roll {service} in {environment} back to the previous (or a given) release.",
         tags={TARGET_TAG: target_key(service, environment), KIND_TAG: "rollback", **_catalog_tag(catalog_path)},
         resource_defs=resources_for(catalog, catalog_path, service, environment),
         executor_def=in_process_executor)
    def _rollback():
        rollback()

    return _rollback


def build_maintenance_jobs(catalog: Catalog, catalog_path: str, service: str, environment: str) -> list[JobDefinition]:
    svc = catalog.services[service]
    resources = resources_for(catalog, catalog_path, service, environment)
    key = target_key(service, environment)
    jobs = []
    if svc.database is not None:
        b = svc.database.backup

        @job(name=f"backup_{service}_{environment}",
             description=f"Back up {service}'s {environment} database, then apply retention "
                         f"(keep {b.keep_days} days / the newest {b.keep_last}; never a backup a release pins).",
             tags={KIND_TAG: "backup"}, resource_defs=resources, executor_def=in_process_executor)
        def _backup():
            apply_retention(scheduled_backup())

        @job(name=f"verify_backup_{service}_{environment}",
             description=f"Restore {service}'s newest {environment} backup into a scratch database and compare "
                         "row counts per table.",
             tags={KIND_TAG: "verify_backup"}, resource_defs=resources, executor_def=in_process_executor)
        def _verify_backup():
            verify_backup()

        jobs += [_backup, _verify_backup]

    @job(name=f"patch_{service}_{environment}",
         description=f"Rebuild the version of {service} running in {environment} on a refreshed base image and "
                     "roll it out through backup, deploy, verify and promote.",
         tags={TARGET_TAG: key, KIND_TAG: "patch", **_catalog_tag(catalog_path)}, resource_defs=resources, executor_def=in_process_executor)
    def _patch():
        release = patch_source()
        deliver(release, patch_build(release))

    jobs.append(_patch)
    if catalog.environments[environment].requires:
        @job(name=f"approve_{service}_{environment}",
             description=f"Approve a version of {service} that passed {catalog.environments[environment].requires} "
                         f"for {environment}; the promotion sensor then releases it.",
             tags={KIND_TAG: "approval"}, resource_defs={"target": resources["target"]},
             executor_def=in_process_executor)
        def _approve():
            approve()

        jobs.append(_approve)
    return jobs


def build_jobs(catalog: Catalog, catalog_path: str) -> list[JobDefinition]:
    jobs = []
    for service, svc in catalog.services.items():
        for environment in catalog.environment_order():
            if environment in svc.targets:
                jobs.append(build_release_job(catalog, catalog_path, service, environment))
                jobs.append(build_rollback_job(catalog, catalog_path, service, environment))
                jobs += build_maintenance_jobs(catalog, catalog_path, service, environment)
    return jobs
