"""The release history as operators read it: a real dagster-webserver over a history made by real
releases of the sample service to staging (v1.0.0 and v1.1.0 promoted, v1.2.0 stopped by verify),
driven by Chromium (Playwright, Debian's chromium). Covered: the runs list, a release run's log, the
failed release with its reason and its release summary on the asset's Events tab, the asset
catalog with groups and the staging -> production lineage, the plots of release duration and lead
time, the DORA asset showing the values computed by hand here, and the drift check failing after
the test stops what the platform serves behind the pipeline's back; the release summaries
(markdown) on the promote event of a release and on the abort of the failed one, and
failed_requests on both. It writes the screenshots under docs/ that the README shows.

Not covered: the releases' own outcomes in depth (test_release_e2e.py), DORA arithmetic edge cases
(test_history.py), production releases (the production target is declared only, for lineage)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from dagster import AssetKey, execute_job, instance_for_test
from dagster._core.definitions.reconstruct import ReconstructableRepository

from deploy_pipelines.loadgen import LoadGenerator
from deploy_pipelines.stack.process import free_port, stop_group, wait_for_http
from deploy_pipelines_tests.fixtures_stack import demo_repo, load_code_location, local_stack  # noqa: F401 - fixtures

# Three releases take ~75 s on an idle 2-core machine and several minutes when it is busy; a cold
# session also builds the stack's base image inside this module's fixture.
pytestmark = [pytest.mark.slow, pytest.mark.ui, pytest.mark.timeout(1800)]
REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = REPO_ROOT / "docs"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def catalog_for(tmp: Path, ports: dict[str, int]) -> Path:
    """The demo's app service on a staging and a production target (production requires staging)."""
    demo = yaml.safe_load((REPO_ROOT / "examples" / "demo" / "deploy.yaml").read_text())
    env = demo["environments"]["demo"]
    app = demo["services"]["app"]
    app["targets"] = {name: {**app["targets"]["demo"], "port": port} for name, port in ports.items()}
    app["database"]["url"] = {"env": "UI_DATABASE_URL"}
    doc = {"project": "ui", "timezone": "UTC", "environments": {"staging": env, "production": {**env, "requires": "staging"}},
           "services": {"app": app}, "triggers": {"enabled": False}}
    path = tmp / "deploy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def history(local_stack, demo_repo, tmp_path_factory):  # noqa: F811
    """Three real releases to staging, recorded in a fresh instance."""
    stack, env = local_stack
    from deploy_pipelines.stack.postgres import PostgresServer

    pg = PostgresServer.start(stack.root / "postgres-ui")
    pg.create_database("ui")
    tmp = tmp_path_factory.mktemp("ui")
    ports = {"staging": free_port(), "production": free_port()}
    catalog = catalog_for(tmp, ports)
    mp = pytest.MonkeyPatch()
    for k, v in {**env, "DEMO_REPO": str(demo_repo), "UI_DATABASE_URL": pg.url("ui"),
                 "DEPLOY_CATALOG": str(catalog)}.items():
        mp.setenv(k, v)
    load_code_location(catalog)
    (tmp / "home").mkdir()
    repo = ReconstructableRepository.for_module("deploy_pipelines.definitions", "defs",
                                                working_directory=str(REPO_ROOT))
    url = f"http://127.0.0.1:{ports['staging']}/api/items"
    try:
        with instance_for_test(temp_dir=str(tmp / "home")) as instance:
            runs, users = {}, {}
            for version in ("v1.0.0", "v1.1.0", "v1.2.0"):
                # Users during each release: with no traffic the verify rules have no data.
                load = LoadGenerator(url, concurrency=1).start()
                runs[version] = execute_job(repo.get_reconstructable_job("release_app_staging"), instance=instance,
                                            run_config={"ops": {"scan": {"config": {"version": version}}}})
                users[version] = load.stop()
            yield {"instance": instance, "runs": runs, "users": users, "ports": ports, "catalog": catalog, "env": env}
    finally:
        mp.undo()
        pg.stop()


