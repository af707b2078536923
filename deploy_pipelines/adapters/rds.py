"""RDS manual DB snapshots as a service's backups (`database.backup.kind: rds_snapshot`), through
dagster-aws's RDSResource.

- Before migrate: a manual snapshot of the instance, followed until `available`, tagged with the
  service, environment, version and one `deploy:pin:<run id>` tag per release that pins it.
- Retention: the catalog's keep_days / keep_last (backups.prunable), never a pinned snapshot, and
  the account's manual-snapshot limit (100 per region by default) kept with room for the next
  snapshot: when retention alone leaves too many, the oldest unpinned ones go too.
- Restore after a failed migration (RDS cannot restore in place): a new instance from the
  snapshot; once available the failed instance is renamed `<id>-failed-<stamp>` and the restored
  one takes the original identifier, so the endpoint the service's DATABASE_URL names serves the
  restored data. The failed instance is kept (tagged) for inspection; deleting it is a person's call.

Snapshots are listed as BackupRecords (uri rds-snapshot://<region>/<id>), so retention, pins and
the release history treat them like dumps.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable

from dagster_aws.rds import RDSResource
from pydantic import PrivateAttr

from deploy_pipelines.adapters.backup_storage import BackupStorage, BackupStorageError
from deploy_pipelines.adapters.polling import poll_until
from deploy_pipelines.adapters.records import BackupRecord
from deploy_pipelines.backups import prunable

PIN = "deploy:pin:"
Log = Callable[[str], None]


def snapshot_id(instance: str, when: datetime) -> str:
    """Unique per account and region, like the instance identifier it starts with. RDS
    identifiers: letters, digits and single hyphens, starting with a letter, <= 255."""
    stamp = when.astimezone(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")[:-3]      # milliseconds
    name = f"{instance}-deploy-{stamp}".replace("_", "-").lower()
    return "-".join(p for p in name.split("-") if p)


def retention_plan(records: list[BackupRecord], now: datetime, keep_days: int, keep_last: int, limit: int,
                   room: int = 1) -> list[BackupRecord]:
    """Snapshots to delete, oldest first: retention's, then the oldest unpinned ones until
    `room` more fit under the limit. BackupStorageError when pins alone fill the limit."""
    doomed = prunable(records, now, keep_days, keep_last)
    gone = {r.key for r in doomed}
    left = sorted((r for r in records if r.key not in gone), key=lambda r: (r.created_at, r.key))
    excess = len(left) + room - limit
    if excess > 0:
        unpinned = [r for r in left if not r.pinned_by]
        if len(unpinned) < excess:
            raise BackupStorageError(
                f"{len(left)} manual snapshots and the limit is {limit}: {len(left) - len(unpinned)} are pinned by "
                f"releases, so no room for a new snapshot; unpin or raise manual_snapshot_limit")
        doomed += unpinned[:excess]
    return doomed


class RdsSnapshots(BackupStorage):
    """Manual snapshots of one RDS instance."""

    rds: RDSResource
    instance: str                            # DB instance identifier
    manual_snapshot_limit: int = 100         # the account's quota per region (AWS default 100)
    wait_timeout_seconds: float = 3600.0
    poll_seconds: float = 15.0
    _client_cache: Any = PrivateAttr(default=None)
    _sleep: Any = PrivateAttr(default=time.sleep)
    _clock: Any = PrivateAttr(default=time.monotonic)

    def with_clock(self, sleep: Callable[[float], None], clock: Callable[[], float]) -> "RdsSnapshots":
        self._sleep, self._clock = sleep, clock
        return self

    def _client(self):
        if self._client_cache is None:
            self._client_cache = self.rds._create_rds_client("rds")
        return self._client_cache

    def _region(self) -> str:
        return self._client().meta.region_name

    def _arn(self, snapshot: str) -> str:
        return self._client().describe_db_snapshots(DBSnapshotIdentifier=snapshot)["DBSnapshots"][0]["DBSnapshotArn"]

    def _record(self, snap: dict, tags: dict[str, str]) -> BackupRecord:
        created = snap.get("SnapshotCreateTime") or datetime.now(timezone.utc)
        return BackupRecord(
            uri=f"rds-snapshot://{self._region()}/{snap['DBSnapshotIdentifier']}", key=snap["DBSnapshotIdentifier"],
            sha256="", size=int(snap.get("AllocatedStorage") or 0) * 2**30, created_at=created.isoformat(),
            service=tags.get("deploy:service", ""), environment=tags.get("deploy:environment", ""),
            version=tags.get("deploy:version", ""), engine=f"rds:{snap.get('Engine', '')}",
            pinned_by=tuple(sorted(k.removeprefix(PIN) for k in tags if k.startswith(PIN))))

    def _tags(self, arn: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self._client().list_tags_for_resource(ResourceName=arn)["TagList"]}

    def _get(self, key: str) -> BackupRecord:
        try:
            snap = self._client().describe_db_snapshots(DBSnapshotIdentifier=key)["DBSnapshots"][0]
        except self._client().exceptions.DBSnapshotNotFoundFault:
            raise BackupStorageError(f"no manual snapshot {key} of {self.instance}") from None
        return self._record(snap, self._tags(snap["DBSnapshotArn"]))

    # -------------------------------------------------------------------- taking a snapshot

    def snapshot(self, service: str, environment: str, version: str, pinned_by: tuple[str, ...], log: Log,
                 now: datetime | None = None) -> BackupRecord:
        """A manual snapshot, waited for until available, pinned by the releases in pinned_by."""
        now = now or datetime.now(timezone.utc)
        key = snapshot_id(self.instance, now)
        tags = {"deploy:service": service, "deploy:environment": environment, "deploy:version": version,
                **{PIN + p: "1" for p in pinned_by}}
        client = self._client()
        client.create_db_snapshot(DBInstanceIdentifier=self.instance, DBSnapshotIdentifier=key,
                                  Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        log(f"snapshot {key} of RDS instance {self.instance}: creating")

        def available():
            snap = client.describe_db_snapshots(DBSnapshotIdentifier=key)["DBSnapshots"][0]
            if snap["Status"] in ("failed", "incompatible-restore", "incompatible-parameters"):
                raise BackupStorageError(f"snapshot {key} of {self.instance} ended {snap['Status']}")
            return snap if snap["Status"] == "available" else None

        started = self._clock()
        snap = poll_until(available, f"snapshot {key} of {self.instance} to be available", self.wait_timeout_seconds,
                          self.poll_seconds, self._sleep, self._clock,
                          on_wait=lambda s: log(f"snapshot {key}: {s:.0f}s, not available yet"))
        log(f"snapshot {key}: available after {self._clock() - started:.0f}s, pinned by {', '.join(pinned_by)}")
        return self._record(snap, tags)

    def prune(self, keep_days: int, keep_last: int, log: Log, now: datetime | None = None, room: int = 1) -> list[str]:
        """Apply retention and the manual-snapshot limit; returns the deleted snapshot ids."""
        now = now or datetime.now(timezone.utc)
        doomed = retention_plan(self.list(), now, keep_days, keep_last, self.manual_snapshot_limit, room)
        for record in doomed:
            self.delete(record.key)
            log(f"snapshot {record.key} ({record.created_at[:19]}, {record.version or 'scheduled'}) deleted by retention")
        return [r.key for r in doomed]

    # -------------------------------------------------------------------- restore

    def restore(self, key: str, log: Log, now: datetime | None = None) -> str:
        """Put the snapshot's data behind the instance's own identifier (and so its endpoint).
        Returns the identifier the failed instance was renamed to."""
        now = now or datetime.now(timezone.utc)
        stamp = now.astimezone(timezone.utc).strftime("%Y%m%d-%H%M%S")
        client = self._client()
        current = client.describe_db_instances(DBInstanceIdentifier=self.instance)["DBInstances"][0]
        staging, failed = f"{self.instance}-restore-{stamp}", f"{self.instance}-failed-{stamp}"
        kwargs = {"DBInstanceClass": current["DBInstanceClass"],
                  "VpcSecurityGroupIds": [g["VpcSecurityGroupId"] for g in current.get("VpcSecurityGroups", [])]}
        if current.get("DBSubnetGroup"):
            kwargs["DBSubnetGroupName"] = current["DBSubnetGroup"]["DBSubnetGroupName"]
        log(f"restore {self.instance} from snapshot {key}: new instance {staging}")
        client.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=staging, DBSnapshotIdentifier=key,
                                                    Tags=[{"Key": "deploy:restored-from", "Value": key}], **kwargs)
        self._wait_instance(staging, log)
        # Tagged before the rename: an instance's ARN contains its identifier and changes with it.
        client.add_tags_to_resource(ResourceName=current["DBInstanceArn"],
                                    Tags=[{"Key": "deploy:replaced-by-restore-of", "Value": key}])
        client.modify_db_instance(DBInstanceIdentifier=self.instance, NewDBInstanceIdentifier=failed,
                                  ApplyImmediately=True)
        self._wait_instance(failed, log)
        client.modify_db_instance(DBInstanceIdentifier=staging, NewDBInstanceIdentifier=self.instance,
                                  ApplyImmediately=True)
        self._wait_instance(self.instance, log)
        log(f"restore {self.instance}: serving snapshot {key}; the failed instance is kept as {failed}")
        return failed

    def _wait_instance(self, ident: str, log: Log) -> None:
        client = self._client()

        def ready():
            try:
                inst = client.describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"][0]
            except client.exceptions.DBInstanceNotFoundFault:
                return None                  # a rename in progress
            return inst if inst["DBInstanceStatus"] == "available" else None

        poll_until(ready, f"RDS instance {ident} to be available", self.wait_timeout_seconds, self.poll_seconds,
                   self._sleep, self._clock, on_wait=lambda s: log(f"{ident}: {s:.0f}s, not available yet"))

    # -------------------------------------------------------------------- BackupStorage

    def list(self, prefix: str = "") -> list[BackupRecord]:
        client = self._client()
        records = []
        for page in client.get_paginator("describe_db_snapshots").paginate(DBInstanceIdentifier=self.instance,
                                                                           SnapshotType="manual"):
            for snap in page["DBSnapshots"]:
                if snap["DBSnapshotIdentifier"].startswith(prefix):
                    records.append(self._record(snap, self._tags(snap["DBSnapshotArn"])))
        return sorted(records, key=lambda r: (r.created_at, r.key))

    def pin(self, key: str, by: str) -> BackupRecord:
        self._get(key)
        self._client().add_tags_to_resource(ResourceName=self._arn(key), Tags=[{"Key": PIN + by, "Value": "1"}])
        return self._get(key)

    def unpin(self, key: str, by: str) -> BackupRecord:
        self._client().remove_tags_from_resource(ResourceName=self._arn(key), TagKeys=[PIN + by])
        return self._get(key)

    def delete(self, key: str) -> None:
        record = self._get(key)
        if record.pinned_by:
            raise BackupStorageError(f"snapshot {key} is pinned by {', '.join(record.pinned_by)}: not deleted")
        self._client().delete_db_snapshot(DBSnapshotIdentifier=key)

    def put_stream(self, stream, key, record):
        raise BackupStorageError("rds_snapshot backups are RDS snapshots, not files: use snapshot()")

    def open_chunks(self, key):
        raise BackupStorageError(f"snapshot {key} cannot be read as bytes: restore() it into an instance")
