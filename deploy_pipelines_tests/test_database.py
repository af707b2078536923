"""The database adapters on real servers (PostgreSQL 15, MariaDB): a dump restores into a scratch
database with identical row counts; a failing migration leaves the database exactly as it was
(PostgreSQL by its transaction, MySQL by the down files or the restore that the migrate step runs);
passwords never reach argv or error messages. Not covered: the migrate op's choice of undo
(test_release_e2e.py)."""

from __future__ import annotations

import hashlib
import time

import pytest

from deploy_pipelines.adapters.database import DatabaseError, MigrationFailed
from deploy_pipelines.adapters.migrations import MigrationFileError, load_migrations, pending
from deploy_pipelines.adapters.mysql import MySQLDatabase
from deploy_pipelines.adapters.postgres import PostgresDatabase
from deploy_pipelines.adapters.records import Migration
from deploy_pipelines_tests.fixtures_db import mariadb_server, postgres_server  # noqa: F401

SEED = {
    "postgres": ["CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL)",
                 "INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, 5000) g",
                 "CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers, total numeric)",
                 "INSERT INTO orders (customer_id, total) SELECT 1 + g % 5000, g * 1.5 FROM generate_series(1, 20000) g"],
    "mysql": ["CREATE TABLE customers (id int AUTO_INCREMENT PRIMARY KEY, name varchar(50) NOT NULL)",
              "INSERT INTO customers (name) SELECT CONCAT('c', seq) FROM seq_1_to_5000",
              "CREATE TABLE orders (id int AUTO_INCREMENT PRIMARY KEY, customer_id int, total decimal(12,2))",
              "INSERT INTO orders (customer_id, total) SELECT 1 + seq % 5000, seq * 1.5 FROM seq_1_to_20000"],
}


def mig(name: str, up: str, down: str | None = None) -> Migration:
    return Migration(name.split("_")[0], name, up, down, hashlib.sha256(up.encode()).hexdigest())


@pytest.fixture(params=["postgres", "mysql"])
def db(request, postgres_server, mariadb_server):  # noqa: F811
    name = f"t_{request.node.name.split('[')[0][-20:]}_{int(time.time() * 1000) % 100000}".lower()
    if request.param == "postgres":
        url = postgres_server.create_database(name)
        database = PostgresDatabase(url=url)
    else:
        url = mariadb_server.create_database(name)
        database = MySQLDatabase(url=url)
    for stmt in SEED[request.param]:
        database_exec(database, stmt)
    yield database


def database_exec(database, sql: str) -> None:
    if database.engine == "postgres":
        import psycopg2

        with psycopg2.connect(database.url) as conn, conn.cursor() as cur:
            cur.execute(sql)
    else:
        conn = database._connect()
        with conn.cursor() as cur:
            cur.execute(sql)
        conn.close()


def fingerprint(database) -> tuple:
    """Schema (columns, types, nullability), migration records and content checksums."""
    if database.engine == "postgres":
        cols = database.query("""SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
                                 WHERE table_schema = 'public' AND table_name <> 'deploy_schema_migrations' ORDER BY 1, 2""")
        content = database.query("SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM orders t")
    else:
        cols = database.query("""SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
                                 WHERE table_schema = DATABASE() AND table_name <> 'deploy_schema_migrations' ORDER BY 1, 2""")
        content = database.query("SELECT MD5(GROUP_CONCAT(CONCAT(id, ':', total) ORDER BY id)) FROM orders")
    counts = {k: v for k, v in database.row_counts().items() if not k.endswith("deploy_schema_migrations")}
    return cols, database.applied_migrations(), counts, content


def test_backup_restores_into_scratch_with_identical_row_counts(db, tmp_path):
    dump = tmp_path / f"dump{db.dump_suffix}"
    db.dump(dump)
    assert dump.stat().st_size > 1000
    scratch = db.create_scratch(f"scratch_{int(time.time() * 1000) % 100000}")
    try:
        db.restore(dump, into_url=scratch)
        # Per table (MySQL names tables by database, so compare by table name).
        source = {k.split(".", 1)[1]: v for k, v in db.row_counts().items()}
        restored = {k.split(".", 1)[1]: v for k, v in db.row_counts(scratch).items()}
        assert restored == source
        assert sum(restored.values()) == 25000
    finally:
        db.drop_scratch(scratch.rsplit("/", 1)[1])


