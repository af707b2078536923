"""Blue-green and canary releases through Dagster on the real stack (podman, nginx, Prometheus),
with a loopback load generator running through each scenario. Each request records which version
answered it (X-App-Version), so the assertions are about users: requests that got no answer,
the share each version served at each canary step, what serves after an abort or a rollback.

Share tolerance: nginx's smooth weighted round-robin is deterministic within a worker, so over n
requests each server's count is off its exact share by less than one pick per server and worker
(4 servers x 2 workers here). With n >= 150 requests in a step that bounds the error at ~5
percentage points; the windows skip 0.5 s after each switch (requests already in flight)."""

import json
import re
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from dagster import DagsterEventType, execute_job, instance_for_test
from dagster._core.definitions.reconstruct import ReconstructableRepository

from deploy_pipelines.loadgen import LoadGenerator, Summary
from deploy_pipelines.stack.process import free_port
from deploy_pipelines_tests.fixtures_stack import demo_repo, load_code_location, local_stack  # noqa: F401

# Several releases under load per test: 7 minutes alone, more beside another module under CI.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
REPO_ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 0.05
SETTLE = 0.5


def catalog_for(tmp: Path, ports: dict[str, int]) -> Path:
    demo = yaml.safe_load((REPO_ROOT / "examples" / "demo" / "deploy.yaml").read_text())
    services = {}
    for name, source in (("can", "shop"), ("bg", "web")):
        svc = demo["services"][source]
        svc["database"]["url"] = {"env": f"PROG_{name.upper()}_DB"}
        svc["targets"] = {"prog": {**svc["targets"]["demo"], "port": ports[name]}}
        services[name] = svc
    for name, (surge, unavailable) in (("vid", (1, 0)), ("lean", (0, 1))):
        svc = json.loads(json.dumps(demo["services"]["app"]))
        svc["database"]["url"] = {"env": f"PROG_{name.upper()}_DB"}
        svc["targets"] = {"prog": {**svc["targets"]["demo"], "port": ports[name], "replicas": 3,
                                   "strategy": {"rolling": {"max_surge": surge, "max_unavailable": unavailable}}}}
        services[name] = svc
    services["can"]["targets"]["prog"]["strategy"] = {"canary": {"steps": [
        {"setWeight": 25, "pause": "3s"}, {"setWeight": 50, "pause": "3s"}, {"setWeight": 100}]}}
    doc = {"project": "prog", "environments": {"prog": demo["environments"]["demo"]}, "services": services,
           "triggers": {"enabled": False}}
    path = tmp / "deploy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def world(local_stack, demo_repo, tmp_path_factory):  # noqa: F811
    stack, env = local_stack
    from deploy_pipelines.stack.postgres import PostgresServer

    pg = PostgresServer.start(stack.root / "postgres")
    tmp = tmp_path_factory.mktemp("prog")
    ports = {name: free_port() for name in ("can", "bg", "vid", "lean")}
    mp = pytest.MonkeyPatch()
    for name in ports:
        pg.create_database(f"prog_{name}")
        mp.setenv(f"PROG_{name.upper()}_DB", pg.url(f"prog_{name}"))
    for k, v in {**env, "DEMO_REPO": str(demo_repo)}.items():
        mp.setenv(k, v)
    catalog = catalog_for(tmp, ports)
    mp.setenv("DEPLOY_CATALOG", str(catalog))
    load_code_location(catalog)
    (tmp / "home").mkdir()
    with instance_for_test(temp_dir=str(tmp / "home")) as instance:
        yield {"instance": instance, "ports": ports, "env": env}
    mp.undo()


def run(world, job: str, config: dict):
    repo = ReconstructableRepository.for_module("deploy_pipelines.definitions", "defs",
                                                working_directory=str(REPO_ROOT))
    return execute_job(repo.get_reconstructable_job(job), instance=world["instance"], run_config=config,
                       raise_on_error=False)


def release(world, service: str, version: str):
    return run(world, f"release_{service}_prog", {"ops": {"scan": {"config": {"version": version}}}})


def serving(port: int, n: int = 40) -> dict[str, int]:
    seen: dict[str, int] = {}
    for _ in range(n):
        v = httpx.get(f"http://127.0.0.1:{port}/api/items", timeout=5).headers.get("x-app-version", "?")
        seen[v] = seen.get(v, 0) + 1
    return seen


def traffic_changes(instance, run_id: str) -> list[tuple[float, int]]:
    """(time, weight %) each time the run moved traffic, from its own log (platform narration)."""
    out = []
    for record in instance.all_logs(run_id):
        msg = record.user_message or ""
        if msg.startswith("traffic: ") and "%" in msg:
            out.append((record.timestamp, int(msg.split("traffic: ", 1)[1].split("%", 1)[0])))
    return out


def failure_message(instance, run_id: str) -> tuple[str, str]:
    for record in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        ev = record.dagster_event
        return ev.step_key, ev.step_failure_data.error.message
    return "", ""


def started_load(port: int) -> LoadGenerator:
    return LoadGenerator(f"http://127.0.0.1:{port}/api/items", concurrency=4).start()


