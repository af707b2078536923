"""promote: all traffic on the new version, previous kept warm as the rollback target, the
release recorded as an asset event deploy/<env>/<service>. Safe to re-execute."""


import time

from dagster import AssetMaterialization, MetadataValue, Out, Output, op

from deploy_pipelines.adapters.backup_storage import BackupStorage
from deploy_pipelines.adapters.git import GitSource
from deploy_pipelines.adapters.metrics import MetricsSource
from deploy_pipelines.adapters.platform import Platform
from deploy_pipelines.adapters.records import BackupRecord, BuiltImage, DeployResult
from deploy_pipelines.catalog.models import BlueGreen
from deploy_pipelines.history.metadata import canary_steps_reached, event_metrics
from deploy_pipelines.history.summary import release_summary, serving_before
from deploy_pipelines.steps.common import DeployTarget, ReleaseInput, VerifyOutcome, deploy_history, ensure_exclusive, history_key


def unpin_superseded(storage: BackupStorage, service: str, environment: str, keep: set[str], log) -> None:
    """Backups pinned by releases that are neither current nor previous may be pruned again."""
    for record in storage.list(f"{service}/{environment}/"):
        for by in record.pinned_by:
            if by not in keep:
                storage.unpin(record.key, by)
                log(f"backup {record.key} no longer pinned by superseded release {by}")


@op(out=Out(dict), tags={"deploy/step": "promote"})
def promote(context, release: ReleaseInput, image: BuiltImage, deployed: DeployResult, checks: VerifyOutcome,
            backup: BackupRecord | None, migrations: list, target: DeployTarget, platform: Platform,
            backup_storage: BackupStorage, git: GitSource, metrics: MetricsSource) -> Output:
    """Make the new version stable and record the release."""
    ensure_exclusive(context, target.key)
    strategy = target.target.strategy
    keep = strategy.keep_previous if isinstance(strategy, BlueGreen) else 0
    current = platform.promote(context.log.info, keep_previous_seconds=keep)
    previous = deployed.previous.version if deployed.previous else ""
    # The release before this one (a re-executed promote finds its own event first: skip it).
    before = next((meta for meta, _ in deploy_history(context.instance, target.service, target.environment)
                   if meta.get("outcome") == "promoted" and meta.get("release_id") != release.run_id), None)
    if target.spec.database is not None:
        keep_ids = {release.run_id} | ({before["release_id"]} if before and before.get("release_id") else set())
        unpin_superseded(backup_storage, target.service, target.environment, keep_ids, context.log.info)
    meta = {
        "outcome": "promoted", "version": release.version, "commit": release.commit, "image": image.ref,
        "digest": image.digest, "previous_version": previous,
        "previous_image": deployed.previous.image if deployed.previous else "",
        "release_id": release.run_id, "strategy": strategy.kind,
        "backup_key": backup.key if backup else "", "migrations": ",".join(migrations),
        # What it was released with (env, secret references, probes): a rollback brings it back exactly.
        "workload": MetadataValue.json(current.workload.model_dump(mode="json")) if current.workload else "",
        "keep_previous_until": (time.time() + keep) if keep and previous else 0.0,
        "summary": MetadataValue.md(release_summary(
            context, target, release, git, outcome="promoted", checks=checks.checks, first=deployed.previous is None,
            serving=serving_before(context.instance, target.service, target.environment, release.run_id))),
        **event_metrics(context, commit_time=git.commit_time(release.commit),
                        steps_reached=canary_steps_reached(checks.checks, strategy), target=target, metrics=metrics),
    }
    context.log_event(AssetMaterialization(history_key(target.service, target.environment), metadata=meta,
                                           description=f"{release.version} promoted"))
    context.log.info(f"{target.service} {release.version} is stable in {target.environment}"
                     f"{'; previous ' + previous + ' kept as the rollback target' if previous else ''}")
    return Output({"version": current.version, "image": current.image}, metadata={"version": current.version})
