"""Run-status notifications (seed 000): #deployments hears "started" and "succeeded", #incidents
hears "failed" and "rolled back", each with service, environment, version, run link and reason.

One sensor reads run status changes (start, success, failure) of the catalog's jobs in the event
log's own order, after a cursor (the last storage id handled), so "started" always precedes
"succeeded" for a run. A webhook that is down never fails anything: the message is logged as
undelivered and the cursor moves on (a release is never held up by chat)."""

from dataclasses import dataclass

from dagster import (DagsterEventType, DefaultSensorStatus, RunStatusChangeRecordsFilter, SensorEvaluationContext,
                     SkipReason, sensor)

from deploy_pipelines.adapters.notifier import Notifier
from deploy_pipelines.catalog.models import Catalog
from deploy_pipelines.steps.common import KIND_TAG, REASON_TAG, TARGET_TAG, VERSION_TAG

TYPES = (DagsterEventType.RUN_START, DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE)
BATCH = 100


@dataclass
class Message:
    text: str
    failure: bool


def failure_reason(instance, run_id: str) -> str:
    """The first step failure's message (what stopped the release), else the run failure's."""
    for record in instance.all_logs(run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}):
        ev = record.dagster_event
        if ev.event_type == DagsterEventType.STEP_FAILURE and ev.step_failure_data.error:
            return f"{ev.step_key}: {_step_failure_text(ev.step_failure_data)}"
        if ev.event_type == DagsterEventType.RUN_FAILURE and ev.message:
            return ev.message.strip().splitlines()[0]
    return "no reason recorded"


def _step_failure_text(data) -> str:
    """A Failure's own description (what the step said), else the error without its class path:
    error.message reads "dagster._core.definitions.events.Failure: ...", which tells a reader nothing."""
    user = data.user_failure_data
    text = user.description if user is not None and user.description else data.error.message
    first = (text.strip().splitlines() or [""])[0]
    prefix, _, rest = first.partition(": ")
    return rest if rest and prefix.rsplit(".", 1)[-1] == data.error.cls_name else first


def rolled_back(instance, run_id: str) -> str | None:
    """If the failed release put the previous version back (verify aborts), which one."""
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_OBSERVATION):
        obs = record.dagster_event.asset_observation_data.asset_observation
        meta = {k: getattr(v, "value", v) for k, v in obs.metadata.items()}
        if meta.get("outcome") in ("aborted", "rolled_back"):
            return str(meta.get("serving") or meta.get("previous") or meta.get("stable") or "the previous release")
    return None


def message_for(instance, event_type: DagsterEventType, run, ui_url: str) -> Message | None:
    tags = run.tags
    target = tags.get(TARGET_TAG)
    if not target:
        return None                              # not a release/rollback/patch run
    service, _, environment = target.partition(":")
    kind = tags.get(KIND_TAG, "release")
    version = tags.get(VERSION_TAG, "")
    link = f"{ui_url.rstrip('/')}/runs/{run.run_id}"
    what = f"{service} {version}".strip() + f" to {environment}"
    if kind == "rollback":
        if event_type == DagsterEventType.RUN_START:
            return Message(f":leftwards_arrow_with_hook: Rollback of {service} in {environment} started "
                           f"({tags.get(REASON_TAG, 'manual')}) <{link}|run>", True)
        if event_type == DagsterEventType.RUN_SUCCESS:
            return Message(f":leftwards_arrow_with_hook: {service} in {environment} rolled back "
                           f"({tags.get(REASON_TAG, 'manual')}) <{link}|run>", True)
        return Message(f":x: Rollback of {service} in {environment} FAILED: "
                       f"{failure_reason(instance, run.run_id)} <{link}|run>", True)
    label = "Patch" if kind == "patch" else "Deployment"
    if event_type == DagsterEventType.RUN_START:
        return Message(f":rocket: {label} started: {what} <{link}|run>", False)
    if event_type == DagsterEventType.RUN_SUCCESS:
        return Message(f":white_check_mark: {label} succeeded: {what} <{link}|run>", False)
    reason = failure_reason(instance, run.run_id)
    back = rolled_back(instance, run.run_id)
    if back:
        return Message(f":rotating_light: {label} failed and rolled back: {what}; {back} serves again. "
                       f"Reason: {reason} <{link}|run>", True)
    return Message(f":x: {label} failed: {what}. Reason: {reason} <{link}|run>", True)


def evaluate_notify(context: SensorEvaluationContext, notifier: Notifier, ui_url: str, job_names: list[str]):
    after = int(context.cursor) if context.cursor else None
    instance = context.instance
    if after is None:
        # Start from now: a new sensor does not replay the whole history into chat.
        latest = 0
        for t in TYPES:
            recs = instance.fetch_run_status_changes(RunStatusChangeRecordsFilter(event_type=t), limit=1).records
            latest = max([latest] + [r.storage_id for r in recs])
        context.update_cursor(str(latest))
        return SkipReason(f"baseline: notifications start after event {latest}")
    records = []
    for t in TYPES:
        records += instance.fetch_run_status_changes(
            RunStatusChangeRecordsFilter(event_type=t, after_storage_id=after, job_names=job_names),
            limit=BATCH, ascending=True).records
    records.sort(key=lambda r: r.storage_id)
    records = records[:BATCH]
    sent = failed = 0
    for record in records:
        run = instance.get_run_by_id(record.run_id)
        if run is None:
            continue
        msg = message_for(instance, record.event_log_entry.dagster_event.event_type, run, ui_url)
        if msg is None:
            continue
        if notifier.send(msg.text, failure=msg.failure):
            sent += 1
        else:
            failed += 1
            context.log.warning(f"notification for run {run.run_id} not delivered (webhook down?): "
                                f"{msg.text[:80]}")
    if records:
        context.update_cursor(str(records[-1].storage_id))
    return SkipReason(f"{sent} notification(s) sent, {failed} not delivered") if records else \
        SkipReason("no run status changes")


def build_notify_sensor(catalog: Catalog, job_names: list[str], default_on: bool, interval: int = 2):
    from deploy_pipelines.resources import notifier_for

    if catalog.notify.slack is None:
        return None
    ui_url = catalog.notify.ui_url

    @sensor(name="notify_runs", minimum_interval_seconds=interval, required_resource_keys={"notifier"},
            default_status=DefaultSensorStatus.RUNNING if default_on else DefaultSensorStatus.STOPPED,
            description="Slack-compatible messages: release started / succeeded / failed / rolled back")
    def notify_runs(context):
        return evaluate_notify(context, context.resources.notifier, ui_url, job_names)

    return notify_runs, notifier_for(catalog)
