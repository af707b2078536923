"""The planted-secret checker (leaks.py) can fail: a unique value is planted into each place it
checks, one at a time, and the checker must report exactly that place — event log, compute logs,
run configs and tags (a real Dagster instance), nginx configs, process argv (sampled from /proc),
image configs and history (real buildah and registry), backup file names (the real local store).
Not covered here: the container places (labels and configs, nginx configs inside proxy containers:
their self-test runs on the release world's podman, test_planted_secrets_e2e.py), and the release
scenario itself."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from dagster import instance_for_test, job, op

from deploy_pipelines.adapters.backup_storage import LocalBackupStorage
from deploy_pipelines.adapters.buildah import BuildahBuilder
from deploy_pipelines.adapters.records import BackupRecord
from deploy_pipelines.stack.podman import PodmanService
from deploy_pipelines.stack.registry import RegistryServer
from deploy_pipelines_tests.reliability import leaks

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("leaks")
    server = RegistryServer.start(root / "registry")
    podman = PodmanService(root / "podman", driver="vfs", insecure_registries=[server.address])
    podman.write_config()
    mp = pytest.MonkeyPatch()
    for k, v in podman.env().items():
        mp.setenv(k, v)
    (root / "home").mkdir()
    (root / "nginx" / "conf.d").mkdir(parents=True)
    with instance_for_test(temp_dir=str(root / "home")) as instance:
        yield {"root": root, "registry": server.address, "instance": instance}
    mp.undo()
    server.stop()


@op(config_schema={"x": str})
def says(context):
    context.log.info(f"the value is {context.op_config['x']}")


@job
def self_test():
    says()


def test_the_checker_reports_each_place_a_value_is_planted_in(world, tmp_path, ledger):
    ledger("secrets", "checker self-test (value planted in each place is reported)")
    root, instance = world["root"], world["instance"]
    sampler = leaks.ArgvSampler()
    places = {
        "event log": leaks.event_log(instance),
        "compute logs": leaks.files_under(root / "home", skip_suffixes=(".db", ".db-wal", ".db-shm")),
        "run configs and tags": leaks.run_configs_and_tags(instance),
        "nginx configs": leaks.files_under(root / "nginx" / "conf.d"),
        "process argv": leaks.argv(sampler),
        "image configs and history": leaks.image_configs(world["registry"]),
        "backup file names": leaks.names_under(root / "backups"),
    }
    self_test.execute_in_process(instance=instance, run_config={"ops": {"says": {"config": {"x": "nothing"}}}})
    run_id = instance.get_runs(limit=1)[0].run_id
    assert leaks.find(["planted-"], places) == {}, "nothing planted yet"

    def in_image(value):
        ctx = tmp_path / f"ctx-{value}"
        ctx.mkdir()
        (ctx / "Containerfile").write_text("FROM scratch\nCOPY Containerfile /x\n")
        BuildahBuilder().build_and_push(ctx, "Containerfile", f"{world['registry']}/selftest/planted",
                                        value[-8:], {}, {"planted": value})

    def in_argv(value):
        with sampler:
            subprocess.run(["sh", "-c", "sleep 0.5", value], check=True)

    def in_backup_name(value):
        src = tmp_path / "dump"
        src.write_bytes(b"x")
        LocalBackupStorage(root=str(root / "backups")).put(
            src, f"app/{value}.dump", BackupRecord("", "", "", 0, "2026-01-01T00:00:00+00:00"))

    plant = {
        "event log": lambda v: instance.report_engine_event(f"connecting with {v}", instance.get_run_by_id(run_id)),
        "compute logs": lambda v: (root / "home" / "storage").mkdir(exist_ok=True)
        or (root / "home" / "storage" / f"{v}.out").write_text(v),
        "run configs and tags": lambda v: instance.add_run_tags(run_id, {"planted": v}),
        "nginx configs": lambda v: (root / "nginx" / "conf.d" / "zz.conf").write_text(f"# {v}\n"),
        "process argv": in_argv,
        "image configs and history": in_image,
        "backup file names": in_backup_name,
    }
    assert set(plant) == set(places)
    for place, put in plant.items():
        value = f"planted-{uuid.uuid4().hex}"
        put(value)
        found = leaks.find([value], places)
        assert place in found, f"the checker missed a value planted in {place}"
