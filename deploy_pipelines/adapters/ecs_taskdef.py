"""ECS task definitions as data, built from a Workload by pure functions (as dagster-k8s builds its
manifests) so a test can read what would be registered without any server, and read back: the
release's version, digest, run id and commit, and the whole workload it was released with, live
in the revision's tags (a tag value holds at most 256 characters, so the workload JSON is split
over numbered tags). Secrets go in by reference only: `secrets: [{name, valueFrom: <ARN>}]`."""

from __future__ import annotations

import json

from deploy_pipelines.adapters.platform import PlatformError
from deploy_pipelines.adapters.records import Workload

TAG = "deploy:"
CHUNK = 256


def workload_tags(workload: Workload) -> list[dict[str, str]]:
    text = json.dumps(workload.model_dump(mode="json"), separators=(",", ":"), sort_keys=True)
    chunks = [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)]
    if len(chunks) > 40:      # ECS allows 50 tags; the release fields take 4
        raise PlatformError(f"workload of {workload.version} is too large to record in task definition tags "
                            f"({len(text)} characters)")
    tags = {"version": workload.version, "digest": workload.digest, "run-id": workload.run_id,
            "commit": workload.commit}
    out = [{"key": f"{TAG}{k}", "value": v} for k, v in tags.items() if v]
    return out + [{"key": f"{TAG}workload.{i:02d}", "value": c} for i, c in enumerate(chunks)]


def record_from_tags(arn: str, image: str, tags: list[dict[str, str]]) -> dict:
    """{version, digest, image, run_id, commit, workload, task_definition} from a revision's tags."""
    by_key = {t["key"]: t["value"] for t in tags or []}
    parts = sorted(k for k in by_key if k.startswith(f"{TAG}workload."))
    workload = Workload.model_validate_json("".join(by_key[k] for k in parts)) if parts else None
    return {"version": by_key.get(f"{TAG}version", arn.rsplit("/", 1)[-1]), "digest": by_key.get(f"{TAG}digest", ""),
            "image": image, "run_id": by_key.get(f"{TAG}run-id", ""), "commit": by_key.get(f"{TAG}commit", ""),
            "workload": workload, "task_definition": arn}


def secret_refs(workload: Workload, refs: dict[str, str], where: str) -> list[dict[str, str]]:
    """Each secret of the workload as {name, valueFrom}: its own `value_from`, else the target's
    `secrets` entry of that name. Never a value."""
    out = []
    for s in workload.secret_env:
        arn = s.value_from or refs.get(s.name)
        if not arn:
            raise PlatformError(f"{where}: secret {s.name} has no valueFrom ARN: add it to the target's "
                                f"ecs.secrets ({s.name}: arn:aws:secretsmanager:...)")
        out.append({"name": s.name, "valueFrom": arn})
    return out


def task_definition(workload: Workload, *, family: str, container: str, cpu: str, memory: str, region: str,
                    log_group: str, execution_role_arn: str, task_role_arn: str, secrets: list[dict[str, str]],
                    tags: list[dict[str, str]]) -> dict:
    """The keyword arguments of ecs.register_task_definition for one release (Fargate, awsvpc)."""
    port, probe = workload.container_port, workload.readiness
    # The platform sets PORT and APP_VERSION, as the Docker platform does.
    env = {**workload.env, "PORT": str(port), "APP_VERSION": workload.version}
    definition = {
        "name": container, "image": workload.image, "essential": True,
        "portMappings": [{"containerPort": port, "hostPort": port, "protocol": "tcp"}],
        "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "secrets": secrets,
        # ECS limits: interval 5-300 s, timeout 2-60 s, retries 1-10, startPeriod 0-300 s.
        "healthCheck": {"command": ["CMD-SHELL", f"curl -fsS http://127.0.0.1:{port}{probe.path} || exit 1"],
                        "interval": int(min(300, max(5, probe.period))), "timeout": 5,
                        "retries": int(min(10, max(1, probe.failure_threshold))),
                        "startPeriod": int(min(300, max(0, probe.timeout)))},
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": log_group, "awslogs-region": region, "awslogs-stream-prefix": container}},
    }
    kwargs = {"family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
              "cpu": str(cpu), "memory": str(memory),
              "containerDefinitions": [definition], "tags": tags}
    if execution_role_arn:
        kwargs["executionRoleArn"] = execution_role_arn
    if task_role_arn:
        kwargs["taskRoleArn"] = task_role_arn
    return kwargs
