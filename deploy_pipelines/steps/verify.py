"""verify: decide whether the new version may serve users. Health with retries and smoke
requests straight at the new instances, then the metric rules; for canary, walk the steps
(weight, pause, analysis). Any failure aborts: traffic back to stable at once, the new version
removed, the reason recorded and people told."""


import time

import httpx
from dagster import AssetObservation, Failure, MetadataValue, Out, Output, TableColumn, TableRecord, TableSchema, op

from deploy_pipelines.adapters.git import GitSource
from deploy_pipelines.adapters.metrics import MetricsSource
from deploy_pipelines.adapters.platform import Platform
from deploy_pipelines.adapters.records import DeployResult
from deploy_pipelines.analysis import run_analysis
from deploy_pipelines.catalog.models import Canary, HealthCheck, SmokeCheck
from deploy_pipelines.history.metadata import event_metrics
from deploy_pipelines.history.summary import release_summary, serving_before
from deploy_pipelines.redact import redact
from deploy_pipelines.steps.common import DeployTarget, ReleaseInput, VerifyOutcome, ensure_exclusive, history_key


class VerifyFailed(Exception):
    def __init__(self, check: str, reason: str):
        super().__init__(reason)
        self.check = check


def check_health(urls: list[str], health: HealthCheck, log) -> dict:
    """Every instance answers 200 on the health path within the timeout (retrying every interval)."""
    for base in urls:
        deadline = time.monotonic() + health.timeout
        attempt, last = 0, ""
        while True:
            attempt += 1
            try:
                r = httpx.get(base + health.path, timeout=min(5.0, health.timeout))
                if r.status_code == 200:
                    log(f"health {base}{health.path}: 200 after {attempt} attempt(s)")
                    break
                last = f"HTTP {r.status_code} {r.text[:120]}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            if time.monotonic() + health.interval > deadline:
                raise VerifyFailed("health", f"health {base}{health.path} not 200 within "
                                             f"{health.timeout:.0f}s ({attempt} attempts; last: {last})")
            time.sleep(health.interval)
    return {"check": "health", "result": "ok", "detail": f"{len(urls)} instance(s) healthy"}


def check_smoke(urls: list[str], smoke: list[SmokeCheck], log) -> list[dict]:
    results = []
    for s in smoke:
        for base in urls:
            try:
                r = httpx.request(s.method, base + s.path, timeout=10)
                ok = r.status_code == s.expect and (s.contains is None or s.contains in r.text)
                got = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                ok, got = False, type(exc).__name__
            log(f"smoke {s.method} {base}{s.path}: {got} (expect {s.expect}): {'ok' if ok else 'FAILED'}")
            if not ok:
                raise VerifyFailed("smoke", f"smoke {s.method} {s.path} on {base}: {got}, expected {s.expect}")
        results.append({"check": f"smoke {s.path}", "result": "ok", "detail": f"{len(urls)} instance(s)"})
    return results


def analyse(target: DeployTarget, release: ReleaseInput, metrics: MetricsSource, log, prefix: str,
            since: float) -> list[dict]:
    verify = target.spec.verify
    labels = {"service": target.service, "environment": target.environment, "version": release.version}
    result = run_analysis(verify.rules, metrics, labels, verify.analysis, log, prefix=prefix, since=since)
    if not result.ok:
        raise VerifyFailed(result.failed.rule if result.failed else "analysis", result.reason)
    last = {m.rule: m for m in result.measurements}       # each rule's final measurement
    return [{"check": f"{prefix}{name}", "result": m.result, "detail": m.narrate()} for name, m in last.items()]


