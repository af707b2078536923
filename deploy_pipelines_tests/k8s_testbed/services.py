"""kube-proxy (and Istio's sidecars) for the test bed: each Service with a selector is served on a
loopback port by the local stack's nginx, upstream = the ready addresses of its Endpoints (for its
first port), weighted by the VirtualService that routes its host over DestinationRule subsets
when there is one, so user traffic in a test goes where the cluster state says. The port is published as the Service's
`status.loadBalancer.ingress` (127.0.0.1 and the port), as a cloud load balancer would.

Like a real proxy it lags the Endpoints a little (one nginx reload, confirmed by a generation
marker before the next change); pods that must drain use a preStop hook, as in a real cluster.
Config files are conf.d/k8s-testbed-<cluster>-<namespace>-<service>.conf, removed on stop."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx

from deploy_pipelines.stack.process import free_port
from deploy_pipelines_tests.k8s_testbed.controllers import ENDPOINTS, PODS, SERVICES
from deploy_pipelines_tests.k8s_testbed.resources import BY_PATH
from deploy_pipelines_tests.k8s_testbed.store import ApiError, Store

VIRTUALSERVICES = BY_PATH[("networking.istio.io", "v1beta1", "virtualservices")]
DESTINATIONRULES = BY_PATH[("networking.istio.io", "v1beta1", "destinationrules")]


class ServiceProxy:
    def __init__(self, store: Store, nginx_prefix: Path, cluster_id: str):
        self.store, self.prefix, self.cluster_id = store, Path(nginx_prefix), cluster_id
        self.ports: dict[tuple[str, str], int] = {}
        self.written: dict[tuple[str, str], list[str]] = {}
        self.generation = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="testbed-proxy", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for path in self.prefix.joinpath("conf.d").glob(f"k8s-testbed-{self.cluster_id}-*.conf"):
            path.unlink()
        if self.written:
            self._reload(None)

    def url(self, namespace: str, name: str) -> str:
        deadline = time.monotonic() + 10
        while (namespace, name) not in self.ports and time.monotonic() < deadline:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.ports[(namespace, name)]}"

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as exc:  # noqa: BLE001 - keep serving; tests assert errors == []
                self.errors.append(repr(exc))
            self._stop.wait(0.05)

    def sync(self) -> None:
        changed = None
        for svc in self.store.list(SERVICES)[0]:
            if not (svc.get("spec") or {}).get("selector") or not svc["spec"].get("ports"):
                continue
            key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
            if key not in self.ports:
                self.ports[key] = free_port()
                self._publish(svc, self.ports[key])
            servers = self._servers(svc, key)
            if self.written.get(key) != servers:
                self._write(key, servers)
                self.written[key] = servers
                changed = key
        if changed:
            self._reload(self.ports[changed])

    def _servers(self, svc: dict, key: tuple[str, str]) -> list[str]:
        """`ip:port weight=w` per ready endpoint: equal weights, or the split of an Istio
        VirtualService routing this host over DestinationRule subsets (exact, as Envoy's)."""
        ep = self.store.find(ENDPOINTS, *key) or {}
        ready = [(a, s["ports"][0]["port"]) for s in ep.get("subsets") or [] for a in s.get("addresses") or []]
        split = self._istio_split(svc, key)
        if split is None:
            return sorted(f"{a['ip']}:{port} weight=1" for a, port in ready)
        groups = []
        for labels, weight in split:
            members = []
            for a, port in ready:
                pod = self.store.find(PODS, key[0], (a.get("targetRef") or {}).get("name", ""))
                if pod and all((pod["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items()):
                    members.append(f"{a['ip']}:{port}")
            if weight > 0 and members:
                groups.append((members, weight))
        servers = []
        for members, weight in groups:
            # weight% over len(members) servers: each gets weight x (product of the other
            # groups' sizes), so the shares are exact whatever the pod counts.
            others = 1
            for m, _ in groups:
                if m is not members:
                    others *= len(m)
            servers += [f"{m} weight={weight * others}" for m in members]
        return sorted(servers)

    def _istio_split(self, svc: dict, key: tuple[str, str]) -> list[tuple[dict, int]] | None:
        ns, name = key
        hosts = {name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"}
        for vs in self.store.list(VIRTUALSERVICES, ns)[0]:
            if not hosts & set(vs["spec"].get("hosts") or []):
                continue
            routes = (vs["spec"].get("http") or [{}])[0].get("route") or []
            rules = [dr for dr in self.store.list(DESTINATIONRULES, ns)[0] if dr["spec"].get("host") in hosts]
            subsets = {s["name"]: s.get("labels") or {} for dr in rules for s in dr["spec"].get("subsets") or []}
            split = []
            for r in routes:
                dest = r.get("destination") or {}
                if dest.get("host") in hosts:
                    labels = subsets.get(dest.get("subset"), {}) if dest.get("subset") else {}
                    split.append((labels, int(r.get("weight", 100 if len(routes) == 1 else 0))))
            return split
        return None

    def _publish(self, svc: dict, port: int) -> None:
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": "127.0.0.1", "ipMode": "VIP",
                                                       "ports": [{"port": port, "protocol": "TCP"}]}]}}
        try:
            self.store.update(SERVICES, svc["metadata"]["namespace"], svc["metadata"]["name"], svc, "status",
                              check_version=False)
        except ApiError:
            pass

    def _conf(self, key: tuple[str, str]) -> Path:
        return self.prefix / "conf.d" / f"k8s-testbed-{self.cluster_id}-{key[0]}-{key[1]}.conf"

    def _write(self, key: tuple[str, str], servers: list[str]) -> None:
        name = f"k8s_{self.cluster_id}_{key[0]}_{key[1]}".replace("-", "_")
        self.generation += 1
        lines = [f"upstream {name} {{"]
        lines += [f"    server {s} max_fails=0;" for s in servers] or ["    server 127.0.0.1:1 down;"]
        lines += ["}", "server {", f"    listen 127.0.0.1:{self.ports[key]} reuseport;",
                  f'    location = /__testbed_generation {{ return 200 "{self.generation}"; }}',
                  "    location / {", f"        proxy_pass http://{name};", "        proxy_http_version 1.1;",
                  '        proxy_set_header Connection "";',
                  # As a client of a real Service would see it: a refused connection to a pod
                  # that just went is retried on another endpoint.
                  "        proxy_next_upstream error timeout non_idempotent;", "        proxy_connect_timeout 2s;",
                  "    }", "}", ""]
        tmp = self._conf(key).with_suffix(".tmp")
        tmp.write_text("\n".join(lines))
        tmp.replace(self._conf(key))

    def _reload(self, port: int | None) -> None:
        """Validate, SIGHUP, and wait until new connections to `port` see the new generation."""
        conf = self.prefix / "nginx.conf"
        check = subprocess.run(["nginx", "-t", "-q", "-p", str(self.prefix), "-c", str(conf)],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t: {check.stderr.strip()[-500:]}")
        os.kill(int((self.prefix / "nginx.pid").read_text().split()[0]), signal.SIGHUP)
        if port is None:
            return
        want = str(self.generation)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not self._stop.is_set():
            try:
                if httpx.get(f"http://127.0.0.1:{port}/__testbed_generation", timeout=1,
                             headers={"Connection": "close"}).text == want:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
