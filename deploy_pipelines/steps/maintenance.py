"""Maintenance ops: scheduled backups with retention, restore verification, and the monthly patch
(the running version rebuilt on a refreshed base, then the release path's deploy/verify/promote)."""


import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from dagster import Config, Failure, MetadataValue, Out, Output, TableColumn, TableRecord, TableSchema, op
from pydantic import Field

from deploy_pipelines.adapters.backup_storage import BackupStorage, BackupStorageError
from deploy_pipelines.adapters.database import Database, DatabaseError
from deploy_pipelines.adapters.git import GitSource
from deploy_pipelines.adapters.images import ImageBuilder
from deploy_pipelines.adapters.platform import Platform
from deploy_pipelines.adapters.records import BackupRecord, BuiltImage
from deploy_pipelines.backups import prunable
from deploy_pipelines.steps.backup import backup_metadata, take_backup
from deploy_pipelines.steps.build import build_image
from deploy_pipelines.steps.common import (COMMIT_TAG, VERSION_TAG, DeployTarget, ReleaseInput, ensure_exclusive,
                                           last_release)

BACKUP_SCHEMA = TableSchema(columns=[TableColumn("backup"), TableColumn("created_at"), TableColumn("size_bytes", "int"),
                                     TableColumn("pinned_by"), TableColumn("action")])


# ------------------------------------------------------------------------------- scheduled backup

@op(out=Out(BackupRecord), tags={"deploy/step": "backup"})
def scheduled_backup(context, target: DeployTarget, database: Database, backup_storage: BackupStorage) -> Output:
    """Dump the database now (not pinned: retention applies to it)."""
    if target.spec.database is None:
        raise Failure(f"{target.where}: no database to back up")
    current = last_release(context.instance, target.service, target.environment)
    version = (current or {}).get("version") or "scheduled"
    record = take_backup(context, target, database, backup_storage, f"{version}-scheduled", ())
    return Output(record, metadata={**backup_metadata(record),
                                    "tables": MetadataValue.json(dict(record.tables))})


@op(tags={"deploy/step": "retention"})
def apply_retention(context, latest: BackupRecord, target: DeployTarget, backup_storage: BackupStorage) -> None:
    """Delete what keep_days / keep_last allow, never a backup a release still pins."""
    spec = target.spec.database.backup
    prefix = f"{target.service}/{target.environment}/"
    records = backup_storage.list(prefix)
    victims = prunable(records, datetime.now(timezone.utc), spec.keep_days, spec.keep_last)
    doomed = {r.key for r in victims}
    for record in victims:
        backup_storage.delete(record.key)
        context.log.info(f"pruned {record.key} ({record.created_at}): older than {spec.keep_days} days and "
                         f"beyond the newest {spec.keep_last}")
    rows = [TableRecord({"backup": r.key, "created_at": r.created_at, "size_bytes": r.size,
                         "pinned_by": ", ".join(r.pinned_by), "action": "pruned" if r.key in doomed else "kept"})
            for r in records]
    pinned = sum(1 for r in records if r.pinned_by)
    context.log.info(f"retention: {len(records)} backup(s), {len(doomed)} pruned, {pinned} pinned by releases")
    context.add_output_metadata({"backups": MetadataValue.table(rows, schema=BACKUP_SCHEMA),
                                 "pruned": len(doomed), "kept": len(records) - len(doomed), "pinned": pinned})


# ------------------------------------------------------------------------------- restore verification

class VerifyBackupConfig(Config):
    key: str | None = Field(None, description="The backup to verify (default: the newest)")


