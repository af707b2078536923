"""Sensors and schedules, one tick at a time (build_sensor_context / build_schedule_context) on real
git repositories and a real Dagster instance: tags, branch, promotion, notifications, the patch
calendar and the backup schedule. The metrics watch and the maintenance jobs need Prometheus and
PostgreSQL: test_maintenance.py."""

import calendar
import json
import subprocess
import threading
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import semver
import yaml
from dagster import (AssetKey, AssetMaterialization, DagsterInstance, Failure, RunRequest, SensorResult, SkipReason,
                     build_schedule_context, build_sensor_context, instance_for_test, job, op)
from hypothesis import given, settings
from hypothesis import strategies as st

from deploy_pipelines.catalog import load_catalog
from deploy_pipelines.catalog.models import PatchSpec, env_names
from deploy_pipelines.triggers.promotion import promotion_decision
from deploy_pipelines.triggers.schedules import is_patch_day, patch_cron, patch_days
from deploy_pipelines.triggers.tags import evaluate_branch, evaluate_tags, plan_tags

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]


def sh(*args, cwd=None) -> str:
    return subprocess.run(list(args), cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def catalog_doc(repo: str, approval: str = "auto") -> dict:
    docker = {"host": "unix:///nonexistent.sock"}
    return {
        "project": "t", "timezone": "Asia/Tokyo",
        "environments": {
            "staging": {"docker": docker, "registry": "127.0.0.1:5000"},
            "production": {"docker": docker, "registry": "127.0.0.1:5000", "requires": "staging",
                           "approval": approval},
            "onprem": {"docker": docker, "registry": "127.0.0.1:5000"},
        },
        "services": {"api": {"repo": repo, "image": {"repository": "t/api"},
                             "targets": {"staging": {"port": 18080}, "production": {"port": 18081}}},
                     "solo": {"repo": repo, "image": {"repository": "t/solo"}, "branch": None,
                              "targets": {"onprem": {"port": 18082}}}},
        "notify": {"slack": {"webhook": {"env": "TEST_SLACK_WEBHOOK"}}, "ui_url": "http://ui.example"},
        "patch": {"schedule": "first-friday 03:00"},
    }


@pytest.fixture
def repo(tmp_path) -> Path:
    bare = tmp_path / "svc.git"
    sh("git", "init", "-q", "--bare", "-b", "main", str(bare))
    work = tmp_path / "work"
    sh("git", "clone", "-q", str(bare), str(work))
    (work / "README").write_text("v0\n")
    sh(*GIT, "add", "-A", cwd=work)
    sh(*GIT, "commit", "-qm", "init", cwd=work)
    sh("git", "push", "-q", "origin", "HEAD:main", cwd=work)
    return bare


def push_tags(bare: Path, *tags: str) -> None:
    work = bare.parent / "work"
    for tag in tags:
        (work / "README").write_text(tag + "\n")
        sh(*GIT, "commit", "-qam", tag, cwd=work)
        sh(*GIT, "tag", "-a", tag, "-m", tag, cwd=work)
    sh("git", "push", "-q", "origin", "HEAD:main", *tags, cwd=work)


def git_tags(bare: Path) -> dict[str, str]:
    from deploy_pipelines.adapters.git import LocalGit

    return LocalGit(repo=str(bare)).tags()


@pytest.fixture
def catalog(tmp_path, repo):
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(catalog_doc(str(repo))))
    return load_catalog(path)


@pytest.fixture
def instance():
    with instance_for_test() as inst:
        yield inst


def record_promotion(instance: DagsterInstance, service: str, environment: str, version: str) -> None:
    instance.report_runless_asset_event(AssetMaterialization(
        AssetKey(["deploy", environment, service]), metadata={"outcome": "promoted", "version": version}))


def tick(instance, catalog, tags, cursor=None, service="api", environment="staging"):
    ctx = build_sensor_context(instance=instance, cursor=cursor)
    result = evaluate_tags(ctx, catalog, service, environment, tags)
    if isinstance(result, SkipReason):
        return [], result.skip_message, cursor
    skip = result.skip_reason.skip_message if result.skip_reason else None
    return list(result.run_requests or []), skip, result.cursor or cursor


# ------------------------------------------------------------------------------------- plan_tags

