"""What every release step shares: the target resource, the release record that flows between
ops, run tags, and the deploy history read back from Dagster's asset events."""


import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import semver
from dagster import AssetKey, ConfigurableResource, Config, DagsterError, DagsterRunStatus, Failure, RunsFilter
from pydantic import Field, PrivateAttr

from deploy_pipelines.catalog import Catalog, EnvRef, catalog_digest, load_catalog, read_catalog_bytes
from deploy_pipelines.catalog_cache import parse_catalog_once
from deploy_pipelines.catalog.models import RELEASE_TAG_PATTERN, Environment, Service, Target

TARGET_TAG = "deploy/target"
VERSION_TAG = "deploy/version"
COMMIT_TAG = "deploy/commit"
KIND_TAG = "deploy/kind"
REASON_TAG = "deploy/reason"
CATALOG_TAG = "deploy/catalog_sha256"   # the catalog file a run was launched with
TRIGGER_TAG = "deploy/trigger"           # tag | branch | promotion | approval | watch | schedule


def target_key(service: str, environment: str) -> str:
    return f"{service}:{environment}"


def history_key(service: str, environment: str) -> AssetKey:
    """Asset events deploy/<env>/<service>: the release history the UI plots and lists."""
    return AssetKey(["deploy", environment, service])


def parse_version(tag: str, service: Service | None = None) -> semver.Version:
    """v1.2.3 / v1.2.3-rc.1 -> semver.Version; ValueError names the tag."""
    if len(tag) > 128:       # the version becomes an image tag: at most 128 characters (OCI)
        raise ValueError(f"tag {tag[:40]!r}... is {len(tag)} characters long; a release tag (an image tag) "
                         "holds at most 128")
    pattern = service.tag_pattern if service else RELEASE_TAG_PATTERN
    # fullmatch: `$` alone lets "v1.2.3\n" through; ASCII only: \d also matches other scripts' digits.
    m = re.fullmatch(pattern, tag) if tag.isascii() else None
    if not m:
        raise ValueError(f"tag {tag!r} does not match the release pattern {pattern}")
    text = m.groupdict().get("version") or tag.lstrip("v")
    return semver.Version.parse(text)


def branch_build_version(branch: str, commit: str) -> str:
    """The version name of a build from a branch commit (not a release tag): main-0123456789ab."""
    # The version is an image tag too: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127} (OCI distribution spec).
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", branch).lstrip(".-")[:100] or "branch"
    return f"{safe}-{commit[:12]}"


def resolve_setting(value, what: str):
    """A catalog setting at run time: literal, or the named environment variable."""
    if not isinstance(value, EnvRef):
        return value
    got = os.environ.get(value.env)
    if got is None:
        raise Failure(f"{what}: environment variable {value.env} is not set")
    return got


class DeployTarget(ConfigurableResource):
    """One service in one environment, as the catalog describes it (read at run time)."""

    catalog_path: str
    service: str
    environment: str

    _catalog: Catalog | None = PrivateAttr(default=None)

    def setup_for_execution(self, context) -> None:
        """A run reads the catalog once, at its start, and only the file it was launched with:
        the job carries the catalog's sha256 (run tag deploy/catalog_sha256, shown in the UI);
        a file edited since then fails the run clearly instead of changing it underneath."""
        raw = read_catalog_bytes(Path(self.catalog_path))
        launched = (context.dagster_run.tags.get(CATALOG_TAG) if context.dagster_run else None)
        now = catalog_digest(raw)
        if launched and launched != now:
            raise Failure(f"{self.where}: the catalog {self.catalog_path} changed since this run was launched "
                          f"(sha256 {launched[:12]} at launch, {now[:12]} now): reload the code location and "
                          "launch a new run, so that it uses one catalog from start to end")
        # the code location parsed these same bytes already in a run worker: parse once per process
        self._catalog = parse_catalog_once(raw, Path(self.catalog_path))

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:          # outside a run (sensors, tests): read it now
            self._catalog = load_catalog(self.catalog_path)
        return self._catalog

    @property
    def spec(self) -> Service:
        return self.catalog.services[self.service]

    @property
    def target(self) -> Target:
        return self.spec.targets[self.environment]

    @property
    def env(self) -> Environment:
        return self.catalog.environments[self.environment]

    @property
    def key(self) -> str:
        return target_key(self.service, self.environment)

    @property
    def where(self) -> str:
        return f"service {self.service}, environment {self.environment}"


class ReleaseConfig(Config):
    """What a person (or a sensor) chooses when launching a release."""

    version: str = Field(description="The git tag to release, e.g. v1.2.0 (or <branch>-<sha12> with commit set)")
    commit: str | None = Field(None, description="Branch builds only: the commit to release (set by the branch "
                                                 "sensor); releases of tags leave it empty")
    skip_scan: bool = Field(False, description="Emergency only: record and skip the scan gate")
    allow_downgrade: bool = Field(False, description="Release a version older than the one serving (the rollback "
                                                     "job is the usual way back)")


