"""rollback: traffic back to the previous release (warm if it still runs, else redeployed from
its digest) or to a given version, with the catalog's database action. Re-executable."""


import tempfile
from pathlib import Path

from dagster import AssetMaterialization, Config, Failure, MetadataValue, Out, Output, op
from pydantic import Field

from deploy_pipelines.adapters.backup_storage import BackupStorage
from deploy_pipelines.adapters.database import Database
from deploy_pipelines.adapters.migrations import load_migrations
from deploy_pipelines.adapters.git import GitSource
from deploy_pipelines.adapters.platform import Platform
from deploy_pipelines.adapters.records import Workload
from deploy_pipelines.history.metadata import event_metrics
from deploy_pipelines.steps.backup import take_backup
from deploy_pipelines.steps.common import (REASON_TAG, DeployTarget, deploy_history, ensure_exclusive, history_key,
                                           last_release)
from deploy_pipelines.steps.migrate import restore_backup, run_tool


class RollbackConfig(Config):
    to_version: str | None = Field(None, description="Roll back to this version (default: the previous release)")
    reason: str = Field("manual rollback", description="Why: recorded in history and notifications")


def _find_release(instance, service: str, environment: str, version: str) -> dict | None:
    return next((meta for meta, _ in deploy_history(instance, service, environment, limit=200)
                 if meta.get("version") == version and meta.get("image")), None)


def _backup(storage: BackupStorage, target: DeployTarget, key: str):
    found = next((r for r in storage.list(f"{target.service}/{target.environment}/") if r.key == key), None)
    if found is None:
        raise Failure(f"{target.where}: the backup {key} taken before the release being rolled back is gone "
                      "(pruned or deleted); the database was not changed. Restore by hand from another backup, "
                      "or roll back with database action none")
    return found


def _revert(context, target: DeployTarget, database: Database, git: GitSource, bad: dict) -> None:
    """database.rollback: down — the down scripts of what the release applied, or its down_command."""
    spec = target.spec.database.migrate
    commit = bad.get("commit") or bad["version"]        # patch and branch builds are exported by commit
    with tempfile.TemporaryDirectory() as tmp:
        tree = git.export(commit, Path(tmp) / "src")
        if spec is not None and spec.command is not None:
            if not spec.down_command:
                raise Failure(f"{target.where}: database.rollback is down but migrate.down_command is not set")
            run_tool(spec.down_command, tree, database, "down command")
            context.log.info(f"ran down_command {' '.join(spec.down_command)}")
            return
        names = set(bad["migrations"].split(","))
        todo = [m for m in load_migrations(tree / spec.dir) if m.name in names]
        database.revert(todo)
    context.log.info(f"reverted migrations {', '.join(sorted(names))}")


@op(out=Out(dict), tags={"deploy/step": "rollback"})
def rollback(context, config: RollbackConfig, target: DeployTarget, platform: Platform, database: Database,
             backup_storage: BackupStorage, git: GitSource) -> Output:
    """Move traffic back to the previous (or a given) release and record it."""
    ensure_exclusive(context, target.key)
    log = context.log.info
    current = platform.current()
    if current is None:
        raise Failure(f"{target.where}: nothing runs, nothing to roll back")
    bad = last_release(context.instance, target.service, target.environment)
    to, to_version = None, config.to_version or current.previous_version
    if config.to_version:
        found = _find_release(context.instance, target.service, target.environment, config.to_version)
        if found is None:
            raise Failure(f"{target.where}: {config.to_version} was never released here; "
                          "choose a version from the deploy history")
        if not found.get("workload"):
            raise Failure(f"{target.where}: the history of {config.to_version} has no workload record (released "
                          "before platform contract v2): release it again instead")
        to = Workload.model_validate(found["workload"])
    elif not current.previous_image:
        raise Failure(f"{target.where}: {current.version} has no previous release to roll back to")
    if current.version == to_version:
        log(f"{current.version} already serves: nothing to do (traffic and database untouched)")
        return Output({"version": current.version, "from": current.version}, metadata={"version": current.version})
    context.instance.add_run_tags(context.run_id, {REASON_TAG: config.reason[:200]})
    log(f"rolling back {current.version} -> {to_version}: {config.reason}")

    db_action = target.spec.database.rollback if target.spec.database else "none"
    undo = db_action != "none" and bad and bad.get("version") == current.version
    restore_from = _backup(backup_storage, target, bad["backup_key"]) if undo and db_action == "restore" \
        and bad.get("backup_key") else None       # a pruned backup fails before anything changes
    released = platform.rollback(log, to=to)
    if undo:
        # A pre-rollback dump first: the rolled-back data must never be lost.
        pre = take_backup(context, target, database, backup_storage, f"pre-rollback-{current.version}",
                          (context.run_id,))
        log(f"pre-rollback backup {pre.key}")
        if restore_from is not None:
            restore_backup(context, target, database, backup_storage, restore_from)
        elif db_action == "down" and (bad.get("migrations") or target.spec.database.migrate.command):
            _revert(context, target, database, git, bad)
    meta = {"outcome": "rolled_back", "version": released.version, "image": released.image,
            "commit": released.commit, "rolled_back_from": current.version, "reason": config.reason,
            "database_action": db_action if undo else "none", "release_id": context.run_id,
            "workload": MetadataValue.json(released.workload.model_dump(mode="json")) if released.workload else "",
            "summary": MetadataValue.md(f"### rollback {current.version} → {released.version}\n\n{config.reason}"),
            **event_metrics(context)}
    context.log_event(AssetMaterialization(history_key(target.service, target.environment), metadata=meta,
                                           description=f"rolled back to {released.version}"))
    return Output({"version": released.version, "from": current.version}, metadata={"version": released.version})
