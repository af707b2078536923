"""Hostile run inputs: 20 invalid release/rollback run configs (versions, tags, commits, rollback
targets) each refused with its exact error before any side effect (no run tag written, nothing
built); 20 hostile tag names a repository could hold (shell metacharacters, `..`, very long,
non-ASCII digits, newlines) never released by the tag sensor, each skipped with its reason; and
hostile branch names always give a version that is a valid image tag.
Not covered: git's own refusal of names it cannot store (these run below git, on the sensor's input)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dagster import Failure, build_op_context, build_sensor_context, instance_for_test, validate_run_config

from deploy_pipelines.catalog import parse_catalog
from deploy_pipelines.catalog.models import env_names
from deploy_pipelines.definitions import build_definitions
from deploy_pipelines.steps.common import ReleaseConfig, branch_build_version
from deploy_pipelines.steps.scan import scan
from deploy_pipelines.triggers.tags import evaluate_tags
from deploy_pipelines_tests.reliability.catalog_corpus import BASE

SHA = "0123456789abcdef0123456789abcdef01234567"
OCI_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

HOSTILE_TAGS = [
    "v1.2.3;rm -rf /", "v1.2.3 && reboot", "$(reboot)", "v1.2.3`id`", "v1.2.3|tee x", "v1.2.3>out",
    "../../etc/passwd", "v1.2.3/../../x", "v1..2.3", "v" + "9" * 300 + ".0.0-" + "a" * 5000,
    "v１.２.３", "v٣.2.1", "v1.2.3\n", "v1.2.3\nv9.9.9", "v1.2.3\x00", "v1.2.3 ", " v1.2.3", "V1.2.3",
    "v1.2.3-rc.1+build;x", "refs/tags/v1.2.3",
]
HOSTILE_BRANCHES = ["feature/x;rm -rf /", "..", "-rf", "a" * 500, "fix/ünïcödé", "$(id)", ".hidden", "x\ny"]

# (config of ops.scan or ops.rollback, job, the exact error text expected)
RELEASE, ROLLBACK = "release_api_staging", "rollback_api_staging"
PROD = "release_api_production"
INVALID_SCHEMA = [
    ({}, RELEASE, 'Missing required config entry "version" at path root:ops:scan:config'),
    ({"version": 123}, RELEASE, 'Invalid scalar at path root:ops:scan:config:version. Value "123" of type'),
    ({"version": None}, RELEASE, 'Value at path root:ops:scan:config:version must not be None'),
    ({"version": ["v1.2.3"]}, RELEASE, 'Value for selector type at path root:ops:scan:config:version must be a dict'),
    ({"version": "v1.2.3", "force": True}, RELEASE, 'Received unexpected config entry "force" at path root:ops:scan:config'),
    ({"version": "v1.2.3", "skip_scan": "maybe"}, RELEASE, 'Invalid scalar at path root:ops:scan:config:skip_scan'),
    ({"to_version": 7}, ROLLBACK, 'Invalid scalar at path root:ops:rollback:config:to_version'),
    ({"to_version": "v1.0.0", "image": "x"}, ROLLBACK, 'Received unexpected config entry "image" at path root:ops:rollback:config'),
    ({"to_version": {"v": 1}}, ROLLBACK, 'Received unexpected config entry "v" at path root:ops:rollback:config:to_version'),
]
REFUSED_BY_SCAN = [
    ("v1.2", RELEASE, "tag 'v1.2' does not match the release pattern"),
    ("1.2.3", RELEASE, "tag '1.2.3' does not match the release pattern"),
    ("v1.2.3.4", RELEASE, "tag 'v1.2.3.4' does not match the release pattern"),
    ("latest", RELEASE, "tag 'latest' does not match the release pattern"),
    ("v01.2.3", RELEASE, "01.2.3 is not valid SemVer string"),
    ("v1.2.3\n", RELEASE, "tag 'v1.2.3\\n' does not match the release pattern"),
    ("v1.2.3;rm -rf /", RELEASE, "tag 'v1.2.3;rm -rf /' does not match the release pattern"),
    ("v１.2.3", RELEASE, "tag 'v１.2.3' does not match the release pattern"),
    ("v1.2.3-rc.1", PROD, "v1.2.3-rc.1 is a pre-release; pre-releases go to staging only"),
    ("v1.2.3", PROD, "v1.2.3 has not passed staging; release it to staging first"),
    ("main-0123456789ab", PROD, "is a branch build; only release tags go to production"),
]


@pytest.fixture(scope="module")
def defs(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "deploy.yaml"
    path.write_text(BASE)
    mp = pytest.MonkeyPatch()
    for name in env_names(parse_catalog(BASE, path)):
        mp.setenv(name, f"postgresql://u:p@127.0.0.1:9/x" if name.endswith("DATABASE_URL") else "x")
    yield build_definitions(path)
    mp.undo()


def test_counts():
    assert len(HOSTILE_TAGS) >= 20 and len(INVALID_SCHEMA) + len(REFUSED_BY_SCAN) >= 20


@pytest.mark.parametrize("config, job, expected", INVALID_SCHEMA, ids=[f"schema-{i}" for i in range(len(INVALID_SCHEMA))])
def test_invalid_run_config_is_refused_by_the_schema(defs, config, job, expected, ledger):
    ledger("run inputs", "run config: schema")
    op = "scan" if job.startswith("release") else "rollback"
    with pytest.raises(Exception) as info:
        validate_run_config(defs.get_job(job), {"ops": {op: {"config": config}}})
    assert expected in str(info.value)


@pytest.fixture(scope="module")
def instance():
    with instance_for_test() as inst:      # nothing has passed staging here
        yield inst


@pytest.mark.parametrize("version, job, expected", REFUSED_BY_SCAN, ids=[f"scan-{i}" for i in range(len(REFUSED_BY_SCAN))])
def test_invalid_version_fails_in_scan_before_any_side_effect(defs, instance, version, job, expected, ledger):
    ledger("run inputs", "run config: version/tag refused by scan")
    config = ReleaseConfig(version=version, commit=SHA if version.startswith("main-") else None)
    resources = defs.get_job(job).resource_defs
    context = build_op_context(instance=instance)
    # The op itself (one job run per case costs ~10 s here; test_one_refusal_through_a_real_run below
    # shows the same refusal through the job).
    with pytest.raises(Failure) as info:
        scan(context, config, target=resources["target"], git=resources["git"], database=resources["database"])
    assert expected in info.value.description
    assert instance.get_runs_count() == 0            # nothing launched, nothing tagged


def test_one_refusal_through_a_real_run(defs, ledger):
    ledger("run inputs", "run config: version/tag refused by scan")
    with instance_for_test() as inst:
        result = defs.get_job(RELEASE).execute_in_process(
            run_config={"ops": {"scan": {"config": {"version": "v1.2.3;rm -rf /"}}}}, instance=inst,
            op_selection=["scan"], raise_on_error=False)
        assert not result.success
        assert "does not match the release pattern" in result.failure_data_for_node("scan").error.message
        assert "deploy/version" not in inst.get_run_by_id(result.run_id).tags


@pytest.mark.parametrize("tag", HOSTILE_TAGS, ids=[f"tag-{i}" for i in range(len(HOSTILE_TAGS))])
def test_hostile_tag_is_never_released(instance, tag, ledger):
    ledger("run inputs", "hostile tag names")
    catalog = parse_catalog(BASE, Path("deploy.yaml"))
    context = build_sensor_context(instance=instance, cursor='{"fingerprint": "", "seen": ["v1.0.0"], '
                                                              '"released": null}')
    result = evaluate_tags(context, catalog, "api", "staging", {"v1.0.0": SHA, tag: SHA})
    assert not result.run_requests
    assert "not a release version (tag_pattern" in result.skip_reason.skip_message


@pytest.mark.parametrize("branch", HOSTILE_BRANCHES, ids=[f"branch-{i}" for i in range(len(HOSTILE_BRANCHES))])
def test_hostile_branch_gives_a_valid_image_tag(branch, ledger):
    ledger("run inputs", "hostile branch names")
    version = branch_build_version(branch, SHA)
    assert OCI_TAG.match(version) and version.endswith(SHA[:12])
