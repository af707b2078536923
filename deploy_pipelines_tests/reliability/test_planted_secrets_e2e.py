"""Planted secrets end to end, through a real Dagster instance on the real local stack: a unique
value in every secret the catalog can hold (the database URL's password, a build secret, a
target's secret env, the Slack webhook URL); then a release, a second release (with a migration),
a failed release (aborted by verify), a rollback, a backup, a restore-verify, and the notification
sensor delivering to the webhook (the build is app's, the rest fleet's: release_world.py).
Afterwards each place (leaks.py) is searched for every value: event log, compute logs, run configs and tags, nginx configs inside the proxy containers, process
argv sampled during all of it, container configuration and labels (podman inspect), image configs
and history in the registry, backup file names. One case per place.

The scenario's outcomes are asserted first (which runs succeeded, what serves, messages received),
so a scenario that silently did nothing cannot pass. Not covered: secrets inside database dumps
(the data is the application's), and platforms other than Docker."""

from __future__ import annotations

import pytest
from dagster import build_sensor_context

from deploy_pipelines_tests.reliability import leaks
from deploy_pipelines_tests.reliability.release_world import job, release, run_job, users
from deploy_pipelines_tests.test_release_e2e import serving, step_failure

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
FAMILY = ("secrets", "planted secrets end to end (release, failed release, rollback, backup, restore-verify)")
TARGET = "fleet:rel"


def notify(world):
    """The notification sensor of the code location, with its own notifier (webhook from the env)."""
    import deploy_pipelines.definitions as definitions

    sensor = definitions.defs.get_sensor_def("notify_runs")
    context = build_sensor_context(instance=world["instance"], cursor="0",
                                   resources={"notifier": definitions.defs.get_top_level_resources()["notifier"]})
    return sensor.evaluate_tick(context)


@pytest.fixture(scope="module")
def scenario(rel_world, app_release, fleet_images):
    world, outcomes = rel_world, {"app v1.0.0 (built)": app_release.success}
    fleet_images("v1.1.0")
    fleet_images("v1.2.0", {"FAULT_RATE": "0.3"})        # answers 30% of API requests with HTTP 500
    with users(world, TARGET):
        outcomes["v1.0.0"] = release(world, TARGET, "v1.0.0").success
        outcomes["v1.1.0"] = release(world, TARGET, "v1.1.0").success
        bad = release(world, TARGET, "v1.2.0")
        outcomes["v1.2.0"] = bad.success
        outcomes["v1.2.0 failed at"] = step_failure(world["instance"], bad.run_id)[0]
        outcomes["rollback"] = run_job(world, job("rollback", "fleet", "rel"), {"ops": {"rollback": {"config": {
            "to_version": "v1.0.0", "reason": "planted-secrets scenario"}}}}).success
    outcomes["serving"] = serving(world["targets"][TARGET]["port"])
    outcomes["backup"] = run_job(world, job("backup", "fleet", "rel")).success
    outcomes["verify_backup"] = run_job(world, job("verify_backup", "fleet", "rel")).success
    outcomes["notify"] = notify(world).skip_message
    host = world["env"]["DEPLOY_DOCKER_HOST"]
    places = {
        "event log": leaks.event_log(world["instance"]),
        "compute logs": leaks.files_under(world["home"], skip_suffixes=(".db", ".db-wal", ".db-shm")),
        "run configs and tags": leaks.run_configs_and_tags(world["instance"]),
        "nginx configs": leaks.files_in_containers(host, "/etc/deploy-nginx", "deploy.role=proxy"),
        "process argv": leaks.argv(world["argv"]),
        "container configs and labels": leaks.container_configs(host),
        "image configs and history": leaks.image_configs(world["env"]["DEPLOY_REGISTRY"]),
        "backup file names": leaks.names_under(world["tmp"] / "backups"),
    }
    return {"outcomes": outcomes, "places": places}


def test_the_scenario_really_ran(scenario, rel_world, ledger):
    ledger(*FAMILY)
    o = scenario["outcomes"]
    assert o["app v1.0.0 (built)"], o
    assert (o["v1.0.0"], o["v1.1.0"], o["v1.2.0"], o["v1.2.0 failed at"]) == (True, True, False, "verify"), o
    assert o["rollback"] and o["serving"] == {"v1.0.0": 30}, o
    assert o["backup"] and o["verify_backup"], o
    texts = [m["text"] for m in rel_world["webhook"].messages]
    assert any("failed and rolled back" in t for t in texts) and any("rolled back" in t for t in texts), texts
    assert any("buildah build" in s for s in rel_world["argv"].samples), "the sampler saw the build"
    assert len(list((rel_world["tmp"] / "backups" / "rel").rglob("*.dump"))) >= 3


@pytest.mark.parametrize("place", ["event log", "compute logs", "run configs and tags", "nginx configs",
                                   "process argv", "container configs and labels", "image configs and history",
                                   "backup file names"])
def test_no_planted_secret_in(place, scenario, rel_world, ledger):
    ledger(*FAMILY)
    texts = list(scenario["places"][place]())
    assert texts, f"nothing to search in {place}: the place was not reached"
    found = leaks.find(rel_world["planted"].values(), {place: lambda: texts})
    assert found == {}, f"planted secret(s) found in {place}: {found}"


def test_the_checker_reports_values_planted_in_containers(scenario, rel_world, ledger):
    """The two container places can fail too (the other places' self-test is test_leak_checker):
    a value in a container's labels, and in a file beside the nginx configs of a proxy container."""
    ledger("secrets", "checker self-test (value planted in container labels / proxy nginx configs is reported)")
    import io
    import tarfile
    import uuid

    import docker

    client = docker.DockerClient(base_url=rel_world["env"]["DEPLOY_DOCKER_HOST"])
    places = {k: scenario["places"][k] for k in ("container configs and labels", "nginx configs")}
    labelled = f"planted-{uuid.uuid4().hex}"
    image = next(c for c in client.containers.list(filters={"label": "deploy.role=instance"})).image
    container = client.containers.create(image.id, labels={"note": labelled}, command=["true"])
    try:
        assert leaks.find([labelled], places) == {"container configs and labels": [labelled]}
    finally:
        container.remove(force=True)
    in_conf = f"planted-{uuid.uuid4().hex}"
    proxy = client.containers.list(filters={"label": "deploy.role=proxy"})[0]
    buf, data = io.BytesIO(), f"# {in_conf}\n".encode()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("zz-selftest.conf.off")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    proxy.put_archive("/etc/deploy-nginx/conf.d", buf.getvalue())
    try:
        assert "nginx configs" in leaks.find([in_conf], places)
    finally:
        proxy.exec_run(["rm", "-f", "/etc/deploy-nginx/conf.d/zz-selftest.conf.off"])
        client.close()
