"""A platform team's catalog at size: 200 services x 3 environments (dev, staging, production with
manual approval; 3,200 jobs) generated from the demo's `app` (bench/scale.py), and one release of
one of its services run end to end on the real local stack (podman, nginx, Prometheus, PostgreSQL,
registry) through the code location module, as a run worker loads it.

Covered: the lazy code location path under a real run: the release serves the new version; of the
3,200 jobs only the one the run needs was built, and no sensor or schedule; the rest of the catalog
is untouched (one run, deploy history for that one target only). Every job is still known by
name without building any. Not covered: timings (bench/scale.py,
BENCHMARKS.md), the release steps' own edge cases (test_release_e2e.py), sensors at size
(bench/scale.py)."""

from __future__ import annotations

import importlib

import httpx
import pytest
import yaml
from dagster import AssetKey, execute_job, instance_for_test
from dagster._core.definitions.reconstruct import ReconstructableRepository

from bench.scale import generate_catalog
from deploy_pipelines.loadgen import LoadGenerator
from deploy_pipelines.stack.process import free_port
from deploy_pipelines_tests.fixtures_stack import REPO_ROOT, demo_repo, load_code_location, local_stack  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.scale]
SERVICES = 200
HOT = "svc000"


@pytest.fixture(scope="module")
def world(local_stack, demo_repo, tmp_path_factory):  # noqa: F811
    from deploy_pipelines.stack.postgres import PostgresServer

    stack, env = local_stack
    pg = PostgresServer.start(stack.root / "postgres")
    pg.create_database("scale")
    tmp = tmp_path_factory.mktemp("scale")
    port = free_port()
    demo_app = yaml.safe_load((REPO_ROOT / "examples" / "demo" / "deploy.yaml").read_text())["services"]["app"]
    # svc000 is the demo's app in dev on a free port; the other 199 services (and svc000's other
    # environments) exist only in the catalog.
    catalog = generate_catalog(tmp / "deploy.yaml", SERVICES, hot={
        "repo": {"env": "DEMO_REPO"}, "scan": demo_app["scan"],
        "database": {**demo_app["database"], "url": {"env": "SCALE_DATABASE_URL"}},
        "targets": {e: {**demo_app["targets"]["demo"], "port": port if e == "dev" else 21000 + k}
                    for k, e in enumerate(("dev", "staging", "production"))}})
    mp = pytest.MonkeyPatch()
    for k, v in {**env, "DEMO_REPO": str(demo_repo), "SCALE_REPO": "/nonexistent/repo.git",
                 "SCALE_DATABASE_URL": pg.url("scale"), "DEPLOY_CATALOG": str(catalog)}.items():
        mp.setenv(k, v)
    load_code_location(catalog)
    (tmp / "home").mkdir()
    try:
        with instance_for_test(temp_dir=str(tmp / "home")) as instance:
            yield {"instance": instance, "port": port, "catalog": catalog}
    finally:
        mp.undo()


@pytest.mark.timeout(1200)     # the whole stack starts in this module's setup; a shared 2-core machine is slow
def test_one_release_in_a_200_service_catalog_builds_one_job_and_serves_the_new_version(world):
    repo = ReconstructableRepository.for_module("deploy_pipelines.definitions", "defs",
                                                working_directory=str(REPO_ROOT))
    port = world["port"]
    # Users from the start: with no traffic the verify rules have no data, and inconclusive aborts.
    load = LoadGenerator(f"http://127.0.0.1:{port}/api/items", concurrency=1).start()
    result = execute_job(repo.get_reconstructable_job(f"release_{HOT}_dev"), instance=world["instance"],
                         run_config={"ops": {"scan": {"config": {"version": "v1.0.0"}}}})
    load.stop()
    assert result.success
    versions = [httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).headers.get("x-app-version") for _ in range(20)]
    assert versions == ["v1.0.0"] * 20

    # The run rebuilt the code location from the module (a run worker's path): one job of 3,200.
    definitions = importlib.import_module("deploy_pipelines.definitions")
    loaded = definitions.defs
    built = definitions.built_so_far(loaded)
    assert built == {"jobs": [f"release_{HOT}_dev"], "triggers": False, "history": False}, built
    # The catalog's jobs, plus the history's refresh job and Dagster's implicit asset job.
    assert len([n for n in loaded.job_names if not n.startswith(("__", "refresh_"))]) == SERVICES * 16

    # The rest of the catalog untouched: one run, deploy history of this one target only.
    instance = world["instance"]
    assert [r.job_name for r in instance.get_runs()] == [f"release_{HOT}_dev"]
    deploy_keys = [k for k in instance.get_asset_keys() if k.path[0] == "deploy"]
    assert deploy_keys == [AssetKey(["deploy", "dev", HOT])]


def test_every_job_is_known_by_name_without_building_any(tmp_path):
    """The UI's list comes from the code server, which builds every job once (test_definitions.py
    does that for the demo catalog; bench/scale.py counts 3,200 jobs, 600 sensors and 1,800
    schedules at this size). Here: the names are known from the catalog alone."""
    from deploy_pipelines.definitions import build_definitions, built_so_far

    repo = build_definitions(generate_catalog(tmp_path / "deploy.yaml", SERVICES))
    names = set(repo.job_names)
    assert len([n for n in names if not n.startswith(("__", "refresh_"))]) == SERVICES * 16
    assert {f"release_svc{i:03d}_{e}" for i in range(SERVICES) for e in ("dev", "staging", "production")} <= names
    assert {f"approve_svc{i:03d}_production" for i in range(SERVICES)} <= names
    assert built_so_far(repo) == {"jobs": [], "triggers": False, "history": True}
    job = repo.get_job("release_svc199_production")
    assert (job.tags["deploy/service"], job.tags["deploy/environment"]) == ("svc199", "production")
    assert built_so_far(repo) == {"jobs": ["release_svc199_production"], "triggers": False, "history": True}
