"""The moto server: the AWS APIs (S3, ECR, RDS, CloudWatch, ECS, elbv2, Secrets Manager) on
loopback for tests and benchmarks. A separate process (not ThreadedMotoServer) so its request
handling never competes with the caller for the GIL; recorded and stopped by PID."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from deploy_pipelines.stack.process import Managed, free_port, wait_for_http

# Dummy credentials: botocore signs every request, moto accepts any key. Never real ones.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class MotoServer:
    state_dir: Path
    port: int

    @property
    def proc(self) -> Managed:
        return Managed("moto", self.state_dir, self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, state_dir: Path) -> "MotoServer":
        server = cls(Path(state_dir).resolve(), free_port())
        server.proc.spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(server.port)])
        wait_for_http(server.url + "/moto-api/", 30, "moto server", server.proc.log_file)
        return server

    def env(self) -> dict[str, str]:
        """What a boto3 client (or S3Resource) needs to talk to this server and nothing else."""
        return {**DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL": self.url}

    def stop(self) -> None:
        self.proc.stop()
