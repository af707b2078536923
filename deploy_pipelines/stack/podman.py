"""Podman's Docker Engine API service, configured for these machines (LOCAL_STACK.md): runc,
cgroupfs, file events, explicit ulimits, the local registry marked insecure; storage in the state
dir. buildah reads the same CONTAINERS_* files, so builds and runs share one image store."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from deploy_pipelines.stack.process import Managed, wait_for

CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
netns = "host"
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{state}/events.log"
tmp_dir = "{state}/tmp"
"""

STORAGE_CONF = """[storage]
driver = "{driver}"
graphroot = "{state}/storage"
runroot = "{state}/run"
"""

REGISTRIES_CONF = """unqualified-search-registries = []
{insecure}
"""


@dataclass
class PodmanService:
    state_dir: Path
    driver: str = "overlay"
    insecure_registries: list[str] = field(default_factory=list)

    @property
    def proc(self) -> Managed:
        return Managed("podman", self.state_dir)

    @property
    def socket(self) -> Path:
        return self.state_dir / "podman.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def env(self) -> dict[str, str]:
        return {
            "CONTAINERS_CONF": str(self.state_dir / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.state_dir / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.state_dir / "registries.conf"),
        }

    def write_config(self) -> None:
        s = self.state_dir
        (s / "tmp").mkdir(parents=True, exist_ok=True)
        (s / "containers.conf").write_text(CONTAINERS_CONF.format(state=s))
        (s / "storage.conf").write_text(STORAGE_CONF.format(state=s, driver=self.driver))
        insecure = "".join(f'[[registry]]\nlocation = "{r}"\ninsecure = true\n\n' for r in self.insecure_registries)
        (s / "registries.conf").write_text(REGISTRIES_CONF.format(insecure=insecure))

    @classmethod
    def start(cls, state_dir: Path, insecure_registries: list[str] | None = None,
              driver: str | None = None) -> "PodmanService":
        state_dir = Path(state_dir).resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        driver_file = state_dir / "driver"
        driver = driver or (driver_file.read_text().strip() if driver_file.exists() else
                            os.environ.get("DEPLOY_STORAGE_DRIVER", "vfs"))
        service = cls(state_dir, driver, list(insecure_registries or []))
        service.write_config()
        driver_file.write_text(driver)
        if service.running():
            return service
        service.socket.unlink(missing_ok=True)
        service.proc.spawn(["podman", "system", "service", "--time=0", service.docker_host],
                           env=service.env())
        wait_for(service._ping, 30, f"podman API service ({service.socket})", service.proc.log_file)
        return service

    def _ping(self) -> bool:
        import docker

        # 10 s, not 2: on a busy 2-core machine podman's first /version answer took 4.5 s (measured).
        return docker.DockerClient(base_url=self.docker_host, timeout=10).ping()

    def running(self) -> bool:
        if not self.proc.running():
            return False
        try:
            return self._ping()
        except Exception:  # noqa: BLE001
            return False

    def stop(self) -> None:
        if self.running():
            import docker

            client = docker.DockerClient(base_url=self.docker_host, timeout=30)
            for c in client.containers.list(all=True):
                c.remove(force=True)
        self.proc.stop()
