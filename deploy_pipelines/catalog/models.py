"""Pydantic models of deploy.yaml: every validation lives here; no I/O beyond the loader.

Settings that differ per machine (sockets, ports, URLs) or are secret (database URLs, webhooks)
are written `{env: NAME}` and become Dagster `EnvVar`s: the catalog never holds a secret.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

NAME = r"^[a-z][a-z0-9_]*$"          # must make valid Dagster job names: release_<service>_<env>
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EnvRef(Strict):
    """A value read from an environment variable at run time (a Dagster EnvVar)."""

    env: str = Field(pattern=ENV_NAME)


Setting = str | EnvRef      # a literal or {env: NAME}

# AWS fields live in their own module, which needs Strict / EnvRef / Setting from here first.
from deploy_pipelines.catalog.aws import AwsConnection, EcsCluster, EcsTarget  # noqa: E402


def _duration(value: Any) -> float:
    """'30s', '5m', '1h', '1h30m', '500ms' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m or 1h")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration like 30s, 5m or 1h")
    text = value.strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"{value!r} is not a duration: write e.g. 30s, 5m, 1h or 1h30m")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * scale[u] for n, u in parts)


Duration = Annotated[float, BeforeValidator(_duration)]
Severity = Literal["critical", "high", "medium", "low", "none"]


def _check_cron(expr: str) -> str:
    from deploy_pipelines.cron import is_valid

    if not is_valid(expr):
        raise ValueError(f"{expr!r} is not a cron expression (five fields, e.g. '0 2 * * *')")
    return expr


Cron = Annotated[str, BeforeValidator(lambda v: _check_cron(v) if isinstance(v, str) else v)]


# ---------------------------------------------------------------------------------------- environments

class DockerConnection(Strict):
    host: Setting                                 # Docker Engine API: unix:///... socket, ssh://user@host, tcp://host:2376
    nginx_image: Setting | None = None            # the proxy image the platform runs (default: $DEPLOY_NGINX_IMAGE)
    bind_host: str = "127.0.0.1"                  # where instances publish and nginx listens, on that host
    # bridge: each instance publishes container_port on a free host port; host: instances share the
    # host's network (its loopback services are reachable) and listen on $PORT, a free port per instance.
    network: Literal["bridge", "host"] = "bridge"
    public_host: Setting | None = None            # how the pipeline reaches that host (default: from `host`)
    prometheus_targets: Setting | None = None     # file_sd dir where scrape targets are written
    nginx_prefix: Setting | None = Field(None, deprecated="nginx runs as a container the platform manages; "
                                                          "nginx_prefix is ignored")


# Kubernetes settings live in their own module (it builds on Strict/EnvRef/Duration above).
from deploy_pipelines.catalog.kubernetes import KubernetesConnection, KubernetesWorkload  # noqa: E402
# Strategies and verify settings live in their own modules (they build on Strict/Duration above);
# re-exported here so imports from catalog.models keep working.
from deploy_pipelines.catalog.strategies import (BlueGreen, Canary, CanaryStep, Rolling,  # noqa: E402,F401
                                                 Strategy)
from deploy_pipelines.catalog.verify import (Analysis, CloudWatchMetric, CloudWatchQuery,  # noqa: E402,F401
                                             HealthCheck, Rule, SmokeCheck, VerifySpec, cloudwatch_rule)


class Environment(Strict):
    requires: str | None = None                   # a version must have passed this environment first
    approval: Literal["auto", "manual"] = "auto"
    docker: DockerConnection | None = None
    kubernetes: KubernetesConnection | None = None
    aws: AwsConnection | None = None              # platform ecs, CloudWatch, RDS, S3
    ecs: EcsCluster | None = None
    prometheus: Setting | None = None             # base URL of Prometheus for verify rules
    registry: Setting | None = None               # default image registry (host:port)
    backup_root: Setting | None = None            # default backup storage (file:///... or s3://bucket/prefix)


# ---------------------------------------------------------------------------------------- build + scan

class ImageSpec(Strict):
    registry: Setting | None = None               # default: the environment's registry
    repository: str = Field(pattern=r"^[a-z0-9]+(?:[._/-][a-z0-9]+)*$")
    builder: Literal["buildah"] = "buildah"
    context: str = "."
    file: str = "Containerfile"
    build_args: dict[str, Setting] = {}
    external: bool = False                        # built elsewhere: only verify that the tag exists


class AllowEntry(Strict):
    id: str
    reason: str = Field(min_length=3)
    until: date | None = None
    file: str | None = None                       # for migration-lint rules: the migration file


class ScannerEntry(Strict):
    name: str
    command: list[str] | str
    format: Literal["sarif", "trivy-json", "pip-audit-json", "npm-audit-json", "gosec-json"]
    ok_exit_codes: list[int] = [0, 1]
    default_severity: Literal["critical", "high", "medium", "low"] | None = None


class MigrationLint(Strict):
    enabled: bool = True
    require_lock_timeout: bool = True


