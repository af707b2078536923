"""The release summary: one markdown page on the promote event (success) and on the abort
observation (verify failure) of every release run. It answers what an operator asks first: what
changed since the serving version (commits, migrations), what the scan found, what verify
measured, how far a canary went, which image and backup, who or what launched the run.

What the earlier steps knew is read back from the run's own event log (their output metadata),
and from the parent runs of a re-execution, which ran the skipped steps; so promote and verify
build the same page without passing more between ops."""

from __future__ import annotations

from dagster import DagsterEventType

from deploy_pipelines.catalog.models import Canary
from deploy_pipelines.steps.common import deploy_history

SENSOR_TAG = "dagster/sensor_name"
SCHEDULE_TAG = "dagster/schedule_name"
USER_TAGS = ("dagster/user", "user")
MAX_COMMITS = 20


def step_outputs(instance, run, step_key: str) -> dict:
    """The output metadata (plain values) of one step, from this run or the nearest ancestor that ran it."""
    seen: set[str] = set()
    while run is not None and run.run_id not in seen:
        seen.add(run.run_id)
        for record in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_OUTPUT):
            event = record.dagster_event
            if event.step_key == step_key:
                return {k: getattr(v, "value", v) for k, v in event.step_output_data.metadata.items()}
        run = instance.get_run_by_id(run.parent_run_id) if run.parent_run_id else None
    return {}


def launched_by(run) -> str:
    """Who or what launched the run, from its tags: sensor, schedule, user, re-execution parent."""
    tags = run.tags
    parts = []
    if tags.get(SENSOR_TAG):
        parts.append(f"sensor `{tags[SENSOR_TAG]}`")
    if tags.get(SCHEDULE_TAG):
        parts.append(f"schedule `{tags[SCHEDULE_TAG]}`")
    user = next((tags[t] for t in USER_TAGS if tags.get(t)), "")
    if user:
        parts.append(f"user {user}")
    if tags.get("deploy/trigger"):
        parts.append(f"trigger {tags['deploy/trigger']}")
    if run.parent_run_id:
        parts.append(f"re-execution of run `{run.parent_run_id[:8]}` (root `{(run.root_run_id or '')[:8]}`)")
    return ", ".join(parts) or "launched by hand (launchpad, CLI or API; no sensor, schedule or user tag)"


def canary_narration(strategy, first: bool, reached: list[str] | None, promoted: bool) -> list[str]:
    """One line per canary step: its weight and pause, and whether the release got there."""
    if not isinstance(strategy, Canary):
        return []
    if first:
        return ["first release of the target: no stable version to compare with, so no canary steps"]
    lines = []
    for i, step in enumerate(strategy.steps, 1):
        label = f"{step.weight}%" if step.weight is not None else f"step {i}/{len(strategy.steps)}"
        done = promoted or (reached is not None and i <= len(reached))
        pause = f", pause {step.pause:.0f}s" if step.pause else ""
        stopped = not promoted and reached is not None and i == len(reached)
        state = "stopped here" if stopped else ("reached" if done else "not reached")
        lines.append(f"{i}. canary {label}{pause}{', analysis' if step.analysis else ''}: {state}")
    return lines


def serving_before(instance, service: str, environment: str, release_id: str) -> dict | None:
    """The history's newest promotion or rollback other than this release's own (a re-executed
    promote finds its own event first)."""
    return next((meta for meta, _ in deploy_history(instance, service, environment)
                 if meta.get("outcome") in ("promoted", "rolled_back") and meta.get("release_id") != release_id),
                None)


