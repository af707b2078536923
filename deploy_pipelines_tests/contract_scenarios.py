"""The platform contract (adapters/platform.py) as scenarios every implementation runs: each
platform's own module (test_platform_contract.py for Docker through a local socket, test_platform_contract_ssh.py
through ssh://,
test_platform_contract_k8s.py on the Kubernetes test bed, test_platform_contract_ecs.py on the ECS
test bed) provides a `platform` fixture and imports these tests, so pytest-xdist can run the
platforms side by side.

Each test drives the platform directly with real images of the sample service and asserts on what
users get: which version answers the public URL, which instances run, what the platform reads back.
Covered: first release, rolling (under load, 0 failed), blue-green (preview before traffic, switch,
keep_previous then cleanup on an injected clock), canary weights and abort, rollback (warm and
redeployed from the release's own workload), idempotent re-runs of each call, secrets never
readable through the platform's own inspection. Not covered: Dagster ops around it
(test_release_e2e, test_progressive_e2e, test_standing_e2e).

A platform fixture attaches `_test_clock` (a FakeClock the tests move) and `_test_hooks`
(`Hooks`: how to see the instances' plain environment, everything the platform's API shows, and
one instance's process environment)."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx
import pytest

from deploy_pipelines.adapters.buildah import BuildahBuilder
from deploy_pipelines.adapters.records import Probe, SecretEnv, Workload
from deploy_pipelines.catalog.models import BlueGreen, Canary, CanaryStep, Rolling
from deploy_pipelines.loadgen import LoadGenerator

__all__ = ["PLANTED", "SECRET_NAME", "FakeClock", "Hooks", "attach",
           "test_first_release_then_rolling_under_load", "test_blue_green_preview_switch_and_keep_previous",
           "test_canary_weights_then_abort", "test_rollback_warm_and_redeployed_from_its_own_workload",
           "test_secrets_are_never_readable_through_the_platform"]

REPO_ROOT = Path(__file__).resolve().parents[1]
PLANTED = f"planted-{secrets.token_hex(8)}"
SECRET_NAME = "contract-secrets"        # the Kubernetes Secret holding it (key api-token)


def _build(env: dict[str, str], tmp: Path, version: str, extra_containerfile: str = "") -> tuple[str, str]:
    src = tmp / f"src-{version}"
    shutil.copytree(REPO_ROOT / "examples" / "sample-service", src, ignore=shutil.ignore_patterns("__pycache__"))
    (src / "release.py").write_text(f'VERSION = "{version}"\nFAULT_RATE = 0.0\nEXTRA: dict = {{}}\n')
    if extra_containerfile:
        (src / "Containerfile").write_text((src / "Containerfile").read_text() + extra_containerfile)
    image = BuildahBuilder().build_and_push(src, "Containerfile", f"{env['DEPLOY_REGISTRY']}/contract/sample",
                                            version, {"BASE_IMAGE": env["DEPLOY_BASE_IMAGE"]}, {})
    return image.ref, image.digest


@pytest.fixture(scope="session")
def images(local_stack, tmp_path_factory):
    """Three versions of the sample service, built once per session (per xdist worker) for every
    platform's contract module: registered once, in conftest.py, so every module shares them."""
    _stack, env = local_stack
    tmp = tmp_path_factory.mktemp("contract-images")
    return {v: _build(env, tmp, v) for v in ("v1.0.0", "v1.1.0", "v1.2.0")}


class FakeClock:
    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Hooks:
    instance_envs: Callable[[], list[tuple[str, dict]]]     # (version, plain env) of each running instance
    visible: Callable[[], list[str]]                        # everything the platform's API shows of the target
    environ: Callable[[], list[str]]                        # one instance's process environment (KEY=value)


def attach(p, hooks: Hooks):
    """Give a platform under test its fake clock and inspection hooks."""
    clock = FakeClock()
    p.with_clock(clock, lambda s: setattr(clock, "now", clock.now + s))
    p._test_clock = clock  # noqa: SLF001 - the tests move it
    p._test_hooks = hooks  # noqa: SLF001
    os.environ["CONTRACT_PLANTED"] = PLANTED
    return p


def workload(images, version: str, replicas: int = 1, **kw) -> Workload:
    ref, digest = images[version]
    return Workload(version=version, image=ref, digest=digest, commit="c0ffee", run_id=f"run-{version}",
                    replicas=replicas, env={"GREETING": f"hello from {version}"},
                    secret_env=(SecretEnv(name="API_TOKEN", env="CONTRACT_PLANTED", secret=SECRET_NAME,
                                          key="api-token"),),
                    readiness=Probe(path="/ready", timeout=60), **kw)


def answers(url: str, n: int = 40) -> dict[str, int]:
    """Which version answered each of n requests (fresh connections: nginx balances per request)."""
    seen: dict[str, int] = {}
    for _ in range(n):
        r = httpx.get(url + "/ready", headers={"Connection": "close"}, timeout=5)
        assert r.status_code == 200, r.text
        seen[r.json()["version"]] = seen.get(r.json()["version"], 0) + 1
    return seen


def running(p) -> dict[str, int]:
    return p.status().instances


def log(msg: str) -> None:
    print(msg)


