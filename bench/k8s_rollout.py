"""Kubernetes platform: time from the Deployment becoming available to `deploy()` returning, for
rolling releases on the test bed (issue 9, BENCHMARKS.md). The platform follows the rollout by a
watch; this measures what that costs after the fact the user cares about.

On a local stack of its own (temp folder, free ports) and a test-bed cluster (pods as Podman
containers, the Service through the stack's nginx): the sample service's v1.0.0 then, per round,
a rolling release of the other version (2 replicas, maxSurge 1 / maxUnavailable 0). An observer
thread holds its OWN watch on the Deployment and records when it first sees the rollout complete
(the platform's criterion: observedGeneration, updated = ready = available = replicas, Progressing
NewReplicaSetAvailable); the gap is `deploy()`'s return minus that moment.

Run (from the repository root):
    .venv/bin/python -m bench.k8s_rollout [--rounds 5] [--out bench/results/k8s_rollout.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


class Observer(threading.Thread):
    """Its own watch of one Deployment: the first moment each generation is complete."""

    def __init__(self, platform, name: str):
        super().__init__(daemon=True)
        self.platform, self.name, self.stop = platform, name, threading.Event()
        self.complete_at: dict[int, float] = {}

    def run(self) -> None:
        from kubernetes import watch

        from deploy_pipelines.adapters.k8s_platform import KubernetesPlatform
        while not self.stop.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(self.platform.apps.list_namespaced_deployment, self.platform.namespace,
                                   field_selector=f"metadata.name={self.name}", timeout_seconds=5):
                    d = self.platform._dict(ev["object"])   # noqa: SLF001 - same serialization as the platform
                    if KubernetesPlatform._complete(d):     # noqa: SLF001 - the very same criterion
                        self.complete_at.setdefault(d["metadata"]["generation"], time.time())
                    if self.stop.is_set():
                        w.stop()
            except Exception:  # noqa: BLE001 - a dropped watch: watch again
                time.sleep(0.1)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    from deploy_pipelines.adapters.buildah import BuildahBuilder
    from deploy_pipelines.adapters.k8s_platform import KubernetesPlatform
    from deploy_pipelines.adapters.records import Probe, Workload
    from deploy_pipelines.catalog.models import Rolling
    from deploy_pipelines.stack.local import LocalStack
    from deploy_pipelines.stack.process import free_port
    from deploy_pipelines_tests.k8s_testbed import TestCluster

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="bench-k8s-"))
    stack = LocalStack(tmp / "stack")
    quiet = lambda *_: None  # noqa: E731
    rounds = []
    try:
        env = stack.up(log=quiet)
        images = {}
        for version in ("v1.0.0", "v1.1.0"):
            src = tmp / f"src-{version}"
            shutil.copytree(REPO_ROOT / "examples" / "sample-service", src,
                            ignore=shutil.ignore_patterns("__pycache__"))
            (src / "release.py").write_text(f'VERSION = "{version}"\nFAULT_RATE = 0.0\nEXTRA: dict = {{}}\n')
            built = BuildahBuilder().build_and_push(src, "Containerfile", f"{env['DEPLOY_REGISTRY']}/bench/sample",
                                                    version, {"BASE_IMAGE": env["DEPLOY_BASE_IMAGE"]}, {})
            images[version] = (built.ref, built.digest)
        with TestCluster(tmp / "cluster", docker_host=env["DEPLOY_DOCKER_HOST"], namespaces=("default", "bench"),
                         nginx_prefix=Path(env["DEPLOY_NGINX_PREFIX"])) as cluster:
            platform = KubernetesPlatform(service="web", environment="bench", public_port=free_port(),
                                          namespace="bench", kubeconfig=str(cluster.kubeconfig),
                                          context=cluster.context, service_type="LoadBalancer", drain=1.0)

            def workload(version: str, n: int) -> Workload:
                ref, digest = images[version]
                return Workload(version=version, image=ref, digest=digest, run_id=f"bench-{n}", replicas=2,
                                readiness=Probe(path="/ready", timeout=60))

            platform.deploy(workload("v1.0.0", 0), Rolling(), quiet)
            platform.promote(quiet)
            observer = Observer(platform, platform.app)
            observer.start()
            for i in range(args.rounds):
                version = ("v1.1.0", "v1.0.0")[i % 2]
                started = time.time()
                platform.deploy(workload(version, i + 1), Rolling(max_surge=1, max_unavailable=0), quiet)
                returned = time.time()
                platform.promote(quiet)
                generation = platform.apps.read_namespaced_deployment(platform.app, "bench").metadata.generation
                time.sleep(0.5)
                available = observer.complete_at.get(generation)
                rounds.append({"version": version, "rollout_s": round(returned - started, 3),
                               "available_to_return_s": round(returned - available, 3) if available else None})
                print(rounds[-1], flush=True)
            observer.stop.set()
            errors = cluster.errors()
    finally:
        stack.down(log=quiet)
        shutil.rmtree(tmp, ignore_errors=True)
    gaps = [r["available_to_return_s"] for r in rounds if r["available_to_return_s"] is not None]
    result = {"rounds": rounds, "testbed_errors": errors,
              "available_to_return_s": {"median": statistics.median(gaps), "max": max(gaps), "n": len(gaps)}}
    print(json.dumps(result["available_to_return_s"]))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