def test_canary_success_follows_the_weights_then_faulty_canary_aborts(world):
    port = world["ports"]["can"]
    warm = started_load(port)
    assert release(world, "can", "v1.0.0").success
    warm.stop()
    assert serving(port) == {"v1.0.0": 40}

    load = started_load(port)
    result = release(world, "can", "v1.1.0")
    summary = load.stop()
    assert result.success, failure_message(world["instance"], result.run_id)
    assert summary.total >= 1000 and summary.failed == 0, summary
    assert summary.http_errors == 0, summary.by_status
    changes = traffic_changes(world["instance"], result.run_id)
    weights = [w for _, w in changes]
    assert weights[:3] == [25, 50, 100], changes
    for (t0, weight), (t1, _) in zip(changes, changes[1:]):
        # t1 is logged once the next weight is live: stop a second before it.
        window: Summary = load.summary(since=t0 + SETTLE, until=t1 - 1.0)
        assert window.total >= 150, f"only {window.total} requests at {weight}%"
        share = window.share("v1.1.0")
        assert abs(share - weight / 100) <= TOLERANCE, f"at {weight}% v1.1.0 served {share:.1%} of {window.total}"
    assert serving(port) == {"v1.1.0": 40}

    # v1.2.0 answers 30% of requests with HTTP 500: aborted at the first analysis step (25%).
    load = started_load(port)
    bad = release(world, "can", "v1.2.0")
    aborted_at = time.time()
    time.sleep(3)
    summary = load.stop()
    assert not bad.success
    step, message = failure_message(world["instance"], bad.run_id)
    assert step == "verify" and "error_rate" in message and "rolled back to v1.1.0" in message, message
    assert [w for _, w in traffic_changes(world["instance"], bad.run_id)][:1] == [25]
    assert not any("canary 50%" in (r.user_message or "") for r in world["instance"].all_logs(bad.run_id))
    assert summary.failed == 0, summary
    after = load.summary(since=aborted_at)
    assert after.total > 50 and after.by_version == {"v1.1.0": after.total}, after.by_version
    assert serving(port) == {"v1.1.0": 40}


def test_blue_green_switch_and_rollback_to_warm_blue(world):
    port = world["ports"]["bg"]
    warm = started_load(port)
    assert release(world, "bg", "v1.0.0").success
    warm.stop()

    load = started_load(port)
    result = release(world, "bg", "v1.1.0")
    summary = load.stop()
    assert result.success, failure_message(world["instance"], result.run_id)
    assert summary.failed == 0 and summary.http_errors == 0, summary
    (switch_t, weight), *_ = traffic_changes(world["instance"], result.run_id)
    assert weight == 100
    (switching,) = [r.timestamp for r in world["instance"].all_logs(result.run_id)
                    if (r.user_message or "").startswith("green verified directly")]
    # Green was verified directly: no user request reached it before the switch began.
    before = load.summary(until=switching)
    assert before.total > 50 and before.by_version == {"v1.0.0": before.total}, before.by_version
    after = load.summary(since=switch_t + SETTLE)
    assert after.by_version == {"v1.1.0": after.total}, after.by_version
    # Blue stays warm: its instances still run, ready to take traffic back.
    assert serving(port) == {"v1.1.0": 40}

    load = started_load(port)
    time.sleep(1)
    rolled = run(world, "rollback_bg_prog", {"ops": {"rollback": {"config": {"reason": "test: back to blue"}}}})
    done = time.time()
    time.sleep(2)
    summary = load.stop()
    assert rolled.success, failure_message(world["instance"], rolled.run_id)
    assert summary.failed == 0 and summary.http_errors == 0, summary
    logs = " ".join(r.user_message or "" for r in world["instance"].all_logs(rolled.run_id))
    assert "is warm" in logs                    # the warm blue, not a redeploy
    after = load.summary(since=done)
    assert after.total > 20 and after.by_version == {"v1.0.0": after.total}, after.by_version
    assert serving(port) == {"v1.0.0": 40}


class RolloutWatch:
    """Samples, every 0.1 s during a rolling release, how many instances of the service run
    (Docker Engine API) and how many the nginx upstream sends users to (its config, read from the
    proxy container through the same API)."""

    def __init__(self, env: dict[str, str], service: str):
        import docker

        from deploy_pipelines.adapters.docker_platform import DockerNginxPlatform

        self.client = docker.DockerClient(base_url=env["DEPLOY_DOCKER_HOST"])
        self.platform = DockerNginxPlatform(service=service, environment="prog", public_port=1,
                                            docker_host=env["DEPLOY_DOCKER_HOST"],
                                            nginx_image=env["DEPLOY_NGINX_IMAGE"])
        self.service = service
        self.running: list[int] = []
        self.serving: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            found = self.client.containers.list(filters={"label": [f"deploy.service={self.service}",
                                                                   "deploy.role=instance"], "status": "running"})
            self.running.append(len(found))
            servers = self.platform.upstream_servers()
            if servers:
                self.serving.append(len(servers))
            time.sleep(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize("service,surge,unavailable", [("vid", 1, 0), ("lean", 0, 1)])
def test_rolling_respects_max_surge_and_max_unavailable(world, service, surge, unavailable):
    """The video platform's RollingUpdate (maxSurge 1, maxUnavailable 0) and the opposite
    trade-off (no extra instance, one out of service at a time), 3 replicas, under load."""
    port = world["ports"][service]
    warm = started_load(port)
    assert release(world, service, "v1.0.0").success
    warm.stop()
    load = started_load(port)
    with RolloutWatch(world["env"], service) as watch:
        result = release(world, service, "v1.1.0")
    summary = load.stop()
    assert result.success, failure_message(world["instance"], result.run_id)
    assert summary.failed == 0 and summary.http_errors == 0, summary
    assert len(watch.running) > 20
    assert max(watch.running) <= 3 + surge, watch.running
    assert min(watch.serving) >= 3 - unavailable, watch.serving
    # It really moved: both versions served during the rollout, only the new one at the end.
    assert set(summary.by_version) == {"v1.0.0", "v1.1.0"}
    assert serving(port) == {"v1.1.0": 40}
