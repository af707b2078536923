"""Tag and branch sensors: new release tags and new commits on the release branch become release
runs of the service's entry environment (the one nothing is required before: staging).

The decision is a pure function (plan_tags) so every rule is testable without git or Dagster:
- a tag that is not a release version (the catalog's tag_pattern, semver) is skipped, named;
- a tag not newer than what runs (or what this sensor already released) is skipped, named;
- a pre-release (v1.2.0-rc.1) is released only to an environment that another one requires
  (staging); a service with no such environment skips it;
- of several new tags at once only the newest is released; the rest are reported superseded.

The first evaluation records the tags that already exist as a baseline and releases nothing: a
sensor switched on over an old repository never deploys by surprise (as a CI workflow triggers
on pushes after it exists). The cursor holds the tag names seen and the highest version released,
so a tick costs one `git ls-remote` plus work proportional to the new tags only.
"""

import hashlib
import json
from dataclasses import dataclass, field

import semver
from dagster import (DefaultSensorStatus, Failure, RunRequest, SensorEvaluationContext, SensorResult, SkipReason,
                     sensor)

from deploy_pipelines.adapters.git import GitError, LocalGit, parse_tag_listing
from deploy_pipelines.catalog.models import Catalog, Service
from deploy_pipelines.jobs import release_job_name
from deploy_pipelines.steps.common import (COMMIT_TAG, KIND_TAG, TARGET_TAG, TRIGGER_TAG, VERSION_TAG,
                                           branch_build_version, deploy_history, parse_version, resolve_setting,
                                           target_key)


def entry_environments(catalog: Catalog, service: str) -> list[str]:
    """The service's environments that nothing is required before (where tags go first)."""
    svc = catalog.services[service]
    return [e for e in catalog.environment_order() if e in svc.targets and catalog.environments[e].requires is None]


def takes_prereleases(catalog: Catalog, service: str, environment: str) -> bool:
    """An environment that another of the service's environments requires is a staging one."""
    svc = catalog.services[service]
    return any(catalog.environments[e].requires == environment for e in svc.targets)


@dataclass
class TagPlan:
    release: tuple[str, str] | None = None          # (tag, commit)
    superseded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)   # tag -> why

    def narrate(self, limit: int = 5) -> str:
        def names(tags: list[str]) -> str:
            shown = ", ".join(tags[:limit])
            return shown + (f" and {len(tags) - limit} more" if len(tags) > limit else "")

        parts = []
        if self.release:
            parts.append(f"release {self.release[0]}")
        if self.superseded:
            parts.append(f"superseded by {self.release[0] if self.release else 'a newer tag'}: "
                         + names(self.superseded))
        by_reason: dict[str, list[str]] = {}
        for tag, why in self.skipped.items():
            by_reason.setdefault(why, []).append(tag)
        for why, tags in by_reason.items():
            parts.append(f"skipped {names(tags)}: {why}")
        return "; ".join(parts) or "no new tags"


def plan_tags(new_tags: dict[str, str], service: Service, floor: semver.Version | None,
              allow_prerelease: bool) -> TagPlan:
    """What to do about tags not seen before. `floor`: the newest version already running or
    released by this sensor; only newer versions are released."""
    plan = TagPlan()
    candidates: list[tuple[semver.Version, str, str]] = []
    for tag, commit in sorted(new_tags.items()):
        try:
            version = parse_version(tag, service)
        except ValueError:
            plan.skipped[tag] = f"not a release version (tag_pattern {service.tag_pattern})"
            continue
        if version.prerelease and not allow_prerelease:
            plan.skipped[tag] = "a pre-release: pre-releases go to staging only, and this service has none"
            continue
        if floor is not None and version.compare(floor) <= 0:
            plan.skipped[tag] = f"not newer than v{floor}, which already runs or was released"
            continue
        candidates.append((version, tag, commit))
    if candidates:
        candidates.sort(key=lambda c: c[0])
        _, tag, commit = candidates[-1]
        plan.release = (tag, commit)
        plan.superseded = [t for _, t, _ in candidates[:-1]]
    return plan


def _floor(instance, service: Service, name: str, environment: str, released: str | None) -> semver.Version | None:
    """The newest of: what runs now (the target's latest deploy event, promoted or rolled back)
    and what this sensor released last. One indexed lookup (the asset's latest event)."""
    versions = []
    newest = next(deploy_history(instance, name, environment, limit=1), None)
    running = newest[0].get("version") if newest else None
    for text in (running, released):
        if text:
            try:
                versions.append(parse_version(str(text), service))
            except ValueError:
                pass      # a branch build runs: it sets no floor for tags
    return max(versions) if versions else None


def release_request(service: str, environment: str, version: str, commit: str, trigger: str,
                    branch_commit: bool = False) -> RunRequest:
    config = {"version": version, **({"commit": commit} if branch_commit else {})}
    return RunRequest(
        run_key=f"{service}:{environment}:{version}",
        job_name=release_job_name(service, environment),
        run_config={"ops": {"scan": {"config": config}}},
        tags={TARGET_TAG: target_key(service, environment), VERSION_TAG: version, COMMIT_TAG: commit,
              KIND_TAG: "release", TRIGGER_TAG: trigger},
    )


