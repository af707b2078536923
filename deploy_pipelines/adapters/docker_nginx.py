"""The nginx side of the Docker platform: the proxy container of one target, its config (three
listeners: public weighted, preview = new only, stable only) written through the Engine API and
reloaded with SIGHUP, each reload confirmed by the generation marker it serves, the deploy state
read back from the config's header line, and the Prometheus file_sd targets.

`NginxProxy` is a mixin of `DockerNginxPlatform` (docker_platform.py): it uses the platform's
`client`, `host`, `where`, `service`, `environment`, `nginx_image`, `bind_host`, `prometheus_targets_dir`,
`proxy_name`, `_labels`, `_instances` and `_written`."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import socket
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy_pipelines.adapters.platform import Log, PlatformError

CONF_DIR = "/etc/deploy-nginx"
NGINX_MAIN = """# written by deploy_pipelines
worker_processes 2;
daemon off;
pid /tmp/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 5s;
    include /etc/deploy-nginx/conf.d/*.conf;
}
"""


@dataclass
class Instance:
    id: str
    name: str
    version: str
    digest: str
    running: bool
    host_port: int | None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tar(files: dict[str, str], mode: int = 0o644, owner: int = 0) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            info.uid = info.gid = owner
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _put(container, path: str, files: dict[str, str], **kw) -> None:
    """put_archive, retried: under load the Podman API can fail the copy itself ("passing bulk
    input to subprocess: broken pipe", HTTP 500). Writing the same files again is harmless."""
    import docker.errors

    for attempt in range(3):
        try:
            container.put_archive(path, _tar(files, **kw))
            return
        except docker.errors.APIError as exc:
            if attempt == 2 or not exc.is_server_error():
                raise
            time.sleep(0.5 * (attempt + 1))


def _marker(state: dict) -> str:
    """What the config serves at /__deploy_generation: confirms a reload, and that a cached state is current."""
    return f"{state['generation']}.{state.get('nonce', '')}"



class NginxProxy:
    """Managed nginx container of one target (mixin of DockerNginxPlatform)."""

    def _proxy(self):
        import docker

        try:
            return self.client.containers.get(self.proxy_name)
        except docker.errors.NotFound:
            return None

    def _state(self) -> dict:
        """The deploy state, from the proxy's config. What this resource wrote last is reused while
        nginx still serves that generation (one HTTP request instead of an archive read: half of a
        traffic change's latency); any other writer bumps the generation and forces a read."""
        if self._written is not None:
            try:
                served = httpx.get(f"http://{self.host}:{self._written['port']}/__deploy_generation", timeout=2,
                                   headers={"Connection": "close"}).text
                if served == _marker(self._written):
                    return json.loads(json.dumps(self._written))
            except httpx.HTTPError:
                pass
            self._written = None
        proxy = self._proxy()
        if proxy is None:
            return {}
        try:
            stream, _ = proxy.get_archive(f"{CONF_DIR}/conf.d/target.conf")
        except Exception:  # noqa: BLE001 - docker.errors.NotFound: created but never written
            return {}
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.getmembers()[0]
            text = tar.extractfile(member).read().decode()
        m = re.search(r"^# deploy-state: (.*)$", text, re.M)
        return json.loads(m.group(1)) if m else {}

    # ------------------------------------------------------------------ nginx
    def _config(self, state: dict, only: list[Instance] | None, running: list[Instance]) -> str:
        """The whole target config: public listener (weighted), preview (new only), stable (stable only)."""
        stable = [c for c in running if state.get("stable") and c.digest == state["stable"]["digest"]]
        new = [c for c in running if state.get("new") and c.digest == state["new"]["digest"]]
        if only is not None:
            public = [(c, 1) for c in only]
        else:
            weight = int(state.get("weight", 0)) if new else 0
            if not stable:
                weight = 100
            public = []
            # w% to new: each new server w*M, each stable one (100-w)*N -> exactly w% in all.
            if weight < 100:
                public += [(c, (100 - weight) * max(len(new), 1) if weight else 1) for c in stable]
            if weight > 0:
                public += [(c, weight * max(len(stable), 1) if weight < 100 else 1) for c in new]
        if not public:
            raise PlatformError(f"{self.where}: no running instance to send traffic to")
        name = f"dp_{self.service}_{self.environment}"
        lines = [f"# deploy-state: {json.dumps(state, sort_keys=True)}",
                 f"# written by deploy_pipelines: {self.service} in {self.environment}; do not edit"]
        blocks = [(name, state["port"], public), (f"{name}_preview", state["preview_port"], [(c, 1) for c in new or stable]),
                  (f"{name}_stable", state["stable_port"], [(c, 1) for c in stable or new or [c for c, _ in public]])]
        for upstream, port, servers in blocks:
            lines += [f"upstream {upstream} {{"]
            lines += [f"    server {self.bind_host}:{c.host_port} weight={w} max_fails=0;  # {c.version}"
                      for c, w in servers]
            lines += ["    keepalive 32;", "}", "server {",
                      f"    listen {self.bind_host}:{port} reuseport;",
                      f"    location = /__deploy_generation {{ return 200 \"{_marker(state)}\"; }}",
                      "    location / {",
                      f"        proxy_pass http://{upstream};",
                      "        proxy_http_version 1.1;",
                      '        proxy_set_header Connection "";',
                      "        proxy_set_header Host $host;",
                      "        proxy_next_upstream error timeout http_502 non_idempotent;",
                      "        proxy_next_upstream_tries 3;",
                      "        proxy_connect_timeout 2s;",
                      "    }", "}"]
        return "\n".join(lines) + "\n"

    def _write(self, state: dict, log: Log, only: list[Instance] | None = None) -> None:
        """Write the target's config and reload nginx: `only` these instances (equal shares,
        mid-rollout), or stable and new with state['weight']% of requests to new."""
        state["generation"] = int(state.get("generation", 0)) + 1
        state["nonce"] = secrets.token_hex(4)      # two writers from one base never serve the same marker
        # Probed on this machine: right for a local or loopback Docker host; for a remote host the
        # ports are only checked when nginx binds them (a clash fails the reload, naming the port).
        for key in ("preview_port", "stable_port"):
            if not state.get(key):
                state[key] = _free_port(self.bind_host)
        running = self._instances(running=True)
        text = self._config(state, only, running)
        proxy = self._proxy() or self._create_proxy()
        _put(proxy, f"{CONF_DIR}/conf.d", {"target.conf": text})
        if proxy.status != "running":
            proxy.start()
        else:
            proxy.kill(signal="SIGHUP")
        self._confirm(proxy, state)
        self._written = json.loads(json.dumps(state))
        self._write_targets(state, running)

    def _create_proxy(self):
        """Create (not start) the nginx container: the first _write puts the config, then starts it."""
        image = self.nginx_image or os.environ.get("DEPLOY_NGINX_IMAGE", "")
        if not image:
            raise PlatformError(f"{self.where}: no nginx image: set environments.{self.environment}.docker.nginx_image "
                                "(or $DEPLOY_NGINX_IMAGE; `deploy-pipelines stack up` builds one)")
        try:
            self.client.images.get(image)
        except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound
            self.client.images.pull(image)
        proxy = self.client.containers.create(
            image, name=self.proxy_name, network_mode="host", labels=self._labels("proxy"),
            command=["nginx", "-c", f"{CONF_DIR}/nginx.conf"])
        _put(proxy, "/", {f"{CONF_DIR.lstrip('/')}/nginx.conf": NGINX_MAIN, f"{CONF_DIR.lstrip('/')}/conf.d/.keep": ""})
        return proxy

    def _confirm(self, proxy, state: dict) -> None:
        url = f"http://{self.host}:{state['port']}/__deploy_generation"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                # A fresh connection each time: only new workers have the new generation.
                if httpx.get(url, timeout=1, headers={"Connection": "close"}).text == _marker(state):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
        proxy.reload()
        check = proxy.exec_run(["nginx", "-t", "-q", "-c", f"{CONF_DIR}/nginx.conf"])
        why = check.output.decode(errors="replace").strip()[-800:] if check.exit_code else f"state {proxy.status}"
        raise PlatformError(f"{self.where}: nginx did not load generation {state['generation']} within 15s: {why}")

    def _write_targets(self, state: dict, running: list[Instance] | None = None) -> None:
        """Prometheus file_sd targets: every running instance with service, environment, version, track."""
        if not self.prometheus_targets_dir:
            return
        tracks = {}
        for track in ("stable", "new", "previous"):
            if state.get(track):
                tracks.setdefault(state[track]["digest"], {"new": "canary"}.get(track, track))
        groups = [{"targets": [f"{self.host}:{c.host_port}"],
                   "labels": {"service": self.service, "environment": self.environment, "version": c.version,
                              "track": tracks.get(c.digest, "other")}}
                  for c in (self._instances(running=True) if running is None else running) if c.host_port]
        d = Path(self.prometheus_targets_dir)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{self.service}-{self.environment}.json.tmp"
        tmp.write_text(json.dumps(groups))
        tmp.replace(d / f"{self.service}-{self.environment}.json")