class ScanSpec(Strict):
    fail_on: Severity = "high"
    scanners: list[ScannerEntry] = []
    allow: list[AllowEntry] = []
    migrations: MigrationLint = MigrationLint()


# ---------------------------------------------------------------------------------------- database

class RdsSnapshotBackup(Strict):
    """database.backup.rds (kind rds_snapshot): the instance whose manual snapshots are the backups."""

    instance: Setting                             # DB instance identifier
    manual_snapshot_limit: int = Field(100, ge=2)  # the account's manual-snapshot quota per region


class BackupSpec(Strict):
    kind: Literal["dump", "rds_snapshot"] = "dump"
    schedule: Cron = "0 2 * * *"
    keep_days: int = Field(30, ge=0)
    keep_last: int = Field(7, ge=1)
    storage: Setting | None = None                # default: the environment's backup_root
    verify_schedule: Cron | None = "0 4 * * 0"     # restore-verification (scratch restore, row counts)
    rds: RdsSnapshotBackup | None = None          # with kind rds_snapshot

    @model_validator(mode="after")
    def _rds_kind(self):
        if self.kind == "rds_snapshot" and self.rds is None:
            raise ValueError("kind rds_snapshot needs rds: {instance: <DB instance identifier>}")
        if self.kind != "rds_snapshot" and self.rds is not None:
            raise ValueError("rds is set but kind is not rds_snapshot: write kind: rds_snapshot")
        return self


class MigrateSpec(Strict):
    dir: str | None = "migrations"                # SQL files NNNN_name.up.sql / .down.sql
    command: list[str] | None = None              # or a tool: ["alembic", "upgrade", "head"]
    down_command: list[str] | None = None
    on_failure: Literal["restore", "down", "none"] = "restore"

    @model_validator(mode="after")
    def _one_mode(self):
        if self.command is None and self.dir is None:
            raise ValueError("set either dir (SQL migration files) or command (a migration tool)")
        if self.on_failure == "down" and self.command is not None and self.down_command is None:
            raise ValueError("on_failure: down with a migration command needs down_command")
        return self


class DatabaseSpec(Strict):
    engine: Literal["postgres", "mysql"]
    url: EnvRef                                   # a secret: only ever {env: NAME}
    backup: BackupSpec = BackupSpec()
    migrate: MigrateSpec | None = MigrateSpec()
    rollback: Literal["none", "restore", "down"] = "none"   # database action of a rollback job

    @field_validator("url", mode="before")
    @classmethod
    def _url_is_secret(cls, v):
        if isinstance(v, str):
            raise ValueError("a database URL holds a password: write it as {env: NAME}, never inline")
        return v


# ---------------------------------------------------------------------------------------- targets

class Target(Strict):
    platform: Literal["docker", "kubernetes", "ecs"] = "docker"
    replicas: int = Field(1, ge=1, le=100)
    port: Annotated[int, Field(ge=1, le=65535)] | EnvRef   # where users reach it (nginx listener / Service port)
    container_port: int = Field(8080, ge=1, le=65535)      # what the container listens on (it also gets $PORT)
    strategy: Strategy = Rolling()
    env: dict[str, Setting] = {}                  # passed to the app; {env: NAME} for secrets
    database_env: str | None = "DATABASE_URL"     # the app receives the database URL under this name
    database_url: EnvRef | None = None            # this environment's database (default: database.url)
    kubernetes: KubernetesWorkload = KubernetesWorkload()   # names and shape on a kubernetes platform
    ecs: EcsTarget | None = None                  # platform ecs: service, task family, network, target groups

    @model_validator(mode="after")
    def _canary_fits(self):
        if isinstance(self.strategy, Canary) and self.platform == "docker" and self.replicas < 1:
            raise ValueError("canary needs at least one stable replica")
        return self


# ---------------------------------------------------------------------------------------- services

# Semantic versions with a leading v: v1.2.3, v1.2.3-rc.1, v1.2.3+patch.20261204.
RELEASE_TAG_PATTERN = r"^v(?P<version>\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)$"


class Service(Strict):
    repo: Setting                                 # any git URL or path
    tag_pattern: str = RELEASE_TAG_PATTERN
    branch: str | None = "main"                   # commits here release to the first environment
    image: ImageSpec
    scan: ScanSpec = ScanSpec()
    database: DatabaseSpec | None = None
    targets: dict[str, Target] = Field(min_length=1)
    verify: VerifySpec = VerifySpec()
    owners: list[str] = []                        # team:<name> or an email: the deploy assets' owners in the UI

    @field_validator("owners")
    @classmethod
    def _owners(cls, v):
        # Dagster's own rule for asset owners, so a bad one fails here, with the catalog's path.
        for owner in v:
            if not (re.fullmatch(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,7}", owner)
                    or (owner.startswith("team:") and len(owner) > 5)):
                raise ValueError(f"owner {owner!r} is neither an email address nor team:<name>")
        return v

    @field_validator("tag_pattern")
    @classmethod
    def _regex(cls, v):
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return v


