"""PostgreSQL: pg_dump -Fc / pg_restore, migrations in one transaction (DDL is transactional, so a
failure leaves the database exactly as before), schema versions in deploy_schema_migrations."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2

from deploy_pipelines.adapters.database import Database, DatabaseError, MigrationFailed
from deploy_pipelines.adapters.records import Migration
from deploy_pipelines.redact import redact

PG_BIN = Path("/usr/lib/postgresql/15/bin")
TABLE = "deploy_schema_migrations"


def _env_for(url: str) -> tuple[dict[str, str], str]:
    """Client env (password in PGPASSWORD) and the URL without the password, for argv."""
    u = urlparse(url)
    env = {**os.environ}
    if u.password:
        env["PGPASSWORD"] = u.password
    netloc = (u.username or "") + "@" + (u.hostname or "") + (f":{u.port}" if u.port else "") if u.username else u.netloc
    return env, urlunparse(u._replace(netloc=netloc))


def _scrub(text: str, url: str) -> str:
    return redact(text, url)


class PostgresDatabase(Database):
    """A PostgreSQL database (url from EnvVar)."""

    @property
    def engine(self) -> str:
        return "postgres"

    @property
    def dump_suffix(self) -> str:
        return ".dump"

    def _connect(self, url: str | None = None):
        try:
            return psycopg2.connect(url or self.url, connect_timeout=10)
        except psycopg2.Error as exc:
            raise DatabaseError(_scrub(f"cannot connect to PostgreSQL: {exc}".strip(), url or self.url)) from None

    def _tool(self, name: str, args: list[str], url: str | None = None, timeout: int = 3600) -> None:
        env, safe_url = _env_for(url or self.url)
        proc = subprocess.run([str(PG_BIN / name), *args, "--dbname", safe_url], capture_output=True, text=True,
                              env=env, timeout=timeout)
        if proc.returncode != 0:
            raise DatabaseError(_scrub(f"{name} failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}",
                                       url or self.url))

    def dump(self, dest: Path) -> None:
        # Custom format at compression 1: ~2x faster than the default for the same restore (LOCAL_STACK.md).
        self._tool("pg_dump", ["-Fc", "-Z1", "--no-owner", "--no-acl", "--no-sync", "-f", str(dest)])

    def restore(self, src: Path, into_url: str | None = None) -> None:
        url = into_url or self.url
        conn = self._connect(url)
        conn.autocommit = True
        with conn.cursor() as cur:
            # Replace everything: a clean schema, then the dump (which recreates public's objects).
            cur.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
        conn.close()
        self._tool("pg_restore", ["--no-owner", "--no-acl", "--exit-on-error", "--single-transaction",
                                  str(src)], url=url)

    def _ensure_table(self, cur) -> None:
        cur.execute(f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            name text PRIMARY KEY, sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())""")

    def applied_migrations(self) -> list[str]:
        return [name for name, _ in self.applied_with_checksums()]

    def applied_with_checksums(self) -> list[tuple[str, str]]:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT to_regclass(%s)", (TABLE,))
                if cur.fetchone()[0] is None:
                    return []
                cur.execute(f"SELECT name, sha256 FROM {TABLE} ORDER BY applied_at, name")
                return cur.fetchall()
        finally:
            conn.close()

    def apply(self, migrations: list[Migration]) -> list[str]:
        conn = self._connect()
        current = None
        try:
            with conn, conn.cursor() as cur:       # one transaction: all or nothing
                self._ensure_table(cur)
                for m in migrations:
                    current = m.name
                    cur.execute(m.up_sql)
                    cur.execute(f"INSERT INTO {TABLE} (name, sha256) VALUES (%s, %s)", (m.name, m.sha256))
            return [m.name for m in migrations]
        except psycopg2.Error as exc:
            raise MigrationFailed(_scrub(f"{current}: {exc.pgerror or exc}".strip(), self.url), current or "", [])
        finally:
            conn.close()

    def revert(self, migrations: list[Migration]) -> list[str]:
        conn = self._connect()
        done = []
        try:
            with conn, conn.cursor() as cur:
                for m in reversed(migrations):
                    if m.down_sql is None:
                        raise DatabaseError(f"migration {m.name} has no down file: restore the backup instead")
                    cur.execute(m.down_sql)
                    cur.execute(f"DELETE FROM {TABLE} WHERE name = %s", (m.name,))
                    done.append(m.name)
            return done
        except psycopg2.Error as exc:
            raise DatabaseError(_scrub(f"down of {m.name} failed: {exc}", self.url)) from None
        finally:
            conn.close()

    def row_counts(self, url: str | None = None) -> dict[str, int]:
        conn = self._connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute("""SELECT schemaname, tablename FROM pg_tables
                               WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2""")
                tables = cur.fetchall()
                counts = {}
                for schema, table in tables:
                    cur.execute(f'SELECT count(*) FROM "{schema}"."{table}"')
                    counts[f"{schema}.{table}"] = cur.fetchone()[0]
                return counts
        finally:
            conn.close()

    def _admin(self):
        u = urlparse(self.url)
        conn = self._connect(urlunparse(u._replace(path="/postgres")))
        conn.autocommit = True
        return conn

    def create_scratch(self, name: str) -> str:
        conn = self._admin()
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return urlunparse(urlparse(self.url)._replace(path=f"/{name}"))

    def drop_scratch(self, name: str) -> None:
        conn = self._admin()
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()

    def query(self, sql: str, url: str | None = None) -> list[tuple]:
        conn = self._connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()
