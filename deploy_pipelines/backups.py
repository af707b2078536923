"""Backup naming and retention. Retention never prunes a pinned backup (one a release may still
need to restore), always keeps the newest keep_last, and keeps everything younger than keep_days."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from deploy_pipelines.adapters.backup_storage import BackupStorage, BackupStorageError
from deploy_pipelines.adapters.database import Database, DatabaseError
from deploy_pipelines.adapters.records import BackupRecord


def backup_key(service: str, environment: str, version: str, when: datetime, suffix: str) -> str:
    stamp = when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    safe = "".join(c if c.isalnum() or c in ".-_" else "_" for c in version) or "scheduled"
    return f"{service}/{environment}/{service}-{stamp}-{safe}{suffix}"


def _created(record: BackupRecord) -> datetime:
    dt = datetime.fromisoformat(record.created_at)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def prunable(records: list[BackupRecord], now: datetime, keep_days: int, keep_last: int) -> list[BackupRecord]:
    """The backups retention may delete, oldest first."""
    newest_first = sorted(records, key=_created, reverse=True)
    keep = {r.key for r in newest_first[:keep_last]}
    cutoff = now - timedelta(days=keep_days)
    out = [r for r in newest_first if r.key not in keep and not r.pinned_by and _created(r) < cutoff]
    return sorted(out, key=_created)


def stream_backup(database: Database, storage: BackupStorage, key: str, record: BackupRecord) -> BackupRecord:
    """The dump tool's output straight into storage (no temporary file), sha256 and size counted
    on the way. A dump that fails part-way leaves nothing stored under key."""
    try:
        with database.dump_stream() as stream:
            return storage.put_stream(stream, key, record)
    except DatabaseError:
        try:
            for by in record.pinned_by:
                storage.unpin(key, by)
            storage.delete(key)
        except BackupStorageError:
            pass                # nothing was stored
        raise


def stream_restore(storage: BackupStorage, key: str, database: Database, into_url: str | None = None) -> None:
    """A stored backup straight into the database (or into_url), verified against its recorded
    sha256 before the restore may commit."""
    database.restore_stream(storage.open_chunks(key), into_url)