class SlackSpec(Strict):
    webhook: EnvRef

    @field_validator("webhook", mode="before")
    @classmethod
    def _webhook_is_secret(cls, v):
        if isinstance(v, str):
            raise ValueError("a webhook URL is a secret: write it as {env: NAME}, never inline")
        return v
    info: str = "#deployments"
    failure: str = "#incidents"


class NotifySpec(Strict):
    slack: SlackSpec | None = None
    ui_url: str = "http://127.0.0.1:3000"         # base of run links in messages


class PatchSpec(Strict):
    schedule: str = Field("first-friday 03:00", pattern=r"^(first|second|third|fourth|last)-(monday|tuesday|wednesday|thursday|friday|saturday|sunday) ([01]\d|2[0-3]):[0-5]\d$")
    environments: list[str] | None = None         # default: every environment


class Triggers(Strict):
    enabled: bool = True                          # sensors and schedules start running with the code location
    poll_interval: Duration = 5.0                 # how often tag/branch/watch sensors look (>= 1s)

    @field_validator("poll_interval")
    @classmethod
    def _min(cls, v):
        if v < 1:
            raise ValueError("poll_interval must be at least 1s")
        return v


class Catalog(Strict):
    project: str = Field(pattern=NAME, description="lower-case letters, digits and _ (it names Dagster jobs)")
    timezone: str = "UTC"
    environments: dict[str, Environment] = Field(min_length=1)
    services: dict[str, Service] = Field(min_length=1)
    notify: NotifySpec = NotifySpec()
    patch: PatchSpec | None = None
    triggers: Triggers = Triggers()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v):
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:   # OSError: a name too long for a file
            raise ValueError(f"unknown time zone {v!r:.80} (an IANA name such as Asia/Tokyo)") from exc
        return v

    @field_validator("environments", "services")
    @classmethod
    def _names(cls, v):
        for name in v:
            if not re.match(NAME, name):
                raise ValueError(f"name {name!r} must match {NAME} (it becomes part of Dagster job names)")
        return v

    @model_validator(mode="after")
    def _references(self):
        problems: list[str] = []
        for env_name, env in self.environments.items():
            if env.requires and env.requires not in self.environments:
                problems.append(f"environments.{env_name}.requires: unknown environment {env.requires!r}")
            if env.requires == env_name:
                problems.append(f"environments.{env_name}.requires: an environment cannot require itself")
        for svc_name, svc in self.services.items():
            for env_name, target in svc.targets.items():
                where = f"services.{svc_name}.targets.{env_name}"
                env = self.environments.get(env_name)
                if env is None:
                    problems.append(f"{where}: unknown environment {env_name!r} "
                                    f"(known: {', '.join(self.environments)}) [service {svc_name}]")
                    continue
                if target.platform == "docker" and env.docker is None:
                    problems.append(f"{where}.platform: docker needs environments.{env_name}.docker "
                                    f"(host) [service {svc_name}, environment {env_name}]")
                if target.platform == "kubernetes" and env.kubernetes is None:
                    problems.append(f"{where}.platform: kubernetes needs environments.{env_name}.kubernetes "
                                    f"(namespace, kubeconfig) [service {svc_name}, environment {env_name}]")
                if any(not r.query.startswith("cloudwatch") for r in svc.verify.rules) and env.prometheus is None:
                    problems.append(f"services.{svc_name}.verify.rules: environment {env_name} has no "
                                    f"prometheus URL [service {svc_name}, environment {env_name}]")
                if svc.image.registry is None and env.registry is None:
                    problems.append(f"services.{svc_name}.image.registry: not set and environment {env_name} "
                                    f"has no registry [service {svc_name}, environment {env_name}]")
                if (svc.database and svc.database.backup.kind == "dump" and svc.database.backup.storage is None
                        and env.backup_root is None):
                    problems.append(f"services.{svc_name}.database.backup.storage: not set and environment "
                                    f"{env_name} has no backup_root [service {svc_name}, environment {env_name}]")
                if env.requires and env.requires not in svc.targets:
                    problems.append(f"{where}: environment {env_name} requires {env.requires}, but service "
                                    f"{svc_name} has no {env.requires} target [service {svc_name}]")
        if self.patch and self.patch.environments:
            for e in self.patch.environments:
                if e not in self.environments:
                    problems.append(f"patch.environments: unknown environment {e!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def environment_order(self) -> list[str]:
        """Environments with prerequisites first (staging before production)."""
        order: list[str] = []

        def visit(name: str, seen: tuple[str, ...] = ()):
            if name in order:
                return
            if name in seen:
                raise ValueError(f"environments: requires forms a cycle through {name}")
            req = self.environments[name].requires
            if req:
                visit(req, seen + (name,))
            order.append(name)

        for name in self.environments:
            visit(name)
        return order


def env_names(model: BaseModel) -> set[str]:
    """Every {env: NAME} the catalog refers to (what a machine must provide to run it)."""
    found: set[str] = set()

    def walk(value):
        if isinstance(value, EnvRef):
            found.add(value.env)
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(model)
    return found
