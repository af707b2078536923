"""The code location: the catalog named by $DEPLOY_CATALOG (default: the demo catalog) -> jobs,
sensors and schedules. A bad catalog fails here with the file and field; nothing is built."""

from __future__ import annotations

from pathlib import Path

from dagster import Definitions

from deploy_pipelines.catalog import default_catalog_path, load_catalog
from deploy_pipelines.history.definitions import build_history_definitions
from deploy_pipelines.jobs import build_jobs
from deploy_pipelines.resources import resources_for
from deploy_pipelines.triggers.cleanup import build_cleanup
from deploy_pipelines.triggers.notify import build_notify_sensor
from deploy_pipelines.triggers.promotion import build_promotion_sensors
from deploy_pipelines.triggers.schedules import build_schedules
from deploy_pipelines.triggers.tags import build_tag_sensors
from deploy_pipelines.triggers.watch import build_watch_sensors


def build_definitions(catalog_path: str | Path | None = None) -> Definitions:
    path = Path(catalog_path) if catalog_path else default_catalog_path()
    catalog = load_catalog(path)
    jobs = build_jobs(catalog, str(path.resolve()))
    cleanup_jobs, cleanup_sensors = build_cleanup(catalog, resources_for, str(path.resolve()),
                                                  catalog.triggers.enabled)
    jobs += cleanup_jobs
    by_name = {j.name: j for j in jobs}
    on = catalog.triggers.enabled
    every = max(1, int(catalog.triggers.poll_interval))
    sensors = [*build_tag_sensors(catalog, every, on), *build_promotion_sensors(catalog, by_name, on, every),
               *build_watch_sensors(catalog, on, every), *cleanup_sensors]
    resources = {}
    notify = build_notify_sensor(catalog, [j.name for j in jobs], on, min(every, 2))
    if notify:
        sensors.append(notify[0])
        resources["notifier"] = notify[1]
    core = Definitions(jobs=jobs, sensors=sensors, schedules=build_schedules(catalog, on), resources=resources)
    return Definitions.merge(core, build_history_definitions(catalog, str(path.resolve()), jobs, on))


defs = build_definitions()
