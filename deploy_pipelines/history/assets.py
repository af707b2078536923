"""Declared assets: deploy/<env>/<service> for every catalog target (the release history that
steps record as events), and dora/<env>/<service> computed from that history. Grouped by
service; lineage follows promotion (deploy/staging/api -> deploy/production/api)."""

from __future__ import annotations

import time

from dagster import AssetKey, AssetSpec, MaterializeResult, MetadataValue, asset

from deploy_pipelines.catalog.models import Catalog, Service
from deploy_pipelines.history.dora import dora_metrics, markdown_summary, read_events
from deploy_pipelines.steps.common import history_key


def dora_key(service: str, environment: str) -> AssetKey:
    return AssetKey(["dora", environment, service])


def describe(catalog: Catalog, service: str, environment: str) -> str:
    svc: Service = catalog.services[service]
    target = svc.targets[environment]
    db = f"{svc.database.engine} database, migrations on failure: {svc.database.migrate.on_failure}" \
        if svc.database else "no database"
    requires = catalog.environments[environment].requires
    gate = f" Versions must pass {requires} first." if requires and requires in svc.targets else ""
    return (f"{service} in {environment}: {target.strategy.kind} release on {target.platform} "
            f"({target.replicas} replica(s)), {db}.{gate} Each promotion, abort and rollback is an event "
            "here; plots show duration_s and lead_time_s.")


def deploy_specs(catalog: Catalog) -> list[AssetSpec]:
    specs = []
    for service, svc in catalog.services.items():
        for environment in catalog.environment_order():
            if environment not in svc.targets:
                continue
            target = svc.targets[environment]
            requires = catalog.environments[environment].requires
            deps = [history_key(service, requires)] if requires and requires in svc.targets else []
            kinds = {target.platform, *([svc.database.engine] if svc.database else [])}
            specs.append(AssetSpec(history_key(service, environment), deps=deps, group_name=service,
                                   description=describe(catalog, service, environment), kinds=kinds,
                                   owners=svc.owners,
                                   metadata={"strategy": target.strategy.kind, "platform": target.platform},
                                   tags={"environment": environment}))
    return specs


def dora_assets(catalog: Catalog) -> list:
    return [_dora_asset(service, environment) for service, svc in catalog.services.items()
            for environment in svc.targets]


def _dora_asset(service: str, environment: str):
    @asset(key=dora_key(service, environment), deps=[history_key(service, environment)], group_name=service,
           kinds={"dagster"},
           description=f"DORA metrics of {service} in {environment} over the last day and the last 7 days, "
                       "computed from the deploy history's events")
    def _dora(context) -> MaterializeResult:
        now = time.time()
        events = read_events(context.instance, history_key(service, environment))
        metrics = dora_metrics(events, now)
        meta: dict = {"summary": MetadataValue.md(markdown_summary(f"{service} in {environment}", metrics)),
                      "events_read": len(events)}
        for window, values in metrics.items():
            for name, value in values.items():
                if value is not None:     # an unknown value stays out, so plots show a gap, not a 0
                    meta[f"{name}_{window}"] = MetadataValue.float(float(value))
        week = metrics["7d"]
        context.log.info(f"DORA {service} in {environment}, last 7 days: {week['deployments']} deployment(s), "
                         f"change failure rate {week['change_failure_rate']}, {week['rollbacks']} rollback(s)")
        return MaterializeResult(metadata=meta)

    return _dora
