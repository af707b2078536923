"""Prometheus scraping the services: targets come from file_sd files the platform writes
(targets/<service>-<env>.json), so a new instance is scraped without a restart."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy_pipelines.stack.process import Managed, free_port, wait_for_http

CONFIG = """global:
  scrape_interval: {interval}
  evaluation_interval: {interval}
scrape_configs:
  - job_name: services
    scrape_timeout: {interval}
    file_sd_configs:
      - files: ["{targets}/*.json"]
        refresh_interval: 1s
"""


@dataclass
class PrometheusServer:
    state_dir: Path
    port: int

    @property
    def proc(self) -> Managed:
        return Managed("prometheus", self.state_dir, self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def targets_dir(self) -> Path:
        return self.state_dir / "targets"

    @classmethod
    def start(cls, state_dir: Path, scrape_interval: str = "1s", port: int | None = None) -> "PrometheusServer":
        state_dir = Path(state_dir).resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        port_file = state_dir / "port"
        if port_file.exists():
            server = cls(state_dir, int(port_file.read_text()))
            if server.running():
                return server
            port = port or server.port
        server = cls(state_dir, port or free_port())
        server.targets_dir.mkdir(exist_ok=True)
        config = state_dir / "prometheus.yml"
        config.write_text(CONFIG.format(interval=scrape_interval, targets=server.targets_dir))
        port_file.write_text(str(server.port))
        server.proc.spawn(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={state_dir / 'data'}",
                           f"--web.listen-address=127.0.0.1:{server.port}", "--web.enable-lifecycle",
                           "--storage.tsdb.retention.time=2d", "--log.level=warn"])
        wait_for_http(f"{server.url}/-/ready", 30, "Prometheus", server.proc.log_file)
        return server

    def running(self) -> bool:
        return self.proc.running()

    def stop(self) -> None:
        self.proc.stop()