def walk(target: DeployTarget, release: ReleaseInput, deployed: DeployResult, platform: Platform,
         metrics: MetricsSource, log, checks: list | None = None, reached: list | None = None) -> list[dict]:
    """`checks` and `reached` (canary steps entered) fill as verify goes, so an abort can tell how far it got."""
    verify = target.spec.verify
    strategy = target.target.strategy
    checks = [] if checks is None else checks
    reached = [] if reached is None else reached
    checks.append(check_health(deployed.endpoints, verify.health, log))
    checks.extend(check_smoke(deployed.endpoints, verify.smoke, log))
    since = time.time()
    first = deployed.previous is None
    if first and strategy.kind != "rolling":
        log(f"first release of {target.service} in {target.environment}: nothing stable to compare with, "
            f"so no {strategy.kind} steps; verifying the new version as it serves")
    if isinstance(strategy, Canary) and not first:
        for i, step in enumerate(strategy.steps, 1):
            prefix = f"canary step {i}/{len(strategy.steps)}: "
            reached.append(f"step {i}" if step.weight is None else f"{step.weight}%")
            if step.weight is not None:
                platform.set_weight(step.weight, log)
                prefix = f"canary {step.weight}%: "
                log(f"{prefix}traffic set")
            if step.pause:
                log(f"{prefix}pause {step.pause:.0f}s")
                time.sleep(step.pause)
            if step.analysis and verify.rules:
                checks.extend(analyse(target, release, metrics, log, prefix, since))
    elif strategy.kind == "blue_green" and not first:
        log("green verified directly; switching user traffic to green")
        platform.set_weight(100, log)
        if verify.rules:
            checks.extend(analyse(target, release, metrics, log, "blue-green: ", since))
    elif verify.rules:
        checks.extend(analyse(target, release, metrics, log, f"{strategy.kind}: ", since))
    return checks


def abort_summary(context, target: DeployTarget, release: ReleaseInput, deployed: DeployResult, git: GitSource,
                  check: str, reason: str, checks: list[dict], reached: list[str], back_to: str) -> str:
    """The aborted release's summary page. Whatever goes wrong here (reading the history for the
    release serving before) is only a warning: the Failure naming the check and the rollback must
    reach the run, not this exception in its place."""
    try:
        return release_summary(
            context, target, release, git, outcome="aborted", failed=check, reached=reached,
            first=deployed.previous is None, checks=[*checks, {"check": check, "result": "FAILED", "detail": reason}],
            serving=serving_before(context.instance, target.service, target.environment, release.run_id))
    except Exception as exc:  # noqa: BLE001 - see above
        context.log.warning(f"summary of the aborted release could not be built: {type(exc).__name__}: "
                            f"{redact(exc)}")
        return (f"### {release.service} {release.version} → {release.environment}: aborted\n\n"
                f"failed {check}, rolled back to {back_to} (summary could not be built: {type(exc).__name__})")


@op(out=Out(VerifyOutcome), tags={"deploy/step": "verify"})
def verify(context, release: ReleaseInput, deployed: DeployResult, target: DeployTarget, platform: Platform,
           metrics: MetricsSource, git: GitSource) -> Output:
    """Health, smoke and metric analysis of the new version; abort to stable on any failure."""
    log = context.log.info
    ensure_exclusive(context, target.key)
    checks: list[dict] = []
    reached: list[str] = []
    try:
        walk(target, release, deployed, platform, metrics, log, checks, reached)
    except BaseException as exc:  # noqa: BLE001 - whatever stops verify, traffic must go back to stable
        check = exc.check if isinstance(exc, VerifyFailed) else "verify"
        reason = str(exc) if isinstance(exc, VerifyFailed) else f"{type(exc).__name__}: {exc}"
        context.log.error(f"verify failed ({check}): {reason}; aborting: traffic back to stable")
        stable = platform.abort(reason, log)
        back_to = stable.version if stable else "nothing (no stable release)"
        summary = abort_summary(context, target, release, deployed, git, check, reason, checks, reached, back_to)
        context.log_event(AssetObservation(history_key(target.service, target.environment), metadata={
            "outcome": "aborted", "version": release.version, "failed_check": check, "reason": reason,
            "serving": back_to, "summary": MetadataValue.md(summary),
            **event_metrics(context, steps_reached=len(reached) if isinstance(target.target.strategy, Canary)
                            and deployed.previous is not None else None, target=target, metrics=metrics)}))
        # The notify_runs sensor tells #incidents ("failed and rolled back") from this observation.
        raise Failure(f"{target.where}: {release.version} failed verification ({check}) and was rolled back "
                      f"to {back_to}: {reason}",
                      metadata={"failed_check": check, "reason": reason, "rolled_back_to": back_to}) from None
    schema = TableSchema(columns=[TableColumn("check"), TableColumn("result"), TableColumn("detail")])
    outcome = VerifyOutcome(ok=True, checks=checks)
    return Output(outcome, metadata={
        "checks": MetadataValue.table([TableRecord(c) for c in checks], schema=schema),
    })
