"""rollback: traffic back to the previous release (warm if it still runs, else redeployed from
its digest) or to a given version, with the catalog's database action. Re-executable."""


from dagster import AssetMaterialization, Config, Failure, MetadataValue, Out, Output, op
from pydantic import Field

from deploy_pipelines.adapters.backup_storage import BackupStorage
from deploy_pipelines.adapters.database import Database
from deploy_pipelines.adapters.migrations import load_migrations
from deploy_pipelines.adapters.git import GitSource
from deploy_pipelines.adapters.platform import Platform
from deploy_pipelines.history.metadata import event_metrics
from deploy_pipelines.steps.backup import take_backup
from deploy_pipelines.steps.common import (REASON_TAG, DeployTarget, deploy_history, ensure_exclusive, history_key,
                                           last_release)
from deploy_pipelines.steps.migrate import restore_backup


class RollbackConfig(Config):
    to_version: str | None = Field(None, description="Roll back to this version (default: the previous release)")
    reason: str = Field("manual rollback", description="Why: recorded in history and notifications")


def _find_release(instance, service: str, environment: str, version: str) -> dict | None:
    return next((meta for meta, _ in deploy_history(instance, service, environment, limit=200)
                 if meta.get("version") == version and meta.get("image")), None)


@op(out=Out(dict), tags={"deploy/step": "rollback"})
def rollback(context, config: RollbackConfig, target: DeployTarget, platform: Platform, database: Database,
             backup_storage: BackupStorage, git: GitSource) -> Output:
    """Move traffic back to the previous (or a given) release and record it."""
    ensure_exclusive(context, target.key)
    log = context.log.info
    current = platform.current(target.service, target.environment)
    if current is None:
        raise Failure(f"{target.where}: nothing runs, nothing to roll back")
    bad = last_release(context.instance, target.service, target.environment)
    to_image, to_version = None, config.to_version
    if config.to_version:
        found = _find_release(context.instance, target.service, target.environment, config.to_version)
        if found is None:
            raise Failure(f"{target.where}: {config.to_version} was never released here; "
                          "choose a version from the deploy history")
        to_image = found["image"]
    elif not current.previous_image:
        raise Failure(f"{target.where}: {current.version} has no previous release to roll back to")
    if current.version == (to_version or current.previous_version) and not to_image:
        log(f"{current.version} already serves: nothing to do")
    context.instance.add_run_tags(context.run_id, {REASON_TAG: config.reason[:200]})
    log(f"rolling back {current.version} -> {to_version or current.previous_version}: {config.reason}")
    released = platform.rollback(target.service, target.environment, log, to_image=to_image, to_version=to_version)

    db_action = target.spec.database.rollback if target.spec.database else "none"
    if db_action != "none" and bad and bad.get("version") == current.version:
        # A pre-rollback dump first: the rolled-back data must never be lost.
        pre = take_backup(context, target, database, backup_storage, f"pre-rollback-{current.version}",
                          (context.run_id,))
        log(f"pre-rollback backup {pre.key}")
        if db_action == "restore" and bad.get("backup_key"):
            record = next(r for r in backup_storage.list(f"{target.service}/{target.environment}/")
                          if r.key == bad["backup_key"])
            restore_backup(context, target, database, backup_storage, record)
        elif db_action == "down" and bad.get("migrations"):
            import tempfile
            from pathlib import Path
            names = set(bad["migrations"].split(","))
            with tempfile.TemporaryDirectory() as tmp:
                tree = git.export(current.version, Path(tmp) / "src")
                todo = [m for m in load_migrations(tree / target.spec.database.migrate.dir) if m.name in names]
                database.revert(todo)
            log(f"reverted migrations {', '.join(sorted(names))}")
    meta = {"outcome": "rolled_back", "version": released.version, "image": released.image,
            "rolled_back_from": current.version, "reason": config.reason, "database_action": db_action,
            "release_id": context.run_id,
            "summary": MetadataValue.md(f"### rollback {current.version} → {released.version}\n\n{config.reason}"),
            **event_metrics(context)}
    context.log_event(AssetMaterialization(history_key(target.service, target.environment), metadata=meta,
                                           description=f"rolled back to {released.version}"))
    return Output({"version": released.version, "from": current.version}, metadata={"version": released.version})
