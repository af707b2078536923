"""ECS Fargate behind an Application Load Balancer, with boto3 alone.

Per target, two ECS services share the task family: `<ecs_service>-a` and `-b`, each attached to
one of the target's two ALB target groups (the slots of blue-green, as ECS blue/green and
CodeDeploy pair a service's task sets with two target groups). A release registers a task
definition revision (image by digest, port mapping, health check, awslogs, secrets as valueFrom
ARNs; tags: version, digest, run id, commit and the workload) and `update_service`s one slot with
`maximumPercent` / `minimumHealthyPercent` from the catalog and the deployment circuit breaker on,
then follows the deployment's `rolloutState` itself (not the `services_stable` waiter), narrating
it, until COMPLETED (or FAILED: the op reports the circuit breaker's reason and the slot goes back).

Rolling: the stable slot in place (abort = the previous revision back). Blue-green and canary: the
other slot, with no user traffic; the test listener sends the pipeline's verification to it, then
the public listener's weighted forward action moves users (set_weight), as CodeDeploy shifts
traffic. Which slot is stable, new or kept warm is recorded in the ECS services' own tags
(`deploy:role`, `deploy:td`, `deploy:previous-td`, `deploy:expires`): the platform is the truth.

Rollout waits run on real time (a real remote process moves them); the injected clock decides
keep_previous expiry, as on the other platforms."""

from __future__ import annotations

import time
from typing import ClassVar

from pydantic import PrivateAttr

from deploy_pipelines.adapters import ecs_taskdef
from deploy_pipelines.adapters.platform import Capabilities, Log, Platform, PlatformError, RolloutStatus, Track
from deploy_pipelines.adapters.records import DeployResult, Release, Workload

SLOTS = ("a", "b")
T = ecs_taskdef.TAG


