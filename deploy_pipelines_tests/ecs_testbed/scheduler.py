"""The ECS service scheduler moto lacks: each `update_service` that changes the task definition (or
forces a new deployment) starts a PRIMARY deployment and turns the previous one ACTIVE; this loop
then moves it as ECS does and records it on moto's own service object, so `describe_services`
answers with real progress:

- tasks of the PRIMARY start while the service stays within `maximumPercent` of the desired
  count; a task is healthy once its target group's health check path answers 200 (the ALB
  decides, as with ECS behind a load balancer), and only then is it registered as a target;
- old tasks leave as long as `minimumHealthyPercent` stays healthy: deregistered (the ALB stops
  sending them requests) before they stop;
- a task whose container exits, or that is not healthy within `task_start_timeout`, fails:
  `failedTasks` counts it and, with the deployment circuit breaker on, the deployment turns
  FAILED after max(3, min(200, desired/2)) failures (rollback on: a new PRIMARY of the last
  good task definition);
- COMPLETED when the PRIMARY has its desired count healthy and nothing else runs.

Each task runs for real as a Podman container of the task definition's image with its
environment and its secrets resolved from Secrets Manager / SSM (as the ECS agent injects them).
Where it must differ: the containers share the host network, so each task gets a free loopback
port, told to it as PORT (and BIND=127.0.0.1), and that port is its target address."""

from __future__ import annotations

import math
import secrets as pysecrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx

from deploy_pipelines.stack.process import free_port

LABEL = "testbed.deploy-pipelines/ecs"


