"""PostgreSQL 15 for the local stack and the tests: initdb once, run as the postgres user (it
refuses root), bound to 127.0.0.1 on a free port, unix socket inside the state dir."""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

from deploy_pipelines.stack.process import Managed, StackError, free_port, run, wait_for

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _chown_tree(path: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    for p in [path, *path.rglob("*")]:
        os.chown(p, pw.pw_uid, pw.pw_gid)


def _traversable(path: Path) -> None:
    """The postgres user must reach its data dir: give o+x on each parent (tmp dirs are 0700)."""
    for parent in [path, *path.parents]:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)


@dataclass
class PostgresServer:
    state_dir: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.state_dir / "sock"

    @property
    def proc(self) -> Managed:
        return Managed("postgres", self.state_dir, self.port)

    @classmethod
    def start(cls, state_dir: Path, port: int | None = None) -> "PostgresServer":
        state_dir = Path(state_dir).resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        port_file = state_dir / "port"
        if port_file.exists():
            server = cls(state_dir, int(port_file.read_text()))
            if server.running():
                return server
            port = port or server.port
        server = cls(state_dir, port or free_port())
        _traversable(state_dir)
        if not (server.data_dir / "PG_VERSION").exists():
            shutil.rmtree(server.data_dir, ignore_errors=True)
            server.data_dir.mkdir(parents=True)
            _chown_tree(server.data_dir, "postgres")
            run(["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(server.data_dir),
                 "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"], "initdb")
        server.socket_dir.mkdir(exist_ok=True)
        _chown_tree(server.socket_dir, "postgres")
        (server.data_dir / "postmaster.pid").unlink(missing_ok=True)
        port_file.write_text(str(server.port))
        server.proc.spawn([str(PG_BIN / "postgres"), "-D", str(server.data_dir), "-c", "listen_addresses=127.0.0.1",
                           "-p", str(server.port), "-k", str(server.socket_dir), "-c", "fsync=off",
                           "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
                           "-c", "max_connections=200"], user="postgres")
        wait_for(server._ready, 30, f"PostgreSQL on 127.0.0.1:{server.port}", server.proc.log_file)
        return server

    def _ready(self) -> bool:
        import psycopg2

        psycopg2.connect(self.url("postgres"), connect_timeout=1).close()
        return True

    def running(self) -> bool:
        if not self.proc.running():
            return False
        try:
            return self._ready()
        except Exception:  # noqa: BLE001
            return False

    def stop(self) -> None:
        self.proc.stop(timeout=20)   # SIGTERM: smart shutdown

    def url(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(self.url("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg2

        conn = psycopg2.connect(self.url("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def ensure_user_exists() -> None:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise StackError("the postgres user does not exist: install the postgresql package") from None
