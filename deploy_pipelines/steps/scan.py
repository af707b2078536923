"""scan: the first op of a release. Resolves the tag, refuses what must not be released (bad
version, not passed the required environment, another release of the target running), then
runs the service's scanners and the migration-safety lint. Fails before any side effect."""


import re
import tempfile
from datetime import date
from pathlib import Path

from dagster import Failure, Out, Output, op

from deploy_pipelines.adapters.database import Database
from deploy_pipelines.adapters.git import GitError, GitSource
from deploy_pipelines.steps.common import (COMMIT_TAG, VERSION_TAG, DeployTarget, ReleaseConfig, ReleaseInput, ensure_exclusive,
                                           ensure_not_downgrade, last_release, parse_version, passed_in)
from deploy_pipelines.steps.gate import run_gate


@op(out=Out(ReleaseInput), tags={"deploy/step": "scan"})
def scan(context, config: ReleaseConfig, target: DeployTarget, git: GitSource, database: Database) -> Output:
    """Resolve the release tag and run the scan gate (findings + migration lint)."""
    ensure_exclusive(context, target.key)
    # What the history says serves (deploy checks the platform itself again before any change).
    serving = last_release(context.instance, target.service, target.environment, outcome=None)
    if serving and serving.get("outcome") in ("promoted", "rolled_back"):
        ensure_not_downgrade(target, str(serving.get("version")), config.version, config.allow_downgrade)
    svc = target.spec
    if config.commit:
        # A build of a branch commit (the branch sensor): never beyond the first environment.
        if target.env.requires is not None:
            raise Failure(f"{target.where}: {config.version} is a branch build; only release tags go to "
                          f"{target.environment} (environments.{target.environment}.requires)")
        if not re.fullmatch(r"[0-9a-f]{7,40}", config.commit) or not config.version.endswith(config.commit[:12]):
            raise Failure(f"{target.where}: a branch build's version must be <branch>-<first 12 of the commit>, "
                          f"got version {config.version!r} for commit {config.commit!r}")
        commit = config.commit
    else:
        try:
            version = parse_version(config.version, svc)
        except ValueError as exc:
            raise Failure(f"{target.where}: {exc}") from None
        # Pre-releases (v1.2.0-rc.1) only go where nothing is required first (staging).
        if version.prerelease and target.env.requires is not None:
            raise Failure(f"{target.where}: {config.version} is a pre-release; pre-releases go to "
                          f"{target.env.requires} only")
        if target.env.requires and not passed_in(context.instance, target.service, target.env.requires,
                                                 config.version):
            raise Failure(f"{target.where}: {config.version} has not passed {target.env.requires}; "
                          f"release it to {target.env.requires} first (environments.{target.environment}.requires)")
        try:
            commit = git.resolve(config.version)
        except GitError as exc:
            raise Failure(f"{target.where}: {exc}") from None
    context.log.info(f"{target.service} {config.version} is commit {commit[:12]}")
    # Runs launched by hand carry the version too, for sensors, notifications and the runs list.
    context.instance.add_run_tags(context.run_id, {VERSION_TAG: config.version, COMMIT_TAG: commit})

    applied: list[str] = []
    if svc.database is not None:
        applied = database.applied_migrations()
    with tempfile.TemporaryDirectory(prefix="deploy-scan-") as tmp:
        tree = git.export(commit, Path(tmp) / "src")
        gate = run_gate(svc, tree, applied, today=date.today(), log=context.log.info,
                        skip_scanners=config.skip_scan)
    meta = gate.metadata()
    if not gate.ok:
        raise Failure(f"{target.where}: scan gate stopped {config.version}: {gate.summary}",
                      metadata=meta)
    context.log.info(f"scan gate passed: {gate.summary}")
    release = ReleaseInput(service=target.service, environment=target.environment, version=config.version,
                           commit=commit, run_id=context.dagster_run.root_run_id or context.run_id,
                           new_migrations=tuple(gate.new_migrations), allow_downgrade=config.allow_downgrade)
    return Output(release, metadata={"version": config.version, "commit": commit, **meta})
