"""Job factories, one set per catalog target: release_<service>_<env>, rollback_<service>_<env>,
backup_/verify_backup_ (with a database), patch_, and approve_ where the environment requires another."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from dagster import JobDefinition, in_process_executor, job

from deploy_pipelines.catalog import catalog_digest, read_catalog_bytes
from deploy_pipelines.catalog.models import BlueGreen, Catalog
from deploy_pipelines.resources import resources_for
from deploy_pipelines.steps.backup import backup
from deploy_pipelines.steps.build import build
from deploy_pipelines.steps.cleanup import remove_expired_previous
from deploy_pipelines.steps.common import CATALOG_TAG, KIND_TAG, TARGET_TAG, target_key
from deploy_pipelines.steps.deploy import deploy
from deploy_pipelines.steps.migrate import migrate
from deploy_pipelines.steps.promote import promote
from deploy_pipelines.steps.rollback import rollback
from deploy_pipelines.steps.scan import scan
from deploy_pipelines.steps.verify import verify
from deploy_pipelines.steps.approve import approve
from deploy_pipelines.steps.maintenance import apply_retention, patch_build, patch_source, scheduled_backup, verify_backup

SERVICE_TAG = "deploy/service"
ENVIRONMENT_TAG = "deploy/environment"


def release_job_name(service: str, environment: str) -> str:
    return f"release_{service}_{environment}"


def rollback_job_name(service: str, environment: str) -> str:
    return f"rollback_{service}_{environment}"


def backup_job_name(service: str, environment: str) -> str:
    return f"backup_{service}_{environment}"


def verify_backup_job_name(service: str, environment: str) -> str:
    return f"verify_backup_{service}_{environment}"


def patch_job_name(service: str, environment: str) -> str:
    return f"patch_{service}_{environment}"


def approve_job_name(service: str, environment: str) -> str:
    return f"approve_{service}_{environment}"


def job_tags(service: str, environment: str, kind: str, target: bool = True) -> dict[str, str]:
    """Tags every job carries (and so every run of it): with 3,000 jobs in a code location the UI's
    run filters find one service's or one environment's runs by deploy/service or
    deploy/environment. deploy/target only where the one-run-per-target limit applies."""
    tags = {SERVICE_TAG: service, ENVIRONMENT_TAG: environment, KIND_TAG: kind}
    if target:
        tags[TARGET_TAG] = target_key(service, environment)
    return tags


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
         tags={**job_tags(service, environment, "release"), **_catalog_tag(catalog_path)},
         resource_defs=resources_for(catalog, catalog_path, service, environment),
         executor_def=in_process_executor)
    def _release():
        release = scan()
        deliver(release, build(release))

    return _release


def build_rollback_job(catalog: Catalog, catalog_path: str, service: str, environment: str) -> JobDefinition:
    @job(name=rollback_job_name(service, environment),
         description=f"Roll {service} in {environment} back to the previous (or a given) release.",
         tags={**job_tags(service, environment, "rollback"), **_catalog_tag(catalog_path)},
         resource_defs=resources_for(catalog, catalog_path, service, environment),
         executor_def=in_process_executor)
    def _rollback():
        rollback()

    return _rollback


def build_backup_job(catalog: Catalog, catalog_path: str, service: str, environment: str) -> JobDefinition:
    b = catalog.services[service].database.backup

    @job(name=backup_job_name(service, environment),
         description=f"Back up {service}'s {environment} database, then apply retention "
                     f"(keep {b.keep_days} days / the newest {b.keep_last}; never a backup a release pins).",
         tags=job_tags(service, environment, "backup", target=False),
         resource_defs=resources_for(catalog, catalog_path, service, environment), executor_def=in_process_executor)
    def _backup():
        apply_retention(scheduled_backup())

    return _backup


def build_verify_backup_job(catalog: Catalog, catalog_path: str, service: str, environment: str) -> JobDefinition:
    @job(name=verify_backup_job_name(service, environment),
         description=f"Restore {service}'s newest {environment} backup into a scratch database and compare "
                     "row counts per table.",
         tags=job_tags(service, environment, "verify_backup", target=False),
         resource_defs=resources_for(catalog, catalog_path, service, environment), executor_def=in_process_executor)
    def _verify_backup():
        verify_backup()

    return _verify_backup


def build_patch_job(catalog: Catalog, catalog_path: str, service: str, environment: str) -> JobDefinition:
    @job(name=patch_job_name(service, environment),
         description=f"Rebuild the version of {service} running in {environment} on a refreshed base image and "
                     "roll it out through backup, deploy, verify and promote.",
         tags={**job_tags(service, environment, "patch"), **_catalog_tag(catalog_path)},
         resource_defs=resources_for(catalog, catalog_path, service, environment), executor_def=in_process_executor)
    def _patch():
        release = patch_source()
        deliver(release, patch_build(release))

    return _patch


def build_approve_job(catalog: Catalog, catalog_path: str, service: str, environment: str) -> JobDefinition:
    @job(name=approve_job_name(service, environment),
         description=f"Approve a version of {service} that passed {catalog.environments[environment].requires} "
                     f"for {environment}; the promotion sensor then releases it.",
         tags=job_tags(service, environment, "approval", target=False),
         resource_defs={"target": resources_for(catalog, catalog_path, service, environment)["target"]},
         executor_def=in_process_executor)
    def _approve():
        approve()

    return _approve


def cleanup_job_name(service: str, environment: str) -> str:
    return f"cleanup_{service}_{environment}"


def build_cleanup_job(catalog: Catalog, catalog_path: str, service: str, environment: str) -> JobDefinition:
    keep = catalog.services[service].targets[environment].strategy.keep_previous

    @job(name=cleanup_job_name(service, environment),
         description=f"Remove {service}'s previous release in {environment} once keep_previous ({keep:.0f}s) "
                     "has passed.",
         tags=job_tags(service, environment, "cleanup"),
         resource_defs=resources_for(catalog, catalog_path, service, environment), executor_def=in_process_executor)
    def _cleanup():
        remove_expired_previous()

    return _cleanup


def job_builders(catalog: Catalog, catalog_path: str) -> dict[str, Callable[[], JobDefinition]]:
    """Every job of the catalog by name, each as a function that builds it: a run needs one job,
    and building all of them costs time proportional to the catalog (definitions.py)."""
    builders: dict[str, Callable[[], JobDefinition]] = {}
    for service, svc in catalog.services.items():
        for environment in catalog.environment_order():
            if environment not in svc.targets:
                continue
            factories = [(release_job_name, build_release_job), (rollback_job_name, build_rollback_job)]
            if svc.database is not None:
                factories += [(backup_job_name, build_backup_job), (verify_backup_job_name, build_verify_backup_job)]
            factories.append((patch_job_name, build_patch_job))
            if catalog.environments[environment].requires:
                factories.append((approve_job_name, build_approve_job))
            if isinstance(svc.targets[environment].strategy, BlueGreen):
                factories.append((cleanup_job_name, build_cleanup_job))
            for name_of, build in factories:
                builders[name_of(service, environment)] = partial(build, catalog, catalog_path, service, environment)
    return builders


def build_jobs(catalog: Catalog, catalog_path: str) -> list[JobDefinition]:
    return [build() for build in job_builders(catalog, catalog_path).values()]
