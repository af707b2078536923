"""The catalog's AWS fields: `environments.<env>.aws` (region, endpoint, profile), `environments.<env>.ecs`
(cluster, load balancer) and a target's `ecs` block (ECS service, task family, container, Fargate
size, network, target groups, listeners, secrets as valueFrom ARNs), plus the cross-field rule that
an `ecs` target has all of them. Secrets are ARNs of Secrets Manager secrets or SSM parameters,
never values: a target's `{env: NAME}` settings must each name one here."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from deploy_pipelines.catalog.models import EnvRef, Setting, Strict

SECRET_ARN = re.compile(r"^arn:aws[\w-]*:(secretsmanager|ssm):[\w-]+:\d{12}:(secret:|parameter/)\S+$")
# Fargate cpu -> allowed memory (MiB), from the Fargate task size table.
FARGATE_SIZES = {"256": {512, 1024, 2048}, "512": set(range(1024, 4097, 1024)), "1024": set(range(2048, 8193, 1024)),
                 "2048": set(range(4096, 16385, 1024)), "4096": set(range(8192, 30721, 1024))}
Port = Annotated[int, Field(ge=1, le=65535)] | EnvRef


class AwsConnection(Strict):
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    endpoint_url: Setting | None = None           # tests: the moto server; unset: AWS itself
    profile: str | None = None                    # unset: ambient credentials (role, environment)


class EcsCluster(Strict):
    cluster: Setting
    load_balancer: Setting | None = None          # the ALB's name (a target may name its own)
    execution_role_arn: Setting | None = None
    public_host: Setting | None = None            # how users reach the ALB (default: its DNS name)


class EcsTarget(Strict):
    service: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,250}$")   # ECS service base name (slots -a/-b)
    family: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,255}$")    # task definition family
    container_name: str = "app"
    cpu: str = "256"
    memory: str = "512"
    subnets: list[str] = Field(min_length=1)
    security_groups: list[str] = []
    load_balancer: Setting | None = None
    target_groups: list[str] = Field(min_length=2, max_length=2)   # blue/green slots a and b
    test_port: Port                               # the ALB's test listener (green before user traffic)
    stable_port: Port | None = None
    log_group: str | None = None
    secrets: dict[str, str] = {}                  # env name -> valueFrom ARN
    maximum_percent: int = Field(200, ge=100, le=400)
    minimum_healthy_percent: int = Field(100, ge=0, le=100)

    @field_validator("secrets")
    @classmethod
    def _arns(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k, v in value.items() if not SECRET_ARN.match(v)]
        if bad:
            raise ValueError(f"secrets {', '.join(bad)}: a valueFrom ARN of a Secrets Manager secret or SSM "
                             "parameter (arn:aws:secretsmanager:<region>:<account>:secret:<name>), never a value")
        return value

    @model_validator(mode="after")
    def _fargate_size(self):
        if self.cpu not in FARGATE_SIZES or int(self.memory) not in FARGATE_SIZES[self.cpu]:
            raise ValueError(f"cpu {self.cpu} with memory {self.memory} is not a Fargate task size "
                             f"(cpu 256: memory 512/1024/2048; 512: 1024-4096; 1024: 2048-8192; ...)")
        if self.maximum_percent <= self.minimum_healthy_percent:
            raise ValueError("maximum_percent must be above minimum_healthy_percent or a deployment cannot progress")
        return self


def ecs_problems(catalog) -> list[tuple[tuple, str]]:
    """An ecs target needs environments.<env>.aws and .ecs, its own ecs block, a load balancer, and a
    valueFrom ARN for each secret setting; an ecs block on another platform is a mistake."""
    problems = []
    for s, svc in catalog.services.items():
        for e, t in svc.targets.items():
            where = ("services", s, "targets", e)
            env = catalog.environments.get(e)
            if t.platform != "ecs":
                if t.ecs is not None:
                    problems.append(((*where, "ecs"), f"ecs is set but platform is {t.platform}"))
                continue
            if env is None:
                continue
            if env.aws is None:
                problems.append((("environments", e, "aws"), "platform ecs needs aws: {region: ...}"))
            if env.ecs is None:
                problems.append((("environments", e, "ecs"), "platform ecs needs ecs: {cluster: ...}"))
            if t.ecs is None:
                problems.append(((*where, "ecs"), "platform ecs needs ecs: {subnets, target_groups, test_port, ...}"))
                continue
            if t.ecs.load_balancer is None and (env.ecs is None or env.ecs.load_balancer is None):
                problems.append(((*where, "ecs", "load_balancer"), f"no load balancer: set it here or in "
                                                                   f"environments.{e}.ecs.load_balancer"))
            for name, value in t.env.items():
                if isinstance(value, EnvRef) and name not in t.ecs.secrets:
                    problems.append(((*where, "env", name), f"on ECS a secret is a valueFrom ARN: add {name} to "
                                                            f"services.{s}.targets.{e}.ecs.secrets"))
            if svc.database and t.database_env and t.database_env not in t.ecs.secrets:
                problems.append(((*where, "ecs", "secrets"), f"the database URL reaches the app as {t.database_env}: "
                                                             f"add {t.database_env}: <valueFrom ARN> here"))
    return problems