def test_plan_tags_rules(catalog):
    svc = catalog.services["api"]
    plan = plan_tags({"v1.2.0": "a", "v1.3.0": "b", "nightly": "c", "v1.0.9": "d", "v2.0.0-rc.1": "e"},
                     svc, semver.Version.parse("1.1.0"), allow_prerelease=True)
    assert plan.release == ("v2.0.0-rc.1", "e")
    assert plan.superseded == ["v1.2.0", "v1.3.0"]
    assert "nightly" in plan.skipped and "not a release version" in plan.skipped["nightly"]
    assert "not newer than v1.1.0" in plan.skipped["v1.0.9"]
    no_pre = plan_tags({"v2.0.0-rc.1": "e"}, svc, None, allow_prerelease=False)
    assert no_pre.release is None and "pre-release" in no_pre.skipped["v2.0.0-rc.1"]


versions = st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5)).map(lambda t: "v%d.%d.%d" % t)


@settings(max_examples=200, deadline=None)
@given(st.sets(versions, max_size=12), st.one_of(st.none(), versions))
def test_plan_tags_releases_only_the_newest_above_the_floor(tags, floor):
    from deploy_pipelines.catalog.models import Service

    svc = Service(repo="x", image={"repository": "x"}, targets={"s": {"port": 1}})
    floor_v = semver.Version.parse(floor[1:]) if floor else None
    plan = plan_tags({t: t for t in tags}, svc, floor_v, True)
    newer = [t for t in tags if floor_v is None or semver.Version.parse(t[1:]) > floor_v]
    if not newer:
        assert plan.release is None
    else:
        assert plan.release[0] == max(newer, key=lambda t: semver.Version.parse(t[1:]))
        assert set(plan.superseded) == set(newer) - {plan.release[0]}
    # every new tag is accounted for exactly once
    accounted = ({plan.release[0]} if plan.release else set()) | set(plan.superseded) | set(plan.skipped)
    assert accounted == tags


# ------------------------------------------------------------------------------------- tag sensor

def test_tag_sensor_baseline_then_new_tag_then_two_at_once(instance, catalog, repo):
    push_tags(repo, "v1.0.0")
    requests, skip, cursor = tick(instance, catalog, git_tags(repo))
    assert requests == [] and "baseline: 1 existing tag" in skip and "v1.0.0" in skip

    requests, skip, cursor2 = tick(instance, catalog, git_tags(repo), cursor)
    assert requests == [] and "no new tags" in skip

    push_tags(repo, "v1.1.0")
    requests, _, cursor = tick(instance, catalog, git_tags(repo), cursor)
    assert len(requests) == 1
    r: RunRequest = requests[0]
    commit = git_tags(repo)["v1.1.0"]
    assert r.run_key == "api:staging:v1.1.0" and r.job_name == "release_api_staging"
    assert r.run_config == {"ops": {"scan": {"config": {"version": "v1.1.0"}}}}
    assert r.tags["deploy/target"] == "api:staging" and r.tags["deploy/version"] == "v1.1.0"
    assert r.tags["deploy/commit"] == commit
    assert json.loads(cursor)["released"] == "v1.1.0"

    push_tags(repo, "v1.2.0", "v1.3.0", "latest")
    requests, skip, cursor = tick(instance, catalog, git_tags(repo), cursor)
    assert [r.run_key for r in requests] == ["api:staging:v1.3.0"]
    # the superseded and skipped tags are named in the tick's log (no skip reason with a request)
    assert skip is None

    push_tags(repo, "v1.2.5")       # older than what was released
    requests, skip, cursor = tick(instance, catalog, git_tags(repo), cursor)
    assert requests == [] and "v1.2.5" in skip and "not newer than v1.3.0" in skip

    push_tags(repo, "release-candidate")
    requests, skip, _ = tick(instance, catalog, git_tags(repo), cursor)
    assert requests == [] and "release-candidate" in skip and "not a release version" in skip


def test_tag_older_than_what_runs_is_skipped(instance, catalog, repo):
    push_tags(repo, "v1.0.0")
    _, _, cursor = tick(instance, catalog, git_tags(repo))
    record_promotion(instance, "api", "staging", "v2.0.0")     # released by hand meanwhile
    push_tags(repo, "v1.5.0")
    requests, skip, _ = tick(instance, catalog, git_tags(repo), cursor)
    assert requests == [] and "v1.5.0" in skip and "not newer than v2.0.0" in skip


def test_prerelease_goes_to_staging_only(instance, catalog, repo):
    push_tags(repo, "v1.0.0")
    _, _, c1 = tick(instance, catalog, git_tags(repo))
    _, _, c2 = tick(instance, catalog, git_tags(repo), service="solo", environment="onprem")
    push_tags(repo, "v1.1.0-rc.1")
    requests, _, _ = tick(instance, catalog, git_tags(repo), c1)
    assert [r.run_key for r in requests] == ["api:staging:v1.1.0-rc.1"]
    requests, skip, _ = tick(instance, catalog, git_tags(repo), c2, service="solo", environment="onprem")
    assert requests == [] and "pre-release" in skip


