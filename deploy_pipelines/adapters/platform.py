"""Platforms run a service's versions and move traffic between them. The base every platform
(docker + nginx, kubernetes, ecs) implements.

The platform is the truth about what runs where: every instance carries labels (service,
environment, version, digest, release run id, track) and current() reads them back.

Vocabulary (Argo Rollouts'): *stable* is the version serving users before the release, *new*
the one being released. Rolling replaces stable instances in place; blue-green starts new
beside stable with no traffic; canary starts new with a traffic weight that steps up.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Literal

from dagster import ConfigurableResource

from deploy_pipelines.adapters.records import DeployResult, Release

Log = Callable[[str], None]


class PlatformError(RuntimeError):
    pass


@dataclass
class DeploySpec:
    service: str
    environment: str
    version: str
    image: str                       # repository@sha256:... (never a mutable tag)
    digest: str
    run_id: str = ""
    replicas: int = 1
    strategy: Literal["rolling", "blue_green", "canary"] = "rolling"
    max_surge: int = 1
    max_unavailable: int = 0
    port: int = 8080                 # public port (nginx listen / service port)
    container_port: int | None = None  # None: the platform assigns one per instance via $PORT
    health_path: str = "/health"
    health_timeout: float = 30.0
    health_interval: float = 1.0
    env: dict[str, str] = field(default_factory=dict, repr=False)   # may hold secrets: never log
    labels: dict[str, str] = field(default_factory=dict)


class Platform(ConfigurableResource, ABC):
    @abstractmethod
    def current(self, service: str, environment: str) -> Release | None:
        """The stable release serving users, read from the platform's labels (None: nothing runs)."""

    @abstractmethod
    def deploy(self, spec: DeploySpec, log: Log) -> DeployResult:
        """Start the new version per spec.strategy. Rolling: replace stable instance by instance,
        each healthy before the next. Blue-green: start new beside stable, no user traffic.
        Canary: start new beside stable at weight 0. Idempotent: re-running with the same
        digest picks up where a failed attempt stopped."""

    @abstractmethod
    def set_weight(self, service: str, environment: str, weight: int, log: Log) -> None:
        """Send weight% of user traffic to the new version (canary steps, blue-green switch at 100)."""

    @abstractmethod
    def promote(self, service: str, environment: str, log: Log, keep_previous_seconds: float = 0) -> Release:
        """All traffic on new; new becomes stable; the old version is kept warm (blue-green) for
        keep_previous_seconds, as the instant rollback target. Idempotent."""

    @abstractmethod
    def abort(self, service: str, environment: str, reason: str, log: Log) -> Release | None:
        """Traffic back to stable at once, then remove the new version. Returns the stable release.
        For rolling (no stable left running), redeploys the previous image instance by instance."""

    @abstractmethod
    def rollback(self, service: str, environment: str, log: Log, to_image: str | None = None,
                 to_version: str | None = None) -> Release:
        """After promotion: traffic back to the previous release (warm if it still runs, else
        redeployed from its digest), or to the given image. Idempotent."""

    @abstractmethod
    def cleanup(self, service: str, environment: str, log: Log) -> list[str]:
        """Remove instances kept warm past their grace period; returns what was removed."""

    @abstractmethod
    def public_url(self, service: str, environment: str) -> str:
        """Where users reach the service (the nginx listener, the Service, the load balancer)."""

    @abstractmethod
    def endpoints(self, service: str, environment: str, track: str = "new") -> list[str]:
        """Direct base URLs of one track's instances ('new' or 'stable'), for verification."""
