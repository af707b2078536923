"""The migration-safety lint on SQL snippets, PostgreSQL and MySQL: each unsafe pattern of the
seeds' zero-downtime rules is found with the right rule id and line, safe forms pass, keywords in
comments and strings never trigger, allow comments need a reason. Not covered: running the SQL."""

from __future__ import annotations

import pytest

from deploy_pipelines.scanning.gate import AllowEntry
from deploy_pipelines.scanning.migration_lint import RULES, lint

LT = "SET lock_timeout = '5s';\n"

CASES = [
    # id, dialect, sql, expected rule ids (sorted)
    ("drop-column", "postgres", LT + "ALTER TABLE items DROP COLUMN name;", ["MIG001"]),
    ("drop-column-mysql", "mysql", "ALTER TABLE items DROP name;", ["MIG001"]),
    ("drop-table", "postgres", "DROP TABLE legacy_orders;", ["MIG002"]),
    ("drop-table-mysql", "mysql", "DROP TABLE IF EXISTS `legacy`;", ["MIG002"]),
    ("not-null-no-default", "postgres", LT + "ALTER TABLE items ADD COLUMN sku text NOT NULL;", ["MIG003"]),
    ("not-null-no-default-mysql", "mysql", "ALTER TABLE items ADD COLUMN sku varchar(20) NOT NULL;", ["MIG003"]),
    ("set-not-null", "postgres", LT + "ALTER TABLE items ALTER COLUMN sku SET NOT NULL;", ["MIG004"]),
    ("modify-not-null-mysql", "mysql", "ALTER TABLE items MODIFY sku varchar(20) NOT NULL;", ["MIG004", "MIG006"]),
    ("rename-column", "postgres", LT + "ALTER TABLE items RENAME COLUMN name TO title;", ["MIG005"]),
    ("rename-table", "postgres", LT + "ALTER TABLE items RENAME TO products;", ["MIG005"]),
    ("change-rename-mysql", "mysql", "ALTER TABLE items CHANGE name title varchar(50);", ["MIG005", "MIG006"]),
    ("type-change", "postgres", LT + "ALTER TABLE items ALTER COLUMN price TYPE numeric(12,2);", ["MIG006"]),
    ("index-no-concurrently", "postgres", "CREATE INDEX items_sku ON items (sku);", ["MIG007"]),
    ("unique-index-no-concurrently", "postgres", "CREATE UNIQUE INDEX IF NOT EXISTS i ON public.items (sku);",
     ["MIG007"]),
    ("index-mysql-blocking", "mysql", "CREATE INDEX items_sku ON items (sku);", ["MIG107"]),
    ("add-index-mysql-blocking", "mysql", "ALTER TABLE items ADD INDEX items_sku (sku);", ["MIG107"]),
    ("fk-without-not-valid", "postgres",
     LT + "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (item_id) REFERENCES items (id);", ["MIG008"]),
    ("check-without-not-valid", "postgres", LT + "ALTER TABLE items ADD CONSTRAINT pos CHECK (price > 0);",
     ["MIG008"]),
    ("no-lock-timeout", "postgres", "ALTER TABLE items ADD COLUMN note text;", ["MIG009"]),
    ("lock-timeout-after-alter", "postgres", "ALTER TABLE items ADD COLUMN note text;\n" + LT, ["MIG009"]),
    # safe forms
    ("nullable-column", "postgres", LT + "ALTER TABLE items ADD COLUMN sku text;", []),
    ("not-null-with-default", "postgres", LT + "ALTER TABLE items ADD COLUMN n int NOT NULL DEFAULT 0;", []),
    ("concurrently", "postgres", "CREATE INDEX CONCURRENTLY items_sku ON items (sku);", []),
    ("not-valid-then-validate", "postgres",
     LT + "ALTER TABLE items ADD CONSTRAINT pos CHECK (price > 0) NOT VALID;\n"
          "ALTER TABLE items VALIDATE CONSTRAINT pos;", []),
    ("drop-not-null-is-fine", "postgres", LT + "ALTER TABLE items ALTER COLUMN sku DROP NOT NULL;", []),
    ("drop-default-is-fine", "postgres", LT + "ALTER TABLE items ALTER COLUMN sku DROP DEFAULT;", []),
    ("new-table-is-exempt", "postgres",
     "CREATE TABLE carts (id int);\nCREATE INDEX carts_id ON carts (id);\nALTER TABLE carts ADD COLUMN x int NOT NULL;\n"
     "ALTER TABLE carts DROP COLUMN x;\nDROP TABLE carts;", []),
    ("keywords-in-comments-and-strings", "postgres",
     "-- DROP TABLE items; ALTER TABLE items DROP COLUMN name;\n/* CREATE INDEX i ON items (x); */\n"
     "UPDATE items SET note = 'DROP TABLE items; ALTER TABLE x DROP COLUMN y';\n"
     "INSERT INTO log (msg) VALUES ($$CREATE INDEX i ON items(x)$$);", []),
    ("mysql-online-index", "mysql", "ALTER TABLE items ADD INDEX i (sku), ALGORITHM=INPLACE, LOCK=NONE;", []),
    ("mysql-nullable-column", "mysql", "ALTER TABLE items ADD COLUMN sku varchar(20) NULL;", []),
    ("backfill-update", "mysql", "UPDATE items SET sku = CONCAT('SKU-', id) WHERE sku IS NULL;", []),
]


@pytest.mark.parametrize("case,dialect,sql,expected", CASES, ids=[c[0] for c in CASES])
def test_snippet(case, dialect, sql, expected):
    findings = lint([(f"migrations/0007_{case}.up.sql", sql)], dialect)
    assert sorted({f.id for f in findings}) == expected, [(f.id, f.title) for f in findings]
    for f in findings:
        assert f.severity == "high" and f.advice == RULES[f.id].advice
        assert f.target.startswith(f"migrations/0007_{case}.up.sql:")


def test_line_numbers_point_at_the_statement():
    sql = "-- expand first\nSET lock_timeout = '5s';\n\nALTER TABLE items\n  DROP COLUMN name;\n"
    (finding,) = lint([("m.sql", sql)], "postgres")
    assert finding.target == "m.sql:4"


def test_allow_comment_with_reason_allows_that_rule_only():
    sql = ("-- deploy:allow MIG001 the column was unused since v1.8.0\n" + LT +
           "ALTER TABLE items DROP COLUMN legacy;\nCREATE INDEX i ON items (x);")
    findings = {f.id: f for f in lint([("m.sql", sql)], "postgres")}
    assert findings["MIG001"].allowed_by == "the column was unused since v1.8.0"
    assert findings["MIG007"].allowed_by == ""


def test_allow_comment_without_reason_is_itself_a_finding():
    findings = lint([("m.sql", "-- deploy:allow MIG002\nDROP TABLE t;")], "postgres")
    assert {f.id for f in findings} == {"MIG000", "MIG002"}


def test_catalog_allow_entry_for_one_file():
    allow = [AllowEntry(id="MIG002", file="0009_drop_legacy.up.sql", reason="table unused for 3 releases")]
    files = [("migrations/0009_drop_legacy.up.sql", "DROP TABLE legacy;"), ("migrations/0010_x.up.sql", "DROP TABLE y;")]
    findings = {f.target.split(":")[0]: f for f in lint(files, "postgres", allow)}
    assert findings["migrations/0009_drop_legacy.up.sql"].allowed_by == "table unused for 3 releases"
    assert findings["migrations/0010_x.up.sql"].allowed_by == ""
