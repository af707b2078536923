"""On real servers: the bake watch against a real Prometheus scraping a real exporter; scheduled
backups, retention and restore verification as Dagster jobs on a real PostgreSQL; the guard that
keeps two runs of one <service>:<env> from overlapping whichever way they were launched."""

import json
import os
import time
from pathlib import Path

import psycopg2
import pytest
import yaml
from dagster import (AssetKey, AssetMaterialization, DagsterRunStatus, RunRequest, SkipReason, build_sensor_context,
                     execute_job, instance_for_test)
from dagster._core.definitions.reconstruct import ReconstructableRepository

from deploy_pipelines.catalog import load_catalog
from deploy_pipelines_tests.fixtures_db import postgres_server  # noqa: F401 - fixture
from deploy_pipelines_tests.fixtures_metrics import exporter, prometheus, wait_scraped  # noqa: F401 - fixtures
from deploy_pipelines_tests.fixtures_stack import load_code_location

REPO_ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------- bake watch

def watch_catalog(tmp_path: Path, prometheus_url: str):
    doc = {"project": "w", "environments": {"prod": {
        "docker": {"host": "unix:///nonexistent"},
        "prometheus": prometheus_url, "registry": "127.0.0.1:5000"}},
        "services": {"api": {"repo": "/nonexistent", "image": {"repository": "w/api"},
                             "targets": {"prod": {"port": 18090}},
                             "verify": {"bake": "10m", "rules": [
                                 {"name": "error_rate", "for": "3s", "max": 0.05,
                                  "query": 'max(app_error_ratio{service="{service}",environment="{environment}",'
                                           'version="{version}"})'},
                                 {"name": "shadow_latency", "for": "1s", "max": 0.0, "dry_run": True,
                                  "query": 'max(app_error_ratio{service="{service}",version="{version}"})'}]}}}}
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_catalog(path)


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_bake_watch_rolls_back_once_on_a_sustained_breach(prometheus, exporter, tmp_path):  # noqa: F811
    from deploy_pipelines.adapters.metrics import PrometheusMetrics
    from deploy_pipelines.triggers.watch import evaluate_watch

    catalog = watch_catalog(tmp_path, prometheus.url)
    metrics = PrometheusMetrics(url=prometheus.url)
    with instance_for_test() as instance:
        ctx = build_sensor_context(instance=instance)
        assert "no promoted release" in evaluate_watch(ctx, catalog, "api", "prod", metrics).skip_message
        exporter.gauge.labels("api", "prod", "v2.0.0").set(0.001)
        wait_scraped(metrics, 'app_error_ratio{version="v2.0.0"}')
        instance.report_runless_asset_event(AssetMaterialization(
            AssetKey(["deploy", "prod", "api"]), metadata={"outcome": "promoted", "version": "v2.0.0"}))
        # Healthy: baking, no rollback (the dry-run rule breaches but never acts).
        time.sleep(2)
        healthy = evaluate_watch(build_sensor_context(instance=instance), catalog, "api", "prod", metrics)
        assert isinstance(healthy, SkipReason) and "baking" in healthy.skip_message
        assert "error_rate 0.1%" in healthy.skip_message and "dry run" in healthy.skip_message

        exporter.gauge.labels("api", "prod", "v2.0.0").set(0.30)
        started = time.monotonic()

        def breach():
            r = evaluate_watch(build_sensor_context(instance=instance), catalog, "api", "prod", metrics)
            return r if isinstance(r, RunRequest) else None

        request = wait_until(breach, 30, "the watch to see the breach")
        detected = time.monotonic() - started
        assert detected >= 3 - 1.0, f"acted after {detected:.1f}s, before the 3s `for` window held"
        assert request.job_name == "rollback_api_prod" and request.tags["deploy/trigger"] == "watch"
        assert "error_rate 0.3 breached max 0.05" in request.run_config["ops"]["rollback"]["config"]["reason"]
        # Deterministic run key: every later tick asks for the same run, which Dagster launches once.
        again = breach()
        assert again is not None and again.run_key == request.run_key

        # After the bake window nothing is watched any more.
        later = evaluate_watch(build_sensor_context(instance=instance), catalog, "api", "prod", metrics,
                               now=time.time() + 3600)
        assert "baked" in later.skip_message


# ------------------------------------------------------------------------------------- backups