@dataclass(frozen=True)
class ReleaseInput:
    service: str
    environment: str
    version: str
    commit: str
    run_id: str
    new_migrations: tuple[str, ...] = ()
    allow_downgrade: bool = False


@dataclass
class VerifyOutcome:
    ok: bool
    checks: list[dict] = field(default_factory=list)   # name, result, detail
    reason: str = ""


def ensure_exclusive(context, key: str) -> None:
    """Refuse to run beside another release/rollback of the same target, and refuse a run that lost
    its standing. The run queue keeps queued runs apart (dagster.yaml tag limits); this covers runs
    launched without the queue and re-executions from failure, which skip the first op:
    - a re-execution of a run that a later run of the target superseded (a newer release, or an
      earlier re-execution of the same run) would act on a state it never saw: it stops before
      any change, naming the newer run. Re-execute the newest run instead."""
    try:
        run = context.dagster_run
    except DagsterError:
        return          # an op invoked directly (build_op_context): no run, nothing to overlap with
    others = context.instance.get_run_records(
        RunsFilter(tags={TARGET_TAG: key}, statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING]),
        limit=5)
    busy = [r.dagster_run.run_id for r in others if r.dagster_run.run_id != run.run_id]
    if busy:
        raise Failure(f"another release or rollback of {key} is in progress (run {busy[0]}): "
                      "releases of one service to one environment never overlap; retry when it ends")
    if not run.parent_run_id:
        return
    records = context.instance.get_run_records(RunsFilter(tags={TARGET_TAG: key}), limit=200)
    by_id = {r.dagster_run.run_id: r for r in records}
    ancestors, cursor = set(), run.parent_run_id
    while cursor and cursor not in ancestors:
        ancestors.add(cursor)
        parent = by_id.get(cursor)
        cursor = parent.dagster_run.parent_run_id if parent else None
    parent = by_id.get(run.parent_run_id)
    if parent is None:
        return
    # scan tags the run with what it releases; a re-execution skips scan and Dagster copies only the
    # job's own tags (the UI's re-execute, execute_job): carry them over, so the history, the
    # notifications and the promotion sensor still see the version.
    carried = {t: parent.dagster_run.tags[t] for t in (VERSION_TAG, COMMIT_TAG)
               if t in parent.dagster_run.tags and t not in run.tags}
    if carried:
        context.instance.add_run_tags(run.run_id, carried)
    newer = [r for r in records if r.dagster_run.run_id != run.run_id and r.dagster_run.run_id not in ancestors
             and r.start_time is not None and r.create_timestamp > parent.create_timestamp
             and r.dagster_run.tags.get(KIND_TAG) != "cleanup"]
    if newer:
        n = max(newer, key=lambda r: r.create_timestamp).dagster_run
        what = "a re-execution of the same run" if n.root_run_id == run.root_run_id else "a later run"
        raise Failure(f"{key}: this re-execution of run {run.parent_run_id} was superseded by {what}, run "
                      f"{n.run_id} ({n.job_name}, version {n.tags.get(VERSION_TAG, '?')}, {n.status.value}); "
                      "nothing was changed. Re-execute the newest run, or launch a new release")


def ensure_not_downgrade(target: "DeployTarget", serving: str | None, version: str, allowed: bool) -> None:
    """A release older than what serves stops before any change unless the run allows it."""
    if not serving or allowed:
        return
    try:
        older = parse_version(version) < parse_version(serving)
    except ValueError:
        return          # branch builds (main-<sha>) have no order
    if older:
        raise Failure(f"{target.where}: {version} is older than {serving}, which serves now; nothing was changed. "
                      "Use the rollback job to go back, or launch the release with allow_downgrade: true")


def deploy_history(instance, service: str, environment: str, limit: int = 50):
    """deploy/<env>/<service> events, newest first: (metadata as plain values + run_id, timestamp)."""
    for record in instance.fetch_materializations(history_key(service, environment), limit=limit).records:
        mat = record.asset_materialization
        if mat is None:
            continue
        meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        meta["run_id"] = record.run_id
        yield meta, record.timestamp


def last_release(instance, service: str, environment: str, outcome: str | None = "promoted"):
    """Newest asset event for deploy/<env>/<service> (optionally with a given outcome) as a dict."""
    return next((meta for meta, _ in deploy_history(instance, service, environment)
                 if outcome is None or meta.get("outcome") == outcome), None)


def passed_in(instance, service: str, environment: str, version: str) -> bool:
    """Has this version been promoted in that environment (ever)?"""
    return any(meta.get("version") == version and meta.get("outcome") == "promoted"
               for meta, _ in deploy_history(instance, service, environment, limit=200))
