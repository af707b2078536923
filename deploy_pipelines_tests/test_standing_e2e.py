"""Correct state at the edges, through Dagster on the real stack (podman, nginx container,
Prometheus, PostgreSQL): what comes back after an abort, and which runs may still act on a target.

Covered: a rolling release of an image whose own `ENV` makes it faulty (FAULT_RATE), aborted by
verify: the restored version's containers have exactly the environment of their own release, and
users get only the stable version afterwards; a second re-execution of a failed release, and a
re-execution superseded by a later release, stop before any change naming the newer run; no backup
loses a pin a release needs; an older version does not deploy without allow_downgrade; a rollback
with nothing to do leaves the database alone. Not covered: the platform calls themselves
(test_platform_contract), progressive strategies (test_progressive_e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterEventType, ReexecutionOptions, execute_job, instance_for_test
from dagster._core.definitions.reconstruct import ReconstructableRepository

from deploy_pipelines.loadgen import LoadGenerator
from deploy_pipelines.stack.process import free_port
from deploy_pipelines_tests.fixtures_stack import add_tag, demo_repo, load_code_location, local_stack  # noqa: F401
from deploy_pipelines_tests.test_release_e2e import catalog_for, serving, step_failure

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(1500)]
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(local_stack, demo_repo, tmp_path_factory):  # noqa: F811
    stack, env = local_stack
    from deploy_pipelines.stack.postgres import PostgresServer

    pg = PostgresServer.start(stack.root / "postgres")
    pg.create_database("edge")
    tmp = tmp_path_factory.mktemp("edge")
    port = free_port()
    catalog = catalog_for(tmp, port, "edge")       # its own target: test_release_e2e's `e2e` runs beside it
    mp = pytest.MonkeyPatch()
    for k, v in {**env, "DEMO_REPO": str(demo_repo), "EDGE_DATABASE_URL": pg.url("edge"),
                 "DEPLOY_CATALOG": str(catalog)}.items():
        mp.setenv(k, v)
    load_code_location(catalog)
    (tmp / "home").mkdir()
    with instance_for_test(temp_dir=str(tmp / "home")) as instance:
        yield {"instance": instance, "port": port, "db": pg.url("edge"), "repo": demo_repo, "env": env,
               "backups": Path(env["DEPLOY_BACKUP_ROOT"].removeprefix("file://"))}
    mp.undo()


def _job(name: str):
    repo = ReconstructableRepository.for_module("deploy_pipelines.definitions", "defs", working_directory=str(REPO_ROOT))
    return repo.get_reconstructable_job(name)


def release(world, version: str, **config):
    return execute_job(_job("release_app_edge"), instance=world["instance"],
                       run_config={"ops": {"scan": {"config": {"version": version, **config}}}})


def reexecute(world, run_id: str):
    return execute_job(_job("release_app_edge"), instance=world["instance"],
                       reexecution_options=ReexecutionOptions.from_failure(run_id, world["instance"]))


def instance_env(world, version: str) -> list[set[str]]:
    import docker

    client = docker.DockerClient(base_url=world["env"]["DEPLOY_DOCKER_HOST"])
    found = client.containers.list(filters={"label": ["deploy.service=app", "deploy.environment=edge",
                                                      f"deploy.version={version}", "deploy.role=instance"]})
    # PORT is each instance's own host port (network: host); everything else is the release's.
    return [{e for e in c.attrs["Config"]["Env"] if not e.startswith(("HOSTNAME=", "PORT="))} for c in found]


def pins(world) -> dict[str, tuple[str, ...]]:
    from deploy_pipelines.adapters.backup_storage import LocalBackupStorage

    return {r.key: r.pinned_by for r in LocalBackupStorage(root=f"file://{world['backups']}").list("app/edge/")}


def test_faulty_image_env_is_not_carried_back_by_the_abort(world):
    port = world["port"]
    warm = LoadGenerator(f"http://127.0.0.1:{port}/api/items", concurrency=1).start()
    assert release(world, "v1.0.0").success
    assert release(world, "v1.1.0").success
    warm.stop()
    before = instance_env(world, "v1.1.0")
    assert len(before) == 2 and all(not any(e.startswith("FAULT_RATE=") for e in env) for env in before)

    # v1.6.0's image sets FAULT_RATE itself: 30% of API requests answer 500.
    containerfile = (REPO_ROOT / "examples" / "sample-service" / "Containerfile").read_text()
    add_tag(world["repo"], "v1.6.0", {"Containerfile": containerfile + "ENV FAULT_RATE=0.3\n"},
            "v1.6.0: a build whose image environment is faulty")
    load = LoadGenerator(f"http://127.0.0.1:{port}/api/items", concurrency=2).start()
    bad = release(world, "v1.6.0")
    load.stop()
    assert not bad.success
    step, message = step_failure(world["instance"], bad.run_id)
    assert step == "verify" and "error_rate" in message, message
    after = instance_env(world, "v1.1.0")
    assert len(after) == 2 and all(env == before[0] for env in after), (before, after)
    check = LoadGenerator(f"http://127.0.0.1:{port}/api/items", concurrency=2).start()
    import time

    time.sleep(3)
    summary = check.stop()
    assert summary.total > 50 and summary.http_errors == 0 and summary.failed == 0, summary
    assert summary.by_version == {"v1.1.0": summary.total}
    world["failed_run"] = bad.run_id


def test_reexecutions_that_lost_their_standing_change_nothing(world):
    failed = world["failed_run"]
    first = reexecute(world, failed)              # allowed: re-runs verify, which fails again
    assert not first.success
    pinned_before, serving_before = pins(world), serving(world["port"])

    second = reexecute(world, failed)             # the same failed run again: superseded by `first`
    assert not second.success
    _, message = step_failure(world["instance"], second.run_id)
    assert first.run_id in message and "superseded" in message, message
    assert pins(world) == pinned_before and serving(world["port"]) == serving_before

    # A later release supersedes every older run of the target.
    warm = LoadGenerator(f"http://127.0.0.1:{world['port']}/api/items", concurrency=1).start()
    later = release(world, "v1.4.0")
    warm.stop()
    assert later.success
    pinned_before, serving_before = pins(world), serving(world["port"])
    third = reexecute(world, first.run_id)
    assert not third.success
    step, message = step_failure(world["instance"], third.run_id)
    assert later.run_id in message and "superseded" in message, message
    assert pins(world) == pinned_before and serving(world["port"]) == serving_before == {"v1.4.0": 30}
    # The backups of the serving release and of the one before it keep their pins.
    pinned_by = {run for runs in pins(world).values() for run in runs}
    v110 = next(r for r in world["instance"].get_run_records()
                if r.dagster_run.tags.get("deploy/version") == "v1.1.0" and r.dagster_run.is_success)
    assert {later.run_id, v110.dagster_run.run_id} <= pinned_by


def test_an_older_version_needs_allow_downgrade(world):
    pinned_before = pins(world)
    older = release(world, "v1.1.0")
    assert not older.success
    step, message = step_failure(world["instance"], older.run_id)
    assert step == "scan" and "older than v1.4.0" in message and "allow_downgrade" in message, message
    assert serving(world["port"]) == {"v1.4.0": 30} and pins(world) == pinned_before
    steps = {e.step_key for e in world["instance"].all_logs(older.run_id, of_type=DagsterEventType.STEP_START)}
    assert steps == {"scan"}


def test_rollback_with_nothing_to_do_leaves_the_database_alone(world):
    pinned_before = pins(world)
    result = execute_job(_job("rollback_app_edge"), instance=world["instance"], run_config={
        "ops": {"rollback": {"config": {"to_version": "v1.4.0", "reason": "no-op"}}}})
    assert result.success
    logs = " ".join(r.user_message or "" for r in world["instance"].all_logs(result.run_id))
    assert "nothing to do" in logs
    assert pins(world) == pinned_before              # no pre-rollback dump, no restore
    assert serving(world["port"]) == {"v1.4.0": 30}
