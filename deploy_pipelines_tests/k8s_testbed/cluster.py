"""One test-bed cluster: the API server on a free loopback port, the controllers, and (with a
Podman API socket) the kubelet; a kubeconfig the real clients load. Everything it starts is a
thread of the test process or a container labelled with the cluster's id, removed on stop."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import yaml

from deploy_pipelines_tests.k8s_testbed.controllers import Controllers
from deploy_pipelines_tests.k8s_testbed.kubelet import Kubelet
from deploy_pipelines_tests.k8s_testbed.resources import BY_PATH
from deploy_pipelines_tests.k8s_testbed.server import ApiServer
from deploy_pipelines_tests.k8s_testbed.services import ServiceProxy
from deploy_pipelines_tests.k8s_testbed.store import Store

NAMESPACES = BY_PATH[("", "v1", "namespaces")]


class TestCluster:
    __test__ = False        # not a pytest class

    def __init__(self, state_dir: Path, docker_host: str | None = None, namespaces=("default",),
                 context: str = "testbed", backoff_seconds: float = 1.0, nginx_prefix: Path | None = None):
        self.state_dir = Path(state_dir)
        self.context = context
        self.id = secrets.token_hex(4)
        self.store = Store()
        self.kubelet = Kubelet(self.store, docker_host, self.id, backoff_seconds) if docker_host else None
        self.server = ApiServer(self.store, self.kubelet)
        self.controllers = Controllers(self.store, job_backoff_seconds=backoff_seconds)
        self.proxy = ServiceProxy(self.store, nginx_prefix, self.id) if nginx_prefix else None
        self._thread = threading.Thread(target=self.server.serve_forever, name="testbed-api", daemon=True)
        for ns in namespaces:
            self.create_namespace(ns)

    def create_namespace(self, name: str) -> None:
        if self.store.find(NAMESPACES, "", name) is None:
            self.store.create(NAMESPACES, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
                                               "spec": {"finalizers": ["kubernetes"]}})

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    def start(self) -> "TestCluster":
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        self.controllers.start()
        if self.kubelet:
            self.kubelet.start()
        if self.proxy:
            self.proxy.start()
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": self.context,
            "clusters": [{"name": self.context, "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "testbed-token"}}],
            "contexts": [{"name": self.context, "context": {"cluster": self.context, "user": "tester",
                                                            "namespace": "default"}}]}))
        return self

    def stop(self) -> None:
        self.store.drop_watches()
        if self.proxy:
            self.proxy.stop()
        if self.kubelet:
            self.kubelet.stop()
        self.controllers.stop()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "TestCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def errors(self) -> list[str]:
        """What the controllers and kubelet could not do (a test asserts this is empty)."""
        return [*self.controllers.errors, *(self.kubelet.errors if self.kubelet else []),
                *(self.proxy.errors if self.proxy else [])]

    def service_url(self, namespace: str, name: str) -> str:
        """Where a Service answers (its nginx listener on 127.0.0.1)."""
        return self.proxy.url(namespace, name)
