"""migrate: apply the release's pending migrations. On failure the database goes back to
exactly what it was (transaction, down scripts or the pinned backup, per catalog) and the
release stops before the app is touched."""


import os
import subprocess
import tempfile
from pathlib import Path

from dagster import Failure, MetadataValue, Out, Output, op

from deploy_pipelines.adapters.backup_storage import BackupStorage
from deploy_pipelines.adapters.database import Database, MigrationFailed
from deploy_pipelines.adapters.git import GitSource
from deploy_pipelines.adapters.migrations import MigrationFileError, load_migrations, pending
from deploy_pipelines.adapters.records import BackupRecord
from deploy_pipelines.redact import redact
from deploy_pipelines.steps.common import DeployTarget, ReleaseInput, ensure_exclusive


def restore_backup(context, target: DeployTarget, database: Database, storage: BackupStorage,
                   record: BackupRecord) -> None:
    with tempfile.TemporaryDirectory(prefix="deploy-restore-") as tmp:
        local = storage.fetch(record.key, Path(tmp) / Path(record.key).name)
        database.restore(local)
    context.log.info(f"database restored from {record.key} (sha256 {record.sha256[:16]}... verified)")


def run_tool(argv: list[str], cwd: Path, database: Database, what: str) -> None:
    # The URL is a secret: it travels in the environment only, never on argv or in the log.
    proc = subprocess.run(argv, cwd=cwd, env={**os.environ, "DATABASE_URL": database.url},
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        out = redact(proc.stdout + proc.stderr, database.url)[-2000:]
        raise MigrationFailed(f"{what} exited {proc.returncode}: {out}", " ".join(argv), [])


@op(out=Out(list), tags={"deploy/step": "migrate"})
def migrate(context, release: ReleaseInput, backup: BackupRecord | None, target: DeployTarget, git: GitSource,
            database: Database, backup_storage: BackupStorage) -> Output:
    """Apply pending migrations; on failure undo per `on_failure` and stop the release."""
    ensure_exclusive(context, target.key)
    db = target.spec.database
    if db is None or db.migrate is None:
        return Output([], metadata={"applied": "none (no migrations configured)"})
    spec = db.migrate
    with tempfile.TemporaryDirectory(prefix="deploy-migrate-") as tmp:
        tree = git.export(release.commit, Path(tmp) / "src")
        recorded = database.applied_with_checksums()
        before = [name for name, _ in recorded]
        todo = []
        if spec.command is None:
            try:
                todo = pending(load_migrations(tree / spec.dir), before, dict(recorded))
            except MigrationFileError as exc:
                raise Failure(f"{target.where}: {exc}") from None
            if not todo:
                context.log.info("no pending migrations")
                return Output([], metadata={"applied": "none pending"})
        if backup is None:
            raise Failure(f"{target.where}: refusing to migrate without a backup")
        try:
            if spec.command is not None:
                run_tool(spec.command, tree, database, "migration command")
                applied = [n for n in database.applied_migrations() if n not in before] or [" ".join(spec.command)]
            else:
                context.log.info(f"applying {len(todo)} migration(s): {', '.join(m.name for m in todo)}")
                applied = database.apply(todo)
        except MigrationFailed as exc:
            undo = spec.on_failure
            context.log.error(f"migration {exc.migration} failed: {exc}; undo: {undo}")
            if undo == "restore" and not (database.engine == "postgres" and not exc.applied and spec.command is None):
                restore_backup(context, target, database, backup_storage, backup)
            elif undo == "restore":
                context.log.info("the migrations ran in one transaction, rolled back: nothing to restore")
            elif undo == "down":
                if spec.command is not None:
                    run_tool(spec.down_command, tree, database, "down command")
                else:
                    done = [m for m in todo if m.name in exc.applied]
                    database.revert(done)
                    context.log.info(f"ran down scripts of {', '.join(m.name for m in done) or 'nothing'}")
            after = database.applied_migrations()
            state = "unchanged" if after == before else f"NOT as before: {after}"
            raise Failure(f"{target.where}: migration {exc.migration} of {release.version} failed; "
                          f"database {state}; the app was not touched. {exc}",
                          metadata={"failed_migration": exc.migration, "undo": undo,
                                    "schema_versions_after": MetadataValue.json(after)}) from None
    context.log.info(f"applied {', '.join(applied)}")
    return Output(applied, metadata={"applied": MetadataValue.json(applied)})