def test_restore_in_place_replaces_later_changes(db, tmp_path):
    dump = tmp_path / f"dump{db.dump_suffix}"
    before = fingerprint(db)
    db.dump(dump)
    database_exec(db, "DELETE FROM orders WHERE id > 100")
    database_exec(db, "CREATE TABLE junk (x int)")
    db.restore(dump)
    assert fingerprint(db) == before


def test_migrations_apply_in_order_and_are_recorded(db):
    ms = [mig("0001_add_note", "ALTER TABLE orders ADD COLUMN note varchar(20)", "ALTER TABLE orders DROP COLUMN note"),
          mig("0002_fill", "UPDATE orders SET note = 'x' WHERE id < 10", "UPDATE orders SET note = NULL")]
    assert db.apply(ms) == ["0001_add_note", "0002_fill"]
    assert db.applied_migrations() == ["0001_add_note", "0002_fill"]
    assert pending(ms, db.applied_migrations()) == []
    db.revert(ms)
    assert db.applied_migrations() == []
    assert "note" not in str(fingerprint(db)[0])


def test_failing_migration_leaves_database_exactly_as_before(db, tmp_path):
    good = mig("0001_add_note", "ALTER TABLE orders ADD COLUMN note varchar(20)", "ALTER TABLE orders DROP COLUMN note")
    fill = mig("0002_fill", "UPDATE orders SET total = total + 1", "UPDATE orders SET total = total - 1")
    bad = mig("0003_broken", "ALTER TABLE orders ADD COLUMN x int; SELECT no_such_column FROM orders")
    before = fingerprint(db)
    dump = tmp_path / f"pre{db.dump_suffix}"
    db.dump(dump)                                   # the release's pinned backup
    with pytest.raises(MigrationFailed) as info:
        db.apply([good, fill, bad])
    assert info.value.migration == "0003_broken"
    if db.engine == "postgres":
        assert info.value.applied == []             # one transaction: nothing happened
    else:
        assert info.value.applied == ["0001_add_note", "0002_fill"]   # MySQL DDL commits: undo needed
        db.restore(dump)                            # what on_failure: restore does
    assert fingerprint(db) == before


def test_mysql_down_files_undo_a_partial_apply(mariadb_server):  # noqa: F811
    db = MySQLDatabase(url=mariadb_server.create_database(f"down_{int(time.time() * 1000) % 100000}"))
    for stmt in SEED["mysql"]:
        database_exec(db, stmt)
    before = fingerprint(db)
    good = mig("0001_add_note", "ALTER TABLE orders ADD COLUMN note varchar(20)", "ALTER TABLE orders DROP COLUMN note")
    bad = mig("0002_broken", "ALTER TABLE nope ADD COLUMN x int")
    with pytest.raises(MigrationFailed) as info:
        db.apply([good, bad])
    db.revert([m for m in [good, bad] if m.name in info.value.applied])   # on_failure: down
    assert fingerprint(db) == before


def test_changed_or_missing_applied_migration_is_refused(tmp_path):
    (tmp_path / "0001_a.up.sql").write_text("SELECT 1;")
    (tmp_path / "0002_b.sql").write_text("SELECT 2;")
    ms = load_migrations(tmp_path)
    assert [m.name for m in ms] == ["0001_a", "0002_b"]
    with pytest.raises(MigrationFileError, match="was changed after it was applied"):
        pending(ms, ["0001_a"], {"0001_a": "0" * 64})
    with pytest.raises(MigrationFileError, match="missing"):
        pending(ms, ["0000_gone"])
    (tmp_path / "0002_c.sql").write_text("SELECT 3;")
    with pytest.raises(MigrationFileError, match="two migrations numbered 2"):
        load_migrations(tmp_path)


def test_password_never_in_errors(mariadb_server, tmp_path):  # noqa: F811
    url = mariadb_server.url("nope_db").replace(mariadb_server.password, "s3cret-Pa55word")
    with pytest.raises(DatabaseError) as info:
        MySQLDatabase(url=url).dump(tmp_path / "x.sql.gz")
    assert "s3cret-Pa55word" not in str(info.value)
    pg = PostgresDatabase(url="postgresql://postgres:s3cret-Pa55word@127.0.0.1:1/x")
    with pytest.raises(DatabaseError) as info:
        pg.applied_migrations()
    assert "s3cret-Pa55word" not in str(info.value)