def fingerprint(listing: str) -> str:
    return hashlib.sha1(listing.encode()).hexdigest()[:16]


def _cursor(fp: str, seen, released: str | None) -> str:
    # The fingerprint first: unchanged() recognises it from the cursor's first characters.
    return json.dumps({"fingerprint": fp, "seen": sorted(seen), "released": released})


def unchanged(cursor: str | None, fp: str) -> bool:
    """The cursor starts with the fingerprint of the tag listing it saw: an unchanged listing is
    recognised without decoding the cursor or parsing the listing."""
    return bool(cursor) and cursor.startswith(f'{{"fingerprint": "{fp}"')


def evaluate_tags(context: SensorEvaluationContext, catalog: Catalog, service: str, environment: str,
                  tags: dict[str, str], fp: str = "") -> SensorResult | SkipReason:
    """One tick of a tag sensor over the repository's tags (name -> commit)."""
    svc = catalog.services[service]
    state = json.loads(context.cursor) if context.cursor else None
    if state is None:
        newest = plan_tags(tags, svc, None, True).release
        return SensorResult(skip_reason=SkipReason(
            f"baseline: {len(tags)} existing tag(s) recorded, none released"
            + (f" (newest {newest[0]})" if newest else "") + "; push a new tag to release"),
            cursor=_cursor(fp, tags, None))
    seen = set(state["seen"])
    new = {t: c for t, c in tags.items() if t not in seen}
    if not new:
        # (tags deleted or moved change the listing, not what is released)
        return SensorResult(skip_reason=SkipReason(f"no new tags ({len(tags)} known)"),
                            cursor=_cursor(fp, seen, state.get("released")) if fp else None)
    floor = _floor(context.instance, svc, service, environment, state.get("released"))
    plan = plan_tags(new, svc, floor, takes_prereleases(catalog, service, environment))
    context.log.info(f"{service}: {len(new)} new tag(s): {plan.narrate()}")
    cursor = _cursor(fp, seen | set(new), plan.release[0] if plan.release else state.get("released"))
    if plan.release is None:
        return SensorResult(skip_reason=SkipReason(f"{service} to {environment}: {plan.narrate()}"), cursor=cursor)
    tag, commit = plan.release
    return SensorResult(run_requests=[release_request(service, environment, tag, commit, "tag")], cursor=cursor)


def evaluate_branch(context: SensorEvaluationContext, service: str, environment: str, branch: str,
                    head: str | None) -> SensorResult | SkipReason:
    """One tick of a branch sensor: a new head commit releases a branch build to staging."""
    last = context.cursor
    if head is None:
        return SkipReason(f"{service}: branch {branch} does not exist")
    if not last:
        return SensorResult(skip_reason=SkipReason(f"baseline: {branch} at {head[:12]} recorded, not released"),
                            cursor=head)
    if head == last:
        return SkipReason(f"{branch} still at {head[:12]}")
    version = branch_build_version(branch, head)
    context.log.info(f"{service}: {branch} moved {last[:12]} -> {head[:12]}: releasing {version} to {environment}")
    return SensorResult(run_requests=[release_request(service, environment, version, head, "branch", True)],
                        cursor=head)


def _repo(catalog: Catalog, service: str) -> LocalGit:
    return LocalGit(repo=resolve_setting(catalog.services[service].repo, f"services.{service}.repo"))


def build_tag_sensors(catalog: Catalog, interval: int = 5, default_on: bool = False) -> list:
    """tags_<service> (and branch_<service> where the catalog names a branch) per service."""
    status = DefaultSensorStatus.RUNNING if default_on else DefaultSensorStatus.STOPPED
    sensors = []
    for service, svc in catalog.services.items():
        entries = entry_environments(catalog, service)
        if not entries:
            continue
        environment = entries[0]

        def _tags(context, service=service, environment=environment):
            try:
                listing = _repo(catalog, service).tags_listing()
            except (GitError, Failure) as exc:    # a repo that is down (or unset) is a skipped tick
                return SkipReason(f"{service}: cannot list tags: {exc}")
            fp = fingerprint(listing)
            if unchanged(context.cursor, fp):
                return SkipReason("no new tags (listing unchanged)")
            return evaluate_tags(context, catalog, service, environment, parse_tag_listing(listing), fp)

        sensors.append(sensor(name=f"tags_{service}", job_name=release_job_name(service, environment),
                              minimum_interval_seconds=interval, default_status=status,
                              description=f"New release tags of {service} -> release to {environment}")(_tags))
        if svc.branch:
            def _branch(context, service=service, environment=environment, branch=svc.branch):
                try:
                    head = _repo(catalog, service).branch_head(branch)
                except (GitError, Failure) as exc:
                    return SkipReason(f"{service}: cannot read {branch}: {exc}")
                return evaluate_branch(context, service, environment, branch, head)

            sensors.append(sensor(name=f"branch_{service}", job_name=release_job_name(service, environment),
                                  minimum_interval_seconds=interval, default_status=status,
                                  description=f"New commits on {svc.branch} of {service} -> build released "
                                              f"to {environment}")(_branch))
    return sensors
