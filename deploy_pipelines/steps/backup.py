"""backup: dump the database before anything changes it; the dump is pinned by the release so
retention never prunes it while the release may still need it."""


import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from dagster import Failure, MetadataValue, Out, Output, op

from deploy_pipelines.adapters.backup_storage import BackupStorage
from deploy_pipelines.adapters.database import Database, DatabaseError
from deploy_pipelines.adapters.records import BackupRecord, BuiltImage
from deploy_pipelines.backups import backup_key
from deploy_pipelines.steps.common import DeployTarget, ReleaseInput, ensure_exclusive


def take_backup(context, target: DeployTarget, database: Database, storage: BackupStorage, version: str,
                pinned_by: tuple[str, ...]) -> BackupRecord:
    """Dump, store with sha256 + size, and narrate. Shared by releases and scheduled backups."""
    now = datetime.now(timezone.utc)
    key = backup_key(target.service, target.environment, version, now, database.dump_suffix)
    started = time.monotonic()
    try:
        # Row counts just before the dump: what a restore-verification compares against.
        tables = tuple(sorted(database.row_counts().items()))
    except Exception:  # noqa: BLE001 - counts are evidence, not a precondition of the backup
        tables = ()
    with tempfile.TemporaryDirectory(prefix="deploy-backup-") as tmp:
        local = Path(tmp) / Path(key).name
        try:
            database.dump(local)
        except DatabaseError as exc:
            raise Failure(f"{target.where}: backup failed, nothing was changed: {exc}") from None
        try:
            record = storage.put(local, key, BackupRecord(
                uri="", key=key, sha256="", size=0, created_at=now.isoformat(), service=target.service,
                environment=target.environment, version=version, engine=database.engine, pinned_by=pinned_by,
                tables=tables))
        except OSError as exc:      # a full or read-only backup disk: the store leaves no partial file
            raise Failure(f"{target.where}: backup could not be stored, nothing was changed: "
                          f"{exc.strerror or exc} ({exc.filename or key})") from None
    context.log.info(f"backup {record.key}: {record.size / 1e6:.1f} MB, sha256 {record.sha256[:16]}..., "
                     f"{time.monotonic() - started:.1f}s")
    return record


def backup_metadata(record: BackupRecord) -> dict:
    return {"backup": MetadataValue.url(record.uri), "sha256": record.sha256, "size_bytes": record.size,
            "pinned_by": ", ".join(record.pinned_by)}


@op(out=Out(BackupRecord | None), tags={"deploy/step": "backup"})
def backup(context, release: ReleaseInput, image: BuiltImage, target: DeployTarget, database: Database,
           backup_storage: BackupStorage) -> Output:
    """Dump the database to backup storage, pinned by this release (no deploy without a backup)."""
    ensure_exclusive(context, target.key)
    if target.spec.database is None:
        context.log.info(f"{target.service} has no database: nothing to back up")
        return Output(None)
    # Re-execution of the same release reuses the backup it already took.
    for record in reversed(backup_storage.list(f"{target.service}/{target.environment}/")):
        if release.run_id in record.pinned_by:
            context.log.info(f"reusing this release's backup {record.key}")
            return Output(record, metadata=backup_metadata(record))
    record = take_backup(context, target, database, backup_storage, release.version, (release.run_id,))
    return Output(record, metadata=backup_metadata(record))
