"""The pipeline runs itself: a real `dagster-daemon` on a temp DAGSTER_HOME over this code location,
the real local stack, a local git repository and a webhook receiver on loopback. Nothing is
launched by the test: it only pushes tags and watches what happens.

- a pushed tag becomes a staging release, whose success becomes the production release;
- two tags pushed at once produce one release, of the newer;
- the webhook hears "started" before "succeeded" for each of those runs."""

import subprocess
import time
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from deploy_pipelines.stack.daemon import DagsterDaemon, wait_for_run
from deploy_pipelines.stack.process import free_port
from deploy_pipelines_tests.fixtures_stack import demo_repo, local_stack  # noqa: F401 - fixtures
from deploy_pipelines_tests.test_triggers import Receiver

# Generous limits: the daemon, its sensors and three releases share 2 cores with another test module
# under CI (a release that takes 60 s alone took over 4 minutes there).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
REPO_ROOT = Path(__file__).resolve().parents[1]
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]


def catalog_for(tmp: Path, ports: dict[str, int]) -> Path:
    demo = yaml.safe_load((REPO_ROOT / "examples" / "demo" / "deploy.yaml").read_text())
    app = demo["services"]["app"]
    app["repo"] = {"env": "TRIG_REPO"}
    app["branch"] = None
    app["database"]["url"] = {"env": "TRIG_STAGING_DB"}
    app["verify"] = {"health": {"path": "/health", "timeout": "30s", "interval": "1s"},
                     "smoke": [{"path": "/ready", "expect": 200}]}
    app["targets"] = {
        "staging": {"platform": "docker", "replicas": 1, "port": ports["staging"]},
        "production": {"platform": "docker", "replicas": 1, "port": ports["production"],
                       "database_url": {"env": "TRIG_PRODUCTION_DB"}},
    }
    env = demo["environments"]["demo"]
    doc = {"project": "trig", "environments": {"staging": env, "production": {**env, "requires": "staging"}},
           "services": {"app": app},
           "notify": {"slack": {"webhook": {"env": "TRIG_WEBHOOK"}}, "ui_url": "http://127.0.0.1:3000"},
           "triggers": {"enabled": True, "poll_interval": "1s"}}
    path = tmp / "deploy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def push(repo: Path, *tags: str) -> None:
    """Commit once per tag on main in a scratch clone, then push them all in one `git push`."""
    work = repo.parent / "work"
    if not work.exists():
        subprocess.run(["git", "clone", "-q", str(repo), str(work)], check=True)
    for tag in tags:
        (work / "RELEASE").write_text(tag + "\n")
        subprocess.run([*GIT, "-C", str(work), "add", "-A"], check=True)
        subprocess.run([*GIT, "-C", str(work), "commit", "-qm", f"release {tag}"], check=True)
        subprocess.run([*GIT, "-C", str(work), "tag", "-a", tag, "-m", tag], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD:main", *tags], check=True)


def runs_of(instance: DagsterInstance, job: str) -> list:
    return list(reversed(instance.get_runs(RunsFilter(job_name=job))))


def finished(instance, job: str, version: str):
    for run in runs_of(instance, job):
        if run.tags.get("deploy/version") == version and run.is_finished:
            return run
    return None


@pytest.fixture(scope="module")
def world(local_stack, demo_repo, tmp_path_factory):  # noqa: F811
    stack, env = local_stack
    from deploy_pipelines.stack.postgres import PostgresServer

    tmp = tmp_path_factory.mktemp("trig")
    repo = tmp / "trig.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(demo_repo), str(repo)], check=True)
    pg = PostgresServer.start(stack.root / "postgres")
    for e in ("staging", "production"):
        pg.create_database(f"trig_{e}")
    receiver = Receiver()
    ports = {"staging": free_port(), "production": free_port()}
    catalog = catalog_for(tmp, ports)
    daemon_env = {**env, "DEMO_REPO": str(demo_repo), "TRIG_REPO": str(repo), "DEPLOY_CATALOG": str(catalog),
                  "TRIG_STAGING_DB": pg.url("trig_staging"), "TRIG_PRODUCTION_DB": pg.url("trig_production"),
                  "TRIG_WEBHOOK": receiver.url}
    home = tmp / "home"
    daemon = DagsterDaemon(home, daemon_env).start()
    try:
        instance = DagsterInstance.from_config(str(home))
        yield {"instance": instance, "repo": repo, "receiver": receiver, "ports": ports, "daemon": daemon}
    finally:
        daemon.stop()
        receiver.close()


def sensor_cursor(instance: DagsterInstance, name: str) -> str | None:
    for state in instance.all_instigator_state():
        if state.name == name and state.instigator_data is not None:
            return getattr(state.instigator_data, "cursor", None)
    return None


def test_a_pushed_tag_goes_to_staging_then_production_and_two_tags_release_the_newer(world):
    instance, repo = world["instance"], world["repo"]
    # The sensor first records the existing tags (v1.0.0 ... v1.4.0) as a baseline, releasing none.
    wait_for_run(instance, lambda i: sensor_cursor(i, "tags_app"), 240, "the tag sensor's baseline tick", poll=0.5)
    wait_for_run(instance, lambda i: sensor_cursor(i, "notify_runs"), 180, "the notify sensor's baseline", poll=0.5)
    assert instance.get_runs() == []

    pushed = time.time()
    push(repo, "v1.5.0")
    staging = wait_for_run(instance, lambda i: finished(i, "release_app_staging", "v1.5.0"), 600,
                           "the staging release of v1.5.0")
    assert staging.status == DagsterRunStatus.SUCCESS, staging.run_id
    assert staging.tags["deploy/trigger"] == "tag" and staging.tags["deploy/target"] == "app:staging"
    production = wait_for_run(instance, lambda i: finished(i, "release_app_production", "v1.5.0"), 600,
                              "the production release of v1.5.0")
    assert production.status == DagsterRunStatus.SUCCESS, production.run_id
    assert production.tags["deploy/trigger"] == "promotion"
    started = instance.get_run_record_by_id(staging.run_id).start_time
    print(f"tag push -> staging run started: {started - pushed:.1f}s")

    push(repo, "v1.6.0", "v1.6.1")
    newest = wait_for_run(instance, lambda i: finished(i, "release_app_production", "v1.6.1"), 900,
                          "the production release of v1.6.1")
    assert newest.status == DagsterRunStatus.SUCCESS
    versions = [r.tags.get("deploy/version") for r in runs_of(instance, "release_app_staging")]
    assert versions == ["v1.5.0", "v1.6.1"], versions      # v1.6.0 superseded, never released
    assert [r.tags.get("deploy/version") for r in runs_of(instance, "release_app_production")] == \
        ["v1.5.0", "v1.6.1"]

    import httpx

    for env in ("staging", "production"):
        r = httpx.get(f"http://127.0.0.1:{world['ports'][env]}/health", timeout=5)
        assert r.headers["x-app-version"] == "v1.6.1"

    # Notifications: started before succeeded for every one of the four runs.
    all_runs = runs_of(instance, "release_app_staging") + runs_of(instance, "release_app_production")

    def all_told(_):
        texts = [m["text"] for m in world["receiver"].messages]
        return texts if all(sum(r.run_id in t for t in texts) >= 2 for r in all_runs) else None

    texts = wait_for_run(instance, all_told, 120, "the notifications")
    for run in all_runs:
        mine = [t for t in texts if run.run_id in t]
        env = run.tags["deploy/target"].split(":")[1]
        version = run.tags["deploy/version"]
        assert mine[0].startswith(":rocket: Deployment started: app") and f"{version} to {env}" in mine[0]
        assert "Deployment succeeded" in mine[1] and f"{version} to {env}" in mine[1], mine
