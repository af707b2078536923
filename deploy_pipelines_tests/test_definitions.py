"""The code location: the demo catalog loads into Definitions, every job resolves by name with the
expected ops and tags, release run config validates, secrets appear only as EnvVar names, and an
invalid catalog builds nothing. Not covered: running the jobs (test_release_e2e.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import validate_run_config

from deploy_pipelines.catalog import CatalogError
from deploy_pipelines.definitions import build_definitions

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo" / "deploy.yaml"


@pytest.fixture(scope="module")
def defs():
    # Resolving a job resolves its EnvVars: give every variable the catalog names a dummy value.
    from deploy_pipelines.catalog import load_catalog
    from deploy_pipelines.catalog.models import env_names

    mp = pytest.MonkeyPatch()
    for name in env_names(load_catalog(DEMO)):
        mp.setenv(name, "1" if name.endswith("_PORT") else f"dummy-{name.lower()}")
    yield build_definitions(DEMO)
    mp.undo()


@pytest.mark.parametrize("service", ["app", "shop", "web"])
def test_release_and_rollback_jobs_resolve(defs, service):
    release = defs.get_job(f"release_{service}_demo")
    assert [n.name for n in release.graph.nodes_in_topological_order] == ["scan", "build", "backup", "migrate", "deploy", "verify",
                                                     "promote"]
    assert release.tags["deploy/target"] == f"{service}:demo"
    assert defs.get_job(f"rollback_{service}_demo").tags["deploy/target"] == f"{service}:demo"


def test_release_run_config_is_just_the_version(defs):
    job = defs.get_job("release_app_demo")
    assert validate_run_config(job, {"ops": {"scan": {"config": {"version": "v1.2.0"}}}})
    with pytest.raises(Exception):
        validate_run_config(job, {"ops": {"scan": {"config": {}}}})


def test_secrets_are_env_var_names_only(monkeypatch):
    # The secret is set BEFORE the definitions are built: a resource that copied the value at build
    # time would carry it into the job snapshot, and this test would see it there.
    from deploy_pipelines.adapters.postgres import PostgresDatabase
    from deploy_pipelines.catalog import load_catalog
    from deploy_pipelines.catalog.models import env_names

    secret = "hunter2-planted-5f1c"
    for name in env_names(load_catalog(DEMO)):
        monkeypatch.setenv(name, "1" if name.endswith("_PORT") else f"dummy-{name.lower()}")
    monkeypatch.setenv("DEMO_DATABASE_URL", f"postgresql://u:{secret}@127.0.0.1:1/demo")
    job = build_definitions(DEMO).get_job("release_app_demo")
    db = job.resource_defs["database"]
    assert "DEMO_DATABASE_URL" in repr(db.__dict__)          # it refers to the variable...
    assert secret not in repr(db.__dict__)                  # ...and never holds its value
    assert secret not in str(job.get_job_snapshot())
    # The check can fail: a resource given the value itself does hold it.
    assert secret in repr(PostgresDatabase(url=f"postgresql://u:{secret}@127.0.0.1:1/demo").__dict__)


def test_invalid_catalog_builds_nothing(tmp_path):
    bad = tmp_path / "deploy.yaml"
    bad.write_text(DEMO.read_text().replace("replicas: 2", "replicas: 0", 1))
    with pytest.raises(CatalogError, match=r"services\.app\.targets\.demo\.replicas"):
        build_definitions(bad)
