"""Platforms run a service's versions and move traffic between them: the contract every platform
(Docker hosts + nginx, Kubernetes, ECS) implements, small enough that a new one is one module.

A platform resource is bound to ONE target (a service in an environment, with its connection
settings), so no method takes `service, environment`. It deploys a `Workload`: an image by digest,
the port the container listens on, plain settings, secrets *by reference only* (the platform
resolves them where the workload starts: Docker at container start, Kubernetes `secretKeyRef`, ECS
`valueFrom`), probes and resources.

The platform is the truth about what runs where: each release it starts carries its version,
digest, release run id and commit in the platform's own form (Docker labels, Kubernetes
annotations, ECS tags) together with the workload it was released with, and `current()` reads
them back. A version that comes back (abort, rollback) runs with its own release's workload, never
one copied from an instance of another version.

Vocabulary (Argo Rollouts'): *stable* serves users before the release, *new* is being released;
tracks for verification are `stable`, `canary` and `preview` (the new version before it gets user
traffic). Capabilities say who moves traffic: the pipeline (`set_weight`: nginx upstream weights,
Istio, ALB target groups) or the platform itself (Argo Rollouts steps, ECS native blue/green), in
which case the pipeline reads `status()` and promotes or aborts.

Clock and sleep are injected (as dagster-k8s's DagsterKubernetesClient takes `timer`/`sleeper`), so
waiting logic is tested on a fake clock where no real process runs.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Literal

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from deploy_pipelines.adapters.records import DeployResult, Probe, Release, SecretEnv, Workload  # noqa: F401

Log = Callable[[str], None]
Track = Literal["stable", "canary", "preview"]


class PlatformError(RuntimeError):
    pass


@dataclass(frozen=True)
class Capabilities:
    traffic: Literal["pipeline", "platform"] = "pipeline"   # who moves weights
    weight_step: int = 1                                     # smallest weight change, in percent
    strategies: tuple[str, ...] = ("rolling", "blue_green", "canary")


@dataclass
class RolloutStatus:
    phase: Literal["none", "progressing", "paused", "healthy", "degraded", "aborted"]
    stable: Release | None = None
    new: Release | None = None
    weight: int = 0                # percent of user traffic on new
    step: int | None = None        # platform-driven canaries: the current step index
    message: str = ""
    instances: dict[str, int] = field(default_factory=dict)   # version -> running instances


class Platform(ConfigurableResource, ABC):
    """The platform of one target. Subclasses add their connection settings."""

    service: str
    environment: str
    public_port: int

    _clock: Callable[[], float] = PrivateAttr(default=time.time)
    _sleep: Callable[[float], None] = PrivateAttr(default=time.sleep)

    capabilities: ClassVar[Capabilities] = Capabilities()

    def with_clock(self, clock: Callable[[], float], sleep: Callable[[float], None]) -> "Platform":
        self._clock, self._sleep = clock, sleep
        return self

    @property
    def where(self) -> str:
        return f"service {self.service}, environment {self.environment}"

    # ------------------------------------------------------------------ what runs
    @abstractmethod
    def current(self) -> Release | None:
        """The stable release serving users, with its workload (None: nothing runs)."""

    @abstractmethod
    def status(self) -> RolloutStatus:
        """Progress of the rollout: phase, stable/new, weight and step, instances per version."""

    @abstractmethod
    def public_url(self) -> str:
        """Where users reach the service."""

    @abstractmethod
    def verification_url(self, track: Track) -> str:
        """One URL that reaches only that track's instances ('' when the track has none)."""

    # ------------------------------------------------------------------ changes (each idempotent)
    @abstractmethod
    def deploy(self, workload: Workload, strategy, log: Log) -> DeployResult:
        """Start the new version per strategy (catalog Rolling / BlueGreen / Canary). Rolling:
        replace stable instance by instance, each ready first. Blue-green and canary: start new
        beside stable with no user traffic. Re-running with the same digest picks up where a failed
        attempt stopped."""

    @abstractmethod
    def set_weight(self, weight: int, log: Log) -> None:
        """weight% of user traffic to new (pipeline-driven traffic only)."""

    @abstractmethod
    def promote(self, log: Log, keep_previous_seconds: float = 0) -> Release:
        """All traffic on new; new becomes stable; the old one stays warm keep_previous_seconds as
        the instant rollback target, then `cleanup` removes it."""

    @abstractmethod
    def abort(self, reason: str, log: Log) -> Release | None:
        """Traffic back to stable at once, then remove new. Where rolling already replaced stable,
        stable comes back from its own recorded workload. Returns the stable release."""

    @abstractmethod
    def rollback(self, log: Log, to: Workload | None = None) -> Release:
        """After promotion: back to the previous release (warm if it still runs, else redeployed
        from its recorded workload), or to the given workload."""

    @abstractmethod
    def cleanup(self, log: Log) -> list[str]:
        """Remove what was kept warm past its grace period; returns what was removed."""