@dataclass
class Task:
    arn: str
    service_key: str
    deployment_id: str
    task_definition: str
    container: object
    port: int
    started: float
    target_groups: list[str] = field(default_factory=list)
    healthy: bool = False


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Scheduler:
    def __init__(self, bed):
        self.bed = bed
        self.tasks: dict[str, Task] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ecs-testbed-scheduler", daemon=True)

    # ------------------------------------------------------------------ deployments (API hooks)
    def new_deployment(self, svc, reason: str) -> None:
        for d in svc.deployments:
            if d["status"] == "PRIMARY":
                d["status"] = "ACTIVE"
        dep_id = f"ecs-svc/{uuid.uuid4().int % 10**19:019d}"
        svc.deployments.insert(0, {
            "id": dep_id, "status": "PRIMARY", "taskDefinition": svc.task_definition,
            "desiredCount": svc.desired_count, "pendingCount": 0, "runningCount": 0, "failedTasks": 0,
            "createdAt": _now(), "updatedAt": _now(), "launchType": svc.launch_type or "FARGATE",
            "rolloutState": "IN_PROGRESS", "rolloutStateReason": f"ECS deployment {dep_id} in progress."})
        self.event(svc, f"(service {svc.name}) has started a deployment ({reason}).")

    @staticmethod
    def event(svc, message: str) -> None:
        svc.events.insert(0, {"id": str(uuid.uuid4()), "createdAt": _now(), "message": message})
        del svc.events[100:]

    # ------------------------------------------------------------------ loop
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(20)
        for t in list(self.tasks.values()):
            self._remove(t)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self.bed.lock:
                    for key, svc in list(self.bed.ecs.services.items()):
                        self._reconcile(key, svc)
            except Exception as exc:  # noqa: BLE001 - keep scheduling; tests assert errors == []
                self.errors.append(repr(exc))
            self._stop.wait(0.2)

    def _reconcile(self, key: str, svc) -> None:
        cfg = getattr(svc, "deployment_configuration", None) or {}
        high, low = cfg.get("maximumPercent", 200), cfg.get("minimumHealthyPercent", 100)
        breaker = cfg.get("deploymentCircuitBreaker") or {}
        deps = svc.deployments
        if not deps:
            return
        primary = deps[0]
        desired = svc.desired_count if svc.status == "ACTIVE" else 0
        primary["desiredCount"] = desired
        mine = [t for t in self.tasks.values() if t.service_key == key]
        for t in [t for t in mine if not t.healthy]:
            why = self._check(t, svc)
            if why:
                dep = next((d for d in deps if d["id"] == t.deployment_id), None)
                self.event(svc, f"(service {svc.name}) task {t.arn.rsplit('/', 1)[-1]} failed: {why}")
                self._remove(t)
                mine.remove(t)
                if dep is not None:
                    dep["failedTasks"] += 1
                    self._maybe_trip(svc, dep, breaker, desired)
        primary = deps[0]
        p_tasks = [t for t in mine if t.deployment_id == primary["id"]]
        others = [t for t in mine if t.deployment_id != primary["id"]]
        if primary["rolloutState"] != "FAILED":
            room = math.floor(desired * high / 100) - len(mine)
            for _ in range(max(0, min(desired - len(p_tasks), room))):
                t = self._start(svc, key, primary)
                if t:
                    mine.append(t)
                    p_tasks.append(t)
        floor_ = math.ceil(desired * low / 100)
        healthy = sum(t.healthy for t in mine)
        victims = [t for t in others if not t.healthy]
        for t in [t for t in others if t.healthy]:
            if healthy - 1 >= floor_:
                victims.append(t)
                healthy -= 1
        extra = len(p_tasks) - desired
        if extra > 0:
            victims += sorted(p_tasks, key=lambda t: t.healthy)[:extra]
        if victims:
            self._stop_tasks(victims, svc)
            mine = [t for t in mine if t not in victims]
        for d in deps:
            ts = [t for t in mine if t.deployment_id == d["id"]]
            d["runningCount"], d["pendingCount"] = sum(t.healthy for t in ts), sum(not t.healthy for t in ts)
        svc.running_count, svc.pending_count = primary["runningCount"] + sum(
            d["runningCount"] for d in deps[1:]), sum(d["pendingCount"] for d in deps)
        if (primary["rolloutState"] == "IN_PROGRESS" and primary["runningCount"] == desired
                and len(mine) == desired):
            primary["rolloutState"] = "COMPLETED"
            primary["rolloutStateReason"] = f"ECS deployment {primary['id']} completed."
            primary["updatedAt"] = _now()
            del deps[1:]
            self.event(svc, f"(service {svc.name}) has reached a steady state.")
        elif primary["rolloutState"] != "IN_PROGRESS" and not [t for t in mine if t.deployment_id != primary["id"]]:
            del deps[1:]

    def _maybe_trip(self, svc, dep: dict, breaker: dict, desired: int) -> None:
        threshold = min(200, max(3, math.ceil(desired / 2)))
        if not breaker.get("enable") or dep["status"] != "PRIMARY" or dep["failedTasks"] < threshold \
                or dep["rolloutState"] != "IN_PROGRESS":
            return
        dep["rolloutState"] = "FAILED"
        dep["rolloutStateReason"] = (f"ECS deployment circuit breaker: tasks failed to start "
                                     f"({dep['failedTasks']} failed, threshold {threshold}).")
        self.event(svc, f"(service {svc.name}) deployment {dep['id']} deployment failed: tasks failed to start.")
        good = next((d for d in svc.deployments[1:] if d["status"] == "ACTIVE"), None)
        if breaker.get("rollback") and good is not None:
            svc.task_definition = good["taskDefinition"]
            self.new_deployment(svc, "circuit breaker rollback")

    # ------------------------------------------------------------------ tasks
    def _check(self, t: Task, svc) -> str | None:
        """None while starting or once healthy; the reason when the task failed."""
        try:
            t.container.reload()
        except Exception:  # noqa: BLE001 - docker.errors.NotFound
            return "container is gone"
        if t.container.status in ("exited", "dead"):
            code = t.container.attrs.get("State", {}).get("ExitCode")
            return f"Essential container in task exited (exit code {code})"
        path = self.bed.health_path(t.target_groups)
        try:
            ok = httpx.get(f"http://127.0.0.1:{t.port}{path}", timeout=1).status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            t.healthy = True
            self.bed.alb.sync()
            return None
        if time.monotonic() - t.started > self.bed.task_start_timeout:
            return (f"Task failed ELB health checks in (target-group {','.join(t.target_groups) or '-'}) "
                    f"within {self.bed.task_start_timeout:.0f}s")
        return None

    def _start(self, svc, key: str, dep: dict) -> Task | None:
        td = self.bed.ecs.describe_task_definition(dep["taskDefinition"])
        c = next(c for c in td.container_definitions if c.get("essential", True))
        env = {e["name"]: e["value"] for e in c.get("environment") or []}
        for s in c.get("secrets") or []:
            env[s["name"]] = self.bed.resolve_secret(s["valueFrom"])
        port = free_port()
        env.update(PORT=str(port), BIND="127.0.0.1")
        arn = f"arn:aws:ecs:{self.bed.region}:{self.bed.account}:task/{svc.cluster_name}/{uuid.uuid4().hex}"
        client = self.bed.docker
        try:
            client.images.get(c["image"])
        except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound
            try:
                client.images.pull(c["image"])
            except Exception as exc:  # noqa: BLE001 - CannotPullContainerError, as ECS says it
                dep["failedTasks"] += 1
                self.event(svc, f"(service {svc.name}) CannotPullContainerError: {exc}")
                return None
        kw = {}
        if c.get("entryPoint"):
            kw["entrypoint"] = c["entryPoint"]
        if c.get("command"):
            kw["command"] = c["command"]
        container = client.containers.run(
            c["image"], detach=True, network_mode="host", environment=env,
            name=f"ecs-{self.bed.id}-{svc.name}-{pysecrets.token_hex(3)}",
            labels={LABEL: self.bed.id, "ecs.service": svc.name, "ecs.task-definition": td.arn,
                    "ecs.task": arn}, **kw)
        tgs = [lb["targetGroupArn"] for lb in svc.load_balancers or [] if lb.get("targetGroupArn")]
        task = Task(arn, key, dep["id"], td.arn, container, port, time.monotonic(), tgs)
        self.tasks[arn] = task
        return task

    def _stop_tasks(self, tasks: list[Task], svc) -> None:
        """Deregister (the ALB stops routing to them, in-flight requests finish), then stop."""
        for t in tasks:
            t.healthy = False
            t.target_groups = []
        self.bed.alb.sync()
        for t in tasks:
            self._remove(t)
            self.event(svc, f"(service {svc.name}) has stopped 1 running tasks: (task {t.arn.rsplit('/', 1)[-1]}).")

    def _remove(self, t: Task) -> None:
        self.tasks.pop(t.arn, None)
        try:
            t.container.stop(timeout=5)
        except Exception:  # noqa: BLE001 - already gone
            pass
        try:
            t.container.remove(force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def targets(self, tg_arn: str) -> list[str]:
        return sorted(f"127.0.0.1:{t.port}" for t in list(self.tasks.values()) if t.healthy and tg_arn in t.target_groups)
