"""Whole release runs through Dagster on the real local stack (podman, nginx, Prometheus,
PostgreSQL, registry): the sample service released from its git tags, and what each outcome
leaves behind — which version nginx serves, the database's schema and rows, the asset history.

Covered: a good rolling release under load (0 failed requests), a failing migration (database
exactly as before, app untouched), a faulty version stopped by verify (rolled back), re-execution of
promote, the rollback job, the one-release-per-target guard. Not covered here: the adapters' own
edge cases (their own test modules), sensors and schedules (test_triggers_*)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml
from dagster import DagsterInstance, execute_job, instance_for_test
from dagster._core.definitions.reconstruct import ReconstructableRepository

from deploy_pipelines.loadgen import LoadGenerator
from deploy_pipelines.stack.process import free_port
from deploy_pipelines_tests.fixtures_stack import add_tag, demo_repo, load_code_location, local_stack  # noqa: F401 - fixtures

# Several releases under load per test: 7 minutes alone, more beside another module under CI.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
REPO_ROOT = Path(__file__).resolve().parents[1]


def catalog_for(tmp: Path, port: int, environment: str = "e2e") -> Path:
    demo = yaml.safe_load((REPO_ROOT / "examples" / "demo" / "deploy.yaml").read_text())
    app = demo["services"]["app"]
    app["targets"] = {environment: {**app["targets"]["demo"], "port": port}}
    app["database"]["url"] = {"env": f"{environment.upper()}_DATABASE_URL"}
    doc = {"project": environment, "environments": {environment: demo["environments"]["demo"]},
           "services": {"app": app}}
    path = tmp / "deploy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def world(local_stack, demo_repo, tmp_path_factory, monkeypatch_module):  # noqa: F811
    stack, env = local_stack
    from deploy_pipelines.stack.postgres import PostgresServer

    pg = PostgresServer.start(stack.root / "postgres")
    pg.create_database("e2e")
    tmp = tmp_path_factory.mktemp("e2e")
    port = free_port()
    catalog = catalog_for(tmp, port)
    for k, v in {**env, "DEMO_REPO": str(demo_repo), "E2E_DATABASE_URL": pg.url("e2e"),
                 "DEPLOY_CATALOG": str(catalog)}.items():
        monkeypatch_module.setenv(k, v)
    load_code_location(catalog)
    (tmp / "home").mkdir()
    with instance_for_test(temp_dir=str(tmp / "home")) as instance:
        yield {"instance": instance, "port": port, "db": pg.url("e2e"), "repo": demo_repo, "catalog": catalog}


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def release(world, version: str, job: str = "release_app_e2e", config: dict | None = None):
    from deploy_pipelines.definitions import build_definitions  # noqa: F401 - import check

    repo = ReconstructableRepository.for_module("deploy_pipelines.definitions", "defs",
                                                working_directory=str(REPO_ROOT))
    run_config = config or {"ops": {"scan": {"config": {"version": version}}}}
    return execute_job(repo.get_reconstructable_job(job), instance=world["instance"], run_config=run_config)


def serving(port: int, n: int = 30) -> dict[str, int]:
    seen: dict[str, int] = {}
    for _ in range(n):
        v = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).headers.get("x-app-version", "?")
        seen[v] = seen.get(v, 0) + 1
    return seen


def schema_and_rows(url: str) -> tuple:
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("""SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
                       WHERE table_schema = 'public' ORDER BY 1, 2""")
        columns = cur.fetchall()
        cur.execute("SELECT name FROM deploy_schema_migrations ORDER BY name")
        migrations = cur.fetchall()
        cur.execute("SELECT md5(string_agg(items::text, ',' ORDER BY id)), count(*) FROM items")
        items = cur.fetchone()
    return columns, migrations, items


def step_failure(instance: DagsterInstance, run_id: str) -> tuple[str, str]:
    from dagster import DagsterEventType

    for record in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        ev = record.dagster_event
        return ev.step_key, ev.step_failure_data.error.message
    return "", ""


def test_rolling_releases_under_load_then_faulty_version_rolls_back(world):
    port = world["port"]
    # Users from the start: with no traffic the rules have no data, and inconclusive aborts.
    warmup = LoadGenerator(f"http://127.0.0.1:{port}/api/items", concurrency=1).start()
    first = release(world, "v1.0.0")
    warmup.stop()
    assert first.success
    assert serving(port) == {"v1.0.0": 30}

    load = LoadGenerator(f"http://127.0.0.1:{port}/api/items", concurrency=4)
    load.start()
    second = release(world, "v1.1.0")
    load.stop()
    summary = load.summary()
    assert second.success
    assert summary.total >= 2000, f"only {summary.total} requests during the release"
    assert summary.failed == 0, f"{summary.failed} failed requests during a rolling release"
    assert set(summary.by_version) == {"v1.0.0", "v1.1.0"}
    assert serving(port) == {"v1.1.0": 30}
    _, migrations, (_, rows) = schema_and_rows(world["db"])
    import psycopg2

    with psycopg2.connect(world["db"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM items WHERE sku IS NULL")
        assert cur.fetchone()[0] == 0          # backfilled
    assert [m[0] for m in migrations][-1].startswith("0002")

    # History: the promote op recorded deploy/e2e/app with digest and backup.
    from deploy_pipelines.steps.common import last_release

    latest = last_release(world["instance"], "app", "e2e")
    assert latest["version"] == "v1.1.0" and latest["digest"].startswith("sha256:")
    assert latest["previous_version"] == "v1.0.0" and latest["backup_key"]

    # v1.2.0 answers 30% 500s: verify's error_rate rule must stop it and traffic returns to v1.1.0.
    load = LoadGenerator(f"http://127.0.0.1:{port}/api/items", concurrency=2)
    load.start()
    bad = release(world, "v1.2.0")
    load.stop()
    assert not bad.success
    step, message = step_failure(world["instance"], bad.run_id)
    assert step == "verify" and "error_rate" in message, message
    assert serving(port) == {"v1.1.0": 30}


def test_failing_migration_leaves_database_and_app_as_before(world):
    before_serving = serving(world["port"])
    before = schema_and_rows(world["db"])
    add_tag(world["repo"], "v1.1.1", {
        "migrations/0003_add_price.up.sql": "SET lock_timeout = '5s';\nALTER TABLE items ADD COLUMN price integer;\n"
                                            "UPDATE items SET price = 1;\n",
        "migrations/0004_broken.up.sql": "SET lock_timeout = '5s';\nALTER TABLE items ADD CONSTRAINT price_positive CHECK (price < 0) NOT VALID;\n"
                                         "ALTER TABLE items VALIDATE CONSTRAINT price_positive;\n",
    }, "v1.1.1: a migration that fails half-way")
    result = release(world, "v1.1.1")
    assert not result.success
    step, _ = step_failure(world["instance"], result.run_id)
    assert step == "migrate"
    assert schema_and_rows(world["db"]) == before
    assert serving(world["port"]) == before_serving


def test_rollback_job_returns_to_previous_release(world):
    # The newest promoted release is v1.1.0 (previous v1.0.0): roll back to v1.0.0.
    result = release(world, "", job="rollback_app_e2e",
                     config={"ops": {"rollback": {"config": {"reason": "test rollback"}}}})
    assert result.success
    assert serving(world["port"]) == {"v1.0.0": 30}
    # And forward again to a given version.
    again = release(world, "", job="rollback_app_e2e",
                    config={"ops": {"rollback": {"config": {"to_version": "v1.1.0", "reason": "forward"}}}})
    assert again.success
    assert serving(world["port"]) == {"v1.1.0": 30}


def test_patch_rebuilds_the_running_version_and_rolls_it_out(world):
    """The monthly patch: what runs (v1.1.0 after the rollback test) is rebuilt on a freshly
    pulled base without cached layers and goes through backup/deploy/verify/promote under load."""
    from deploy_pipelines.steps.common import last_release

    before = last_release(world["instance"], "app", "e2e")
    assert before["version"] == "v1.1.0"
    load = LoadGenerator(f"http://127.0.0.1:{world['port']}/api/items", concurrency=2).start()
    result = release(world, "", job="patch_app_e2e",
                     config={"ops": {"patch_source": {"config": {"reason": "test patch"}}}})
    summary = load.stop()
    assert result.success
    after = last_release(world["instance"], "app", "e2e")
    patched = after["version"]
    assert patched.startswith("v1.1.0+patch.") and after["commit"] == before["commit"]
    assert after["digest"] != before["digest"]           # a new image, not the old one again
    assert summary.failed == 0 and set(summary.by_version) <= {"v1.1.0", patched}, summary
    assert serving(world["port"]) == {patched: 30}
    build_out = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT" and e.step_key == "patch_build"]
    assert "-patch." in build_out[0].event_specific_data.metadata["tag"].value


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    r = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
    r.raise_for_status()
    body = r.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


RUNS = """query { runsOrError(filter: {pipelineName: "release_app_e2e"}) {
  ... on Runs { results { runId status tags { key value } } } } }"""
LOGS = """query($runId: ID!) { logsForRun(runId: $runId, limit: 5000) { ... on EventConnection { events {
  __typename
  ... on MessageEvent { message stepKey }
  ... on MaterializationEvent { assetKey { path } metadataEntries { label
        ... on TextMetadataEntry { text } ... on UrlMetadataEntry { url } ... on IntMetadataEntry { intValue } } }
  ... on ExecutionStepOutputEvent { stepKey metadataEntries { label
        ... on TextMetadataEntry { text } ... on UrlMetadataEntry { url } ... on IntMetadataEntry { intValue }
        ... on TableMetadataEntry { table { records } } } }
} } } }"""


def test_history_is_visible_in_the_webserver_and_the_ui(world, tmp_path):
    """The runs above, read back the way an operator does: the real dagster-webserver's GraphQL
    API over the same DAGSTER_HOME, and the run page rendered by Chromium."""
    import os
    import subprocess

    from deploy_pipelines.stack.process import stop_group, wait_for_http

    port = free_port()
    home = world["instance"].root_directory
    log = open(tmp_path / "webserver.log", "wb")
    webserver = str(Path(os.sys.executable).with_name("dagster-webserver"))
    proc = subprocess.Popen([webserver, "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
                            cwd=REPO_ROOT, env={**os.environ, "DAGSTER_HOME": home}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/server_info", 120, "dagster-webserver", tmp_path / "webserver.log")
        runs = graphql(url, RUNS)["runsOrError"]["results"]
        by_version = {next(t["value"] for t in r["tags"] if t["key"] == "deploy/version"): r for r in runs
                      if any(t["key"] == "deploy/version" for t in r["tags"])}
        assert by_version["v1.1.0"]["status"] == "SUCCESS" and by_version["v1.2.0"]["status"] == "FAILURE"
        events = graphql(url, LOGS, {"runId": by_version["v1.1.0"]["runId"]})["logsForRun"]["events"]
        messages = [e["message"] for e in events if e.get("message")]
        assert any(m.startswith("backup app/e2e/") and "sha256" in m for m in messages), messages[:40]
        assert any("rolling: all 2 instance(s) run v1.1.0" in m for m in messages)
        (mat,) = [e for e in events if e["__typename"] == "MaterializationEvent"]
        assert mat["assetKey"]["path"] == ["deploy", "e2e", "app"]
        meta = {m["label"]: m.get("text") or m.get("url") for m in mat["metadataEntries"]}
        assert meta["outcome"] == "promoted" and meta["digest"].startswith("sha256:")
        assert "0002" in meta["migrations"] and meta["backup_key"].startswith("app/e2e/")
        outputs = {e["stepKey"]: {m["label"]: m for m in e["metadataEntries"]} for e in events
                   if e["__typename"] == "ExecutionStepOutputEvent"}
        assert outputs["build"]["digest"]["text"].startswith("sha256:")
        assert len(outputs["backup"]["sha256"]["text"]) == 64
        checks = [json.loads(r) for r in outputs["verify"]["checks"]["table"]["records"]]
        assert {c["check"] for c in checks} >= {"health", "rolling: error_rate"}, checks

        # The run page in a real browser (Debian's Chromium, driven by Playwright).
        from playwright.sync_api import sync_playwright

        run_id = by_version["v1.2.0"]["runId"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/runs/{run_id}", wait_until="domcontentloaded")
            page.get_by_text("verify failed (error_rate)", exact=False).first.wait_for(timeout=60_000)
            page.screenshot(path=str(tmp_path / "run.png"))
            text = page.inner_text("body")
            browser.close()
        assert run_id[:8] in text and "release_app_e2e" in text
    finally:
        stop_group(proc.pid)
        log.close()
