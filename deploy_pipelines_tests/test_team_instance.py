"""A team's instance on PostgreSQL (deploy_pipelines/stack/team.py): a real PostgreSQL server, the
instance written the way `make ui-team` writes it, and four release runs of four services launched
at once, each in its own run worker process (`dagster api execute_run`, as the run launcher starts
them), all writing to the one storage.

Covered: the storage really is PostgreSQL (runs and events read back with psycopg2), every run's
event log is complete and in order beside the others (RUN_START, scan's STEP_START and
STEP_FAILURE, RUN_FAILURE: the scanner is `exit 3`, so nothing beyond scan runs), the URL with its
password is in no file of DAGSTER_HOME and in no run worker's argv, and the one-run-per-target limit is in the instance
config. Not covered: the webserver and daemon on this storage (the same instance config; `make
ui-team`), releases beyond scan (test_release_e2e.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
from dagster import DagsterEventType, DagsterInstance
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._grpc.types import ExecuteRunArgs
from dagster_shared.serdes import serialize_value

from bench.scale import generate_catalog
from deploy_pipelines.stack.team import PG_URL_ENV, dagster_storage_url, write_team_instance_yaml
from deploy_pipelines_tests.fixtures_stack import REPO_ROOT, load_code_location

pytestmark = [pytest.mark.slow, pytest.mark.scale]
SERVICES = 4


@pytest.fixture()
def team_instance(tmp_path, monkeypatch):
    from deploy_pipelines.stack.postgres import PostgresServer

    pg = PostgresServer.start(tmp_path / "postgres")
    try:
        pg.create_database("dagster")
        url = dagster_storage_url(pg.url("dagster")).replace("postgres@", "postgres:s3cret-pw@", 1)
        monkeypatch.setenv(PG_URL_ENV, url)
        home = tmp_path / "home"
        write_team_instance_yaml(home)
        catalog = generate_catalog(tmp_path / "deploy.yaml", SERVICES, scanners=[
            {"name": "stop", "command": ["sh", "-c", "exit 3"], "format": "sarif"}])
        for name in ("SCALE_REPO", "SCALE_DATABASE_URL", "DEPLOY_DOCKER_HOST", "DEPLOY_NGINX_PREFIX",
                     "DEPLOY_PROMETHEUS_TARGETS", "DEPLOY_PROMETHEUS_URL", "DEPLOY_REGISTRY", "DEPLOY_BACKUP_ROOT",
                     "DEPLOY_BASE_IMAGE"):
            monkeypatch.setenv(name, f"/nonexistent/{name.lower()}")
        monkeypatch.setenv("DEPLOY_CATALOG", str(catalog))
        monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
        load_code_location(catalog)
        instance = DagsterInstance.from_config(str(home))
        yield instance, pg.url("dagster"), home
        instance.dispose()
    finally:
        pg.stop()


def test_concurrent_runs_write_complete_event_logs_to_postgres(team_instance):
    instance, url, home = team_instance
    repo = ReconstructableRepository.for_module("deploy_pipelines.definitions", "defs", working_directory=str(REPO_ROOT))
    workers, run_ids = [], []
    for i in range(SERVICES):
        recon = repo.get_reconstructable_job(f"release_svc{i:03d}_dev")
        run = instance.create_run_for_job(recon.get_definition(), run_config={"ops": {"scan": {"config": {"version": "v1.0.0"}}}},
                                          job_code_origin=recon.get_python_origin())
        args = ExecuteRunArgs(job_origin=recon.get_python_origin(), run_id=run.run_id, instance_ref=instance.get_ref())
        run_ids.append(run.run_id)
        assert "s3cret-pw" not in serialize_value(args)          # the worker's argv names the variable only
        workers.append(subprocess.Popen([str(Path(sys.executable).with_name("dagster")), "api", "execute_run",
                                         serialize_value(args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for w in workers:
        _, err = w.communicate(timeout=300)

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, status FROM runs ORDER BY run_id")
        assert sorted(cur.fetchall()) == sorted((r, "FAILURE") for r in run_ids)
        expected = [t.value for t in (DagsterEventType.RUN_START, DagsterEventType.STEP_START,
                                      DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE)]
        for run_id in run_ids:
            cur.execute("SELECT dagster_event_type FROM event_logs WHERE run_id = %s AND dagster_event_type = ANY(%s) "
                        "ORDER BY id", (run_id, expected))
            assert [t for (t,) in cur.fetchall()] == expected
    for run_id in run_ids:
        failures = instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
        assert [f.dagster_event.step_key for f in failures] == ["scan"]

    # The password stays in the environment: no file under DAGSTER_HOME holds it.
    for f in home.rglob("*"):
        if f.is_file():
            assert b"s3cret-pw" not in f.read_bytes(), f
    settings = instance.get_settings("concurrency")
    assert settings["runs"]["tag_concurrency_limits"][0]["key"] == "deploy/target"
