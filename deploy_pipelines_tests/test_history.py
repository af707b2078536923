"""The history's definitions and DORA arithmetic: deploy/<env>/<service> asset specs built from
a two-environment catalog (groups, descriptions, kinds, staging -> production lineage), the checks
and refresh job in the code location, and DORA metrics computed from a history made by real runs
in a real Dagster instance, against values computed by hand below.

The release summary's parts (commits between releases from a real git repository, canary
narration, who launched a run) are checked here; whole summaries on real release runs in
test_ui_e2e.py.

Not covered here: checks against a real platform and the UI (test_ui_e2e.py), the releases that
write these events (test_release_e2e.py)."""


import time
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, AssetMaterialization, AssetObservation, Config, instance_for_test, job, materialize, op

from deploy_pipelines.catalog import load_catalog
from deploy_pipelines.catalog.models import env_names
from deploy_pipelines.history.assets import deploy_specs, dora_assets, dora_key
from deploy_pipelines.history.checks import allowed_backup_age_s, drift_result
from deploy_pipelines.history.dora import dora_metrics, read_events

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo" / "deploy.yaml"


@pytest.fixture(scope="module")
def two_envs(tmp_path_factory) -> Path:
    doc = yaml.safe_load(DEMO.read_text())
    env = doc["environments"]["demo"]
    doc["environments"] = {"staging": env, "production": {**env, "requires": "staging"}}
    doc["services"]["shop"]["owners"] = ["team:shop", "shop-oncall@example.com"]
    for name, svc in doc["services"].items():
        target = svc["targets"]["demo"]
        # Each target its own listener: two targets on one Docker host cannot share a port.
        svc["targets"] = {"staging": target, "production": {**target, "port": {"env": f"{name.upper()}_PROD_PORT"}}}
    path = tmp_path_factory.mktemp("catalog") / "deploy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_deploy_assets_grouped_described_with_promotion_lineage(two_envs):
    specs = {s.key.to_user_string(): s for s in deploy_specs(load_catalog(two_envs))}
    assert set(specs) == {f"deploy/{e}/{s}" for e in ("staging", "production") for s in ("app", "shop", "web")}
    prod = specs["deploy/production/shop"]
    assert prod.group_name == "shop"
    assert [d.asset_key for d in prod.deps] == [AssetKey(["deploy", "staging", "shop"])]
    assert specs["deploy/staging/shop"].deps == []
    assert prod.owners == ["team:shop", "shop-oncall@example.com"] and specs["deploy/production/app"].owners == []
    assert prod.kinds == {"docker", "postgres"}
    assert "canary release on docker" in prod.description and "postgres database" in prod.description
    assert "must pass staging first" in prod.description
    assert "blue_green release" in specs["deploy/production/web"].description


def test_code_location_declares_assets_checks_and_refresh_job(two_envs, monkeypatch):
    from deploy_pipelines.definitions import build_definitions

    for name in env_names(load_catalog(two_envs)):
        monkeypatch.setenv(name, "1" if name.endswith("_PORT") else f"dummy-{name.lower()}")
    defs = build_definitions(two_envs)
    graph = defs.asset_graph
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"deploy/production/app", "dora/production/app", "dora/staging/web"} <= keys
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert ("deploy/production/app", "serves_recorded_release") in checks
    assert ("deploy/staging/shop", "backup_is_fresh") in checks and ("deploy/staging/shop", "restore_verified") in checks
    assert defs.get_job("refresh_deploy_history").name == "refresh_deploy_history"
    sensors = {s.name for s in defs.sensor_defs}
    assert {"refresh_deploy_history_on_success", "refresh_deploy_history_on_failure"} <= sensors


def test_drift_result_names_what_differs():
    from deploy_pipelines.adapters.records import Release

    recorded = {"version": "v1.1.0", "digest": "sha256:aaa", "outcome": "promoted"}
    same = Release("app", "demo", "v1.1.0", "sha256:aaa", "r@sha256:aaa")
    other = Release("app", "demo", "v1.2.0", "sha256:bbb", "r@sha256:bbb")
    assert drift_result(recorded, same, 2).passed
    bad = drift_result(recorded, other, 2)
    assert not bad.passed and "platform serves v1.2.0" in bad.description
    stopped = drift_result(recorded, same, 0)
    assert not stopped.passed and "no instance of it runs" in stopped.description
    assert drift_result(None, None, 0).passed


def test_backup_age_allows_one_interval_since_the_last_tick():
    # 2026-11-26 05:00 UTC, daily at 02:00 UTC: the tick before the last one was 2026-11-25 02:00.
    now = 1795669200.0
    assert allowed_backup_age_s("0 2 * * *", "UTC", now) == pytest.approx(27 * 3600 + 3600)


class Event(Config):
    outcome: str
    version: str
    lead_time_s: float = 0.0


KEY = AssetKey(["deploy", "demo", "app"])


@op
def record_event(context, config: Event) -> None:
    meta = {"outcome": config.outcome, "version": config.version}
    if config.outcome == "aborted":      # verify records aborts as observations, as steps/verify.py does
        context.log_event(AssetObservation(KEY, metadata=meta))
        return
    if config.lead_time_s:
        meta["lead_time_s"] = config.lead_time_s
    context.log_event(AssetMaterialization(KEY, metadata=meta))