def refresh(catalog: Path, instance):
    """One evaluation of the refresh job (DORA assets + checks), as its schedule or sensor would run it."""
    from deploy_pipelines.definitions import build_definitions
    from deploy_pipelines.history.definitions import REFRESH_JOB

    result = build_definitions(catalog).get_job(REFRESH_JOB).execute_in_process(instance=instance)
    assert result.success
    return {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
            and e.asset_check_evaluation_data.asset_key.path == ["deploy", "staging", "app"]}


def stop_serving_behind_the_pipelines_back(env: dict, service: str, environment: str) -> int:
    """An operator stops the instances by hand (Docker Engine API on the stack's Podman)."""
    import docker

    client = docker.DockerClient(base_url=env["DEPLOY_DOCKER_HOST"])
    found = client.containers.list(filters={"label": [f"deploy.service={service}", "deploy.role=instance",
                                                      f"deploy.environment={environment}"]})
    for container in found:
        container.stop(timeout=2)
    return len(found)


def test_history_assets_checks_and_dora_in_the_browser(history, tmp_path):
    instance, runs = history["instance"], history["runs"]
    assert runs["v1.0.0"].success and runs["v1.1.0"].success and not runs["v1.2.0"].success
    staging = f"http://127.0.0.1:{history['ports']['staging']}/health"
    assert httpx.get(staging, timeout=5).headers["x-app-version"] == "v1.1.0"

    before = refresh(history["catalog"], instance)
    assert before["serves_recorded_release"].passed, before["serves_recorded_release"].metadata
    assert before["backup_is_fresh"].passed            # the releases' pre-migration backups are minutes old
    assert not before["restore_verified"].passed       # no restore has been verified in this history
    assert stop_serving_behind_the_pipelines_back(history["env"], "app", "staging") == 2
    assert httpx.get(staging, timeout=5).status_code >= 500
    after = refresh(history["catalog"], instance)
    drift = after["serves_recorded_release"]
    assert not drift.passed and "no instance of it runs" in drift.description

    # By hand: staging saw 2 promotions (v1.0.0, v1.1.0) and 1 abort (v1.2.0), no rollback:
    # change failure rate 1 / (2 + 1) = 33%; in the last day 2 deployments per day.
    dora = instance.fetch_materializations(AssetKey(["dora", "staging", "app"]), limit=1).records[0]
    meta = {k: v.value for k, v in dora.asset_materialization.metadata.items()}
    assert meta["deployments_1d"] == 2 and meta["change_failure_rate_1d"] == pytest.approx(1 / 3)
    assert meta["rollbacks_7d"] == 0
    leads = [r.asset_materialization.metadata["lead_time_s"].value
             for r in instance.fetch_materializations(AssetKey(["deploy", "staging", "app"]), limit=10).records]
    assert len(leads) == 2 and meta["lead_time_median_s_1d"] == pytest.approx(sum(leads) / 2)

    summaries_of_real_releases(instance, runs)
    failed_requests_of_real_releases(instance, runs, history["users"])

    with webserver(instance.root_directory, tmp_path) as url, browser() as page:
        screens = UiTour(page, url)
        screens.runs_list(runs)
        screens.release_log(runs["v1.1.0"].run_id)
        screens.failed_release(runs["v1.2.0"].run_id)
        screens.release_summary()
        screens.catalog_with_lineage()
        screens.asset_plots()
        screens.dora(expect=["33%", "2.00"])
        screens.failing_check()


def summaries_of_real_releases(instance, runs) -> None:
    """The release summary on v1.1.0's promote event and on v1.2.0's abort (demo_repo.py says what
    each tag changes)."""
    key = AssetKey(["deploy", "staging", "app"])
    promoted = {r.run_id: r.asset_materialization.metadata["summary"].value
                for r in instance.fetch_materializations(key, limit=10).records}
    md = promoted[runs["v1.1.0"].run_id]
    for line in ("### app v1.1.0 → staging: promoted", "| serving before | v1.0.0 |",
                 "1 commit(s) since v1.0.0", "items get a sku (NULL-able column, backfilled)",
                 "| migrations new in this release | 0002_add_sku |", "| migrations applied | 0002_add_sku |",
                 "| scan findings |", "(gate passed) |", "@sha256:", "| backup | file://",
                 "| launched by | launched by hand", "| health | ok |", "| smoke /ready | ok |",
                 "| rolling: error_rate | successful | error_rate 0.0%"):
        assert line in md, (line, md)
    assert "first release of the target" in promoted[runs["v1.0.0"].run_id]
    aborts = [r.asset_observation.metadata for r in instance.fetch_observations(key, limit=10).records
              if "summary" in r.asset_observation.metadata]
    (md,) = [m["summary"].value for m in aborts if m["version"].value == "v1.2.0"]
    for line in ("### app v1.2.0 → staging: aborted (error_rate)", "| serving before | v1.1.0 |",
                 "1 commit(s) since v1.1.0", "new caching layer", "| migrations new in this release | none |",
                 "| error_rate | FAILED |", "| health | ok |"):
        assert line in md, (line, md)


