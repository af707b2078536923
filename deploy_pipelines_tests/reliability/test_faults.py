"""Faults before any change (real adapters against a closed 127.0.0.1 port): the database down
makes the backup op fail clearly with nothing stored (so migrate, which needs the backup, never
runs) and without the password in the message; the registry down makes the build op fail clearly
(so deploy, which needs the image, never runs). Not covered here: SIGKILL of the run worker,
Prometheus down, the webhook down, a full disk (test_faults_e2e.py), concurrent launches."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import Failure, build_op_context, instance_for_test

from deploy_pipelines.adapters.backup_storage import LocalBackupStorage
from deploy_pipelines.adapters.buildah import BuildahBuilder
from deploy_pipelines.adapters.git import LocalGit
from deploy_pipelines.adapters.postgres import PostgresDatabase
from deploy_pipelines.adapters.records import BuiltImage
from deploy_pipelines.jobs import build_release_job
from deploy_pipelines.catalog import parse_catalog
from deploy_pipelines.stack.process import free_port
from deploy_pipelines.steps.backup import backup
from deploy_pipelines.steps.build import build
from deploy_pipelines.steps.common import DeployTarget, ReleaseInput
from deploy_pipelines_tests.reliability.catalog_corpus import BASE

PASSWORD = "planted-fault-pw-6d2e"


@pytest.fixture
def world(tmp_path):
    closed = free_port()
    path = tmp_path / "deploy.yaml"
    path.write_text(BASE.replace('registry: "127.0.0.1:5000"', f'registry: "127.0.0.1:{closed}"'))
    target = DeployTarget(catalog_path=str(path), service="api", environment="staging")
    release = ReleaseInput(service="api", environment="staging", version="v1.2.3", commit="0" * 40, run_id="r1")
    with instance_for_test() as instance:
        yield {"closed": closed, "target": target, "release": release, "tmp": tmp_path, "path": path,
               "context": build_op_context(instance=instance)}


def test_migrate_and_deploy_depend_on_backup_and_build(world):
    """The graph makes 'fails before' hold: migrate runs after the backup, deploy after the build."""
    catalog = parse_catalog(BASE, Path("deploy.yaml"))
    job = build_release_job(catalog, str(world["path"]), "api", "staging")
    order = [n.name for n in job.graph.nodes_in_topological_order]
    assert order.index("backup") < order.index("migrate") < order.index("deploy")
    assert order.index("build") < order.index("backup")


def test_database_down_fails_backup_cleanly(world, ledger):
    ledger("faults", "database down: fails before migrate, nothing changed")
    database = PostgresDatabase(url=f"postgresql://app:{PASSWORD}@127.0.0.1:{world['closed']}/app")
    storage = LocalBackupStorage(root=str(world["tmp"] / "backups"))
    image = BuiltImage("127.0.0.1:1/shop/api", "v1.2.3", "sha256:" + "0" * 64, "0" * 40)
    with pytest.raises(Failure) as info:
        backup(world["context"], world["release"], image, target=world["target"], database=database,
               backup_storage=storage)
    message = info.value.description
    assert "backup failed, nothing was changed" in message and "service api, environment staging" in message
    assert PASSWORD not in message
    assert storage.list() == []


def test_registry_down_fails_build_cleanly(world, ledger):
    ledger("faults", "registry down: fails before deploy")
    with pytest.raises(Failure) as info:
        build(world["context"], world["release"], target=world["target"], git=LocalGit(repo="/nonexistent"),
              builder=BuildahBuilder())
    message = info.value.description
    assert f"127.0.0.1:{world['closed']}" in message and "unreachable" in message
