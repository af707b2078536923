"""Backup storage (a local directory, and S3 on a real moto server) and retention: sha256 and size
recorded, corruption detected on fetch, pinned backups never deleted or pruned, the newest
keep_last always kept, nothing younger than keep_days pruned. Not covered: dumping (test_database)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deploy_pipelines.adapters.backup_storage import BackupStorageError, LocalBackupStorage
from deploy_pipelines.adapters.s3_backup_storage import S3BackupStorage
from deploy_pipelines.adapters.records import BackupRecord
from deploy_pipelines.backups import backup_key, prunable
from deploy_pipelines_tests.fixtures_aws import aws_env, moto_server  # noqa: F401

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalBackupStorage(root=f"file://{tmp_path / 'backups'}")
    from dagster_aws.s3 import S3Resource

    request.getfixturevalue("aws_env")
    s3 = S3Resource()
    s3.get_client().create_bucket(Bucket="backups")
    return S3BackupStorage(s3=s3, bucket="backups", prefix=f"t{id(request)}")


def record(key: str, **kw) -> BackupRecord:
    return BackupRecord(uri="", key=key, sha256="", size=0, created_at=kw.pop("created_at", NOW.isoformat()),
                        service="api", environment="production", **kw)


def test_put_records_sha256_size_and_fetch_verifies(storage, tmp_path):
    src = tmp_path / "dump.sql.gz"
    src.write_bytes(b"x" * 4096)
    key = backup_key("api", "production", "v1.2.0", NOW, ".sql.gz")
    assert key == "api/production/api-20261124T020000000000Z-v1.2.0.sql.gz"
    rec = storage.put(src, key, record(key, version="v1.2.0", pinned_by=("run-1",)))
    assert rec.size == 4096
    import hashlib

    assert rec.sha256 == hashlib.sha256(b"x" * 4096).hexdigest()
    got = storage.fetch(key, tmp_path / "back")
    assert got.read_bytes() == b"x" * 4096
    assert [r.key for r in storage.list("api/production/")] == [key]


def test_pinned_backup_cannot_be_deleted_until_unpinned(storage, tmp_path):
    src = tmp_path / "d"
    src.write_bytes(b"data")
    storage.put(src, "api/production/a.dump", record("api/production/a.dump", pinned_by=("release-1",)))
    storage.pin("api/production/a.dump", "release-2")
    with pytest.raises(BackupStorageError, match="pinned by release-1, release-2"):
        storage.delete("api/production/a.dump")
    storage.unpin("api/production/a.dump", "release-1")
    storage.unpin("api/production/a.dump", "release-2")
    storage.delete("api/production/a.dump")
    assert storage.list() == []


def test_corrupt_local_backup_is_detected(tmp_path):
    storage = LocalBackupStorage(root=str(tmp_path / "b"))
    src = tmp_path / "d"
    src.write_bytes(b"good")
    storage.put(src, "k.dump", record("k.dump"))
    (tmp_path / "b" / "k.dump").write_bytes(b"evil")
    with pytest.raises(BackupStorageError, match="corrupt"):
        storage.fetch("k.dump", tmp_path / "out")


ages = st.lists(st.tuples(st.integers(0, 90 * 24), st.booleans()), min_size=0, max_size=30)


@settings(max_examples=200, deadline=None)
@given(ages=ages, keep_days=st.integers(0, 60), keep_last=st.integers(1, 10))
def test_retention_rules(ages, keep_days, keep_last):
    records = [record(f"b{i}", created_at=(NOW - timedelta(hours=h)).isoformat(), pinned_by=("r",) if pinned else ())
               for i, (h, pinned) in enumerate(ages)]
    pruned = {r.key for r in prunable(records, NOW, keep_days, keep_last)}
    newest = sorted(records, key=lambda r: r.created_at, reverse=True)[:keep_last]
    for r in records:
        age = NOW - datetime.fromisoformat(r.created_at)
        if r.pinned_by:
            assert r.key not in pruned                      # a release may still need it
        if r in newest:
            assert r.key not in pruned                      # keep_last
        if age <= timedelta(days=keep_days):
            assert r.key not in pruned                      # keep_days
        if not r.pinned_by and r not in newest and age > timedelta(days=keep_days):
            assert r.key in pruned                          # and everything else goes


def test_retention_example():
    days = [1, 5, 10, 40, 41, 90]
    records = [record(f"d{d}", created_at=(NOW - timedelta(days=d)).isoformat(),
                      pinned_by=("release-7",) if d == 90 else ()) for d in days]
    assert [r.key for r in prunable(records, NOW, keep_days=30, keep_last=2)] == ["d41", "d40"]