@job
def record_history():
    record_event()


def test_dora_from_a_history_of_real_runs(tmp_path):
    history = [("promoted", "v1.0.0", 100.0), ("promoted", "v1.1.0", 300.0), ("aborted", "v1.2.0", 0.0),
               ("promoted", "v1.2.1", 500.0), ("rolled_back", "v1.1.0", 0.0), ("promoted", "v1.3.0", 700.0)]
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        for outcome, version, lead in history:
            result = record_history.execute_in_process(instance=instance, run_config={"ops": {"record_event": {
                "config": {"outcome": outcome, "version": version, "lead_time_s": lead}}}})
            assert result.success
            time.sleep(0.05)     # distinct timestamps, in order
        events = read_events(instance, KEY)
        assert [e.version for e in events] == [v for _, v, _ in history]
        ts = {(e.outcome, e.version): e.timestamp for e in events}

        # By hand: 4 promotions; leads 100, 300, 500, 700 -> median 400; failures: 1 abort + 1 rollback
        # over 4 promoted + 1 aborted changes = 0.4; restores: abort -> v1.2.1, rollback -> v1.3.0.
        restore = ((ts["promoted", "v1.2.1"] - ts["aborted", "v1.2.0"])
                   + (ts["promoted", "v1.3.0"] - ts["rolled_back", "v1.1.0"])) / 2
        (dora,) = [a for a in dora_assets(load_catalog(DEMO)) if a.key == dora_key("app", "demo")]
        assert materialize([dora], instance=instance).success
        got = instance.fetch_materializations(dora_key("app", "demo"), limit=1).records[0]
        meta = {k: v.value for k, v in got.asset_materialization.metadata.items()}
        assert meta["deployments_1d"] == 4 and meta["deployment_frequency_per_day_1d"] == 4.0
        assert meta["deployment_frequency_per_day_7d"] == pytest.approx(4 / 7)
        assert meta["lead_time_median_s_7d"] == 400.0
        assert meta["change_failure_rate_1d"] == pytest.approx(0.4)
        assert meta["time_to_restore_mean_s_1d"] == pytest.approx(restore)
        assert meta["rollbacks_7d"] == 1
        assert "| change failure rate | 40% | 40% |" in meta["summary"]

        # Two days later the day window is empty and the week still holds every event.
        later = dora_metrics(events, ts["promoted", "v1.3.0"] + 2 * 86400)
        assert later["1d"]["deployments"] == 0 and later["1d"]["change_failure_rate"] is None
        assert later["7d"]["deployments"] == 4 and later["7d"]["rollbacks"] == 1


def test_release_summary_parts_from_a_real_repository_and_run_tags(tmp_path):
    from deploy_pipelines.adapters.git import LocalGit
    from deploy_pipelines.catalog.models import Canary
    from deploy_pipelines.demo_repo import create_demo_repo
    from deploy_pipelines.history.summary import canary_narration, changes, launched_by

    tags = create_demo_repo(tmp_path / "sample.git", Path(__file__).resolve().parents[1] / "examples" / "sample-service")
    git = LocalGit(repo=str(tmp_path / "sample.git"))
    got = changes(git, {"version": "v1.0.0", "commit": tags["v1.0.0"]}, tags["v1.2.0"])
    assert got[0] == f"2 commit(s) since v1.0.0 (`{tags['v1.0.0'][:12]}`)"
    assert got[1:] == [f"- `{tags['v1.2.0'][:12]}` new caching layer (answers 30% of API requests with HTTP 500)",
                       f"- `{tags['v1.1.0'][:12]}` items get a sku (NULL-able column, backfilled)"]
    assert changes(git, None, tags["v1.0.0"]) == ["first release of the target: everything in the tree is new"]

    canary = Canary.model_validate({"steps": [{"setWeight": 10, "pause": 5}, {"setWeight": 50}, {"pause": 1}]})
    stopped = canary_narration(canary, first=False, reached=["10%", "50%"], promoted=False)
    assert stopped == ["1. canary 10%, pause 5s, analysis: reached", "2. canary 50%, analysis: stopped here",
                       "3. canary step 3/3, pause 1s, analysis: not reached"]
    assert all(line.endswith(": reached") for line in canary_narration(canary, False, None, promoted=True))

    (tmp_path / "home").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        first = record_history.execute_in_process(
            instance=instance, tags={"dagster/sensor_name": "app_on_new_tag", "deploy/trigger": "tag"},
            run_config={"ops": {"record_event": {"config": {"outcome": "promoted", "version": "v1.0.0"}}}})
        assert launched_by(first.dagster_run) == "sensor `app_on_new_tag`, trigger tag"
        by_hand = record_history.execute_in_process(
            instance=instance, run_config={"ops": {"record_event": {"config": {"outcome": "promoted",
                                                                               "version": "v1.0.1"}}}})
        assert launched_by(by_hand.dagster_run).startswith("launched by hand")