class EcsPlatform(Platform):
    """ECS services behind an ALB's weighted target groups (boto3)."""

    region: str = "us-east-1"
    endpoint_url: str | None = None      # tests: the moto server; None: AWS itself
    profile: str | None = None           # None: ambient credentials (role, environment)
    cluster: str
    ecs_service: str = ""                # default <service>-<environment>; slots are <name>-a / -b
    family: str = ""                     # task definition family, default ecs_service
    container_name: str = "app"
    cpu: str = "256"
    memory: str = "512"
    subnets: list[str] = []
    security_groups: list[str] = []
    assign_public_ip: bool = False
    load_balancer: str
    target_groups: list[str]             # two target group names: slot a, slot b
    test_port: int                       # the ALB's test listener (verification before user traffic)
    stable_port: int | None = None       # optional listener that always reaches stable
    public_host: str = ""                # default: the ALB's DNS name
    execution_role_arn: str = ""
    task_role_arn: str = ""
    log_group: str = ""                  # default /ecs/<family>
    secrets: dict[str, str] = {}         # secret env name -> valueFrom ARN (Secrets Manager or SSM)
    maximum_percent: int = 200
    minimum_healthy_percent: int = 100
    rollout_timeout: float = 600.0
    poll_interval: float = 1.0

    capabilities: ClassVar[Capabilities] = Capabilities(traffic="pipeline", weight_step=1)
    _clients: dict = PrivateAttr(default_factory=dict)
    _td_cache: dict = PrivateAttr(default_factory=dict)
    _arns: dict = PrivateAttr(default_factory=dict)

    # ------------------------------------------------------------------ plumbing
    def _client(self, name: str):
        if name not in self._clients:
            import boto3

            session = boto3.session.Session(profile_name=self.profile or None, region_name=self.region)
            self._clients[name] = session.client(name, endpoint_url=self.endpoint_url or None)
        return self._clients[name]

    @property
    def ecs(self):
        return self._client("ecs")

    @property
    def elb(self):
        return self._client("elbv2")

    @property
    def base(self) -> str:
        return self.ecs_service or f"{self.service}-{self.environment}"

    def slot_service(self, slot: str) -> str:
        return f"{self.base}-{slot}"

    def _tg(self, slot: str) -> str:
        key = f"tg-{slot}"
        if key not in self._arns:
            if len(self.target_groups) != 2:
                raise PlatformError(f"{self.where}: ecs needs exactly two target_groups (blue/green slots), "
                                    f"got {self.target_groups}")
            found = self.elb.describe_target_groups(Names=list(self.target_groups))["TargetGroups"]
            by_name = {t["TargetGroupName"]: t["TargetGroupArn"] for t in found}
            for s, name in zip(SLOTS, self.target_groups):
                self._arns[f"tg-{s}"] = by_name[name]
        return self._arns[key]

    def _lb(self) -> dict:
        if "lb" not in self._arns:
            self._arns["lb"] = self.elb.describe_load_balancers(Names=[self.load_balancer])["LoadBalancers"][0]
        return self._arns["lb"]

    def _listener(self, port: int) -> str:
        key = f"listener-{port}"
        if key not in self._arns:
            listeners = self.elb.describe_listeners(LoadBalancerArn=self._lb()["LoadBalancerArn"])["Listeners"]
            match = [x["ListenerArn"] for x in listeners if int(x["Port"]) == int(port)]
            if not match:
                raise PlatformError(f"{self.where}: load balancer {self.load_balancer} has no listener on port {port}")
            self._arns[key] = match[0]
        return self._arns[key]

    def _forward(self, port: int | None, weights: dict[str, int]) -> None:
        if port is None:
            return
        groups = [{"TargetGroupArn": self._tg(s), "Weight": w} for s, w in weights.items()]
        self.elb.modify_listener(ListenerArn=self._listener(port), DefaultActions=[
            {"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}])

    def _weights(self) -> dict[str, int]:
        listener = self.elb.describe_listeners(ListenerArns=[self._listener(self.public_port)])["Listeners"][0]
        action = listener["DefaultActions"][0]
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or [
            {"TargetGroupArn": action.get("TargetGroupArn"), "Weight": 1}]
        by_arn = {g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups}
        return {s: by_arn.get(self._tg(s), 0) for s in SLOTS}

    # ------------------------------------------------------------------ state (service tags)
    def _services(self) -> dict[str, dict]:
        names = [self.slot_service(s) for s in SLOTS]
        found = self.ecs.describe_services(cluster=self.cluster, services=names, include=["TAGS"])["services"]
        out = {}
        for svc in found:
            if svc.get("status") != "ACTIVE":
                continue
            slot = svc["serviceName"].rsplit("-", 1)[-1]
            svc["tagmap"] = {t["key"]: t["value"] for t in svc.get("tags") or []}
            out[slot] = svc
        return out

    def _role(self, services: dict, role: str) -> str | None:
        return next((s for s, svc in services.items() if svc["tagmap"].get(f"{T}role") == role), None)

    def _tag(self, svc: dict, **values) -> None:
        keep = {f"{T}{k.replace('_', '-')}": str(v) for k, v in values.items() if v not in (None, "")}
        drop = [f"{T}{k.replace('_', '-')}" for k, v in values.items() if v in (None, "")]
        if keep:
            self.ecs.tag_resource(resourceArn=svc["serviceArn"], tags=[{"key": k, "value": v} for k, v in keep.items()])
        if drop:
            self.ecs.untag_resource(resourceArn=svc["serviceArn"], tagKeys=drop)
        svc["tagmap"].update(keep)
        for k in drop:
            svc["tagmap"].pop(k, None)

    def _record(self, td_arn: str | None) -> dict | None:
        if not td_arn:
            return None
        if td_arn not in self._td_cache:
            got = self.ecs.describe_task_definition(taskDefinition=td_arn, include=["TAGS"])
            image = got["taskDefinition"]["containerDefinitions"][0]["image"]
            self._td_cache[td_arn] = ecs_taskdef.record_from_tags(td_arn, image, got.get("tags") or [])
        return self._td_cache[td_arn]

    def _release(self, rec: dict | None, previous: dict | None = None) -> Release | None:
        if not rec:
            return None
        return Release(self.service, self.environment, rec["version"], rec["digest"], rec["image"], rec["run_id"],
                       (previous or {}).get("version", ""), (previous or {}).get("image", ""), rec["commit"],
                       rec["workload"])

    def _view(self) -> dict:
        """stable / new / previous slots, their records, and a rolling release in progress."""
        services = self._services()
        v = {"services": services}
        for role in ("stable", "new", "previous"):
            slot = self._role(services, role)
            v[role] = slot
            v[f"{role}_rec"] = self._record(services[slot]["tagmap"].get(f"{T}td")) if slot else None
        st = v["stable"]
        v["pending"] = None
        if st and services[st]["taskDefinition"] != services[st]["tagmap"].get(f"{T}td"):
            v["pending"] = self._record(services[st]["taskDefinition"])     # rolling, not promoted yet
        if st and not v["previous_rec"]:
            v["previous_rec"] = self._record(services[st]["tagmap"].get(f"{T}previous-td"))
        return v

    # ------------------------------------------------------------------ ECS calls
    def _register(self, workload: Workload) -> str:
        kwargs = ecs_taskdef.task_definition(
            workload, family=self.family or self.base, container=self.container_name, cpu=self.cpu,
            memory=self.memory, region=self.region, log_group=self.log_group or f"/ecs/{self.family or self.base}",
            execution_role_arn=self.execution_role_arn, task_role_arn=self.task_role_arn,
            secrets=ecs_taskdef.secret_refs(workload, self.secrets, self.where),
            tags=ecs_taskdef.workload_tags(workload))
        return self.ecs.register_task_definition(**kwargs)["taskDefinition"]["taskDefinitionArn"]

    def _ensure_service(self, slot: str, td: str, services: dict, workload: Workload) -> dict:
        if slot in services:
            return services[slot]
        self.elb.modify_target_group(TargetGroupArn=self._tg(slot), HealthCheckPath=workload.readiness.path)
        svc = self.ecs.create_service(
            cluster=self.cluster, serviceName=self.slot_service(slot), taskDefinition=td, desiredCount=0,
            launchType="FARGATE", deploymentController={"type": "ECS"}, propagateTags="TASK_DEFINITION",
            networkConfiguration={"awsvpcConfiguration": {"subnets": self.subnets, "securityGroups":
                                                          self.security_groups, "assignPublicIp":
                                                          "ENABLED" if self.assign_public_ip else "DISABLED"}},
            loadBalancers=[{"targetGroupArn": self._tg(slot), "containerName": self.container_name,
                            "containerPort": workload.container_port}],
            tags=[{"key": f"{T}role", "value": "idle"}, {"key": "deploy.service", "value": self.service},
                  {"key": "deploy.environment", "value": self.environment}])["service"]
        svc["tagmap"] = {f"{T}role": "idle"}
        services[slot] = svc
        return svc

    def _update(self, slot: str, td: str, count: int, log: Log, what: str) -> None:
        """update_service with a new deployment of td, then follow it to COMPLETED."""
        self.ecs.update_service(
            cluster=self.cluster, service=self.slot_service(slot), taskDefinition=td, desiredCount=count,
            forceNewDeployment=True, deploymentConfiguration={
                "maximumPercent": self.maximum_percent, "minimumHealthyPercent": self.minimum_healthy_percent,
                "deploymentCircuitBreaker": {"enable": True, "rollback": False}})
        self._follow(slot, log, what)

    def _scale(self, slot: str, count: int, log: Log, what: str) -> None:
        self.ecs.update_service(cluster=self.cluster, service=self.slot_service(slot), desiredCount=count)
        self._follow(slot, log, what, scaling=True)

    def _follow(self, slot: str, log: Log, what: str, scaling: bool = False) -> None:
        """Poll the service until its PRIMARY deployment is COMPLETED with every task running and no
        other deployment left; narrate each change; FAILED (circuit breaker) or timeout: PlatformError."""
        name, last, started = self.slot_service(slot), None, time.monotonic()
        while True:
            svc = self.ecs.describe_services(cluster=self.cluster, services=[name])["services"][0]
            primary, desired = svc["deployments"][0], svc["desiredCount"]   # the service's: set by our call
            state = (primary.get("rolloutState"), primary["runningCount"], primary["pendingCount"],
                     primary.get("failedTasks", 0), len(svc["deployments"]))
            if state != last:
                log(f"ecs {name} ({what}): {state[0]} running {state[1]}/{desired}, pending "
                    f"{state[2]}, failed tasks {state[3]}" + (f", {state[4] - 1} older deployment(s) draining"
                                                              if state[4] > 1 else ""))
                last = state
            settled = state[1] == desired and state[2] == 0 and state[4] == 1
            if scaling and settled:      # a scale change keeps the deployment's own state (even FAILED)
                return
            if state[0] == "FAILED":
                events = "; ".join(e["message"] for e in svc.get("events", [])[:3])
                raise PlatformError(f"{self.where}: {what}: deployment {primary['id']} FAILED: "
                                    f"{primary.get('rolloutStateReason', '')} (recent events: {events})")
            if state[0] == "COMPLETED" and settled:
                return
            if time.monotonic() - started > self.rollout_timeout:
                raise PlatformError(f"{self.where}: {what}: deployment {primary['id']} still {state[0]} after "
                                    f"{self.rollout_timeout:.0f}s (running {state[1]}/{desired})")
            time.sleep(self.poll_interval)

    # ------------------------------------------------------------------ reading
    def current(self) -> Release | None:
        v = self._view()
        return self._release(v["stable_rec"], v["previous_rec"])

    def public_url(self) -> str:
        return f"http://{self.public_host or self._lb()['DNSName']}:{self.public_port}"

    def _url(self, port: int) -> str:
        return f"http://{self.public_host or self._lb()['DNSName']}:{port}"

    def verification_url(self, track: Track) -> str:
        v = self._view()
        if track == "stable":
            return self._url(self.stable_port) if v["stable"] and self.stable_port else ""
        return self._url(self.test_port) if (v["stable"] or v["new"]) else ""

    def status(self) -> RolloutStatus:
        v = self._view()
        counts: dict[str, int] = {}
        degraded = False
        for svc in v["services"].values():
            for d in svc.get("deployments") or []:
                rec = self._record(d["taskDefinition"])
                if d["runningCount"]:
                    counts[rec["version"]] = counts.get(rec["version"], 0) + d["runningCount"]
                if svc["tagmap"].get(f"{T}role") in ("stable", "new"):
                    degraded |= d.get("rolloutState") == "FAILED"
        stable = self._release(v["stable_rec"])
        new = self._release(v["new_rec"] or v["pending"])
        weight = self._weights()[v["new"]] if v["new"] and v["stable"] else (100 if new else 0)
        if stable is None and new is None:
            phase = "none"
        elif degraded:
            phase = "degraded"
        elif new is not None:
            phase = "progressing"
        else:
            want = stable.workload.replicas if stable.workload else 1
            phase = "healthy" if counts.get(stable.version, 0) >= want else "degraded"
        return RolloutStatus(phase=phase, stable=stable, new=new, weight=weight, instances=counts,
                             message="rolling" if v["pending"] else "")

    # ------------------------------------------------------------------ changes
    def deploy(self, workload: Workload, strategy, log: Log) -> DeployResult:
        v = self._view()
        if (v["new_rec"] and v["new_rec"]["digest"] != workload.digest) or (
                v["pending"] and v["pending"]["digest"] != workload.digest):
            log("a previous attempt left another version behind: removing it first")
            self.abort("superseded by a new deploy", log)
            v = self._view()
        services, stable, kind = v["services"], v["stable_rec"], strategy.kind
        result = lambda rec: DeployResult(  # noqa: E731
            new=self._release(rec, stable), previous=self._release(stable), strategy=kind,
            endpoints=[self._url(self.test_port)], public_url=self.public_url())
        if stable and stable["digest"] == workload.digest and not v["new"] and not v["pending"]:
            log(f"{workload.version} ({workload.digest[:19]}) already serves: nothing to deploy")
            return result(stable)
        if v["new_rec"] and v["new_rec"]["digest"] == workload.digest:
            self._follow(v["new"], log, f"{workload.version} (re-run)")
            return result(v["new_rec"])
        if v["pending"]:
            self._follow(v["stable"], log, f"rolling {workload.version} (re-run)")
            return result(v["pending"])
        td = self._register(workload)
        log(f"registered task definition {td.rsplit('/', 1)[-1]} ({workload.image})")
        rec = self._record(td)
        if not stable:
            slot = v["new"] or "a"
            svc = self._ensure_service(slot, td, services, workload)
            self._tag(svc, role="new", td=td)
            self._start_slot(slot, td, workload, log, f"first release {workload.version}")
            for port in (self.public_port, self.test_port, self.stable_port):
                self._forward(port, {slot: 1})
            return result(rec)
        if kind == "rolling":
            slot = v["stable"]
            try:
                self._update(slot, td, workload.replicas, log, f"rolling {workload.version}")
            except PlatformError:
                log(f"rolling {workload.version} failed: back to {stable['version']} "
                    f"({stable['task_definition'].rsplit('/', 1)[-1]})")
                self._update(slot, stable["task_definition"], self._replicas(stable), log,
                             f"abort: back to {stable['version']}")
                raise
            return result(rec)
        slot = next(s for s in SLOTS if s != v["stable"])
        svc = self._ensure_service(slot, td, services, workload)
        self._tag(svc, role="new", td=td, expires=None)
        self._start_slot(slot, td, workload, log, f"{kind} {workload.version}")
        self._forward(self.test_port, {slot: 1})
        log(f"{kind}: {workload.replicas} task(s) of {workload.version} healthy beside {stable['version']}; the test "
            f"listener :{self.test_port} reaches them, no user traffic yet")
        return result(rec)

    def _start_slot(self, slot: str, td: str, workload: Workload, log: Log, what: str) -> None:
        self.elb.modify_target_group(TargetGroupArn=self._tg(slot), HealthCheckPath=workload.readiness.path)
        try:
            self._update(slot, td, workload.replicas, log, what)
        except PlatformError:
            self._scale(slot, 0, log, f"{what}: failed, scaling it to 0")
            self._tag(self._services()[slot], role="idle")
            raise

    @staticmethod
    def _replicas(rec: dict) -> int:
        return rec["workload"].replicas if rec.get("workload") else 1

    def set_weight(self, weight: int, log: Log) -> None:
        v = self._view()
        if v["pending"] and not v["new"]:
            log("rolling release: every task already serves users (no weights to move)")
            return
        if not v["new"]:
            raise PlatformError(f"{self.where}: no new version to send traffic to")
        if not v["stable"]:
            return
        weight = max(0, min(100, int(weight)))
        self._forward(self.public_port, {v["stable"]: 100 - weight, v["new"]: weight})
        log(f"traffic: {weight}% {v['new_rec']['version']}, {100 - weight}% {v['stable_rec']['version']} "
            "(ALB listener weights)")

    def promote(self, log: Log, keep_previous_seconds: float = 0) -> Release:
        v = self._view()
        services = v["services"]
        if v["pending"]:
            st = services[v["stable"]]
            self._tag(st, td=st["taskDefinition"], previous_td=st["tagmap"].get(f"{T}td"))
            log(f"{v['pending']['version']} is stable (rolling)")
            return self._release(v["pending"], v["stable_rec"])
        if not v["new"]:
            current = self.current()
            if current is None:
                raise PlatformError(f"{self.where}: nothing to promote")
            log(f"{current.version} is already stable")
            return current
        new, old = v["new"], v["stable"]
        for port in (self.public_port, self.test_port, self.stable_port):
            self._forward(port, {new: 1})
        self._tag(services[new], role="stable", previous_td=services[old]["tagmap"].get(f"{T}td") if old else None,
                  expires=None)
        if old:
            if keep_previous_seconds:
                self._tag(services[old], role="previous", expires=f"{self._clock() + keep_previous_seconds:.3f}")
                log(f"{v['stable_rec']['version']} kept warm for {keep_previous_seconds:.0f}s as the instant "
                    "rollback target")
            else:
                self._scale(old, 0, log, f"{v['stable_rec']['version']} scaled to 0")
                self._tag(services[old], role="idle", expires=None)
        log(f"{v['new_rec']['version']} is stable: 100% of user traffic")
        return self._release(v["new_rec"], v["stable_rec"])

    def abort(self, reason: str, log: Log) -> Release | None:
        v = self._view()
        services = v["services"]
        if v["pending"]:
            st = v["stable_rec"]
            log(f"aborting rolling {v['pending']['version']}: task definition "
                f"{st['task_definition'].rsplit('/', 1)[-1]} ({st['version']}) back ({reason})")
            self._update(v["stable"], st["task_definition"], self._replicas(st), log, f"abort: back to {st['version']}")
            return self.current()
        if not v["new"]:
            return self.current()
        if not v["stable"]:
            self._scale(v["new"], 0, log, "abort of the first release")
            self._tag(services[v["new"]], role="idle")
            log(f"aborted {v['new_rec']['version']}: {reason}; nothing was stable before")
            return None
        for port in (self.public_port, self.test_port, self.stable_port):
            self._forward(port, {v["stable"]: 1})
        log(f"aborted: traffic 100% on {v['stable_rec']['version']} again ({reason})")
        self._scale(v["new"], 0, log, f"abort: {v['new_rec']['version']} scaled to 0")
        self._tag(services[v["new"]], role="idle")
        return self._release(v["stable_rec"], v["previous_rec"])

    def rollback(self, log: Log, to: Workload | None = None) -> Release:
        v = self._view()
        if not v["stable"]:
            raise PlatformError(f"{self.where}: nothing runs")
        if v["new"] or v["pending"]:
            self.abort("rollback requested", log)
            v = self._view()
        services, stable, st = v["services"], v["stable_rec"], v["stable"]
        target = {"digest": to.digest, "version": to.version} if to else v["previous_rec"]
        if not target:
            raise PlatformError(f"{self.where}: no previous release to roll back to")
        if target["digest"] == stable["digest"]:
            log(f"{stable['version']} already serves")
            return self._release(stable, v["previous_rec"])
        prev = v["previous"]
        warm = prev and v["previous_rec"]["digest"] == target["digest"] and any(
            d["runningCount"] for d in services[prev]["deployments"])
        if warm:
            log(f"{target['version']} is warm: switching traffic back at once")
            for port in (self.public_port, self.test_port, self.stable_port):
                self._forward(port, {prev: 1})
            self._tag(services[prev], role="stable", previous_td=stable["task_definition"], expires=None)
            self._scale(st, 0, log, f"{stable['version']} scaled to 0 after rollback")
            self._tag(services[st], role="idle")
            return self._release(v["previous_rec"], stable)
        td = self._register(to) if to else target["task_definition"]
        log(f"redeploying {target['version']} ({td.rsplit('/', 1)[-1]}) with its own release's workload")
        rec = self._record(td)
        self._update(st, td, self._replicas(rec), log, f"rollback to {target['version']}")
        self._tag(services[st], td=td, previous_td=stable["task_definition"])
        if prev:
            self._scale(prev, 0, log, "stale warm slot scaled to 0")
            self._tag(services[prev], role="idle", expires=None)
        return self._release(rec, stable)

    def cleanup(self, log: Log) -> list[str]:
        v = self._view()
        prev = v["previous"]
        if not prev:
            return []
        svc = v["services"][prev]
        expires = float(svc["tagmap"].get(f"{T}expires") or 0)
        if not expires or self._clock() < expires:
            return []
        running = sum(d["runningCount"] for d in svc["deployments"])
        self._scale(prev, 0, log, f"keep_previous passed: {v['previous_rec']['version']} scaled to 0")
        self._tag(svc, role="idle", expires=None)
        return [f"{svc['serviceName']}/{v['previous_rec']['version']}#{i}" for i in range(running)]
