"""RDS manual snapshots as backups, against the moto server: a snapshot taken before migrate is
available and pinned (tags) to its release; retention prunes by keep_days / keep_last, never a
pinned snapshot, and keeps room under the manual-snapshot limit (refusing when pins fill it); the
restore after a failed migration puts a new instance from the snapshot behind the original
identifier and keeps the failed one. The waiting loop runs on a fake clock.
Not covered: real snapshot durations (moto makes snapshots available at once), the data inside an
instance (moto has none), the backup/migrate ops' wiring (steps/)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from dagster_aws.rds import RDSResource
from hypothesis import given, settings
from hypothesis import strategies as st

from deploy_pipelines.adapters.backup_storage import BackupStorageError
from deploy_pipelines.adapters.polling import WaitTimedOut, poll_until
from deploy_pipelines.adapters.rds import RdsSnapshots, retention_plan
from deploy_pipelines.adapters.records import BackupRecord
from deploy_pipelines_tests.fixtures_aws import aws_env, moto_server  # noqa: F401

pytestmark = pytest.mark.aws

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)


@pytest.fixture
def instance(aws_env, request):  # noqa: F811
    name = f"morrow-{request.node.name[5:25].replace('_', '-').strip('-')}-{datetime.now().microsecond}"
    client = RDSResource()._create_rds_client("rds")
    client.create_db_instance(DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres",
                              MasterUsername="app", MasterUserPassword="not-a-real-secret", AllocatedStorage=20)
    return name


def snapshots(instance: str, limit: int = 100) -> RdsSnapshots:
    return RdsSnapshots(rds=RDSResource(), instance=instance, manual_snapshot_limit=limit, poll_seconds=0.01)


def take(store: RdsSnapshots, version: str, pinned_by=(), at: datetime | None = None):
    return store.snapshot("api", "production", version, tuple(pinned_by), log=lambda m: None,
                          now=at or datetime.now(timezone.utc))


def test_snapshot_before_migrate_is_available_and_pinned_to_the_release(instance):
    store = snapshots(instance)
    lines: list[str] = []
    record = store.snapshot("api", "production", "v1.2.0", ("run-1",), log=lines.append, now=NOW)
    client = store._client()
    snap = client.describe_db_snapshots(DBSnapshotIdentifier=record.key)["DBSnapshots"][0]
    assert snap["Status"] == "available" and snap["SnapshotType"] == "manual"
    assert snap["DBInstanceIdentifier"] == instance
    tags = {t["Key"]: t["Value"] for t in client.list_tags_for_resource(ResourceName=snap["DBSnapshotArn"])["TagList"]}
    assert tags["deploy:pin:run-1"] == "1" and tags["deploy:version"] == "v1.2.0"
    assert record.pinned_by == ("run-1",) and record.uri.endswith(f"/{record.key}")
    assert any("available after" in line for line in lines)
    with pytest.raises(BackupStorageError, match="pinned by run-1"):
        store.delete(record.key)
    store.unpin(record.key, "run-1")
    store.delete(record.key)
    assert store.list() == []


def test_retention_keeps_pins_and_the_newest(instance):
    store = snapshots(instance)
    taken = [take(store, f"v1.{i}.0", pinned_by=("run-keep",) if i in (0, 2) else (),
                  at=NOW + timedelta(seconds=i)) for i in range(6)]
    later = datetime.now(timezone.utc) + timedelta(days=40)       # every snapshot is 40 days old by then
    deleted = store.prune(keep_days=30, keep_last=2, log=lambda m: None, now=later)
    left = {r.key for r in store.list()}
    newest_two = {r.key for r in sorted(store.list(), key=lambda r: r.created_at)[-2:]}
    assert {taken[0].key, taken[2].key} <= left                      # pinned by a release
    assert newest_two <= left and len(left) == 4
    assert set(deleted) == {taken[1].key, taken[3].key}


def test_limit_prunes_oldest_unpinned_and_refuses_when_pins_fill_it(instance):
    store = snapshots(instance, limit=3)
    first = take(store, "v1.0.0", at=NOW)
    pinned = take(store, "v1.1.0", pinned_by=("run-a",), at=NOW + timedelta(seconds=1))
    third = take(store, "v1.2.0", at=NOW + timedelta(seconds=2))
    # All young (keep_days 30): retention alone would keep them, the limit needs room for one more.
    assert store.prune(keep_days=30, keep_last=1, log=lambda m: None) == [first.key]
    assert {r.key for r in store.list()} == {pinned.key, third.key}
    store.pin(third.key, "run-b")
    take(store, "v1.3.0", pinned_by=("run-c",), at=NOW + timedelta(seconds=3))
    with pytest.raises(BackupStorageError, match="3 are pinned by releases"):
        store.prune(keep_days=30, keep_last=1, log=lambda m: None)
    assert len(store.list()) == 3


def test_restore_after_failed_migration_serves_the_snapshot_under_the_same_identifier(instance):
    store = snapshots(instance)
    client = store._client()
    before = client.describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"][0]
    record = take(store, "v1.2.0", pinned_by=("run-1",))
    lines: list[str] = []
    failed = store.restore(record.key, log=lines.append, now=NOW)
    now_serving = client.describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"][0]
    kept = client.describe_db_instances(DBInstanceIdentifier=failed)["DBInstances"][0]
    def tags(inst):
        return {t["Key"]: t["Value"] for t in client.list_tags_for_resource(ResourceName=inst["DBInstanceArn"])["TagList"]}

    assert tags(now_serving).get("deploy:restored-from") == record.key        # the new instance, renamed
    assert tags(kept).get("deploy:replaced-by-restore-of") == record.key      # the failed one, kept
    assert "deploy:restored-from" not in tags(kept)
    assert before["DBInstanceIdentifier"] == now_serving["DBInstanceIdentifier"] == instance
    assert failed == f"{instance}-failed-20261126-020000"
    assert lines[-1].endswith(f"kept as {failed}")


def test_poll_until_times_out_on_the_injected_clock():
    t = [0.0]
    seen = []
    with pytest.raises(WaitTimedOut, match="not reached after 60s"):
        poll_until(lambda: None, "snapshot x", timeout=60, interval=15, sleep=lambda s: t.__setitem__(0, t[0] + s),
                   clock=lambda: t[0], on_wait=seen.append)
    assert seen == [0, 15, 30, 45]


def _rec(i: int, age_days: float, pinned: bool) -> BackupRecord:
    return BackupRecord(uri="", key=f"s{i}", sha256="", size=0,
                        created_at=(NOW - timedelta(days=age_days, seconds=i)).isoformat(),
                        pinned_by=("r",) if pinned else ())


@settings(max_examples=100, deadline=None)
@given(ages=st.lists(st.tuples(st.floats(0, 90), st.booleans()), max_size=25), keep_days=st.integers(0, 60),
       keep_last=st.integers(1, 8), limit=st.integers(1, 30))
def test_retention_plan_never_touches_pins_and_leaves_room(ages, keep_days, keep_last, limit):
    records = [_rec(i, a, p) for i, (a, p) in enumerate(ages)]
    pinned = sum(1 for r in records if r.pinned_by)
    try:
        doomed = retention_plan(records, NOW, keep_days, keep_last, limit)
    except BackupStorageError:
        assert pinned + 1 > limit                                      # only pins can fill the limit
        return
    assert not any(r.pinned_by for r in doomed)
    assert len(records) - len(doomed) + 1 <= limit                    # room for the next snapshot


def test_catalog_backup_kind_rds_snapshot():
    from pydantic import ValidationError

    from deploy_pipelines.catalog.models import BackupSpec

    spec = BackupSpec.model_validate({"kind": "rds_snapshot", "keep_days": 7,
                                      "rds": {"instance": {"env": "MORROW_DB_INSTANCE"}, "manual_snapshot_limit": 50}})
    assert spec.rds.instance.env == "MORROW_DB_INSTANCE" and spec.rds.manual_snapshot_limit == 50
    with pytest.raises(ValidationError, match="kind rds_snapshot needs rds"):
        BackupSpec.model_validate({"kind": "rds_snapshot"})
    with pytest.raises(ValidationError, match="write kind: rds_snapshot"):
        BackupSpec.model_validate({"rds": {"instance": "db-1"}})
