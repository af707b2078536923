"""Plain records that adapters return and ops pass between steps (picklable, no secrets)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class BuiltImage:
    """An image pushed to a registry, addressed by its immutable digest."""

    repository: str          # e.g. 127.0.0.1:5000/demo/app
    tag: str                 # the version, e.g. v1.1.0
    digest: str              # sha256:...
    commit: str = ""

    @property
    def ref(self) -> str:
        """The immutable reference a deploy uses: repository@digest."""
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class BackupRecord:
    uri: str                 # file:///... or s3://bucket/key
    key: str                 # storage-relative key
    sha256: str
    size: int
    created_at: str          # ISO 8601 UTC
    service: str = ""
    environment: str = ""
    version: str = ""
    engine: str = ""
    pinned_by: tuple[str, ...] = ()   # run ids / release names that forbid pruning
    tables: tuple[tuple[str, int], ...] = ()   # row count per table just before the dump


@dataclass(frozen=True)
class Migration:
    """One migration file pair from the service tree at the release tag."""

    version: str             # the sortable prefix, e.g. "0002"
    name: str                # file stem, e.g. "0002_add_sku"
    up_sql: str
    down_sql: str | None = None
    sha256: str = ""


class SecretEnv(BaseModel):
    """A secret the workload receives as an environment variable, by reference: `env` names the
    variable on the pipeline side that holds it (Docker), `secret`/`key` a Kubernetes Secret,
    `value_from` an ECS Secrets Manager / SSM ARN. Never a value."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    env: str | None = None
    secret: str | None = None
    key: str | None = None
    value_from: str | None = None


class Probe(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    path: str = "/health"
    timeout: float = 30.0          # how long a starting instance may take to pass it
    period: float = 1.0
    failure_threshold: int = 3


class Workload(BaseModel):
    """One release of one service, as every platform runs it. Serializable: it is stored with the
    release on the platform and in the deploy history, so a version can come back exactly."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    version: str
    image: str                     # repository@sha256:... (never a mutable tag)
    digest: str
    commit: str = ""
    run_id: str = ""
    container_port: int = 8080
    replicas: int = 1
    env: dict[str, str] = {}       # plain settings only
    secret_env: tuple[SecretEnv, ...] = ()
    readiness: Probe = Probe()
    liveness: Probe | None = None
    resources: dict[str, str] = {}  # cpu / memory as the catalog writes them


@dataclass(frozen=True)
class Release:
    """What runs on a target, as read from the platform's own labels."""

    service: str
    environment: str
    version: str
    digest: str
    image: str               # repository@digest
    run_id: str = ""
    previous_version: str = ""
    previous_image: str = ""
    commit: str = ""
    workload: Workload | None = None     # what it was released with (env, secret refs, probes)


@dataclass
class DeployResult:
    new: Release
    previous: Release | None
    strategy: str
    endpoints: list[str] = field(default_factory=list)   # direct URLs of the new version's instances
    public_url: str = ""
    notes: list[str] = field(default_factory=list)
