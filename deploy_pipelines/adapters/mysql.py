"""MySQL / MariaDB: mysqldump --single-transaction (gzipped), restore through the mysql client,
migrations file by file (MySQL DDL commits implicitly: a failure reports what was applied so the
release can run the down files or restore the pinned backup)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import unquote, urlparse, urlunparse

import pymysql

from deploy_pipelines.adapters.database import Database, DatabaseError, MigrationFailed
from deploy_pipelines.adapters.records import Migration
from deploy_pipelines.redact import redact

TABLE = "deploy_schema_migrations"


class MySQLDatabase(Database):
    """A MySQL or MariaDB database (url mysql://user:password@host:port/db from EnvVar)."""

    @property
    def engine(self) -> str:
        return "mysql"

    @property
    def dump_suffix(self) -> str:
        return ".sql.gz"

    def _parts(self, url: str | None = None) -> dict:
        u = urlparse(url or self.url)
        return {"host": u.hostname or "127.0.0.1", "port": u.port or 3306, "user": unquote(u.username or "root"),
                "password": unquote(u.password or ""), "database": u.path.lstrip("/")}

    def _scrub(self, text: str, url: str | None = None) -> str:
        return redact(text, url or self.url, self._parts(url)["password"])

    def _connect(self, url: str | None = None, db: bool = True):
        p = self._parts(url)
        try:
            return pymysql.connect(host=p["host"], port=p["port"], user=p["user"], password=p["password"],
                                   database=p["database"] if db else None, connect_timeout=10, autocommit=True)
        except pymysql.Error as exc:
            raise DatabaseError(self._scrub(f"cannot connect to MySQL: {exc}", url)) from None

    def _client_args(self, url: str | None = None) -> tuple[list[str], dict[str, str]]:
        p = self._parts(url)
        # The password goes in MYSQL_PWD, never on argv (ps would show it).
        return (["--no-defaults", f"--host={p['host']}", f"--port={p['port']}", f"--user={p['user']}",
                 "--protocol=TCP"], {**os.environ, "MYSQL_PWD": p["password"]})

    def dump(self, dest: Path) -> None:
        args, env = self._client_args()
        db = self._parts()["database"]
        with gzip.open(dest, "wb", compresslevel=1) as out:
            proc = subprocess.Popen(["mysqldump", *args, "--single-transaction", "--quick", "--routines",
                                     "--triggers", "--skip-lock-tables", db], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env)
            shutil.copyfileobj(proc.stdout, out)
            err = proc.stderr.read().decode(errors="replace")
            if proc.wait() != 0:
                raise DatabaseError(self._scrub(f"mysqldump failed (exit {proc.returncode}): {err[-1500:]}"))

    @contextmanager
    def dump_stream(self) -> Iterator[BinaryIO]:
        from deploy_pipelines.adapters.streams import GzipReader

        args, env = self._client_args()
        proc = subprocess.Popen(["mysqldump", *args, "--single-transaction", "--quick", "--routines", "--triggers",
                                 "--skip-lock-tables", self._parts()["database"]], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        try:
            yield GzipReader(proc.stdout)
        except BaseException:
            proc.kill()
            raise
        finally:
            proc.stdout.close()
            err = proc.stderr.read().decode(errors="replace")
            code = proc.wait()
        if code != 0:
            raise DatabaseError(self._scrub(f"mysqldump failed (exit {code}): {err[-1500:]}"))

    def restore(self, src: Path, into_url: str | None = None) -> None:
        url = into_url or self.url
        db = self._parts(url)["database"]
        conn = self._connect(url, db=False)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
            cur.execute(f"CREATE DATABASE `{db}`")
        conn.close()
        args, env = self._client_args(url)
        # The dump is gzipped: decompress into the client's stdin (a file object's fileno would
        # hand it the compressed bytes).
        with gzip.open(src, "rb") as data, subprocess.Popen(["mysql", *args, db], stdin=subprocess.PIPE,
                                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                            env=env) as proc:
            try:
                shutil.copyfileobj(data, proc.stdin)
                proc.stdin.close()
            except BrokenPipeError:
                pass
            err = proc.stderr.read().decode(errors="replace")
            code = proc.wait(timeout=3600)
        if code != 0:
            raise DatabaseError(self._scrub(f"restore failed: {err[-1500:]}", url))

    def _ensure_table(self, cur) -> None:
        cur.execute(f"""CREATE TABLE IF NOT EXISTS {TABLE} (name varchar(255) PRIMARY KEY, sha256 char(64) NOT NULL,
                        applied_at timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))""")

    def applied_with_checksums(self) -> list[tuple[str, str]]:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() "
                            "AND table_name = %s", (TABLE,))
                if cur.fetchone()[0] == 0:
                    return []
                cur.execute(f"SELECT name, sha256 FROM {TABLE} ORDER BY applied_at, name")
                return [tuple(r) for r in cur.fetchall()]
        finally:
            conn.close()

    def applied_migrations(self) -> list[str]:
        return [n for n, _ in self.applied_with_checksums()]

    def apply(self, migrations: list[Migration]) -> list[str]:
        conn = self._connect()
        done: list[str] = []
        try:
            with conn.cursor() as cur:
                self._ensure_table(cur)
                for m in migrations:
                    try:
                        for stmt in _split(m.up_sql):
                            cur.execute(stmt)
                        cur.execute(f"INSERT INTO {TABLE} (name, sha256) VALUES (%s, %s)", (m.name, m.sha256))
                    except pymysql.Error as exc:
                        raise MigrationFailed(self._scrub(f"{m.name}: {exc}"), m.name, done) from None
                    done.append(m.name)
            return done
        finally:
            conn.close()

    def revert(self, migrations: list[Migration]) -> list[str]:
        conn = self._connect()
        done = []
        try:
            with conn.cursor() as cur:
                for m in reversed(migrations):
                    if m.down_sql is None:
                        raise DatabaseError(f"migration {m.name} has no down file: restore the backup instead")
                    for stmt in _split(m.down_sql):
                        cur.execute(stmt)
                    cur.execute(f"DELETE FROM {TABLE} WHERE name = %s", (m.name,))
                    done.append(m.name)
            return done
        except pymysql.Error as exc:
            raise DatabaseError(self._scrub(f"down failed: {exc}")) from None
        finally:
            conn.close()

    def row_counts(self, url: str | None = None) -> dict[str, int]:
        conn = self._connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
                            "AND table_type = 'BASE TABLE' ORDER BY 1")
                tables = [r[0] for r in cur.fetchall()]
                counts = {}
                for t in tables:
                    cur.execute(f"SELECT COUNT(*) FROM `{t}`")
                    counts[f"{self._parts(url)['database']}.{t}"] = cur.fetchone()[0]
                return counts
        finally:
            conn.close()

    def create_scratch(self, name: str) -> str:
        conn = self._connect(db=False)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}`")
        conn.close()
        return urlunparse(urlparse(self.url)._replace(path=f"/{name}"))

    def drop_scratch(self, name: str) -> None:
        conn = self._connect(db=False)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()

    def query(self, sql: str, url: str | None = None) -> list[tuple]:
        conn = self._connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return [tuple(r) for r in cur.fetchall()] if cur.description else []
        finally:
            conn.close()


def _split(sql: str) -> list[str]:
    """Statements of a migration file (semicolons outside comments and strings)."""
    from deploy_pipelines.scanning.migration_lint import _blank

    blank = _blank(sql)
    out, start = [], 0
    for i, ch in enumerate(blank):
        if ch == ";":
            if sql[start:i].strip():
                out.append(sql[start:i].strip())
            start = i + 1
    if sql[start:].strip() and blank[start:].strip():
        out.append(sql[start:].strip())
    return out
