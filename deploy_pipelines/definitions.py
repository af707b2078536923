"""The code location: the catalog named by $DEPLOY_CATALOG (default: the demo catalog) -> jobs,
sensors and schedules. A bad catalog fails here with the file and field; nothing is built.

Built lazily, so a run costs the same whatever the catalog's size: every process that loads this
module (each run worker, the webserver's and the daemon's code servers) parses and validates the
catalog once and knows every job by name, but builds a job only when asked for it by name, and the
sensors and schedules only when asked for them. A run worker asks for its one job; a code server
asks for everything, once, to show every job, sensor and schedule in the UI. (At 200 services x 3
environments there are 3,200 jobs; building them all took ~14 s, once per run. README: "Many
services".)"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from dagster import (DagsterInvariantViolationError, JobDefinition, RepositoryData, RepositoryDefinition,
                     ResourceDefinition, ScheduleDefinition, SensorDefinition, repository)

from deploy_pipelines.catalog import Catalog, default_catalog_path
from deploy_pipelines.catalog_cache import load_catalog_once
from deploy_pipelines.history.definitions import build_history_definitions, build_history_sensors
from deploy_pipelines.jobs import job_builders
from deploy_pipelines.triggers.cleanup import build_cleanup_sensors
from deploy_pipelines.triggers.notify import build_notify_sensor
from deploy_pipelines.triggers.promotion import build_promotion_sensors
from deploy_pipelines.triggers.schedules import build_schedules
from deploy_pipelines.triggers.tags import build_tag_sensors
from deploy_pipelines.triggers.watch import build_watch_sensors

# The repository name Dagster gives a `Definitions` object: runs, sensor cursors and schedule
# states recorded before the repository became lazy stay attached to the same names.
REPOSITORY_NAME = "__repository__"


class Triggers:
    """The catalog's sensors, schedules and the resources the sensors use, built together on
    first use (the promotion sensors need the job definitions they watch and launch)."""

    def __init__(self, catalog: Catalog, jobs: Callable[[], Sequence[JobDefinition]], job_names: list[str],
                 history: RepositoryData):
        on = catalog.triggers.enabled
        every = max(1, int(catalog.triggers.poll_interval))
        by_name = {j.name: j for j in jobs()}
        self.sensors: list[SensorDefinition] = [
            *build_tag_sensors(catalog, every, on), *build_promotion_sensors(catalog, by_name, on, every),
            *build_watch_sensors(catalog, on, every), *build_cleanup_sensors(catalog, on),
            *build_history_sensors(list(by_name.values()), history, on)]
        self.resources: dict[str, ResourceDefinition] = {}
        notify = build_notify_sensor(catalog, job_names, on, min(every, 2))
        if notify:
            self.sensors.append(notify[0])
            # A repository's top-level resources are ResourceDefinitions (Definitions converts them itself).
            self.resources["notifier"] = notify[1].get_resource_definition()
        self.schedules: list[ScheduleDefinition] = build_schedules(catalog, on)


class CatalogRepositoryData(RepositoryData):
    """Every job of the catalog by name, each built on first request and kept."""

    def __init__(self, catalog: Catalog, builders: Mapping[str, Callable[[], JobDefinition]],
                 history: Callable[[], RepositoryData]):
        self._catalog = catalog
        self._builders = dict(builders)
        # The history's assets, checks, refresh job and schedule (issue 12), built on first use
        # like the triggers: they hold two resources per target and an asset and checks per target
        # (at 200 services x 3 environments ~60 CPU s to build), which a release run never needs.
        self._build_history = history
        self._history_data: RepositoryData | None = None
        self._jobs: dict[str, JobDefinition] = {}
        self._triggers: Triggers | None = None

    @property
    def _history(self) -> RepositoryData:
        if self._history_data is None:
            self._history_data = self._build_history()
        return self._history_data

    @property
    def built(self) -> dict:
        """What this process has built so far (the end-to-end test checks a run builds one job)."""
        return {"jobs": list(self._jobs), "triggers": self._triggers is not None,
                "history": self._history_data is not None}

    def get_job_names(self) -> Sequence[str]:
        return [*self._builders, *self._history.get_job_names()]

    def has_job(self, job_name: str) -> bool:
        return job_name in self._builders or self._history.has_job(job_name)

    def get_job(self, job_name: str) -> JobDefinition:
        if job_name not in self._builders and self._history.has_job(job_name):
            return self._history.get_job(job_name)
        if job_name not in self._jobs:
            if job_name not in self._builders:
                raise DagsterInvariantViolationError(
                    f"Could not find job {job_name!r} in the catalog's code location (jobs are named "
                    "release_/rollback_/backup_/verify_backup_/patch_/approve_<service>_<environment>)")
            self._jobs[job_name] = self._builders[job_name]()
        return self._jobs[job_name]

    def get_all_jobs(self) -> Sequence[JobDefinition]:
        return [*(self.get_job(name) for name in self._builders), *self._history.get_all_jobs()]

    def _built_triggers(self) -> Triggers:
        if self._triggers is None:
            self._triggers = Triggers(self._catalog, lambda: [self.get_job(n) for n in self._builders],
                                      list(self._builders), self._history)
        return self._triggers

    def get_all_sensors(self) -> Sequence[SensorDefinition]:
        return [*self._built_triggers().sensors, *self._history.get_all_sensors()]

    def get_all_schedules(self) -> Sequence[ScheduleDefinition]:
        return [*self._built_triggers().schedules, *self._history.get_all_schedules()]

    def get_top_level_resources(self) -> Mapping[str, ResourceDefinition]:
        return {**self._history.get_top_level_resources(), **self._built_triggers().resources}

    def get_env_vars_by_top_level_resource(self) -> Mapping[str, set[str]]:
        return self._history.get_env_vars_by_top_level_resource()

    # The asset graph (deploy/<env>/<service>, DORA) and its checks come from the history part.
    def get_source_assets_by_key(self):
        return self._history.get_source_assets_by_key()

    def get_assets_defs_by_key(self):
        return self._history.get_assets_defs_by_key()

    def get_asset_checks_defs_by_key(self):
        return self._history.get_asset_checks_defs_by_key()

    def get_asset_job_nodes(self):
        return self._history.get_asset_job_nodes()


def build_definitions(catalog_path: str | Path | None = None) -> RepositoryDefinition:
    path = Path(catalog_path) if catalog_path else default_catalog_path()
    catalog = load_catalog_once(path)

    def history() -> RepositoryData:
        built = build_history_definitions(catalog, str(path.resolve()), catalog.triggers.enabled)
        return built.get_repository_def()._repository_data  # noqa: SLF001

    data = CatalogRepositoryData(catalog, job_builders(catalog, str(path.resolve())), history)

    @repository(name=REPOSITORY_NAME, description=f"Releases of the {catalog.project} catalog ({path})")
    def _location():
        return data

    return _location


def built_so_far(repo: RepositoryDefinition) -> dict:
    """Which jobs (and whether the triggers) this process has built: the end-to-end test checks
    that a run builds only its own job. Dagster keeps a repository's data private; read it here only."""
    data = repo._repository_data  # noqa: SLF001
    return data.built if isinstance(data, CatalogRepositoryData) else {"jobs": "all (not lazy)", "triggers": True,
                                                                      "history": True}


defs = build_definitions()
