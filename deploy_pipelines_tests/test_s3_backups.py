"""PostgreSQL backups streamed to S3 (the moto server) through dagster-aws's S3Resource and back:
a pg_dump -Fc piped into a multipart upload, encrypted server-side, with the sha256 and size
counted on the way, restores into a scratch database with identical row counts; a corrupt object
is refused before the restore commits (the database keeps its rows); a dump that fails leaves
nothing stored; `{env: NAME}` storage holding s3://... is S3 at run time.
A mysqldump streams gzipped the same way. Not covered: memory and throughput
(bench/backup_throughput.py), streaming restores of MySQL dumps, the backup op's
wiring (steps/backup.py)."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone

import pytest
from dagster import build_resources
from dagster_aws.s3 import S3Resource

from deploy_pipelines.adapters.backup_storage import BackupStorageError
from deploy_pipelines.adapters.database import DatabaseError
from deploy_pipelines.adapters.postgres import PostgresDatabase
from deploy_pipelines.adapters.records import BackupRecord
from deploy_pipelines.adapters.s3_backup_storage import BackupStorageAtUri, S3BackupStorage
from deploy_pipelines.backups import backup_key, stream_backup, stream_restore
from deploy_pipelines.catalog.models import EnvRef
from deploy_pipelines.resources import backup_storage_for
from deploy_pipelines_tests.fixtures_aws import aws_env, moto_server  # noqa: F401
from deploy_pipelines_tests.fixtures_db import mariadb_server, postgres_server  # noqa: F401

pytestmark = pytest.mark.aws

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)
# Random hex compresses poorly: ~9 MB of dump at -Z1, so two 5 MB parts (S3's smallest part size).
ROWS = 150_000


@pytest.fixture(scope="module")
def shop_db(postgres_server):  # noqa: F811
    url = postgres_server.create_database(f"s3src_{int(time.time() * 1000) % 100000}")
    database = PostgresDatabase(url=url)
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL)")
        cur.execute("INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, 5000) g")
        cur.execute("CREATE TABLE events (id bigserial PRIMARY KEY, customer_id int REFERENCES customers, payload text)")
        cur.execute(f"""INSERT INTO events (customer_id, payload) SELECT 1 + g % 5000,
                        md5(random()::text) || md5(random()::text) FROM generate_series(1, {ROWS}) g""")
    return database


@pytest.fixture
def bucket(aws_env, request):  # noqa: F811
    name = f"backups-{request.node.name[:30].replace('_', '-').lower()}-{time.time_ns() % 10**6}"
    S3Resource().get_client().create_bucket(Bucket=name)
    return name


def new_record(key: str) -> BackupRecord:
    return BackupRecord(uri="", key=key, sha256="", size=0, created_at=NOW.isoformat(), service="api",
                        environment="production", version="v1.2.0", engine="postgres", pinned_by=("run-1",))


def test_pg_dump_streamed_to_s3_restores_with_identical_row_counts(shop_db, bucket, postgres_server):  # noqa: F811
    storage = S3BackupStorage(s3=S3Resource(), bucket=bucket, prefix="shop", part_size_mb=5)
    key = backup_key("api", "production", "v1.2.0", NOW, shop_db.dump_suffix)
    record = stream_backup(shop_db, storage, key, new_record(key))

    client = S3Resource().get_client()
    head = client.head_object(Bucket=bucket, Key=f"shop/{key}")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ETag"].strip('"').endswith("-2"), f"expected a 2-part multipart upload, ETag {head['ETag']}"
    stored = client.get_object(Bucket=bucket, Key=f"shop/{key}")["Body"].read()
    assert record.size == len(stored) > 5 * 1024 * 1024
    assert record.sha256 == hashlib.sha256(stored).hexdigest()
    assert record.uri == f"s3://{bucket}/shop/{key}"
    assert [r.key for r in storage.list("api/")] == [key] and storage.list("api/")[0].pinned_by == ("run-1",)

    scratch = postgres_server.create_database(f"s3dst_{time.time_ns() % 10**6}")
    stream_restore(storage, key, shop_db, into_url=scratch)
    restored = shop_db.row_counts(scratch)
    assert restored == shop_db.row_counts() == {"public.customers": 5000, "public.events": ROWS}


def test_corrupt_object_is_refused_before_the_restore_commits(shop_db, bucket, postgres_server):  # noqa: F811
    storage = S3BackupStorage(s3=S3Resource(), bucket=bucket, part_size_mb=5)
    key = "api/production/corrupt.dump"
    stream_backup(shop_db, storage, key, new_record(key))
    # The target already holds data; a bad backup must not replace it with anything.
    target_url = postgres_server.create_database(f"s3tgt_{time.time_ns() % 10**6}")
    target = PostgresDatabase(url=target_url)
    stream_restore(storage, key, target)
    assert target.row_counts()["public.events"] == ROWS
    import psycopg2

    with psycopg2.connect(target_url) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM events WHERE id > 1000")
    assert target.row_counts()["public.events"] == 1000

    client = S3Resource().get_client()
    body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF                     # one flipped byte in the middle
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    with pytest.raises(BackupStorageError, match="corrupt"):
        stream_restore(storage, key, target)
    assert target.row_counts() == {"public.customers": 5000, "public.events": 1000}


def test_failed_dump_leaves_nothing_stored(bucket, postgres_server):  # noqa: F811
    storage = S3BackupStorage(s3=S3Resource(), bucket=bucket)
    missing = PostgresDatabase(url=postgres_server.url("no_such_database"))
    key = "api/production/failed.dump"
    with pytest.raises(DatabaseError, match="pg_dump failed"):
        stream_backup(missing, storage, key, new_record(key))
    assert storage.list() == []
    assert S3Resource().get_client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_env_storage_holding_s3_uri_is_s3_at_run_time(shop_db, bucket, monkeypatch):
    assert isinstance(backup_storage_for(f"s3://{bucket}/literal"), S3BackupStorage)
    storage = backup_storage_for(EnvRef(env="SHOP_BACKUPS"))
    assert isinstance(storage, BackupStorageAtUri)
    monkeypatch.setenv("SHOP_BACKUPS", f"s3://{bucket}/from-env")
    with build_resources({"backup_storage": storage}) as resources:
        key = "api/production/env.dump"
        record = stream_backup(shop_db, resources.backup_storage, key, new_record(key))
    assert record.uri == f"s3://{bucket}/from-env/{key}"
    keys = {o["Key"] for o in S3Resource().get_client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {f"from-env/{key}", f"from-env/{key}.meta.json"}


def test_mysqldump_streams_gzipped_to_s3_and_restores(bucket, mariadb_server, tmp_path):  # noqa: F811
    from deploy_pipelines.adapters.mysql import MySQLDatabase

    db = MySQLDatabase(url=mariadb_server.create_database(f"s3my_{time.time_ns() % 10**6}"))
    conn = db._connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE orders (id int AUTO_INCREMENT PRIMARY KEY, total decimal(12,2))")
        cur.execute("INSERT INTO orders (total) SELECT seq * 1.5 FROM seq_1_to_20000")
    conn.close()
    storage = S3BackupStorage(s3=S3Resource(), bucket=bucket)
    key = "shop/production/orders.sql.gz"
    record = stream_backup(db, storage, key, new_record(key))
    assert S3Resource().get_client().head_object(Bucket=bucket, Key=key)["ContentLength"] == record.size
    scratch = mariadb_server.create_database(f"s3myr_{time.time_ns() % 10**6}")
    db.restore(storage.fetch(key, tmp_path / "orders.sql.gz"), into_url=scratch)    # gzip, sha256-checked
    def tables(counts):
        return {name.split(".", 1)[1]: n for name, n in counts.items()}

    assert tables(db.row_counts(scratch)) == tables(db.row_counts()) == {"orders": 20000}