def test_branch_sensor_releases_new_commits_to_staging(instance, repo):
    from deploy_pipelines.adapters.git import LocalGit

    git = LocalGit(repo=str(repo))
    ctx = build_sensor_context(instance=instance)
    first = evaluate_branch(ctx, "api", "staging", "main", git.branch_head("main"))
    assert isinstance(first, SensorResult) and not first.run_requests and "baseline" in first.skip_reason.skip_message
    cursor = first.cursor
    same = evaluate_branch(build_sensor_context(instance=instance, cursor=cursor), "api", "staging", "main",
                           git.branch_head("main"))
    assert isinstance(same, SkipReason)
    push_tags(repo, "v9.9.9")
    head = git.branch_head("main")
    moved = evaluate_branch(build_sensor_context(instance=instance, cursor=cursor), "api", "staging", "main", head)
    (r,) = moved.run_requests
    assert r.run_key == f"api:staging:main-{head[:12]}" and moved.cursor == head
    assert r.run_config["ops"]["scan"]["config"] == {"version": f"main-{head[:12]}", "commit": head}


def test_definitions_name_every_trigger(tmp_path, repo, monkeypatch):
    from deploy_pipelines.definitions import build_definitions

    path = tmp_path / "deploy.yaml"
    doc = catalog_doc(str(repo))
    doc["services"]["api"]["database"] = {"engine": "postgres", "url": {"env": "API_DB"},
                                          "backup": {"schedule": "30 1 * * *"}}
    doc["environments"]["staging"]["backup_root"] = "/tmp/b"
    doc["environments"]["production"]["backup_root"] = "/tmp/b"
    doc["environments"]["production"]["prometheus"] = "http://127.0.0.1:9"
    doc["environments"]["staging"]["prometheus"] = "http://127.0.0.1:9"
    doc["services"]["api"]["verify"] = {"bake": "10m", "rules": [{"name": "e", "query": "x", "max": 1}]}
    path.write_text(yaml.safe_dump(doc))
    for name in env_names(load_catalog(path)):
        monkeypatch.setenv(name, "x")
    repo_def = build_definitions(path)
    sensors = {s.name for s in repo_def.sensor_defs}
    assert {"tags_api", "branch_api", "tags_solo", "promote_api_production", "watch_api_staging",
            "watch_api_production", "notify_runs"} <= sensors
    assert "branch_solo" not in sensors
    schedules = {s.name: s for s in repo_def.schedule_defs}
    b = schedules["backup_api_production_schedule"]
    assert b.cron_schedule == "30 1 * * *" and b.execution_timezone == "Asia/Tokyo"
    assert schedules["patch_api_production_schedule"].cron_schedule == "0 3 * * 5"
    jobs = {j.name for j in repo_def.get_all_jobs()}
    assert {"backup_api_staging", "verify_backup_api_production", "patch_solo_onprem",
            "approve_api_production"} <= jobs and "approve_api_staging" not in jobs


# ------------------------------------------------------------------------------------- promotion

def test_promotion_rules(tmp_path, repo):
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(catalog_doc(str(repo))))
    auto = load_catalog(path)
    path.write_text(yaml.safe_dump(catalog_doc(str(repo), approval="manual")))
    manual = load_catalog(path)
    tags = {"deploy/version": "v1.4.0", "deploy/commit": "c" * 40}

    r = promotion_decision(auto, "api", "production", "release_api_staging", tags, "approve_api_production")
    assert isinstance(r, RunRequest) and r.run_key == "api:production:v1.4.0"
    assert r.job_name == "release_api_production" and r.tags["deploy/trigger"] == "promotion"

    s = promotion_decision(manual, "api", "production", "release_api_staging", tags, "approve_api_production")
    assert isinstance(s, SkipReason) and "approve_api_production" in s.skip_message and "v1.4.0" in s.skip_message
    a = promotion_decision(manual, "api", "production", "approve_api_production", tags, "approve_api_production")
    assert isinstance(a, RunRequest) and a.run_key == "api:production:v1.4.0"

    pre = promotion_decision(auto, "api", "production", "release_api_staging",
                             {**tags, "deploy/version": "v1.5.0-rc.1"}, "approve_api_production")
    assert isinstance(pre, SkipReason) and "pre-release" in pre.skip_message
    branch = promotion_decision(auto, "api", "production", "release_api_staging",
                                {**tags, "deploy/version": "main-0123456789ab"}, "approve_api_production")
    assert isinstance(branch, SkipReason) and "not a release tag" in branch.skip_message


