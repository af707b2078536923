"""Docker hosts behind nginx (the Docker Engine API: Docker, or Podman's service).

Every instance is a container on the host network with its own port (env PORT) and labels
deploy.service / environment / version / digest / run_id / port. nginx has one file per service
and environment, conf.d/<service>-<env>.conf: an upstream whose weights carry the traffic split,
a listener, and a header line `# deploy-state: {...}` recording which release is stable, which is
new and which is kept warm: the platform's own annotation, read back by current().

Traffic moves only by rewriting that file and reloading nginx gracefully (SIGHUP: old workers
finish their requests); each reload is confirmed by polling a generation number the new config
serves, and an instance is stopped only after no config routes to it any more.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import subprocess
import time
from pathlib import Path

import httpx

from deploy_pipelines.adapters.platform import DeploySpec, Log, Platform, PlatformError
from deploy_pipelines.adapters.records import DeployResult, Release

L = "deploy."
DRAIN_SECONDS = 1.0


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _release(d: dict | None, service: str, environment: str, previous: dict | None = None) -> Release | None:
    if not d:
        return None
    return Release(service, environment, d["version"], d["digest"], d["image"], d.get("run_id", ""),
                   (previous or {}).get("version", ""), (previous or {}).get("image", ""))


class DockerNginxPlatform(Platform):
    """Containers through the Docker Engine API, traffic through nginx upstream weights."""

    docker_host: str
    nginx_prefix: str
    prometheus_targets_dir: str | None = None
    bind_host: str = "127.0.0.1"
    nginx_binary: str = "nginx"

    # ------------------------------------------------------------------ plumbing
    def _client(self):
        import docker

        return docker.DockerClient(base_url=self.docker_host, timeout=120)

    def _conf(self, service: str, environment: str) -> Path:
        return Path(self.nginx_prefix) / "conf.d" / f"{service}-{environment}.conf"

    def _state(self, service: str, environment: str) -> dict:
        conf = self._conf(service, environment)
        if not conf.exists():
            return {}
        m = re.search(r"^# deploy-state: (.*)$", conf.read_text(), re.M)
        return json.loads(m.group(1)) if m else {}

    def _instances(self, service: str, environment: str, digest: str | None = None) -> list:
        filters = {"label": [f"{L}service={service}", f"{L}environment={environment}"]}
        found = self._client().containers.list(all=True, filters=filters)
        return [c for c in found if digest is None or c.labels.get(f"{L}digest") == digest]

    def _url(self, container) -> str:
        return f"http://{self.bind_host}:{container.labels[f'{L}port']}"

    def _write(self, service: str, environment: str, state: dict, log: Log, only: list | None = None) -> None:
        """Write the upstream and reload: `only` these instances (equal shares, mid-rollout), or the
        stable and new groups with state['weight']% of requests to new."""
        state["generation"] = int(state.get("generation", 0)) + 1
        if only is not None:
            servers = [(c, 1) for c in only]
        else:
            stable = self._instances(service, environment, state["stable"]["digest"]) if state.get("stable") else []
            new = self._instances(service, environment, state["new"]["digest"]) if state.get("new") else []
            stable = [c for c in stable if c.status == "running"]
            new = [c for c in new if c.status == "running"]
            weight = int(state.get("weight", 0)) if new else 0
            if not stable:
                weight = 100
            servers = []
            # w% to new: each new server w*N, each stable one (100-w)*M -> exactly w% in all.
            if weight < 100:
                servers += [(c, (100 - weight) * max(len(new), 1) if weight else 1) for c in stable]
            if weight > 0:
                servers += [(c, weight * max(len(stable), 1) if weight < 100 else 1) for c in new]
        if not servers:
            raise PlatformError(f"{service}/{environment}: no running instance to send traffic to")
        name = f"dp_{service}_{environment}"
        lines = [f"# deploy-state: {json.dumps(state, sort_keys=True)}",
                 f"# written by deploy_pipelines: {service} in {environment}; do not edit",
                 f"upstream {name} {{"]
        lines += [f"    server {self.bind_host}:{c.labels[f'{L}port']} weight={w} max_fails=0;  "
                  f"# {c.labels[f'{L}version']}" for c, w in servers]
        lines += ["    keepalive 32;", "}", "server {",
                  f"    listen {self.bind_host}:{state['port']} reuseport;",
                  f"    location = /__deploy_generation {{ return 200 \"{state['generation']}\"; }}",
                  "    location / {",
                  f"        proxy_pass http://{name};",
                  "        proxy_http_version 1.1;",
                  '        proxy_set_header Connection "";',
                  "        proxy_set_header Host $host;",
                  "        proxy_next_upstream error timeout http_502 non_idempotent;",
                  "        proxy_next_upstream_tries 3;",
                  "        proxy_connect_timeout 2s;",
                  "    }", "}", ""]
        conf = self._conf(service, environment)
        conf.parent.mkdir(parents=True, exist_ok=True)
        tmp = conf.with_suffix(".tmp")
        tmp.write_text("\n".join(lines))
        tmp.replace(conf)
        self._reload(state, log)
        self._write_targets(service, environment, state)

    def _nginx(self, *args: str) -> None:
        prefix = Path(self.nginx_prefix)
        proc = subprocess.run([self.nginx_binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), *args],
                              capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise PlatformError(f"nginx {' '.join(args)} failed: {proc.stderr.strip()[-800:]}")

    def _reload(self, state: dict, log: Log) -> None:
        self._nginx("-t", "-q")
        self._nginx("-s", "reload")
        url = f"http://{self.bind_host}:{state['port']}/__deploy_generation"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                # A fresh connection each time: only new workers have the new generation.
                if httpx.get(url, timeout=1, headers={"Connection": "close"}).text == str(state["generation"]):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise PlatformError(f"nginx did not load generation {state['generation']} within 15s")

    def _write_targets(self, service: str, environment: str, state: dict) -> None:
        if not self.prometheus_targets_dir:
            return
        tracks = {}
        for track in ("stable", "new", "previous"):
            if state.get(track):
                tracks.setdefault(state[track]["digest"], track)
        groups = []
        for c in self._instances(service, environment):
            if c.status != "running":
                continue
            groups.append({"targets": [f"{self.bind_host}:{c.labels[f'{L}port']}"],
                           "labels": {"service": service, "environment": environment,
                                      "version": c.labels[f"{L}version"],
                                      "track": tracks.get(c.labels[f"{L}digest"], "other")}})
        d = Path(self.prometheus_targets_dir)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{service}-{environment}.json.tmp"
        tmp.write_text(json.dumps(groups))
        tmp.replace(d / f"{service}-{environment}.json")

    def _start(self, service: str, environment: str, release: dict, env: dict[str, str], health_path: str,
               health_timeout: float, log: Log):
        port = _free_port(self.bind_host)
        labels = {f"{L}service": service, f"{L}environment": environment, f"{L}version": release["version"],
                  f"{L}digest": release["digest"], f"{L}run_id": release.get("run_id", ""), f"{L}port": str(port),
                  f"{L}health": health_path}
        client = self._client()
        try:
            client.images.get(release["image"])
        except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound
            client.images.pull(release["image"])
        name = f"{service}-{environment}-{re.sub(r'[^A-Za-z0-9_.-]', '_', release['version'])}-{secrets.token_hex(3)}"
        container = client.containers.run(release["image"], detach=True, name=name, network_mode="host",
                                          # APP_VERSION is the platform's to set: an instance
                                          # cloned from another release must not inherit it.
                                          environment={**env, "PORT": str(port), "BIND": self.bind_host,
                                                       "APP_VERSION": release["version"]},
                                          labels=labels, stop_signal="SIGTERM")
        self._wait_healthy(container, health_path, health_timeout)
        log(f"instance {name} ({release['version']}) healthy on :{port}")
        return container

    def _wait_healthy(self, container, path: str, timeout: float) -> None:
        url = self._url(container) + path
        deadline = time.monotonic() + timeout
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
                logs = container.logs(tail=20).decode(errors="replace")
                break
            time.sleep(0.1)
        else:
            logs = container.logs(tail=20).decode(errors="replace")
        container.remove(force=True)
        raise PlatformError(f"instance {container.name} not healthy at {path} within {timeout:.0f}s "
                            f"(last: {last}); its log:\n{logs}")

    def _stop(self, containers, log: Log) -> None:
        if not containers:
            return
        time.sleep(DRAIN_SECONDS)   # requests already routed to them finish first
        for c in containers:
            try:
                c.stop(timeout=10)
                c.remove(force=True)
                log(f"instance {c.name} ({c.labels.get(f'{L}version')}) stopped")
            except Exception as exc:  # noqa: BLE001 - already gone is fine
                if "No such container" not in str(exc) and "no such container" not in str(exc):
                    raise

    @staticmethod
    def _env_of(container) -> dict[str, str]:
        env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"] if "=" in e)
        for k in ("PORT", "BIND", "APP_VERSION", "PATH", "HOSTNAME", "container", "HOME", "PYTHONUNBUFFERED"):
            env.pop(k, None)
        return env

    # ------------------------------------------------------------------ Platform API
    def current(self, service: str, environment: str) -> Release | None:
        state = self._state(service, environment)
        return _release(state.get("stable"), service, environment, state.get("previous"))

    def public_url(self, service: str, environment: str) -> str:
        state = self._state(service, environment)
        return f"http://{self.bind_host}:{state['port']}" if state.get("port") else ""

    def endpoints(self, service: str, environment: str, track: str = "new") -> list[str]:
        state = self._state(service, environment)
        rel = state.get(track) or (state.get("stable") if track == "new" else None)
        if not rel:
            return []
        return [self._url(c) for c in self._instances(service, environment, rel["digest"]) if c.status == "running"]

    def deploy(self, spec: DeploySpec, log: Log) -> DeployResult:
        s, e = spec.service, spec.environment
        state = self._state(s, e)
        state["port"] = spec.port
        new = {"version": spec.version, "digest": spec.digest, "image": spec.image, "run_id": spec.run_id}
        stable = state.get("stable")
        previous_release = _release(stable, s, e)
        if state.get("new") and state["new"]["digest"] != spec.digest:
            log(f"a previous attempt left {state['new']['version']} behind: removing it first")
            self.abort(s, e, "superseded by a new deploy", log)
            state = self._state(s, e) | {"port": spec.port}
        if stable and stable["digest"] == spec.digest and not state.get("new"):
            log(f"{spec.version} ({spec.digest[:19]}) already serves: nothing to deploy")
            state["new"] = new
            state["weight"] = 100
            self._write(s, e, state, log)
        elif not stable or spec.strategy == "rolling":
            state.update(new=new, weight=100 if not stable else state.get("weight", 0), mode=spec.strategy)
            self._roll(spec, state, new, log)
        else:
            # blue-green / canary: the new version starts beside stable with no user traffic.
            state.update(new=new, weight=0, mode=spec.strategy)
            have = [c for c in self._instances(s, e, spec.digest) if c.status == "running"]
            for _ in range(spec.replicas - len(have)):
                self._start(s, e, new, spec.env, spec.health_path, spec.health_timeout, log)
            self._write(s, e, state, log)
            log(f"{spec.strategy}: {spec.replicas} instance(s) of {spec.version} ready beside "
                f"{stable['version']}, no user traffic yet")
        return DeployResult(new=_release(new, s, e, stable), previous=previous_release, strategy=spec.strategy,
                            endpoints=self.endpoints(s, e, "new"), public_url=self.public_url(s, e))

    def _roll(self, spec: DeploySpec, state: dict, target: dict, log: Log, replace: str | None = None) -> None:
        """Replace the instances of digest `replace` (default: stable's) by instances of target,
        max_surge / max_unavailable at a time; instances leave the upstream before they stop."""
        s, e = spec.service, spec.environment
        surge, unavailable = max(spec.max_surge, 0), max(spec.max_unavailable, 0)
        replace = replace or (state.get("stable") or {}).get("digest")

        def running(digest):
            return [c for c in self._instances(s, e, digest) if c.status == "running"] if digest else []

        while True:
            mine, others = running(target["digest"]), running(replace)
            if len(mine) >= spec.replicas and not others:
                break
            # Scale the old version down as far as the availability floor allows (replicas -
            # max_unavailable in service); they leave the upstream before they stop.
            n_down = min(len(others), len(mine) + len(others) - (spec.replicas - unavailable))
            if n_down > 0:
                victims, others = others[:n_down], others[n_down:]
                if mine + others:       # (replicas 1 with max_unavailable 1: an accepted gap)
                    self._write(s, e, state, log, only=mine + others)
                self._stop(victims, log)
                self._write_targets(s, e, state)   # stopped instances leave Prometheus' targets too
            # Scale the new version up as far as the surge ceiling allows (replicas + max_surge
            # running); each is healthy before it joins the upstream.
            n_up = min(spec.replicas - len(mine), spec.replicas + surge - (len(mine) + len(others)))
            for _ in range(max(n_up, 0)):
                mine.append(self._start(s, e, target, spec.env, spec.health_path, spec.health_timeout, log))
            if n_down <= 0 and n_up <= 0:
                raise PlatformError(f"{s}/{e}: rolling update cannot progress (max_surge {surge}, "
                                    f"max_unavailable {unavailable}, {len(mine)} new / {len(others)} old running)")
            if n_up > 0:
                self._write(s, e, state, log, only=mine + others)
        state["weight"] = 100
        self._write(s, e, state, log, only=running(target["digest"]))
        log(f"rolling: all {spec.replicas} instance(s) run {target['version']}")

    def set_weight(self, service: str, environment: str, weight: int, log: Log) -> None:
        state = self._state(service, environment)
        if not state.get("new"):
            raise PlatformError(f"{service}/{environment}: no new version to send traffic to")
        state["weight"] = max(0, min(100, int(weight)))
        self._write(service, environment, state, log)
        log(f"traffic: {state['weight']}% {state['new']['version']}, "
            f"{100 - state['weight']}% {(state.get('stable') or {}).get('version', '-')}")

    def promote(self, service: str, environment: str, log: Log, keep_previous_seconds: float = 0) -> Release:
        state = self._state(service, environment)
        if not state.get("new"):
            current = self.current(service, environment)
            if current is None:
                raise PlatformError(f"{service}/{environment}: nothing to promote")
            log(f"{current.version} is already stable")
            return current
        if state.get("weight") != 100:
            state["weight"] = 100
            self._write(service, environment, state, log)
        old, new = state.get("stable"), state["new"]
        # An older warm release is replaced by this one's predecessor.
        older = state.get("previous")
        if old and old["digest"] != new["digest"]:
            state["previous"] = old
        state.update(stable=new, new=None, weight=0, mode=None)
        if keep_previous_seconds and old:
            state["previous_expires"] = time.time() + keep_previous_seconds
        self._write(service, environment, state, log)
        if old and old["digest"] != new["digest"] and not keep_previous_seconds:
            self._stop(self._instances(service, environment, old["digest"]), log)
        if older and older["digest"] not in (new["digest"], (old or {}).get("digest")):
            self._stop(self._instances(service, environment, older["digest"]), log)
        if keep_previous_seconds and old:
            log(f"{old['version']} kept warm for {keep_previous_seconds:.0f}s as the instant rollback target")
        return _release(new, service, environment, old)

    def abort(self, service: str, environment: str, reason: str, log: Log) -> Release | None:
        state = self._state(service, environment)
        new, stable = state.get("new"), state.get("stable")
        if not new:
            return self.current(service, environment)
        bad = self._instances(service, environment, new["digest"])
        if stable is None:
            # The very first release failed: nothing to go back to; stop serving the bad one.
            self._conf(service, environment).unlink(missing_ok=True)
            self._nginx("-s", "reload")
            self._stop(bad, log)
            log(f"aborted {new['version']}: {reason}; nothing was stable before")
            return None
        running_stable = [c for c in self._instances(service, environment, stable["digest"]) if c.status == "running"]
        if running_stable:
            state.update(new=None, weight=0)
            self._write(service, environment, state, log)      # traffic back to stable at once
            log(f"aborted: traffic 100% on {stable['version']} again ({reason})")
            self._stop(bad, log)
        else:
            # Rolling already replaced stable: roll stable's image back in, instance by instance.
            template = bad[0] if bad else None
            env = self._env_of(template) if template else {}
            spec = DeploySpec(service=service, environment=environment, version=stable["version"],
                              image=stable["image"], digest=stable["digest"], run_id=stable.get("run_id", ""),
                              replicas=max(len(bad), 1), port=state["port"],
                              health_path=(template.labels.get(f"{L}health", "/health") if template else "/health"),
                              env=env)
            log(f"aborting: rolling {stable['version']} back in ({reason})")
            self._roll(spec, state, stable, log, replace=new["digest"])
            state.update(stable=stable, new=None, weight=0)
            self._write(service, environment, state, log)
        self._write_targets(service, environment, state)
        return _release(stable, service, environment, state.get("previous"))

    def rollback(self, service: str, environment: str, log: Log, to_image: str | None = None,
                 to_version: str | None = None) -> Release:
        state = self._state(service, environment)
        stable = state.get("stable")
        if not stable:
            raise PlatformError(f"{service}/{environment}: nothing runs")
        if state.get("new"):
            self.abort(service, environment, "rollback requested", log)
            state = self._state(service, environment)
        target = state.get("previous")
        if to_image:
            digest = to_image.split("@", 1)[1] if "@" in to_image else ""
            target = {"version": to_version or digest[:19], "digest": digest, "image": to_image, "run_id": ""}
        if not target:
            raise PlatformError(f"{service}/{environment}: no previous release to roll back to")
        if target["digest"] == stable["digest"]:
            log(f"{stable['version']} already serves")
            return _release(stable, service, environment, state.get("previous"))
        warm = [c for c in self._instances(service, environment, target["digest"]) if c.status == "running"]
        current = [c for c in self._instances(service, environment, stable["digest"]) if c.status == "running"]
        if warm:
            log(f"{target['version']} is warm ({len(warm)} instance(s)): switching traffic back at once")
            state.update(new=target, weight=100)
            self._write(service, environment, state, log)
            log(f"traffic: 100% {target['version']} (warm rollback), 0% {stable['version']}")
        else:
            template = current[0] if current else None
            spec = DeploySpec(service=service, environment=environment, version=target["version"],
                              image=target["image"], digest=target["digest"], replicas=max(len(current), 1),
                              port=state["port"], env=self._env_of(template) if template else {},
                              health_path=template.labels.get(f"{L}health", "/health") if template else "/health")
            log(f"redeploying {target['version']} from {target['image']}")
            self._roll(spec, state, target, log, replace=stable["digest"])
        state.update(stable=target, previous=stable, new=None, weight=0)
        state.pop("previous_expires", None)
        self._write(service, environment, state, log)
        self._stop([c for c in self._instances(service, environment, stable["digest"]) if c.status == "running"]
                   if warm else [], log)
        return _release(target, service, environment, stable)

    def cleanup(self, service: str, environment: str, log: Log) -> list[str]:
        state = self._state(service, environment)
        expires = state.get("previous_expires")
        prev = state.get("previous")
        if not prev or not expires or time.time() < expires:
            return []
        victims = self._instances(service, environment, prev["digest"])
        state.pop("previous_expires", None)
        self._write(service, environment, state, log)
        self._stop(victims, log)
        return [c.name for c in victims]
