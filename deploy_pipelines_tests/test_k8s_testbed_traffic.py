"""Traffic on the Kubernetes test bed: a Service is served through a real nginx on a loopback port
with its ready endpoints, and an Istio VirtualService over DestinationRule subsets splits the
requests by its weights (80/20 over 2 stable pods and 1 canary: exact shares, not per-pod), a
weight change moves traffic, and an endpoint that stops being ready leaves the upstream.
The pods are in-process HTTP servers registered as the kubelet would (pods/status Ready, the
test bed's port annotation), so this runs without containers; real pods behind a Service are
covered in test_k8s_testbed_pods.py. Share tolerance: nginx runs 2 workers, each with its own
smooth weighted round-robin, so over 200 requests a share is off by a few requests at most."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from kubernetes import client, config

from deploy_pipelines.stack.nginx import NginxServer
from deploy_pipelines_tests.k8s_testbed import TestCluster

pytestmark = pytest.mark.k8s
NS = "video-platform"
ISTIO = ("networking.istio.io", "v1beta1", NS)


def app(version: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("X-App-Version", version)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    nginx = NginxServer.start(tmp_path_factory.mktemp("nginx"))
    apps = {name: app(version) for name, version in
            (("web-stable-a", "v1"), ("web-stable-b", "v1"), ("web-canary", "v2"))}
    try:
        with TestCluster(tmp_path_factory.mktemp("k8s"), namespaces=("default", NS),
                         nginx_prefix=nginx.state_dir) as cluster:
            api = config.new_client_from_config(str(cluster.kubeconfig))
            yield cluster, client.CoreV1Api(api), client.CustomObjectsApi(api), apps
            assert cluster.errors() == []
    finally:
        for server in apps.values():
            server.shutdown()
        nginx.stop()


def be_kubelet(core, name: str, port: int, ready: bool) -> None:
    core.patch_namespaced_pod(name, NS, {"metadata": {"annotations": {
        "testbed.deploy-pipelines/ports": json.dumps({"8080": port})}}})
    core.patch_namespaced_pod_status(name, NS, {"status": {"phase": "Running", "podIP": "127.0.0.1", "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})


# A new connection per request, as the load generator's users: nginx balances connections.
USERS = httpx.Client(timeout=5, headers={"Connection": "close"}, limits=httpx.Limits(max_keepalive_connections=0))


def shares(url: str, n: int = 200) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _ in range(n):
        v = USERS.get(url).headers["X-App-Version"]
        counts[v] = counts.get(v, 0) + 1
    return counts


def settle(url: str, predicate, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate(shares(url, 20)):
                return
        except (httpx.HTTPError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"traffic never settled at {url}")


def test_istio_weights_split_service_traffic(world):
    cluster, core, custom, apps = world
    for name, server in apps.items():
        track = "canary" if "canary" in name else "stable"
        core.create_namespaced_pod(NS, {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "labels": {"app": "web", "track": track}}, "spec": {"containers": [
                {"name": "web", "image": f"registry.invalid/web:{track}", "ports": [{"containerPort": 8080}]}]}})
        be_kubelet(core, name, server.server_address[1], ready=True)
    core.create_namespaced_service(NS, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80,
                                                                                       "targetPort": 8080}]}})
    url = cluster.service_url(NS, "web") + "/"
    settle(url, lambda c: set(c) == {"v1", "v2"})
    plain = shares(url, 150)
    assert abs(plain["v2"] - 50) <= 6                    # 1 of 3 endpoints, no VirtualService

    custom.create_namespaced_custom_object(*ISTIO, "destinationrules", {
        "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule", "metadata": {"name": "web"},
        "spec": {"host": "web", "subsets": [{"name": "stable", "labels": {"track": "stable"}},
                                            {"name": "canary", "labels": {"track": "canary"}}]}})
    custom.create_namespaced_custom_object(*ISTIO, "virtualservices", {
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": {"name": "web"},
        "spec": {"hosts": ["web"], "http": [{"route": [
            {"destination": {"host": "web", "subset": "stable"}, "weight": 80},
            {"destination": {"host": "web", "subset": "canary"}, "weight": 20}]}]}})
    settle(url, lambda c: c.get("v2", 0) <= 8)
    split = shares(url)
    assert abs(split["v2"] - 40) <= 6, split             # 20% of 200, not the 1/3 of pod counting

    custom.patch_namespaced_custom_object(*ISTIO[:2], NS, "virtualservices", "web", {"spec": {"http": [{"route": [
        {"destination": {"host": "web", "subset": "stable"}, "weight": 0},
        {"destination": {"host": "web", "subset": "canary"}, "weight": 100}]}]}})
    settle(url, lambda c: c == {"v2": 20})
    assert shares(url, 100) == {"v2": 100}

    # The canary stops being ready: Endpoints drop it, and with it the only weighted subset.
    be_kubelet(core, "web-canary", apps["web-canary"].server_address[1], ready=False)
    custom.patch_namespaced_custom_object(*ISTIO[:2], NS, "virtualservices", "web", {"spec": {"http": [{"route": [
        {"destination": {"host": "web", "subset": "stable"}, "weight": 100}]}]}})
    settle(url, lambda c: c == {"v1": 20})
    ep = core.read_namespaced_endpoints("web", NS)
    assert [a.target_ref.name for s in ep.subsets for a in (s.not_ready_addresses or [])] == ["web-canary"]
