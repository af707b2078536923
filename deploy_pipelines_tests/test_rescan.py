"""The serving_image_rescan asset check: a release is recorded by real runs in a real Dagster
instance (its scan step runs the real scan gate over the demo repository's tree: bandit for real,
plus a Trivy stand-in that prints a Trivy JSON report), then the check, executed as Dagster runs
it, rescans the serving release. It passes while the report is the one the release saw, and fails
naming the CVE once the report carries a critical finding the release's scan did not (the shared
fixture trivy-image.json: Trivy is not installable here, so its real output stands in for a
vulnerability database updated after the release); and it fails when a scanner cannot run. The
scanner receives the serving image by digest.

Not covered: a real Trivy run, the schedule firing (the refresh job's schedule is Dagster's)."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pytest
import yaml
from dagster import (AssetMaterialization, AssetSelection, Definitions, Out, Output, define_asset_job,
                     instance_for_test, job, op)

from deploy_pipelines.adapters.git import LocalGit
from deploy_pipelines.catalog import load_catalog
from deploy_pipelines.demo_repo import create_demo_repo
from deploy_pipelines.history.assets import deploy_specs
from deploy_pipelines.history.checks import resource_key
from deploy_pipelines.history.rescan import rescan_check
from deploy_pipelines.steps.common import history_key
from deploy_pipelines.steps.gate import run_gate

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("DEPLOY_SHARED_DIR", REPO.parent / "shared")) / "fixtures" / "scanners"
IMAGE = "127.0.0.1:5000/demo/sample-service@sha256:" + "ab" * 32
CLEAN_REPORT = {"SchemaVersion": 2, "ArtifactName": "demo", "ArtifactType": "container_image",
                "Results": [{"Target": "demo (debian 12)", "Class": "os-pkgs", "Type": "debian"}]}


@pytest.fixture
def world(tmp_path, monkeypatch):
    tags = create_demo_repo(tmp_path / "sample.git", REPO / "examples" / "sample-service")
    doc = yaml.safe_load((REPO / "examples" / "demo" / "deploy.yaml").read_text())
    app = doc["services"]["app"]
    app["scan"] = {**app["scan"], "scanners": [*app["scan"]["scanners"], {
        "name": "trivy-image", "format": "trivy-json",
        "command": ["sh", "-c", 'echo "$DEPLOY_IMAGE" > "$RESCAN_SEEN"; cat "$RESCAN_FEED"']}]}
    doc["services"] = {"app": app}
    catalog = tmp_path / "deploy.yaml"
    catalog.write_text(yaml.safe_dump(doc, sort_keys=False))
    feed = tmp_path / "trivy-report.json"
    feed.write_text(json.dumps(CLEAN_REPORT))
    monkeypatch.setenv("RESCAN_FEED", str(feed))
    monkeypatch.setenv("RESCAN_SEEN", str(tmp_path / "seen"))
    return {"catalog": load_catalog(catalog), "repo": tmp_path / "sample.git", "commit": tags["v1.1.0"],
            "feed": feed, "seen": tmp_path / "seen"}


def release_job(world):
    """The release's own scan step (the real gate) and its promote event, as the pipeline records them."""
    svc = world["catalog"].services["app"]

    @op(name="scan", out=Out(str))
    def scan(context):
        tree = LocalGit(repo=str(world["repo"])).export(world["commit"], Path(context.instance.root_directory) / "t")
        gate = run_gate(svc, tree, [], today=date.today(), log=context.log.info)
        assert gate.ok, gate.summary
        return Output(world["commit"], metadata=gate.metadata())

    @op
    def promote(context, commit: str):
        context.log_event(AssetMaterialization(history_key("app", "demo"), metadata={
            "outcome": "promoted", "version": "v1.1.0", "commit": commit, "image": IMAGE,
            "release_id": context.run_id}))

    @job(name="release_app_demo")
    def release():
        promote(scan())

    return release


def evaluate_rescan(world, instance):
    key = resource_key("git", "app", "demo")
    check = rescan_check(world["catalog"], "app", "demo", key)
    defs = Definitions(assets=deploy_specs(world["catalog"]), asset_checks=[check],
                       jobs=[define_asset_job("rescan", selection=AssetSelection.checks(check))],
                       resources={key: LocalGit(repo=str(world["repo"]))})
    result = defs.resolve_job_def("rescan").execute_in_process(instance=instance)
    (evaluation,) = [e.asset_check_evaluation_data for e in result.all_events
                     if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    return evaluation


def test_rescan_fails_when_a_finding_above_the_gate_appears_after_the_release(world, tmp_path):
    (tmp_path / "home").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        assert release_job(world).execute_in_process(instance=instance).success

        same = evaluate_rescan(world, instance)
        assert same.passed, same.metadata
        assert world["seen"].read_text().strip() == IMAGE      # the scanner got the serving image by digest
        assert same.metadata["new_blocking"].value == []

        # The vulnerability database learned of CVE-2019-18224 (critical) after the release.
        world["feed"].write_text((FIXTURES / "trivy-image.json").read_text())
        later = evaluate_rescan(world, instance)
        assert not later.passed
        assert later.metadata["new_blocking"].value == ["CVE-2019-18224"]
        assert "CVE-2019-18224 (critical" in later.description and "v1.1.0" in later.description
        assert later.metadata["counts_by_severity"].value["critical"] == 1


        # A scanner that cannot run (its report is gone) fails the check: never a silent pass.
        world["feed"].unlink()
        broken = evaluate_rescan(world, instance)
        assert not broken.passed and "scanner trivy-image" in broken.description