def failed_requests_of_real_releases(instance, runs, users) -> None:
    """failed_requests (the demo catalog's query: the instances' 5xx over the run) on each event:
    none while v1.1.0 rolled out; v1.2.0 answered 30% of /api/items with 500, which the users saw."""
    key = AssetKey(["deploy", "staging", "app"])
    promoted = {r.run_id: r.asset_materialization.metadata for r in instance.fetch_materializations(key, limit=10).records}
    assert promoted[runs["v1.1.0"].run_id]["failed_requests"].value == 0.0
    (aborted,) = [r.asset_observation.metadata for r in instance.fetch_observations(key, limit=10).records
                  if r.run_id == runs["v1.2.0"].run_id and "failed_requests" in r.asset_observation.metadata]
    failed, seen = aborted["failed_requests"].value, users["v1.2.0"].http_errors
    print(f"v1.2.0: failed_requests {failed}, 5xx seen by the load generator {seen}")
    # increase() extrapolates at the window's edges and misses what a new series had at its first scrape.
    assert seen > 0 and 0 < failed <= 2 * seen + 5, (failed, seen)


# ------------------------------------------------------------------ the webserver and the browser

from contextlib import contextmanager  # noqa: E402


@contextmanager
def webserver(home: str, tmp_path: Path):
    port = free_port()
    log = open(tmp_path / "webserver.log", "wb")
    binary = str(Path(os.sys.executable).with_name("dagster-webserver"))
    proc = subprocess.Popen([binary, "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
                            cwd=REPO_ROOT, env={**os.environ, "DAGSTER_HOME": home}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/server_info", 120, "dagster-webserver", tmp_path / "webserver.log")
        yield url
    finally:
        stop_group(proc.pid)
        log.close()


@contextmanager
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        try:
            yield chromium.new_page(viewport={"width": 1440, "height": 900})
        finally:
            chromium.close()


ASSET_DEPS = "query { assetNodes { assetKey { path } groupName dependencyKeys { path } } }"


def graphql(url: str, query: str) -> dict:
    body = httpx.post(f"{url}/graphql", json={"query": query}, timeout=30).json()
    assert "errors" not in body, body["errors"]
    return body["data"]


from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402


class UiTour:
    """One page per screenshot: wait for what the page must show, then save it under docs/."""

    def __init__(self, page, url: str):
        self.page, self.url = page, url
        # A new instance asks once to "Join the Dagster community" (LOCAL_STACK.md); skipping it is
        # remembered. It may come late on a busy machine, so shot() looks for it again.
        page.goto(f"{url}/runs", wait_until="domcontentloaded")
        try:
            page.get_by_role("button", name="Skip").wait_for(timeout=20_000)
        except PlaywrightTimeout:
            pass
        self.skip_dialog()

    def skip_dialog(self) -> None:
        skip = self.page.get_by_role("button", name="Skip")
        if skip.count() and skip.first.is_visible():
            skip.first.click()
            self.page.wait_for_timeout(300)

    def visit(self, path: str, *must_show: str) -> str:
        """Open a page and wait for each text. A busy CI machine answers the webserver's GraphQL slowly:
        one reload after 90 s, and if the text never shows, fail with what the page did show."""
        self.page.goto(f"{self.url}{path}", wait_until="domcontentloaded")
        for text in must_show:
            for attempt in (1, 2):
                try:
                    self.page.get_by_text(text, exact=False).first.wait_for(timeout=90_000)
                    break
                except PlaywrightTimeout:
                    if attempt == 2:
                        raise AssertionError(f"{path}: {text!r} not shown; the page showed: "
                                             f"{self.page.inner_text('body')[:3000]}") from None
                    self.page.reload(wait_until="domcontentloaded")
                    self.skip_dialog()
        return self.page.inner_text("body")

    def shot(self, name: str, full_page: bool = False) -> None:
        DOCS.mkdir(exist_ok=True)
        self.page.wait_for_timeout(1000)      # let charts and the graph finish their layout
        self.skip_dialog()
        self.page.screenshot(path=str(DOCS / name), full_page=full_page)

    def runs_list(self, runs) -> None:
        text = self.visit("/runs", "release_app_staging")
        assert all(r.run_id[:8] in text for r in runs.values()), text[:2000]
        self.shot("ui-runs.png")

    def release_log(self, run_id: str) -> None:
        # The log opens at its end: the promotion's narration and the run's success.
        text = self.visit(f"/runs/{run_id}", "is stable in staging")
        assert "app v1.1.0 is stable in staging; previous v1.0.0 kept as the rollback target" in text, text[-3000:]
        assert "RUN_SUCCESS" in text
        self.shot("ui-release-run.png")

    def failed_release(self, run_id: str) -> None:
        text = self.visit(f"/runs/{run_id}", "failed verification (error_rate)")
        assert "v1.2.0 failed verification (error_rate) and was rolled back to v1.1.0" in text, text[-3000:]
        assert "RUN_FAILURE" in text
        self.shot("ui-failed-release.png")

    def release_summary(self) -> None:
        # The asset's Events tab opens on the newest event: v1.2.0's abort, its summary rendered.
        text = self.visit("/assets/deploy/staging/app?view=events", "app v1.2.0 → staging: aborted (error_rate)")
        assert "new caching layer" in text and "FAILED" in text, text[:3000]
        self.page.set_viewport_size({"width": 1440, "height": 1280})
        self.shot("ui-release-summary.png")
        self.page.set_viewport_size({"width": 1440, "height": 900})

    def catalog_with_lineage(self) -> None:
        # The catalog: full keys, their group and description.
        text = self.visit("/assets", "deploy / production / app", "dora / staging / app")
        assert "app in production: rolling release on docker" in text and "Versions must pass staging first" in text
        self.shot("ui-catalog.png")
        # The group's graph: deploy/staging/app -> deploy/production/app, and each -> its DORA asset.
        self.visit("/locations/__repository__@deploy_pipelines/asset-groups/app", "Asset Group in")
        edges = self.page.locator("svg[class*=svgContainer] path[marker-end]")    # the graph's arrows
        edges.nth(2).wait_for(state="attached", timeout=90_000)
        assert edges.count() == 3
        drawn = graphql(self.url, ASSET_DEPS)["assetNodes"]
        deps = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in drawn}
        assert deps["deploy/production/app"] == {"deploy/staging/app"}
        assert deps["dora/staging/app"] == {"deploy/staging/app"}
        assert {n["groupName"] for n in drawn} == {"app"}
        self.shot("ui-lineage.png")

    def asset_plots(self) -> None:
        self.visit("/assets/deploy/staging/app", "rolling release on docker")
        self.page.get_by_role("button", name="Plots").click()
        for name in ("duration_s", "lead_time_s"):
            self.page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
        self.page.get_by_text("lead_time_s", exact=True).first.scroll_into_view_if_needed()
        assert self.page.locator("canvas, svg.recharts-surface, .recharts-wrapper").count() >= 2
        self.shot("ui-asset-plots.png")

    def dora(self, expect: list[str]) -> None:
        text = self.visit("/assets/dora/staging/app", "DORA: app in staging")
        for value in expect:
            assert value in text, (value, text[:3000])
        self.page.set_viewport_size({"width": 1440, "height": 1280})   # the whole table: the page scrolls inside
        self.shot("ui-dora.png")
        self.page.set_viewport_size({"width": 1440, "height": 900})

    def failing_check(self) -> None:
        text = self.visit("/assets/deploy/staging/app?view=checks", "serves_recorded_release")
        self.page.get_by_text("serves_recorded_release", exact=True).first.click()
        self.page.get_by_text("no instance of it runs").first.wait_for(timeout=60_000)
        text = self.page.inner_text("body")
        assert "Failed" in text, text[:3000]
        self.shot("ui-asset-checks.png")