def changes(git, serving: dict | None, commit: str) -> list[str]:
    if not serving:
        return ["first release of the target: everything in the tree is new"]
    if not serving.get("commit"):
        return [f"commits since {serving.get('version')}: its commit is not recorded in the history"]
    old = str(serving["commit"])
    try:
        got = git.commits_between(old, commit, limit=MAX_COMMITS + 1)
    except Exception as exc:  # noqa: BLE001 - the summary must not fail a release that already happened
        return [f"commits since {serving.get('version')} unknown: {type(exc).__name__}"]
    if got is None:
        return [f"commits since {serving.get('version')} ({old[:12]}): the git source cannot list them"]
    lines = [f"{len(got) if len(got) <= MAX_COMMITS else f'more than {MAX_COMMITS}'} commit(s) since "
             f"{serving.get('version')} (`{old[:12]}`)"]
    lines += [f"- `{sha[:12]}` {subject}" for sha, subject in got[:MAX_COMMITS]]
    return lines


def findings_line(scan: dict) -> str:
    if not scan:
        return "not recorded (no scan step output in this run or its parents)"
    counts = scan.get("counts_by_severity") or {}
    found = ", ".join(f"{n} {sev}" for sev, n in counts.items() if n) or "no findings"
    return f"{found} (gate passed)"


def release_summary(context, target, release, git, *, outcome: str, serving: dict | None, checks: list[dict],
                    reached: list[str] | None = None, first: bool = False, failed: str = "", image=None,
                    backup=None) -> str:
    """The markdown page; `outcome` is promoted or aborted, `serving` the history's event of the
    release serving before this one (None for the first). Never raises: the release happened
    (or was aborted) whatever the summary can read."""
    try:
        return _summary(context, target, release, git, outcome, serving, checks, reached, first, failed, image, backup)
    except Exception as exc:  # noqa: BLE001 - see above
        context.log.warning(f"release summary incomplete: {type(exc).__name__}: {exc}")
        return f"### {release.service} {release.version} → {release.environment}: {outcome}\n\n" \
               f"(summary could not be built: {type(exc).__name__})"


def _summary(context, target, release, git, outcome, serving, checks, reached, first, failed, image, backup) -> str:
    instance, run = context.instance, context.dagster_run
    # A patch run's first steps are patch_source and patch_build (jobs.py), a release's scan and build.
    built = step_outputs(instance, run, "build") or step_outputs(instance, run, "patch_build")
    scan = step_outputs(instance, run, "scan")
    migrate = step_outputs(instance, run, "migrate")
    if backup is not None:
        dump = {"backup": backup.uri, "sha256": backup.sha256}
    else:
        dump = step_outputs(instance, run, "backup")
    image_ref = image.ref if image is not None else built.get("image", "not recorded")
    applied = migrate.get("applied")
    applied = ", ".join(applied) if isinstance(applied, list) else (applied or "not reached")
    head = (f"### {release.service} {release.version} → {release.environment}: {outcome}"
            + (f" ({failed})" if failed else ""))
    lines = [head, "", "| | |", "|---|---|",
             f"| serving before | {serving.get('version') if serving else 'nothing'} |",
             f"| commit | `{release.commit[:12]}` |",
             f"| image | `{image_ref}` |",
             f"| backup | {dump.get('backup') or 'none'}"
             + (f" (sha256 {str(dump['sha256'])[:12]})" if dump.get("sha256") else "") + " |",
             f"| migrations new in this release | {', '.join(release.new_migrations) or 'none'} |",
             f"| migrations applied | {applied} |",
             f"| scan findings | {findings_line(scan)} |",
             f"| strategy | {target.target.strategy.kind} on {target.target.platform} |",
             f"| launched by | {launched_by(run)} |",
             "", "#### Changes", "", *changes(git, serving, release.commit)]
    narration = canary_narration(target.target.strategy, first, reached, outcome == "promoted")
    if narration:
        lines += ["", "#### Canary", "", *narration]
    lines += ["", "#### Verify checks", "", "| check | result | value |", "|---|---|---|"]
    lines += [f"| {c.get('check')} | {c.get('result')} | {str(c.get('detail', '')).replace('|', '/')} |"
              for c in checks] or ["| none | | |"]
    return "\n".join(lines)
