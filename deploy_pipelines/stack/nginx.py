"""nginx in front of the services: one master per stack, prefix in the state dir, every
service's upstream + listener in conf.d/<service>-<env>.conf written by the docker platform.
Reload is graceful (SIGHUP: new workers take new connections, old ones finish theirs)."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

from deploy_pipelines.stack.process import Managed, StackError, run, wait_for

NGINX_CONF = """# written by deploy_pipelines; services live in conf.d/
worker_processes 2;
user root;
daemon off;
master_process on;
pid {state}/nginx.pid;
error_log {state}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {state}/tmp/body;
    proxy_temp_path {state}/tmp/proxy;
    fastcgi_temp_path {state}/tmp/fastcgi;
    uwsgi_temp_path {state}/tmp/uwsgi;
    scgi_temp_path {state}/tmp/scgi;
    keepalive_timeout 5s;
    include {state}/conf.d/*.conf;
}}
"""


@dataclass
class NginxServer:
    state_dir: Path

    @property
    def proc(self) -> Managed:
        return Managed("nginx", self.state_dir)

    @property
    def conf_dir(self) -> Path:
        return self.state_dir / "conf.d"

    @property
    def conf_file(self) -> Path:
        return self.state_dir / "nginx.conf"

    @classmethod
    def start(cls, state_dir: Path) -> "NginxServer":
        server = cls(Path(state_dir).resolve())
        s = server.state_dir
        (s / "tmp").mkdir(parents=True, exist_ok=True)
        server.conf_dir.mkdir(exist_ok=True)
        server.conf_file.write_text(NGINX_CONF.format(state=s))
        if server.running():
            return server
        server.check()
        server.proc.spawn(["nginx", "-p", str(s), "-c", str(server.conf_file)])
        wait_for(lambda: (s / "nginx.pid").exists(), 10, "nginx master", server.proc.log_file)
        return server

    def check(self) -> None:
        run(["nginx", "-t", "-q", "-p", str(self.state_dir), "-c", str(self.conf_file)], "nginx -t")

    def running(self) -> bool:
        return self.proc.running()

    def reload(self) -> None:
        """Validate, then SIGHUP the master: a config error never takes the proxy down."""
        self.check()
        pid = self.proc.pid
        if pid is None:
            raise StackError(f"nginx at {self.state_dir} is not running")
        import os

        os.kill(pid, signal.SIGHUP)

    def stop(self) -> None:
        self.proc.stop(sig=signal.SIGQUIT)   # graceful shutdown
