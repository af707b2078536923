"""The local stack: every real server a release touches, on 127.0.0.1, state under one folder.

`up` is idempotent (components already running are reattached), writes the connection settings
the demo catalog reads ({env: NAME}) to `<root>/env` (shell) and `<root>/env.json`, and `down`
stops exactly the processes recorded in `<root>` by PID.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from deploy_pipelines.stack.process import StackError
from deploy_pipelines.stack.team import dagster_storage_url

COMPONENTS = ("postgres", "mariadb", "registry", "podman", "nginx", "prometheus")


@dataclass
class LocalStack:
    root: Path

    def __post_init__(self):
        self.root = Path(self.root).resolve()

    def _dir(self, name: str) -> Path:
        return self.root / name

    # Each component class is imported lazily: `stack status` should not need them all.
    def _classes(self):
        from deploy_pipelines.stack.mariadb import MariaDBServer
        from deploy_pipelines.stack.nginx import NginxServer
        from deploy_pipelines.stack.podman import PodmanService
        from deploy_pipelines.stack.postgres import PostgresServer
        from deploy_pipelines.stack.prometheus import PrometheusServer
        from deploy_pipelines.stack.registry import RegistryServer

        return PostgresServer, MariaDBServer, RegistryServer, PodmanService, NginxServer, PrometheusServer

    def up(self, log=print, base_image: bool = True) -> dict[str, str]:
        Postgres, MariaDB, Registry, Podman, Nginx, Prometheus = self._classes()
        self.root.mkdir(parents=True, exist_ok=True)
        timings: dict[str, float] = {}

        def start(name, fn):
            t = time.monotonic()
            obj = fn()
            timings[name] = time.monotonic() - t
            log(f"  {name:<11} up ({timings[name]:.1f}s)")
            return obj

        pg = start("postgres", lambda: Postgres.start(self._dir("postgres")))
        my = start("mariadb", lambda: MariaDB.start(self._dir("mariadb")))
        reg = start("registry", lambda: Registry.start(self._dir("registry")))
        podman = start("podman", lambda: Podman.start(self._dir("podman"), insecure_registries=[reg.address]))
        nginx = start("nginx", lambda: Nginx.start(self._dir("nginx")))
        prom = start("prometheus", lambda: Prometheus.start(self._dir("prometheus"), scrape_interval="1s"))
        for db in ("demo", "demo_shop", "dagster"):      # dagster: `make ui-team`'s instance storage
            pg.create_database(db)
        my.create_database("demo")
        env = {
            "DEPLOY_DOCKER_HOST": podman.docker_host,
            "DOCKER_HOST": podman.docker_host,
            "DEPLOY_NGINX_PREFIX": str(self._dir("nginx")),
            "DEPLOY_PROMETHEUS_URL": prom.url,
            "DEPLOY_PROMETHEUS_TARGETS": str(prom.targets_dir),
            "DEPLOY_REGISTRY": reg.address,
            "DEPLOY_BACKUP_ROOT": f"file://{self._dir('backups')}",
            "DEMO_DATABASE_URL": pg.url("demo"),
            "DEMO_SHOP_DATABASE_URL": pg.url("demo_shop"),
            "DEMO_MYSQL_URL": my.url("demo"),
            "DAGSTER_PG_URL": dagster_storage_url(pg.url("dagster")),
            **podman.env(),
        }
        if base_image:
            from deploy_pipelines.stack.base_image import NGINX_NAME, ensure_base_image

            t = time.monotonic()
            os.environ.update(env)
            env["DEPLOY_BASE_IMAGE"] = ensure_base_image(reg.address, env=env, log=log)
            # The Docker platform's proxy: nginx from the same rootfs, pulled by each Docker host.
            env["DEPLOY_NGINX_IMAGE"] = ensure_base_image(reg.address, env=env, log=log, name=NGINX_NAME,
                                                          cmd="nginx")
            log(f"  base image  {env['DEPLOY_BASE_IMAGE']} ({time.monotonic() - t:.1f}s)")
        self.write_env(env)
        return env

    def write_env(self, env: dict[str, str]) -> None:
        (self.root / "env.json").write_text(json.dumps(env, indent=2))
        (self.root / "env").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items())))
        os.chmod(self.root / "env", 0o600)
        os.chmod(self.root / "env.json", 0o600)

    def env(self) -> dict[str, str]:
        try:
            return json.loads((self.root / "env.json").read_text())
        except OSError:
            raise StackError(f"no stack at {self.root}: run `deploy-pipelines stack up` first") from None

    def down(self, log=print) -> None:
        """Stop what this stack started, by PID: the release containers first, then the servers."""
        self._remove_containers(log)
        for name in reversed(COMPONENTS):
            state = self._dir(name)
            if state.exists():
                self._stop(name, state, log)

    def _remove_containers(self, log) -> None:
        try:
            host = self.env()["DEPLOY_DOCKER_HOST"]
        except (StackError, KeyError):
            return
        if not self.status().get("podman"):
            return
        import docker

        client = docker.DockerClient(base_url=host, timeout=30)
        containers = client.containers.list(all=True, filters={"label": "deploy.service"})
        for c in containers:
            c.remove(force=True)
        log(f"  containers  {len(containers)} removed")

    def _stop(self, name: str, state: Path, log) -> None:
        from deploy_pipelines.stack.process import read_pid, stop_pid

        stopped = False
        for pid_file in sorted(state.glob("*.pid")):
            pid = read_pid(pid_file)
            if pid:
                stop_pid(pid)
                stopped = True
            pid_file.unlink(missing_ok=True)
        log(f"  {name:<11} {'stopped' if stopped else 'was not running'}")

    def status(self) -> dict[str, bool]:
        from deploy_pipelines.stack.process import pid_alive, read_pid

        result = {}
        for name in COMPONENTS:
            pids = [read_pid(p) for p in self._dir(name).glob("*.pid")] if self._dir(name).exists() else []
            result[name] = bool(pids) and all(p and pid_alive(p) for p in pids)
        return result
