"""Faults in the middle of real releases, through a real Dagster instance on the real local stack
(service `fleet`, target `relfault` of the reliability world: the demo's rolling sample service
from externally built images, under user traffic):

- SIGKILL of the run worker (a `dagster job execute` child process, killed by PID as soon as the
  step has started) during backup, migrate, deploy and verify, then re-execution from failure: the
  database is exactly as before or after the migration at the kill, users are served only by the
  old or the new version, the re-execution succeeds, one version serves, the history has each
  version promoted once, in order;
- Prometheus down (a closed port): verify is inconclusive, the release aborts, stable untouched;
- a full disk for backups (a 1 MiB tmpfs filled up): the backup fails before migrate, nothing changed;
- the Slack webhook down (a closed port): releases are unaffected, the notification sensor logs
  the messages as undelivered and moves on.
Not covered: a kill during promote (promote is idempotent; test_release_e2e re-executes it), the
database or registry down (test_faults.py), other platforms."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from deploy_pipelines.stack.process import free_port
from deploy_pipelines.steps.common import deploy_history
from deploy_pipelines_tests.fixtures_stack import add_tag
from deploy_pipelines_tests.reliability.release_world import job, reexecute, release, users
from deploy_pipelines_tests.reliability.worker import kill_when_step_starts
from deploy_pipelines_tests.test_release_e2e import schema_and_rows, serving, step_failure

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
ENV = "relfault"
TARGET = f"fleet:{ENV}"
JOB = job("release", "fleet", ENV)


@pytest.fixture(scope="module")
def faults(rel_world, fleet_images):
    world = rel_world
    for tag in ("v1.5.0", "v1.6.0", "v1.7.0", "v1.8.0"):      # the demo repository ends at v1.4.0
        add_tag(world["repo"], tag, {"NOTES": f"{tag}\n"}, f"{tag}: notes only")
    for tag in ("v1.1.0", "v1.4.0", "v1.5.0", "v1.6.0", "v1.7.0", "v1.8.0"):
        fleet_images(tag)
    target = world["targets"][TARGET]
    with users(world, TARGET):
        assert release(world, TARGET, "v1.0.0").success
        yield {**world, **target}


def promoted(world) -> list[str]:
    return [m["version"] for m, _ in deploy_history(world["instance"], "fleet", ENV) if m.get("outcome") == "promoted"]


def kill_and_reexecute(world, version: str, step: str, before: str, ledger):
    ledger("faults", f"SIGKILL of the run worker during {step}, then re-execution from failure")
    db_before = schema_and_rows(world["db"])
    run_id = kill_when_step_starts(world["instance"], world["home"], JOB,
                                   {"ops": {"scan": {"config": {"version": version}}}}, step)
    db_at_kill, serving_at_kill = schema_and_rows(world["db"]), serving(world["port"])
    assert set(serving_at_kill) <= {before, version}, serving_at_kill
    again = reexecute(world, run_id, JOB)
    assert again.success, step_failure(world["instance"], again.run_id)
    assert again.dagster_run.parent_run_id == run_id
    # scan (skipped by the re-execution) tagged the parent with the version: the re-execution carries it.
    tags = world["instance"].get_run_by_id(again.run_id).tags
    assert tags.get("deploy/version") == version and tags.get("deploy/commit"), tags
    db_after = schema_and_rows(world["db"])
    assert db_at_kill in (db_before, db_after), "the database was left half-migrated"
    assert serving(world["port"]) == {version: 30}
    history = promoted(world)
    assert history[0] == version and len(history) == len(set(history)), history
    return db_before, db_after


def test_sigkill_during_migrate(faults, ledger):
    db_before, db_after = kill_and_reexecute(faults, "v1.1.0", "migrate", "v1.0.0", ledger)
    assert ("0002_add_sku",) in db_after[1] and ("0002_add_sku",) not in db_before[1], db_after[1]


def test_sigkill_during_backup(faults, ledger):
    kill_and_reexecute(faults, "v1.4.0", "backup", "v1.1.0", ledger)


def test_sigkill_during_deploy(faults, ledger):
    kill_and_reexecute(faults, "v1.5.0", "deploy", "v1.4.0", ledger)


def test_sigkill_during_verify(faults, ledger):
    kill_and_reexecute(faults, "v1.6.0", "verify", "v1.5.0", ledger)
    assert promoted(faults)[:5] == ["v1.6.0", "v1.5.0", "v1.4.0", "v1.1.0", "v1.0.0"]


def test_prometheus_down_aborts_and_stable_is_untouched(faults, ledger):
    ledger("faults", "Prometheus down: inconclusive => abort, stable untouched")
    mp = faults["monkeypatch"]
    mp.setenv("RELFAULT_PROMETHEUS_URL", f"http://127.0.0.1:{free_port()}")
    try:
        db_before = schema_and_rows(faults["db"])
        result = release(faults, TARGET, "v1.7.0")
    finally:
        mp.setenv("RELFAULT_PROMETHEUS_URL", faults["env"]["DEPLOY_PROMETHEUS_URL"])
    assert not result.success
    step, message = step_failure(faults["instance"], result.run_id)
    assert step == "verify" and "inconclusive" in message, message
    assert serving(faults["port"]) == {"v1.6.0": 30}
    assert schema_and_rows(faults["db"]) == db_before
    assert promoted(faults)[0] == "v1.6.0"


@pytest.fixture
def full_disk(tmp_path):
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    assert done.returncode == 0, f"a small tmpfs is needed for the full-disk case (root): {done.stderr}"
    try:
        # Filled to the last byte (ever smaller writes), so even a tiny dump cannot fit.
        with open(mount / "filler", "wb", buffering=0) as f:
            for size in (65536, 4096, 512, 64, 8, 1):
                try:
                    while True:
                        f.write(b"\0" * size)
                except OSError:
                    pass
        assert shutil.disk_usage(mount).free == 0
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_for_backups_fails_before_migrate(faults, full_disk, ledger):
    ledger("faults", "full disk for backups: fails before migrate, nothing changed")
    mp = faults["monkeypatch"]
    mp.setenv("RELFAULT_BACKUP_ROOT", f"file://{full_disk / 'backups'}")
    try:
        db_before = schema_and_rows(faults["db"])
        result = release(faults, TARGET, "v1.8.0")
    finally:
        mp.setenv("RELFAULT_BACKUP_ROOT", faults["settings"]["RELFAULT_BACKUP_ROOT"])
    assert not result.success
    step, message = step_failure(faults["instance"], result.run_id)
    assert step == "backup" and "backup could not be stored, nothing was changed: No space left" in message, message
    started = {r.dagster_event.step_key for r in faults["instance"].all_logs(result.run_id)
               if r.dagster_event and r.dagster_event.event_type_value == "STEP_START"}
    assert "migrate" not in started and "deploy" not in started, started
    assert schema_and_rows(faults["db"]) == db_before and serving(faults["port"]) == {"v1.6.0": 30}
    assert not list(Path(full_disk).rglob("*.dump"))


def test_webhook_down_releases_unaffected_and_logged(faults, ledger, caplog):
    ledger("faults", "Slack webhook down: releases unaffected, undelivered messages logged")
    from deploy_pipelines_tests.reliability.test_planted_secrets_e2e import notify

    mp = faults["monkeypatch"]
    mp.setenv("REL_SLACK_WEBHOOK", f"http://127.0.0.1:{free_port()}/services/down")
    try:
        result = notify(faults)
    finally:
        mp.setenv("REL_SLACK_WEBHOOK", faults["webhook"].url)
    sent, undelivered = (int(x) for x in
                         result.skip_message.removesuffix(" not delivered").split(" notification(s) sent, "))
    assert sent == 0 and undelivered >= 8, result.skip_message
    assert "not delivered" in caplog.text
    assert promoted(faults)[0] == "v1.6.0" and serving(faults["port"]) == {"v1.6.0": 30}
