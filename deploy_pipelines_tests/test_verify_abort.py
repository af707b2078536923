"""The verify op's abort path when building the release summary fails: the abort still happens,
the history still gets its `aborted` observation, a warning says the summary is missing, and the
run fails with the Failure naming the failed check, the version and the release rolled back to,
not with the summary's exception. The op is invoked directly (build_op_context) on a real Dagster
instance; health fails against a closed 127.0.0.1 port.

Not covered here: the abort itself on a real platform (platform contract modules), whole summaries
on real release runs (test_ui_e2e.py). The platform below is a stand-in that only answers `abort`:
health fails before any traffic moves, so no other platform call is reachable on this path."""

from __future__ import annotations

import pytest
from dagster import AssetObservation, Failure, build_op_context, instance_for_test

from deploy_pipelines.adapters.git import LocalGit
from deploy_pipelines.adapters.metrics import PrometheusMetrics
from deploy_pipelines.adapters.platform import Platform
from deploy_pipelines.adapters.records import DeployResult, Release
from deploy_pipelines.stack.process import free_port
from deploy_pipelines.steps import verify as verify_module
from deploy_pipelines.steps.common import DeployTarget, ReleaseInput

CATALOG = """\
project: shop
environments:
  staging:
    docker: {host: "unix:///nonexistent.sock"}
    registry: "127.0.0.1:5000"
    backup_root: "file:///nonexistent"
services:
  api:
    repo: /nonexistent
    image: {repository: shop/api}
    targets:
      staging: {port: 8080}
    verify:
      health: {path: /health, timeout: 1s, interval: 0.2s}
"""

STABLE = Release("api", "staging", "v1.2.2", "sha256:" + "2" * 64, "127.0.0.1:5000/shop/api@sha256:" + "2" * 64)
ABORTS: list[str] = []
NEW = Release("api", "staging", "v1.2.3", "sha256:" + "3" * 64, "127.0.0.1:5000/shop/api@sha256:" + "3" * 64)


class AbortOnlyPlatform(Platform):
    """Answers abort with the stable release; anything else on this path would be a test bug."""

    def abort(self, reason, log):
        ABORTS.append(reason)        # module-level: Dagster binds a copy of the resource to the op
        return STABLE

    def _unreachable(self, *args, **kwargs):
        raise AssertionError("verify's abort path called the platform beyond abort()")

    current = status = public_url = verification_url = deploy = set_weight = promote = rollback = cleanup = \
        _unreachable


def _broken(*args, **kwargs):
    raise RuntimeError("history unreadable")


@pytest.mark.parametrize("part", ["serving_before", "release_summary"])
def test_summary_failure_keeps_the_abort_failure(tmp_path, monkeypatch, part):
    monkeypatch.setattr(verify_module, part, _broken)
    ABORTS.clear()
    catalog = tmp_path / "deploy.yaml"
    catalog.write_text(CATALOG)
    target = DeployTarget(catalog_path=str(catalog), service="api", environment="staging")
    release = ReleaseInput(service="api", environment="staging", version="v1.2.3", commit="0" * 40, run_id="r1")
    deployed = DeployResult(new=NEW, previous=STABLE, strategy="rolling",
                            endpoints=[f"http://127.0.0.1:{free_port()}"])
    platform = AbortOnlyPlatform(service="api", environment="staging", public_port=8080)
    with instance_for_test() as instance, build_op_context(instance=instance) as context:
        with pytest.raises(Failure) as info:
            verify_module.verify(context, release, deployed, target=target, platform=platform,
                                 metrics=PrometheusMetrics(url="http://127.0.0.1:9"), git=LocalGit(repo="/nonexistent"))
        events = context.get_events()

    message = info.value.description
    assert "v1.2.3 failed verification (health)" in message
    assert "rolled back to v1.2.2" in message
    assert info.value.metadata["rolled_back_to"].value == "v1.2.2"
    assert len(ABORTS) == 1 and "health" in ABORTS[0]
    observations = [e for e in events if isinstance(e, AssetObservation)]
    assert len(observations) == 1
    meta = observations[0].metadata
    assert meta["outcome"].value == "aborted" and meta["serving"].value == "v1.2.2"
    assert "summary could not be built: RuntimeError" in meta["summary"].value
    assert "rolled back to v1.2.2" in meta["summary"].value