@pytest.fixture
def db_world(postgres_server, tmp_path, monkeypatch):  # noqa: F811
    name = f"maint_{os.getpid()}_{int(time.time() * 1000) % 100000}"
    postgres_server.create_database(name)
    url = postgres_server.url(name)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id serial PRIMARY KEY, name text); CREATE TABLE orders (id int)")
        cur.execute("INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 500) g")
        cur.execute("INSERT INTO orders SELECT g FROM generate_series(1, 42) g")
    doc = {"project": "m", "environments": {"prod": {
        "docker": {"host": "unix:///nonexistent"},
        "registry": "127.0.0.1:5000", "backup_root": str(tmp_path / "backups")}},
        "services": {"api": {"repo": "/nonexistent", "image": {"repository": "m/api"},
                             "database": {"engine": "postgres", "url": {"env": "MAINT_DB_URL"},
                                          "backup": {"keep_days": 0, "keep_last": 2}},
                             "targets": {"prod": {"port": 18091}}}}}
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("MAINT_DB_URL", url)
    saved = os.environ.get("DEPLOY_CATALOG")
    load_code_location(path)
    (tmp_path / "home").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        yield {"instance": instance, "url": url, "backups": tmp_path / "backups"}
    if saved is None:
        os.environ.pop("DEPLOY_CATALOG", None)
    else:
        os.environ["DEPLOY_CATALOG"] = saved


def run(world, job: str, config: dict | None = None, tags: dict | None = None):
    repo = ReconstructableRepository.for_module("deploy_pipelines.definitions", "defs",
                                                working_directory=str(REPO_ROOT))
    return execute_job(repo.get_reconstructable_job(job), instance=world["instance"], run_config=config or {},
                       tags=tags, raise_on_error=False)


def dumps(world) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in world["backups"].rglob("*.meta.json")),
                  key=lambda r: r["created_at"])


def test_backup_job_retention_keeps_pinned_and_newest(db_world):
    from deploy_pipelines.adapters.backup_storage import LocalBackupStorage

    storage = LocalBackupStorage(root=str(db_world["backups"]))
    first = run(db_world, "backup_api_prod")
    assert first.success
    (rec,) = dumps(db_world)
    assert dict(map(tuple, rec["tables"])) == {"public.items": 500, "public.orders": 42}
    assert len(rec["sha256"]) == 64 and rec["size"] > 0
    storage.pin(rec["key"], "release-run-1")           # a release still needs the oldest one
    for _ in range(3):
        assert run(db_world, "backup_api_prod").success
    left = dumps(db_world)
    # keep_last 2 newest + the pinned oldest; the two unpinned middle ones pruned.
    assert [r["key"] for r in left][0] == rec["key"] and len(left) == 3
    assert sum(1 for p in db_world["backups"].rglob("*.dump")) == 3


def test_verify_backup_restores_into_scratch_with_identical_counts(db_world):
    assert run(db_world, "backup_api_prod").success
    result = run(db_world, "verify_backup_api_prod")
    assert result.success
    (mat,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    meta = mat.event_specific_data.metadata
    rows = {r.data["table"]: (r.data["expected"], r.data["restored"]) for r in meta["tables"].value.records}
    assert rows == {"public.items": (500, 500), "public.orders": (42, 42)}
    # The scratch database is gone again.
    with psycopg2.connect(db_world["url"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'verify_api_prod_%'")
        assert cur.fetchone()[0] == 0

    # A corrupted dump is caught by its sha256 before any restore.
    (dump,) = list(db_world["backups"].rglob("*.dump"))
    dump.write_bytes(dump.read_bytes()[:-10] + b"0123456789")
    bad = run(db_world, "verify_backup_api_prod")
    assert not bad.success
    failure = [e for e in bad.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "corrupt" in failure.event_specific_data.error.message


def test_a_second_run_of_the_same_target_is_refused(db_world):
    """Whatever launched it (sensor, UI, promotion, rollback), the op-level guard refuses to run
    beside a started run of the same deploy/target; the queue (dagster.yaml) keeps them apart
    before that."""
    from dagster._core.test_utils import create_run_for_test

    instance = db_world["instance"]

    other = create_run_for_test(instance, job_name="release_api_prod", tags={"deploy/target": "api:prod"},
                                status=DagsterRunStatus.STARTED)
    result = run(db_world, "patch_api_prod", tags={"deploy/target": "api:prod"})
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert f"another release or rollback of api:prod is in progress (run {other.run_id})" in \
        failure.event_specific_data.error.message
    assert dumps(db_world) == []          # nothing was done


def test_dagster_yaml_limits_one_run_per_target():
    cfg = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    (limit,) = cfg["concurrency"]["runs"]["tag_concurrency_limits"]
    assert limit == {"key": "deploy/target", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    with instance_for_test(overrides={"concurrency": cfg["concurrency"]}) as instance:
        from dagster._core.run_coordinator import QueuedRunCoordinator

        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert instance.get_concurrency_config().run_queue_config.tag_concurrency_limits == [limit]
