"""Cron expressions exactly as Dagster's schedules read them.

The catalog must accept a cron string only if `ScheduleDefinition` will (else `check` passes and the
code location fails to load), and the backup-age check must count ticks the way the daemon fires
them. Dagster has no public cron API, so its own parser is imported here, in this one place; the
pin to dagster 1.13.27 (requirements.lock) holds it still, and test_catalog checks that this module
and `ScheduleDefinition` agree."""

from __future__ import annotations

from datetime import datetime
from typing import Iterator

from dagster._utils.schedules import cron_string_iterator, is_valid_cron_string  # noqa: PLC2701 - see above


def is_valid(expr: str) -> bool:
    return is_valid_cron_string(expr)


def ticks(start_timestamp: float, expr: str, timezone: str | None) -> Iterator[datetime]:
    """Tick times from start_timestamp on, in the schedule's timezone."""
    return cron_string_iterator(start_timestamp, expr, timezone)
