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


# ---------------------------------------------------------------------------------------- strategies

class Rolling(Strict):
    kind: Literal["rolling"] = "rolling"
    max_surge: int = Field(1, ge=0)
    max_unavailable: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _progress(self):
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise ValueError("max_surge and max_unavailable cannot both be 0: the rollout could never progress")
        return self


class BlueGreen(Strict):
    kind: Literal["blue_green"] = "blue_green"
    keep_previous: Duration = 600.0               # blue stays warm this long after the switch


class CanaryStep(Strict):
    weight: int | None = Field(None, ge=0, le=100, alias="setWeight")
    pause: Duration | None = None
    analysis: bool = True                         # run the verify rules during/after this step

    @model_validator(mode="after")
    def _something(self):
        if self.weight is None and self.pause is None:
            raise ValueError("a canary step needs a weight (setWeight) and/or a pause")
        return self


class Canary(Strict):
    kind: Literal["canary"] = "canary"
    steps: list[CanaryStep] = Field(min_length=1)
    canary_replicas: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _increasing(self):
        last = 0
        for i, step in enumerate(self.steps):
            if step.weight is None:
                continue
            if step.weight < last:
                raise ValueError(f"steps[{i}].weight {step.weight} is below the previous step's {last}: "
                                 "canary weights only go up")
            last = step.weight
        return self


def _strategy(value: Any) -> Any:
    """`rolling` | `{rolling: {...}}` | `{blue_green: {...}}` | `{canary: {steps: [...]}}`."""
    if isinstance(value, str):
        value = value.replace("-", "_")
        if value not in ("rolling", "blue_green"):
            raise ValueError(f"unknown strategy {value!r}: rolling, blue_green or canary")
        return {"kind": value}
    if isinstance(value, dict) and "kind" not in value:
        if len(value) != 1:
            raise ValueError("write exactly one strategy: {rolling: {...}}, {blue_green: {...}} or {canary: {steps: [...]}}")
        (kind, body), = value.items()
        kind = str(kind).replace("-", "_")
        if kind not in ("rolling", "blue_green", "canary"):
            raise ValueError(f"unknown strategy {kind!r}: rolling, blue_green or canary")
        if body is not None and not isinstance(body, dict):
            example = "{canary: {steps: [{setWeight: 10, pause: 5m}, ...]}}" if kind == "canary" else \
                f"{kind} or {{{kind}: {{...}}}}"
            got = "a list" if isinstance(body, list) else repr(body)[:40]
            raise ValueError(f"{kind} takes a mapping of its settings, not {got}: write {example}")
        return {"kind": kind, **(body or {})}
    return value


Strategy = Annotated[Rolling | BlueGreen | Canary, Field(discriminator="kind"), BeforeValidator(_strategy)]


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


# ---------------------------------------------------------------------------------------- verify

class HealthCheck(Strict):
    path: str = Field("/health", pattern=r"^/")
    readiness: str | None = Field(None, pattern=r"^/")   # ready for traffic (default: path)
    liveness: str | None = Field(None, pattern=r"^/")    # alive (restart when failing), where the platform has it
    timeout: Duration = 30.0
    interval: Duration = 5.0


class SmokeCheck(Strict):
    path: str = Field(pattern=r"^/")
    method: Literal["GET", "HEAD", "POST"] = "GET"
    expect: int = Field(200, ge=100, le=599)
    contains: str | None = None


class CloudWatchMetric(Strict):
    """One CloudWatch metric statistic (GetMetricData MetricStat)."""

    namespace: str = Field(min_length=1)          # AWS/ApplicationELB, Morrow/API
    metric: str = Field(min_length=1)             # TargetResponseTime, HTTPCode_Target_5XX_Count
    dimensions: dict[str, str] = {}               # values may hold {service} {environment} {version}
    stat: str = Field("Average", pattern=r"^(Average|Sum|Minimum|Maximum|SampleCount|p(100|\d{1,2}(\.\d+)?))$")
    period: Duration = 60.0                       # 1, 5, 10, 30 s (high-resolution metrics) or n x 60 s
    unit: str | None = None

    @field_validator("period")
    @classmethod
    def _cloudwatch_period(cls, v):
        if v not in (1, 5, 10, 30) and (v < 60 or v % 60):
            raise ValueError(f"CloudWatch periods are 1, 5, 10, 30 s or a multiple of 60 s (got {v:g}s)")
        return v


class CloudWatchQuery(CloudWatchMetric):
    """A rule's value from CloudWatch: the metric, or its ratio to another per period (error rate =
    HTTPCode_Target_5XX_Count Sum / RequestCount Sum), divided here rather than by metric math."""

    divided_by: CloudWatchMetric | None = None


def cloudwatch_rule(data: Any) -> Any:
    """`cloudwatch: {...}` or `alarm: NAME` instead of a PromQL query: encoded into `query` (what
    the metrics source receives); an alarm rule breaches while the alarm is in ALARM."""
    if not isinstance(data, dict) or not ({"cloudwatch", "alarm"} & data.keys()):
        return data
    if len({"query", "cloudwatch", "alarm"} & data.keys()) > 1:
        raise ValueError("write exactly one of query (PromQL), cloudwatch (a metric) or alarm (an alarm name)")
    if "alarm" in data:
        bound = {} if "min" in data or "max" in data else {"max": 0}
        return {"for": 0, **bound, **data, "query": f"cloudwatch-alarm:{data['alarm']}"}
    metric = CloudWatchQuery.model_validate(data["cloudwatch"])
    return {**data, "query": "cloudwatch:" + metric.model_dump_json(exclude_none=True)}


class Rule(Strict):
    """Prometheus-alert semantics: a breach counts when it holds for the whole `for` window."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    query: str = Field(min_length=1)              # PromQL; {service} {environment} {version} are filled in
    cloudwatch: CloudWatchQuery | None = None     # instead of query: a CloudWatch metric
    alarm: str | None = None                      # instead of query: a CloudWatch alarm (ALARM = breach)
    max: float | None = None
    min: float | None = None
    for_: Duration = Field(60.0, alias="for")
    dry_run: bool = False                         # evaluated and reported, never aborts

    _cloudwatch = model_validator(mode="before")(cloudwatch_rule)

    @model_validator(mode="after")
    def _one_bound(self):
        if (self.max is None) == (self.min is None):
            raise ValueError(f"rule {self.name!r} needs exactly one of max or min")
        return self


class Analysis(Strict):
    """Argo Rollouts' analysis vocabulary."""

    initial_delay: Duration = 0.0                 # wait before the first measurement (first scrapes land)
    interval: Duration = 5.0
    count: int = Field(3, ge=1)
    failure_limit: int = Field(0, ge=0)
    inconclusive_limit: int = Field(0, ge=0)
    on_inconclusive: Literal["abort", "pause", "continue"] = "abort"
    pause_timeout: Duration = 600.0               # on_inconclusive: pause holds the step at most this long


class VerifySpec(Strict):
    health: HealthCheck = HealthCheck()
    smoke: list[SmokeCheck] = []
    rules: list[Rule] = []
    analysis: Analysis = Analysis()
    bake: Duration = 0.0                          # watch after promotion; a breach -> rollback
    # A query giving the requests that failed over the rollout ({service} {environment} {window} filled
    # in, window like "95s"): numeric metadata on every release and abort event, so the UI plots it.
    failed_requests: str | None = None

    @model_validator(mode="after")
    def _unique_rules(self):
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique: {', '.join(dupes)} repeated")
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
