"""MariaDB for the local stack and the tests: installed once into the state dir, run as the
mysql user on 127.0.0.1 and a free port; root has a generated password (kept 0600 in the state
dir) so that the adapter's password path is the one exercised."""

from __future__ import annotations

import os
import pwd
import secrets
from dataclasses import dataclass
from pathlib import Path

from deploy_pipelines.stack.postgres import _traversable
from deploy_pipelines.stack.process import Managed, free_port, run, wait_for


@dataclass
class MariaDBServer:
    state_dir: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def socket(self) -> Path:
        return self.state_dir / "mysqld.sock"

    @property
    def proc(self) -> Managed:
        return Managed("mariadb", self.state_dir, self.port)

    @property
    def password(self) -> str:
        return (self.state_dir / "root.password").read_text().strip()

    @classmethod
    def start(cls, state_dir: Path, port: int | None = None) -> "MariaDBServer":
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
        pw = pwd.getpwnam("mysql")
        os.chown(state_dir, pw.pw_uid, pw.pw_gid)
        fresh = not (server.data_dir / "mysql").exists()
        if fresh:
            server.data_dir.mkdir(exist_ok=True)
            os.chown(server.data_dir, pw.pw_uid, pw.pw_gid)
            run(["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={server.data_dir}",
                 "--auth-root-authentication-method=normal", "--skip-test-db"], "mariadb-install-db", timeout=300)
            pw_file = state_dir / "root.password"
            pw_file.write_text(secrets.token_urlsafe(18))
            os.chmod(pw_file, 0o600)
        port_file.write_text(str(server.port))
        server.proc.spawn(["mariadbd", "--no-defaults", "--user=mysql", f"--datadir={server.data_dir}",
                           f"--socket={server.socket}", f"--port={server.port}", "--bind-address=127.0.0.1",
                           "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=0", "--skip-log-bin",
                           f"--pid-file={state_dir / 'mariadbd.pid'}", f"--log-error={server.proc.log_file}"])
        wait_for(lambda: server.socket.exists(), 60, f"MariaDB on 127.0.0.1:{server.port}", server.proc.log_file)
        if fresh:
            import pymysql

            conn = pymysql.connect(unix_socket=str(server.socket), user="root", password="")
            with conn.cursor() as cur:
                for host in ("127.0.0.1", "::1", "localhost"):   # localhost last: we are connected as it
                    cur.execute(f"CREATE USER IF NOT EXISTS 'root'@'{host}'")
                    cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO 'root'@'{host}' WITH GRANT OPTION")
                    cur.execute(f"ALTER USER 'root'@'{host}' IDENTIFIED BY %s", (server.password,))
            conn.commit()
            conn.close()
        wait_for(server._ready, 30, f"MariaDB on 127.0.0.1:{server.port}", server.proc.log_file)
        return server

    def _connect(self, db: str | None = None):
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", password=self.password,
                               database=db, connect_timeout=2)

    def _ready(self) -> bool:
        self._connect().close()
        return True

    def running(self) -> bool:
        if not self.proc.running():
            return False
        try:
            return self._ready()
        except Exception:  # noqa: BLE001
            return False

    def stop(self) -> None:
        self.proc.stop(timeout=30)

    def url(self, db: str) -> str:
        from urllib.parse import quote

        return f"mysql://root:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        conn = self._connect()
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}`")
        conn.close()
        return self.url(name)