@op(tags={"deploy/step": "verify_backup"})
def verify_backup(context, config: VerifyBackupConfig, target: DeployTarget, database: Database,
                  backup_storage: BackupStorage) -> Output:
    """Restore a backup into a scratch database and compare row counts per table."""
    records = backup_storage.list(f"{target.service}/{target.environment}/")
    if config.key:
        records = [r for r in records if r.key == config.key]
    if not records:
        raise Failure(f"{target.where}: no backup{' ' + config.key if config.key else ''} to verify")
    record = records[-1]
    if not record.tables:
        raise Failure(f"{target.where}: backup {record.key} recorded no row counts to compare against")
    scratch = f"verify_{target.service}_{target.environment}_{int(time.time())}"[:60]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="deploy-verify-") as tmp:
        try:
            local = backup_storage.fetch(record.key, Path(tmp) / Path(record.key).name)   # checks sha256
            url = database.create_scratch(scratch)
            try:
                database.restore(local, into_url=url)
                restored = database.row_counts(url)
            finally:
                database.drop_scratch(scratch)
        except (BackupStorageError, DatabaseError) as exc:
            raise Failure(f"{target.where}: restore of {record.key} failed: {exc}") from None
    expected = dict(record.tables)
    rows, bad = [], []
    for table in sorted(set(expected) | set(restored)):
        e, r = expected.get(table), restored.get(table)
        ok = e == r
        if not ok:
            bad.append(f"{table}: expected {e}, restored {r}")
        rows.append(TableRecord({"table": table, "expected": -1 if e is None else e,
                                 "restored": -1 if r is None else r, "result": "ok" if ok else "MISMATCH"}))
    schema = TableSchema(columns=[TableColumn("table"), TableColumn("expected", "int"), TableColumn("restored", "int"),
                                  TableColumn("result")])
    meta = {"backup": record.key, "sha256": record.sha256, "tables": MetadataValue.table(rows, schema=schema),
            "restore_seconds": round(time.monotonic() - started, 2)}
    if bad:
        raise Failure(f"{target.where}: backup {record.key} restored with different row counts: {'; '.join(bad)}",
                      metadata=meta)
    context.log.info(f"backup {record.key} restores: {len(rows)} table(s), "
                     f"{sum(expected.values())} row(s), identical counts")
    return Output(None, metadata=meta)


# ------------------------------------------------------------------------------- patch

class PatchConfig(Config):
    reason: str = Field("monthly patch", description="Recorded with the release")


@op(out=Out(ReleaseInput), tags={"deploy/step": "scan"})
def patch_source(context, config: PatchConfig, target: DeployTarget, platform: Platform) -> Output:
    """What runs now becomes the release to rebuild: same version and commit, no new migrations."""
    ensure_exclusive(context, target.key)
    running = platform.current()
    if running is None:
        raise Failure(f"{target.where}: nothing runs, nothing to patch")
    history = last_release(context.instance, target.service, target.environment) or {}
    commit = running.commit or (history.get("commit") if history.get("version") == running.version else None)
    if not commit:
        raise Failure(f"{target.where}: {running.version} runs but the deploy history has no commit for it; "
                      "release it once through release_ first")
    # The same code, a new build: semver build metadata (v1.1.0+patch.20261204) keeps its precedence
    # equal to v1.1.0 while instances, metrics and history tell the patched build from the old one
    # (verify rules filter by version: during the rollout both builds run).
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d")
    version = f"{running.version.split('+', 1)[0]}+patch.{stamp}"
    context.instance.add_run_tags(context.run_id, {VERSION_TAG: version, COMMIT_TAG: commit})
    context.log.info(f"patching {target.service} {running.version} ({commit[:12]}) in {target.environment} as "
                     f"{version}: {config.reason}")
    release = ReleaseInput(service=target.service, environment=target.environment, version=version,
                           commit=commit, run_id=context.dagster_run.root_run_id or context.run_id)
    return Output(release, metadata={"version": version, "patched_version": running.version, "commit": commit,
                                     "running_image": running.image})


@op(out=Out(BuiltImage), tags={"deploy/step": "build"})
def patch_build(context, release: ReleaseInput, target: DeployTarget, git: GitSource, builder: ImageBuilder) -> Output:
    """Rebuild the version on a freshly pulled base image, without cached layers."""
    if target.spec.image.external:
        raise Failure(f"{target.where}: the image is built elsewhere (image.external): patch it there")
    tag = release.version.replace("+", "-")      # v1.1.0+patch.20261204 -> registry tag v1.1.0-patch.20261204
    image = build_image(context, target, release, git, builder, tag, refresh_base=True,
                        labels={"deploy.patch": release.version.partition("+")[2]})
    context.log.info(f"rebuilt {release.version} on a refreshed base: {image.digest}")
    return Output(image, metadata={"image": image.ref, "digest": image.digest, "tag": tag})
