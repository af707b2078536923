"""Docker hosts behind nginx, through the Docker Engine API alone (Docker, or Podman's service):
a local socket, `ssh://user@host` or `tcp://` with TLS reach the same code.

On the host, per target: instances are containers of the release image, each publishing its
`container_port` on a host port Docker chooses (labels deploy.service / environment / version /
digest / run_id / commit); nginx is a container the platform manages (`dp-nginx-<service>-<env>`,
host network, the project's own nginx image) whose one config file is written with the API
(`put_archive`) and reloaded gracefully (SIGHUP through the API: old workers finish their
requests). Each reload is confirmed by polling a generation number the new config serves; a
config nginx refuses is reported with `nginx -t`'s own words (an exec), and the old one keeps
serving.

The config has three listeners: the public one (upstream weights carry the traffic split), a
preview one (the new version only: verification of canary/preview) and a stable one. Its header
line `# deploy-state: {...}` records which release is stable, new and previous *with the workload
each was released with*: the platform's own annotation, read back by current(), so a version that
comes back runs with its own environment, never one copied from another version's container.

Secrets (`secret_env`) are resolved from the pipeline's environment at container start, written
into the created container as a file read by a shell wrapper before the image's entrypoint: they
never appear in the container's configuration, labels, argv or the deploy state.

The nginx side (proxy container, config, reload confirmation, Prometheus targets) is in docker_nginx.py.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import shlex
import tarfile
import time
from typing import ClassVar
from urllib.parse import urlparse

import httpx
from pydantic import PrivateAttr

from deploy_pipelines.adapters.platform import (Capabilities, Log, Platform, PlatformError, RolloutStatus, Track,
                                                Workload)
from deploy_pipelines.adapters.docker_nginx import CONF_DIR, Instance, NginxProxy, _free_port, _put
from deploy_pipelines.adapters.records import DeployResult, Release

L = "deploy."
DRAIN_SECONDS = 1.0
SECRETS_FILE = "/run/deploy/secrets.env"


def _record(workload: Workload) -> dict:
    return {"version": workload.version, "digest": workload.digest, "image": workload.image,
            "run_id": workload.run_id, "commit": workload.commit, "workload": workload.model_dump(mode="json")}


def _workload(rec: dict) -> Workload | None:
    return Workload.model_validate(rec["workload"]) if rec.get("workload") else None


class DockerNginxPlatform(NginxProxy, Platform):
    """Containers through the Docker Engine API, traffic through a managed nginx container."""

    docker_host: str
    nginx_image: str = ""              # default: $DEPLOY_NGINX_IMAGE (the stack builds it), read when needed
    prometheus_targets_dir: str | None = None
    bind_host: str = "127.0.0.1"       # where instances publish and nginx listens, on the Docker host
    network: str = "bridge"            # bridge: container_port published; host: the instance listens on $PORT
    public_host: str = ""              # how the pipeline reaches those (default: the Docker host's name)

    capabilities: ClassVar[Capabilities] = Capabilities(traffic="pipeline", weight_step=1)
    _docker = PrivateAttr(default=None)
    _written = PrivateAttr(default=None)     # the state this resource last wrote (see _state)

    # ------------------------------------------------------------------ plumbing
    @property
    def client(self):
        if self._docker is None:
            import docker

            # ssh:// through paramiko: it reads ~/.ssh/config and known_hosts like the ssh client.
            self._docker = docker.DockerClient(base_url=self.docker_host, timeout=120, use_ssh_client=False)
        return self._docker

    @property
    def host(self) -> str:
        if self.public_host:
            return self.public_host
        parsed = urlparse(self.docker_host)
        if parsed.scheme in ("ssh", "tcp", "http", "https") and parsed.hostname:
            return parsed.hostname
        return self.bind_host

    @property
    def proxy_name(self) -> str:
        return f"dp-nginx-{self.service}-{self.environment}"

    def _labels(self, role: str) -> dict[str, str]:
        return {f"{L}service": self.service, f"{L}environment": self.environment, f"{L}role": role}

    def _instances(self, digest: str | None = None, running: bool | None = None) -> list[Instance]:
        found = self.client.api.containers(all=True, filters={"label": [
            f"{L}service={self.service}", f"{L}environment={self.environment}", f"{L}role=instance"]})
        out = []
        for c in found:
            labels = c.get("Labels") or {}
            port = next((p.get("PublicPort") for p in c.get("Ports") or [] if p.get("PublicPort")), None) \
                or (int(labels[f"{L}port"]) if labels.get(f"{L}port") else None)
            inst = Instance(c["Id"], (c.get("Names") or ["?"])[0].lstrip("/"), labels.get(f"{L}version", ""),
                            labels.get(f"{L}digest", ""), c.get("State") == "running", port)
            if (digest is None or inst.digest == digest) and (running is None or inst.running == running):
                out.append(inst)
        return out

    def _url(self, inst: Instance) -> str:
        return f"http://{self.host}:{inst.host_port}"

    def _release(self, rec: dict | None, previous: dict | None = None) -> Release | None:
        if not rec:
            return None
        return Release(self.service, self.environment, rec["version"], rec["digest"], rec["image"],
                       rec.get("run_id", ""), (previous or {}).get("version", ""), (previous or {}).get("image", ""),
                       rec.get("commit", ""), _workload(rec))

    # ------------------------------------------------------------------ instances
    def _start(self, workload: Workload, log: Log) -> Instance:
        client = self.client
        try:
            image = client.images.get(workload.image)
        except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound
            image = client.images.pull(workload.image)
        labels = {**self._labels("instance"), f"{L}version": workload.version, f"{L}digest": workload.digest,
                  f"{L}run_id": workload.run_id, f"{L}commit": workload.commit}
        name = (f"{self.service}-{self.environment}-{re.sub(r'[^A-Za-z0-9_.-]', '_', workload.version)}-"
                f"{secrets.token_hex(3)}")
        # The platform sets PORT and APP_VERSION: an instance must not inherit them from elsewhere.
        env = {**workload.env, "PORT": str(workload.container_port), "APP_VERSION": workload.version}
        if self.network == "host":
            # Host network (services on the host's loopback, such as the local stack's databases, are
            # reachable): each instance gets its own host port in $PORT, on bind_host.
            host_port = _free_port(self.bind_host)
            env.update(PORT=str(host_port), BIND=self.bind_host)
            labels[f"{L}port"] = str(host_port)
            net = {"network_mode": "host"}
        else:
            net = {"ports": {f"{workload.container_port}/tcp": (self.bind_host, None)}}
        kwargs = {}
        if workload.secret_env:
            cfg = image.attrs.get("Config") or {}
            argv = (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])
            kwargs = {"entrypoint": ["/bin/sh", "-c", f'. {SECRETS_FILE} && exec "$@"', "deploy-secrets"],
                      "command": argv}
        container = client.containers.create(
            workload.image, name=name, labels=labels, environment=env, stop_signal="SIGTERM", **net, **kwargs)
        if workload.secret_env:
            # Readable by the image's user only (numeric USER; a named one gets a world-readable file
            # inside its own container).
            user = ((image.attrs.get("Config") or {}).get("User") or "0").split(":")[0]
            owner, mode = (int(user), 0o400) if user.isdigit() else (0, 0o444)
            _put(container, "/", {SECRETS_FILE.lstrip("/"): self._secrets_file(workload)}, mode=mode, owner=owner)
        container.start()
        if self.network == "host":
            port = host_port
        else:
            container.reload()
            bound = (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{workload.container_port}/tcp") or []
            port = int(bound[0]["HostPort"]) if bound else None
        inst = Instance(container.id, name, workload.version, workload.digest, True, port)
        self._wait_ready(container, inst, workload)
        log(f"instance {name} ({workload.version}) ready on :{port}")
        return inst

    def _secrets_file(self, workload: Workload) -> str:
        lines = []
        for s in workload.secret_env:
            if not s.env:
                raise PlatformError(f"{self.where}: secret {s.name} has no `env` reference (the Docker platform "
                                    "reads secrets from the pipeline's environment)")
            value = os.environ.get(s.env)
            if value is None:
                raise PlatformError(f"{self.where}: secret {s.name}: environment variable {s.env} is not set")
            lines.append(f"export {s.name}={shlex.quote(value)}")
        return "\n".join(lines) + "\n"

    def _wait_ready(self, container, inst: Instance, workload: Workload) -> None:
        probe = workload.readiness
        url = self._url(inst) + probe.path
        deadline = time.monotonic() + probe.timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                r = httpx.get(url, timeout=2)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            container.reload()
            if container.status in ("exited", "dead"):
                break
            time.sleep(0.1)
        logs = container.logs(tail=20).decode(errors="replace")
        container.remove(force=True)
        raise PlatformError(f"{self.where}: instance {inst.name} ({workload.version}) not ready at {probe.path} "
                            f"within {probe.timeout:.0f}s (last: {last}); its log:\n{logs}")

    def _stop(self, instances: list[Instance], log: Log) -> None:
        if not instances:
            return
        self._sleep(DRAIN_SECONDS)   # requests already routed to them finish first
        import docker

        for c in instances:
            try:
                self.client.api.stop(c.id, timeout=10)
                self.client.api.remove_container(c.id, force=True)
                log(f"instance {c.name} ({c.version}) stopped")
            except docker.errors.NotFound:
                pass

    # ------------------------------------------------------------------ reading
    def current(self) -> Release | None:
        state = self._state()
        return self._release(state.get("stable"), state.get("previous"))

    def public_url(self) -> str:
        return f"http://{self.host}:{self.public_port}"

    def verification_url(self, track: Track) -> str:
        state = self._state()
        if not state:
            return ""
        if track == "stable":
            return f"http://{self.host}:{state['stable_port']}" if state.get("stable") else ""
        return f"http://{self.host}:{state['preview_port']}" if (state.get("new") or state.get("stable")) else ""

    def status(self) -> RolloutStatus:
        state = self._state()
        counts: dict[str, int] = {}
        for c in self._instances(running=True):
            counts[c.version] = counts.get(c.version, 0) + 1
        stable, new = self._release(state.get("stable")), self._release(state.get("new"))
        if not state or (stable is None and new is None):
            phase = "none"
        elif new is not None:
            phase = "progressing" if counts.get(new.version) else "degraded"
        else:
            phase = "healthy" if counts.get(stable.version, 0) >= (stable.workload.replicas if stable.workload else 1) \
                else "degraded"
        return RolloutStatus(phase=phase, stable=stable, new=new, weight=int(state.get("weight", 0)) if new else 0,
                             instances=counts, message=state.get("mode") or "")

    def upstream_servers(self) -> list[tuple[str, int]]:
        """(version, weight) of each server on the public listener, as nginx has it now."""
        proxy = self._proxy()
        if proxy is None:
            return []
        stream, _ = proxy.get_archive(f"{CONF_DIR}/conf.d/target.conf")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            text = tar.extractfile(tar.getmembers()[0]).read().decode()
        public = text.split("upstream ", 2)[1]
        return [(v, int(w)) for w, v in re.findall(r"weight=(\d+) max_fails=0;  # (\S+)", public)]

    # ------------------------------------------------------------------ changes
    def deploy(self, workload: Workload, strategy, log: Log) -> DeployResult:
        state = self._state()
        state["port"] = self.public_port
        new = _record(workload)
        stable = state.get("stable")
        kind = strategy.kind
        if state.get("new") and state["new"]["digest"] != workload.digest:
            log(f"a previous attempt left {state['new']['version']} behind: removing it first")
            self.abort("superseded by a new deploy", log)
            state = self._state() | {"port": self.public_port}
            stable = state.get("stable")
        if stable and stable["digest"] == workload.digest and not state.get("new"):
            log(f"{workload.version} ({workload.digest[:19]}) already serves: nothing to deploy")
            state.update(new=new, weight=100)
            self._write(state, log)
        elif not stable or kind == "rolling":
            state.update(new=new, weight=100 if not stable else state.get("weight", 0), mode=kind)
            self._roll(workload, strategy, state, log)
        else:
            # blue-green / canary: the new version starts beside stable with no user traffic.
            state.update(new=new, weight=0, mode=kind)
            have = self._instances(workload.digest, running=True)
            for _ in range(workload.replicas - len(have)):
                self._start(workload, log)
            self._write(state, log)
            log(f"{kind}: {workload.replicas} instance(s) of {workload.version} ready beside "
                f"{stable['version']}, no user traffic yet")
        # Verify checks the new version alone, through the preview listener, whatever the strategy.
        return DeployResult(new=self._release(new, stable), previous=self._release(stable), strategy=kind,
                            endpoints=[self.verification_url("preview")], public_url=self.public_url())

    def _roll(self, workload: Workload, strategy, state: dict, log: Log, replace: str | None = None) -> None:
        """Replace the instances of digest `replace` (default: stable's) by instances of workload,
        max_surge / max_unavailable at a time; instances leave the upstream before they stop."""
        surge = max(getattr(strategy, "max_surge", 1), 0)
        unavailable = max(getattr(strategy, "max_unavailable", 0), 0)
        replace = replace or (state.get("stable") or {}).get("digest")
        replicas = workload.replicas

        def running(digest):
            return self._instances(digest, running=True) if digest else []

        while True:
            mine, others = running(workload.digest), running(replace)
            if len(mine) >= replicas and not others:
                break
            # Scale the old version down as far as the availability floor allows (replicas -
            # max_unavailable in service); they leave the upstream before they stop.
            n_down = min(len(others), len(mine) + len(others) - (replicas - unavailable))
            if n_down > 0:
                victims, others = others[:n_down], others[n_down:]
                if mine + others:       # (replicas 1 with max_unavailable 1: an accepted gap)
                    self._write(state, log, only=mine + others)
                self._stop(victims, log)
                self._write_targets(state)   # stopped instances leave Prometheus' targets too
            # Scale the new version up as far as the surge ceiling allows (replicas + max_surge
            # running); each is ready before it joins the upstream.
            n_up = min(replicas - len(mine), replicas + surge - (len(mine) + len(others)))
            for _ in range(max(n_up, 0)):
                mine.append(self._start(workload, log))
            if n_down <= 0 and n_up <= 0:
                raise PlatformError(f"{self.where}: rolling update cannot progress (max_surge {surge}, "
                                    f"max_unavailable {unavailable}, {len(mine)} new / {len(others)} old running)")
            if n_up > 0:
                self._write(state, log, only=mine + others)
        state["weight"] = 100
        self._write(state, log, only=running(workload.digest))
        log(f"rolling: all {replicas} instance(s) run {workload.version}")

    def set_weight(self, weight: int, log: Log) -> None:
        state = self._state()
        if not state.get("new"):
            raise PlatformError(f"{self.where}: no new version to send traffic to")
        state["weight"] = max(0, min(100, int(weight)))
        self._write(state, log)
        log(f"traffic: {state['weight']}% {state['new']['version']}, "
            f"{100 - state['weight']}% {(state.get('stable') or {}).get('version', '-')}")

    def promote(self, log: Log, keep_previous_seconds: float = 0) -> Release:
        state = self._state()
        if not state.get("new"):
            current = self.current()
            if current is None:
                raise PlatformError(f"{self.where}: nothing to promote")
            log(f"{current.version} is already stable")
            return current
        if state.get("weight") != 100:
            state["weight"] = 100
            self._write(state, log)
        old, new = state.get("stable"), state["new"]
        older = state.get("previous")
        if old and old["digest"] != new["digest"]:
            state["previous"] = old
        state.update(stable=new, new=None, weight=0, mode=None)
        state.pop("previous_expires", None)
        if keep_previous_seconds and old and old["digest"] != new["digest"]:
            state["previous_expires"] = self._clock() + keep_previous_seconds
        self._write(state, log)
        if old and old["digest"] != new["digest"] and not keep_previous_seconds:
            self._stop(self._instances(old["digest"]), log)
        if older and older["digest"] not in (new["digest"], (old or {}).get("digest")):
            self._stop(self._instances(older["digest"]), log)
        if keep_previous_seconds and old and old["digest"] != new["digest"]:
            log(f"{old['version']} kept warm for {keep_previous_seconds:.0f}s as the instant rollback target")
        return self._release(new, old)

    def abort(self, reason: str, log: Log) -> Release | None:
        state = self._state()
        new, stable = state.get("new"), state.get("stable")
        if not new:
            return self.current()
        bad = self._instances(new["digest"])
        if stable is None:
            # The very first release failed: nothing to go back to; stop serving the bad one.
            proxy = self._proxy()
            if proxy is not None:
                proxy.remove(force=True)
            self._stop(bad, log)
            log(f"aborted {new['version']}: {reason}; nothing was stable before")
            return None
        if self._instances(stable["digest"], running=True):
            state.update(new=None, weight=0, mode=None)
            self._write(state, log)      # traffic back to stable at once
            log(f"aborted: traffic 100% on {stable['version']} again ({reason})")
            self._stop(bad, log)
        else:
            # Rolling already replaced stable: stable comes back from its own release record.
            workload = self._restorable(stable)
            log(f"aborting: rolling {stable['version']} back in with its own release's workload ({reason})")
            self._roll(workload, None, state, log, replace=new["digest"])
            state.update(stable=stable, new=None, weight=0, mode=None)
            self._write(state, log)
        return self._release(stable, state.get("previous"))

    def _restorable(self, rec: dict) -> Workload:
        workload = _workload(rec)
        if workload is None:
            raise PlatformError(f"{self.where}: the release record of {rec['version']} has no workload: cannot "
                                "bring it back exactly; release it again")
        return workload

    def rollback(self, log: Log, to: Workload | None = None) -> Release:
        state = self._state()
        stable = state.get("stable")
        if not stable:
            raise PlatformError(f"{self.where}: nothing runs")
        if state.get("new"):
            self.abort("rollback requested", log)
            state = self._state()
        target = _record(to) if to else state.get("previous")
        if not target:
            raise PlatformError(f"{self.where}: no previous release to roll back to")
        if target["digest"] == stable["digest"]:
            log(f"{stable['version']} already serves")
            return self._release(stable, state.get("previous"))
        warm = self._instances(target["digest"], running=True)
        if warm:
            log(f"{target['version']} is warm ({len(warm)} instance(s)): switching traffic back at once")
            state.update(new=target, weight=100)
            self._write(state, log)
            log(f"traffic: 100% {target['version']} (warm rollback), 0% {stable['version']}")
        else:
            workload = self._restorable(target)
            log(f"redeploying {target['version']} from {target['image']} with its own release's workload")
            state["new"] = target
            self._roll(workload, None, state, log, replace=stable["digest"])
        state.update(stable=target, previous=stable, new=None, weight=0, mode=None)
        state.pop("previous_expires", None)
        self._write(state, log)
        if warm:
            self._stop(self._instances(stable["digest"]), log)
        return self._release(target, stable)

    def cleanup(self, log: Log) -> list[str]:
        state = self._state()
        expires, prev = state.get("previous_expires"), state.get("previous")
        if not prev or not expires or self._clock() < expires:
            return []
        victims = self._instances(prev["digest"])
        state.pop("previous_expires", None)
        self._write(state, log)
        self._stop(victims, log)
        if victims:
            log(f"keep_previous passed: {prev['version']} removed ({len(victims)} instance(s))")
        return [c.name for c in victims]