# ------------------------------------------------------------------------------------- notifications

class Receiver:
    """A Slack-compatible webhook on loopback that records what it is sent."""

    def __init__(self):
        self.messages: list[dict] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.messages.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@op
def fine():
    return 1


@op
def broken():
    raise Failure("verify: error_rate 30% breached max 5%")


@job(name="release_api_staging")
def ok_job():
    fine()


@job(name="release_api_production")
def bad_job():
    broken()


def test_notifications_in_order_and_a_down_webhook_never_fails(instance):
    from deploy_pipelines.adapters.notifier import SlackWebhook
    from deploy_pipelines.triggers.notify import evaluate_notify

    receiver = Receiver()
    try:
        hook = SlackWebhook(webhook_url=receiver.url, info_channel="#deployments", failure_channel="#incidents")
        names = ["release_api_staging", "release_api_production"]
        base = evaluate_notify(ctx := build_sensor_context(instance=instance), hook, "http://ui", names)
        assert "baseline" in base.skip_message
        cursor = ctx.cursor
        ok = ok_job.execute_in_process(instance=instance, tags={"deploy/target": "api:staging",
                                                                "deploy/version": "v1.2.0"})
        bad = bad_job.execute_in_process(instance=instance, raise_on_error=False,
                                         tags={"deploy/target": "api:production", "deploy/version": "v1.2.0"})
        ctx = build_sensor_context(instance=instance, cursor=cursor)
        result = evaluate_notify(ctx, hook, "http://ui", names)
        assert "4 notification(s) sent, 0 not delivered" in result.skip_message
        texts = [m["text"] for m in receiver.messages]
        assert [m["channel"] for m in receiver.messages] == ["#deployments", "#deployments", "#deployments",
                                                             "#incidents"]
        assert "started: api v1.2.0 to staging" in texts[0] and f"http://ui/runs/{ok.run_id}" in texts[0]
        assert "succeeded: api v1.2.0 to staging" in texts[1]
        assert "started: api v1.2.0 to production" in texts[2]
        assert "failed: api v1.2.0 to production" in texts[3] and "error_rate 30% breached" in texts[3]
        assert "Reason: broken: verify: error_rate 30% breached max 5%" in texts[3], texts[3]   # no class path
        assert f"/runs/{bad.run_id}" in texts[3]
        # Nothing new: nothing sent twice.
        again = evaluate_notify(build_sensor_context(instance=instance, cursor=ctx.cursor), hook, "http://ui", names)
        assert len(receiver.messages) == 4 and "no run status changes" in again.skip_message
        cursor = ctx.cursor
    finally:
        receiver.close()
    # The webhook is down: the tick logs it, does not raise, and moves on.
    ok_job.execute_in_process(instance=instance, tags={"deploy/target": "api:staging", "deploy/version": "v1.3.0"})
    down = SlackWebhook(webhook_url=receiver.url, timeout_seconds=1)
    ctx = build_sensor_context(instance=instance, cursor=cursor)
    result = evaluate_notify(ctx, down, "http://ui", names)
    assert "0 notification(s) sent, 2 not delivered" in result.skip_message
    assert int(ctx.cursor) > int(cursor)


# ------------------------------------------------------------------------------------- schedules

def first_fridays(year: int) -> list[date]:
    """Independent of the implementation: the Friday among days 1..7 of each month."""
    return [next(date(year, m, d) for d in range(1, 8) if date(year, m, d).weekday() == calendar.FRIDAY)
            for m in range(1, 13)]


@pytest.mark.parametrize("year", [2026, 2027, 2028])
def test_first_friday_dates_of_a_full_year(year):
    spec = PatchSpec(schedule="first-friday 03:00")
    assert patch_days(year, spec) == first_fridays(year)
    assert patch_cron(spec) == "0 3 * * 5"


def test_patch_schedule_runs_on_first_fridays_only(tmp_path, repo, monkeypatch):
    """Every tick the cron fires in 2027 (each Friday 03:00 Tokyo) through the real schedule."""
    from deploy_pipelines.definitions import build_definitions

    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(catalog_doc(str(repo))))
    for name in env_names(load_catalog(path)):
        monkeypatch.setenv(name, "x")
    sched = {s.name: s for s in build_definitions(path).schedule_defs}[
        "patch_api_production_schedule"]
    tz = ZoneInfo("Asia/Tokyo")
    day = date(2027, 1, 1)
    ran = []
    while day.year == 2027:
        if day.weekday() == calendar.FRIDAY:
            when = datetime(day.year, day.month, day.day, 3, 0, tzinfo=tz)
            data = sched.evaluate_tick(build_schedule_context(scheduled_execution_time=when))
            if data.run_requests:
                (r,) = data.run_requests
                assert r.run_key == f"patch:api:production:{day.isoformat()}"
                assert r.tags["deploy/target"] == "api:production" and r.tags["deploy/kind"] == "patch"
                ran.append(day)
            else:
                assert "is not the first Friday" in data.skip_message
        day += timedelta(days=1)
    assert ran == first_fridays(2027) and len(ran) == 12


