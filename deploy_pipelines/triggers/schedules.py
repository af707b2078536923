"""Schedules: nightly backups (the catalog's cron and time zone), restore verification, and the
monthly patch on the first (second, ..., last) <weekday> of the month.

A cron line cannot say "first Friday": `0 3 1-7 * 5` means "days 1-7 OR any Friday" (when both
day fields are restricted, cron ORs them). So the patch schedule fires every <weekday> at the
time and the function releases only on the wanted one, skipping the others with a reason."""

import calendar
from datetime import date, datetime

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, SkipReason, schedule

from deploy_pipelines.catalog.models import Catalog, PatchSpec
from deploy_pipelines.steps.common import KIND_TAG, TARGET_TAG, TRIGGER_TAG, target_key

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
ORDINALS = ["first", "second", "third", "fourth", "last"]


def parse_patch(spec: PatchSpec) -> tuple[str, int, int, int]:
    """'first-friday 03:00' -> ('first', 4, 3, 0)."""
    when, clock = spec.schedule.split(" ")
    ordinal, weekday = when.split("-")
    hour, minute = clock.split(":")
    return ordinal, WEEKDAYS.index(weekday), int(hour), int(minute)


def patch_cron(spec: PatchSpec) -> str:
    _, weekday, hour, minute = parse_patch(spec)
    return f"{minute} {hour} * * {(weekday + 1) % 7}"      # cron: 0 = Sunday


def is_patch_day(day: date, ordinal: str, weekday: int) -> bool:
    if day.weekday() != weekday:
        return False
    if ordinal == "last":
        return day.day + 7 > calendar.monthrange(day.year, day.month)[1]
    return (day.day - 1) // 7 == ORDINALS.index(ordinal)


def patch_days(year: int, spec: PatchSpec) -> list[date]:
    ordinal, weekday, _, _ = parse_patch(spec)
    days = []
    for month in range(1, 13):
        for d in range(1, calendar.monthrange(year, month)[1] + 1):
            if is_patch_day(date(year, month, d), ordinal, weekday):
                days.append(date(year, month, d))
    return days


def evaluate_patch(context: ScheduleEvaluationContext, spec: PatchSpec, service: str, environment: str):
    when: datetime = context.scheduled_execution_time
    ordinal, weekday, _, _ = parse_patch(spec)
    day = when.date()
    if not is_patch_day(day, ordinal, weekday):
        return SkipReason(f"{day.isoformat()} is not the {ordinal} {WEEKDAYS[weekday].capitalize()} of "
                          f"{calendar.month_name[day.month]}: no patch")
    return RunRequest(
        run_key=f"patch:{service}:{environment}:{day.isoformat()}",
        run_config={"ops": {"patch_source": {"config": {"reason": f"monthly patch {day.isoformat()}"}}}},
        tags={TARGET_TAG: target_key(service, environment), KIND_TAG: "patch", TRIGGER_TAG: "schedule"},
    )


def build_schedules(catalog: Catalog, default_on: bool) -> list:
    status = DefaultScheduleStatus.RUNNING if default_on else DefaultScheduleStatus.STOPPED
    out = []
    for service, svc in catalog.services.items():
        for environment in svc.targets:
            if svc.database is not None:
                b = svc.database.backup
                out.append(schedule(
                    cron_schedule=b.schedule, name=f"backup_{service}_{environment}_schedule",
                    job_name=f"backup_{service}_{environment}", execution_timezone=catalog.timezone,
                    default_status=status, tags={KIND_TAG: "backup", TRIGGER_TAG: "schedule"},
                    description=f"Back up {service}'s {environment} database ({b.schedule}, {catalog.timezone}); "
                                f"keep {b.keep_days} days / the newest {b.keep_last}")(lambda _ctx: {}))
                if b.verify_schedule:
                    out.append(schedule(
                        cron_schedule=b.verify_schedule, name=f"verify_backup_{service}_{environment}_schedule",
                        job_name=f"verify_backup_{service}_{environment}", execution_timezone=catalog.timezone,
                        default_status=status, tags={KIND_TAG: "verify_backup", TRIGGER_TAG: "schedule"},
                        description=f"Restore {service}'s newest {environment} backup into a scratch database "
                                    "and compare row counts")(lambda _ctx: {}))
            patch = catalog.patch
            if patch and (patch.environments is None or environment in patch.environments):
                def _patch(context, service=service, environment=environment):
                    return evaluate_patch(context, patch, service, environment)

                out.append(schedule(
                    cron_schedule=patch_cron(patch), name=f"patch_{service}_{environment}_schedule",
                    job_name=f"patch_{service}_{environment}", execution_timezone=catalog.timezone,
                    default_status=status,
                    description=f"Monthly patch of {service} in {environment}: {patch.schedule} "
                                f"({catalog.timezone})")(_patch))
    return out
