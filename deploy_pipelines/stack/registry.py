"""An OCI registry (Debian's docker-registry) on 127.0.0.1, storage inside the state dir."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy_pipelines.stack.process import Managed, free_port, wait_for_http

CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


@dataclass
class RegistryServer:
    state_dir: Path
    port: int

    @property
    def proc(self) -> Managed:
        return Managed("registry", self.state_dir, self.port)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls, state_dir: Path, port: int | None = None) -> "RegistryServer":
        state_dir = Path(state_dir).resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        port_file = state_dir / "port"
        if port_file.exists():
            server = cls(state_dir, int(port_file.read_text()))
            if server.running():
                return server
            port = port or server.port
        server = cls(state_dir, port or free_port())
        (state_dir / "data").mkdir(exist_ok=True)
        config = state_dir / "config.yml"
        config.write_text(CONFIG.format(root=state_dir / "data", port=server.port))
        port_file.write_text(str(server.port))
        server.proc.spawn(["docker-registry", "serve", str(config)])
        wait_for_http(f"http://{server.address}/v2/", 20, "OCI registry", server.proc.log_file)
        return server

    def running(self) -> bool:
        return self.proc.running()

    def stop(self) -> None:
        self.proc.stop()