def test_first_release_then_rolling_under_load(platform, images):
    assert platform.current() is None and platform.status().phase == "none"
    result = platform.deploy(workload(images, "v1.0.0", replicas=2), Rolling(), log)
    assert result.previous is None
    platform.promote(log)
    assert answers(platform.public_url()) == {"v1.0.0": 40}
    cur = platform.current()
    assert (cur.version, cur.digest, cur.commit, cur.run_id) == ("v1.0.0", images["v1.0.0"][1], "c0ffee", "run-v1.0.0")
    assert cur.workload.env == {"GREETING": "hello from v1.0.0"} and platform.status().phase == "healthy"

    with LoadGenerator(platform.public_url() + "/ready", concurrency=4) as load:
        time.sleep(0.5)
        platform.deploy(workload(images, "v1.1.0", replicas=2), Rolling(max_surge=1, max_unavailable=0), log)
        platform.promote(log)
        time.sleep(0.5)
    summary = load.summary()
    assert summary.total > 50 and summary.failed == 0 and summary.http_errors == 0, summary
    assert set(summary.by_version) == {"v1.0.0", "v1.1.0"}
    assert answers(platform.public_url()) == {"v1.1.0": 40}
    assert running(platform) == {"v1.1.0": 2}
    assert platform.current().previous_version == "v1.0.0"


def test_blue_green_preview_switch_and_keep_previous(platform, images):
    platform.deploy(workload(images, "v1.0.0"), Rolling(), log)
    platform.promote(log)
    result = platform.deploy(workload(images, "v1.1.0"), BlueGreen(keep_previous=600), log)
    # Green answers on the preview URL only; users still get blue.
    assert answers(result.endpoints[0], 10) == {"v1.1.0": 10}
    assert answers(platform.verification_url("stable"), 10) == {"v1.0.0": 10}
    assert answers(platform.public_url()) == {"v1.0.0": 40}
    platform.set_weight(100, log)
    platform.set_weight(100, log)                       # idempotent
    assert answers(platform.public_url()) == {"v1.1.0": 40}
    platform.promote(log, keep_previous_seconds=600)
    platform.promote(log, keep_previous_seconds=600)    # idempotent
    assert running(platform) == {"v1.0.0": 1, "v1.1.0": 1}          # blue kept warm
    assert platform.cleanup(log) == []                  # grace period not over
    platform._test_clock.now += 601                     # noqa: SLF001
    removed = platform.cleanup(log)
    assert len(removed) == 1 and running(platform) == {"v1.1.0": 1}
    assert platform.cleanup(log) == []                  # idempotent
    assert answers(platform.public_url()) == {"v1.1.0": 40}


def test_canary_weights_then_abort(platform, images):
    platform.deploy(workload(images, "v1.0.0"), Rolling(), log)
    platform.promote(log)
    canary = Canary(steps=[CanaryStep(setWeight=50)])
    platform.deploy(workload(images, "v1.1.0"), canary, log)
    platform.deploy(workload(images, "v1.1.0"), canary, log)      # idempotent: no extra instances
    assert running(platform) == {"v1.0.0": 1, "v1.1.0": 1}
    platform.set_weight(50, log)
    st = platform.status()
    assert st.phase == "progressing" and st.weight == 50 and st.new.version == "v1.1.0"
    seen = answers(platform.public_url(), 100)
    assert 35 <= seen.get("v1.1.0", 0) <= 65, seen
    stable = platform.abort("test abort", log)
    assert platform.abort("again", log).version == "v1.0.0"       # idempotent
    assert stable.version == "v1.0.0"
    assert answers(platform.public_url()) == {"v1.0.0": 40}
    assert running(platform) == {"v1.0.0": 1}


def test_rollback_warm_and_redeployed_from_its_own_workload(platform, images):
    platform.deploy(workload(images, "v1.0.0"), Rolling(), log)
    platform.promote(log)
    platform.deploy(workload(images, "v1.1.0"), BlueGreen(), log)
    platform.set_weight(100, log)
    platform.promote(log, keep_previous_seconds=600)
    back = platform.rollback(log)                        # v1.0.0 is warm: traffic switches
    assert back.version == "v1.0.0" and answers(platform.public_url()) == {"v1.0.0": 40}
    assert platform.rollback(log, to=workload(images, "v1.0.0")).version == "v1.0.0"   # idempotent
    # Not warm any more: v1.1.0 comes back from its recorded workload, not from a v1.0.0 container.
    again = platform.rollback(log)
    assert again.version == "v1.1.0" and answers(platform.public_url()) == {"v1.1.0": 40}
    for version, env in platform._test_hooks.instance_envs():  # noqa: SLF001
        assert env["GREETING"] == f"hello from {version}"


def test_secrets_are_never_readable_through_the_platform(platform, images):
    platform.deploy(workload(images, "v1.0.0"), Rolling(), log)
    platform.promote(log)
    seen = platform._test_hooks.visible()                # noqa: SLF001
    seen.append(repr(platform.current()) + repr(platform.status()))
    assert not [s for s in seen if PLANTED in s]
    # ... and yet the workload received it.
    assert f"API_TOKEN={PLANTED}" in platform._test_hooks.environ()   # noqa: SLF001