@pytest.mark.parametrize("schedule,expected", [
    ("last-sunday 04:30", lambda y, m: max(d for d in range(1, calendar.monthrange(y, m)[1] + 1)
                                           if date(y, m, d).weekday() == calendar.SUNDAY)),
    ("second-tuesday 02:00", lambda y, m: [d for d in range(1, 32) if d <= calendar.monthrange(y, m)[1]
                                           and date(y, m, d).weekday() == calendar.TUESDAY][1]),
])
def test_other_patch_days(schedule, expected):
    spec = PatchSpec(schedule=schedule)
    assert patch_days(2027, spec) == [date(2027, m, expected(2027, m)) for m in range(1, 13)]
    assert not is_patch_day(date(2027, 3, 1), "first", calendar.FRIDAY)


# ------------------------------------------------------------------------------------- approval gate

def test_production_refuses_what_did_not_pass_staging_and_approval_records_it(tmp_path, repo, monkeypatch, instance):
    from deploy_pipelines.definitions import build_definitions

    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(catalog_doc(str(repo), approval="manual")))
    for name in env_names(load_catalog(path)):
        monkeypatch.setenv(name, "x")
    defs = build_definitions(path)
    push_tags(repo, "v2.0.0")

    release = defs.get_job("release_api_production")
    refused = release.execute_in_process(run_config={"ops": {"scan": {"config": {"version": "v2.0.0"}}}},
                                         instance=instance, op_selection=["scan"], raise_on_error=False)
    assert not refused.success
    (failure,) = [e for e in refused.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "v2.0.0 has not passed staging" in failure.event_specific_data.error.message

    approve = defs.get_job("approve_api_production")
    early = approve.execute_in_process(run_config={"ops": {"approve": {"config": {"version": "v2.0.0"}}}},
                                       instance=instance, raise_on_error=False)
    assert not early.success          # nothing to approve before staging passed

    record_promotion(instance, "api", "staging", "v2.0.0")
    ok = approve.execute_in_process(run_config={"ops": {"approve": {"config": {"version": "v2.0.0",
                                                                              "note": "CAB-42"}}}},
                                    instance=instance)
    assert ok.success
    assert instance.get_run_by_id(ok.run_id).tags["deploy/version"] == "v2.0.0"
    obs = [e for e in ok.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    meta = obs[0].event_specific_data.asset_observation.metadata
    assert meta["outcome"].value == "approved" and meta["note"].value == "CAB-42"
    # The promotion sensor turns this approval into the production release.
    r = promotion_decision(load_catalog(path), "api", "production", "approve_api_production",
                           dict(instance.get_run_by_id(ok.run_id).tags), "approve_api_production")
    assert isinstance(r, RunRequest) and r.run_key == "api:production:v2.0.0"


def test_the_real_sensor_skips_an_unchanged_listing_without_parsing(tmp_path, repo, monkeypatch, instance):
    from deploy_pipelines.definitions import build_definitions

    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(catalog_doc(str(repo))))
    for name in env_names(load_catalog(path)):
        monkeypatch.setenv(name, "x")
    (sensor_def,) = [s for s in build_definitions(path).sensor_defs if s.name == "tags_api"]
    push_tags(repo, "v1.0.0")
    first = sensor_def.evaluate_tick(build_sensor_context(instance=instance))
    assert "baseline" in first.skip_message and first.cursor.startswith('{"fingerprint": "')
    same = sensor_def.evaluate_tick(build_sensor_context(instance=instance, cursor=first.cursor))
    assert same.skip_message == "no new tags (listing unchanged)" and not same.run_requests
    push_tags(repo, "v1.1.0")
    moved = sensor_def.evaluate_tick(build_sensor_context(instance=instance, cursor=first.cursor))
    assert [r.run_key for r in moved.run_requests] == ["api:staging:v1.1.0"]
    again = sensor_def.evaluate_tick(build_sensor_context(instance=instance, cursor=moved.cursor))
    assert again.skip_message == "no new tags (listing unchanged)"
