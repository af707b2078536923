"""What real ECS and elbv2 reject and moto 5.2.5 lets through, checked before moto stores a write
(each raises the error class and code the real API answers with), so the adapter cannot rely on
input a real account would refuse. Sources: the ECS API reference (RegisterTaskDefinition,
UpdateService, Fargate task size table, tag restrictions) and the elbv2 ForwardActionConfig."""

from __future__ import annotations

import re

from moto.ecs.exceptions import ClusterNotFoundException, InvalidParameterException  # noqa: F401
from moto.elbv2.exceptions import ELBClientError

# Fargate cpu -> allowed memory (MiB), from the Fargate task size table.
FARGATE_SIZES = {
    "256": {512, 1024, 2048},
    "512": set(range(1024, 4097, 1024)),
    "1024": set(range(2048, 8193, 1024)),
    "2048": set(range(4096, 16385, 1024)),
    "4096": set(range(8192, 30721, 1024)),
}
SECRET_ARN = re.compile(r"^arn:aws[\w-]*:(secretsmanager|ssm):[\w-]+:\d{12}:(secret:|parameter/)\S+$")


def _bad(msg: str) -> InvalidParameterException:
    return InvalidParameterException(msg)


def tags(tag_list: list[dict] | None) -> None:
    """ECS tag limits: at most 50, key <= 128 and value <= 256 characters."""
    tag_list = tag_list or []
    if len(tag_list) > 50:
        raise _bad(f"Too many tags: {len(tag_list)} (at most 50).")
    for t in tag_list:
        if len(t.get("key", "")) > 128 or len(t.get("value", "")) > 256:
            raise _bad(f"Tag {t.get('key', '')[:40]!r}: key at most 128 and value at most 256 characters.")


def task_definition(family: str, containers: list[dict], network_mode: str | None, compat: list[str] | None,
                    cpu: str | None, memory: str | None, tag_list: list[dict] | None) -> None:
    tags(tag_list)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", family or ""):
        raise _bad(f"Family {family!r}: up to 255 letters, numbers, hyphens and underscores.")
    if not containers:
        raise _bad("Container definitions cannot be empty.")
    if compat and "FARGATE" in compat:
        if network_mode != "awsvpc":
            raise _bad("Fargate only supports network mode 'awsvpc'.")
        if str(cpu) not in FARGATE_SIZES or int(memory or 0) not in FARGATE_SIZES[str(cpu)]:
            raise _bad(f"Invalid 'cpu' ({cpu}) and 'memory' ({memory}) combination for Fargate.")
    for c in containers:
        if not c.get("name") or not c.get("image"):
            raise _bad("Container.name and Container.image should not be null or empty.")
        for p in c.get("portMappings") or []:
            if "containerPort" not in p:
                raise _bad(f"Container {c['name']}: portMappings need a containerPort.")
            if network_mode == "awsvpc" and p.get("hostPort") not in (None, p["containerPort"]):
                raise _bad("When networkMode=awsvpc, the host ports and container ports in port mappings must match.")
        for s in c.get("secrets") or []:
            if not SECRET_ARN.match(s.get("valueFrom", "")):
                raise _bad(f"Container {c['name']}: secret {s.get('name')}: valueFrom must be the ARN of a Secrets "
                           "Manager secret or an SSM parameter.")
        names = [e.get("name") for e in (c.get("environment") or [])] + [s.get("name") for s in c.get("secrets") or []]
        if len(names) != len(set(names)):
            raise _bad(f"Container {c['name']}: an environment variable is defined twice.")
        log = c.get("logConfiguration") or {}
        if log.get("logDriver") == "awslogs" and not (log.get("options") or {}).get("awslogs-group"):
            raise _bad("awslogs: the option awslogs-group is required.")


def deployment_configuration(cfg: dict | None) -> None:
    if not cfg:
        return
    high, low = cfg.get("maximumPercent", 200), cfg.get("minimumHealthyPercent", 100)
    if not 0 <= low <= 100 or high < 100 or high <= low:
        raise _bad(f"deploymentConfiguration: minimumHealthyPercent {low} must be 0-100 and below maximumPercent "
                   f"{high} (at least 100).")


def load_balancers(lbs: list[dict] | None, task_def) -> None:
    """Each load balancer entry names a container and port the task definition really maps."""
    for lb in lbs or []:
        if task_def is None:
            return
        mapped = {(c["name"], p["containerPort"]) for c in task_def.container_definitions
                  for p in c.get("portMappings") or []}
        if (lb.get("containerName"), lb.get("containerPort")) not in mapped:
            raise _bad(f"The container {lb.get('containerName')} did not have a container port "
                       f"{lb.get('containerPort')} defined.")


def forward_actions(actions: list[dict] | None, known_target_groups: set[str]) -> None:
    """ALB forward: 1-5 target groups, weights 0-999, not all zero, each target group existing."""
    for a in actions or []:
        if a.get("Type") != "forward" or "ForwardConfig" not in a:
            continue
        groups = a["ForwardConfig"].get("TargetGroups") or []
        if not 1 <= len(groups) <= 5:
            raise ELBClientError("ValidationError", "A forward action takes 1 to 5 target groups.")
        weights = [int(g.get("Weight", 1)) for g in groups]
        if any(w < 0 or w > 999 for w in weights):
            raise ELBClientError("ValidationError", f"Target group weights must be 0-999, got {weights}.")
        if len(groups) > 1 and not any(weights):
            raise ELBClientError("ValidationError", "At least one target group must have a weight above 0.")
        arns = [g["TargetGroupArn"] for g in groups]
        if len(arns) != len(set(arns)):
            raise ELBClientError("ValidationError", "A target group appears twice in one forward action.")
        for arn in arns:
            if arn not in known_target_groups:
                raise ELBClientError("TargetGroupNotFound", f"Target group '{arn}' not found")
