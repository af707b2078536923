"""The metrics watch: for `verify.bake` after each promotion, every tick measures the verify rules
against the promoted version (Prometheus-alert semantics: a breach counts only when it held for
the rule's whole `for` window). A breach launches rollback_<service>_<env> once: the run key
names the release run, so later ticks (and a second daemon) cannot launch it again."""

import time

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SkipReason, sensor

from deploy_pipelines.adapters.metrics import MetricsSource, PrometheusMetrics
from deploy_pipelines.analysis import FAILED, measure
from deploy_pipelines.catalog.models import Catalog
from deploy_pipelines.jobs import rollback_job_name
from deploy_pipelines.steps.common import (KIND_TAG, REASON_TAG, TARGET_TAG, TRIGGER_TAG, VERSION_TAG, deploy_history,
                                           resolve_setting, target_key)


def promoted_release(instance, service: str, environment: str) -> tuple[dict, float] | None:
    """The newest deploy/<env>/<service> event, if it is a promotion: (metadata, timestamp)."""
    newest = next(deploy_history(instance, service, environment, limit=1), None)
    return newest if newest and newest[0].get("outcome") == "promoted" else None


def evaluate_watch(context: SensorEvaluationContext, catalog: Catalog, service: str, environment: str,
                   metrics: MetricsSource, now: float | None = None):
    svc = catalog.services[service]
    now = time.time() if now is None else now
    found = promoted_release(context.instance, service, environment)
    if found is None:
        return SkipReason(f"{service} in {environment}: no promoted release to watch")
    release, promoted_at = found
    version = str(release.get("version"))
    left = promoted_at + svc.verify.bake - now
    if left <= 0:
        return SkipReason(f"{service} {version} in {environment}: baked ({svc.verify.bake:.0f}s) without a breach")
    labels = {"service": service, "environment": environment, "version": version}
    verdicts = [measure(rule, metrics, labels, now=now, since=promoted_at) for rule in svc.verify.rules]
    narration = "; ".join(m.narrate() for m in verdicts)
    breached = [m for m in verdicts if m.result == FAILED and not m.dry_run]
    if not breached:
        return SkipReason(f"{service} {version} in {environment}: baking, {left:.0f}s left: {narration}")
    m = breached[0]
    reason = (f"bake watch: rule {m.rule} {m.value:.4g} breached {m.threshold} for {m.window:.0f}s "
              f"after promotion of {version}")
    context.log.warning(f"{service} in {environment}: {reason}: launching rollback")
    return RunRequest(
        run_key=f"rollback:{service}:{environment}:{release['run_id']}",
        job_name=rollback_job_name(service, environment),
        run_config={"ops": {"rollback": {"config": {"reason": reason}}}},
        tags={TARGET_TAG: target_key(service, environment), KIND_TAG: "rollback", VERSION_TAG: version,
              TRIGGER_TAG: "watch", REASON_TAG: reason[:200]},
    )


def build_watch_sensors(catalog: Catalog, default_on: bool, interval: int = 5) -> list:
    status = DefaultSensorStatus.RUNNING if default_on else DefaultSensorStatus.STOPPED
    sensors = []
    for service, svc in catalog.services.items():
        if not svc.verify.bake or not svc.verify.rules:
            continue
        for environment in svc.targets:
            prometheus = catalog.environments[environment].prometheus

            def _watch(context, service=service, environment=environment, prometheus=prometheus):
                url = resolve_setting(prometheus, f"environments.{environment}.prometheus")
                return evaluate_watch(context, catalog, service, environment, PrometheusMetrics(url=url))

            sensors.append(sensor(name=f"watch_{service}_{environment}", job_name=rollback_job_name(service, environment),
                                  minimum_interval_seconds=interval, default_status=status,
                                  description=f"{service} in {environment}: verify rules for "
                                              f"{svc.verify.bake:.0f}s after each promotion; a breach rolls back")(_watch))
    return sensors
