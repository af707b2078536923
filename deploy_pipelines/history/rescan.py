"""Asset check serving_image_rescan on deploy/<env>/<service>: rescan what serves now with the
catalog's scanners, today, and fail when a finding at or above the gate (`scan.fail_on`, minus
unexpired allow entries) is there that the release's own scan did not report. Vulnerability
databases move after a release: this is how a served image learns about a CVE found later.

The scanners run over the tree at the serving release's commit (the history records it), with
DEPLOY_IMAGE set to the serving image by digest (repository@sha256:...), so an image scanner
(`trivy image $DEPLOY_IMAGE`, written as `[sh, -c, ...]`) scans exactly what runs. Evaluated by
the refresh job: hourly and after every release."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

from dagster import AssetCheckResult, AssetCheckSeverity, AssetChecksDefinition, MetadataValue, asset_check

from deploy_pipelines.catalog.models import Service
from deploy_pipelines.history.checks import recorded_release
from deploy_pipelines.history.summary import step_outputs
from deploy_pipelines.scanning.findings import Finding
from deploy_pipelines.scanning.gate import AllowEntry, GateResult, evaluate
from deploy_pipelines.scanning.runner import ScanError, ScannerSpec, run_scanner
from deploy_pipelines.steps.common import history_key

IMAGE_ENV = "DEPLOY_IMAGE"


def ids_at_release(instance, release_id: str) -> set[str] | None:
    """Finding ids the release's scan step reported (its findings table), None if not recorded."""
    run = instance.get_run_by_id(release_id) if release_id else None
    table = step_outputs(instance, run, "scan").get("findings") if run else None
    if table is None:
        return None
    return {str(r.data.get("id")) for r in getattr(table, "records", [])}


def rescan(service: Service, tree: Path, image: str, today: date, log) -> GateResult:
    """The catalog's scanners over tree (the serving commit), judged by the catalog's gate today."""
    findings: list[Finding] = []
    for entry in service.scan.scanners:
        spec = ScannerSpec(name=entry.name, command=entry.command, format=entry.format,
                           ok_exit_codes=entry.ok_exit_codes, default_severity=entry.default_severity)
        got = run_scanner(spec, cwd=tree / service.image.context, env={IMAGE_ENV: image})
        log(f"rescan {entry.name} of {image}: {len(got)} finding(s)")
        findings.extend(got)
    allow = [AllowEntry(**a.model_dump()) for a in service.scan.allow if not a.file]
    return evaluate(findings, service.scan.fail_on, allow, today)


def rescan_result(recorded: dict, gate: GateResult, known: set[str] | None) -> AssetCheckResult:
    """Fail on blocking findings the release's scan did not report (all of them when it recorded none)."""
    new = [f for f in gate.blocking if known is None or f.id not in known]
    meta = {"serving_version": str(recorded.get("version")), "image": str(recorded.get("image", "")),
            "counts_by_severity": MetadataValue.json(dict(gate.counts)), "fail_on": gate.fail_on,
            "new_blocking": MetadataValue.json(sorted({f.id for f in new}))}
    if not new:
        return AssetCheckResult(passed=True, metadata=meta)
    detail = (f"{len(new)} finding(s) at or above {gate.fail_on} in {recorded.get('version')} appeared after its "
              "release: " + "; ".join(f"{f.id} ({f.severity}, {f.target})" for f in new[:5]))
    return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR, description=detail,
                            metadata={**meta, "detail": detail})


def rescan_check(catalog, service: str, environment: str, git_key: str) -> AssetChecksDefinition:
    svc = catalog.services[service]

    @asset_check(asset=history_key(service, environment), name="serving_image_rescan", blocking=False,
                 required_resource_keys={git_key},
                 description=f"Today's scan of the serving image finds nothing at or above {svc.scan.fail_on} "
                             "that its release's scan did not")
    def _check(context) -> AssetCheckResult:
        recorded = recorded_release(context.instance, service, environment)
        if recorded is None or not recorded.get("commit"):
            return AssetCheckResult(passed=True, metadata={"detail": "nothing released: nothing to rescan"})
        image = str(recorded.get("image") or "")
        with tempfile.TemporaryDirectory(prefix="deploy-rescan-") as tmp:
            tree = getattr(context.resources, git_key).export(str(recorded["commit"]), Path(tmp) / "src")
            try:
                gate = rescan(svc, tree, image, date.today(), context.log.info)
            except ScanError as exc:     # a scanner that cannot run is a failed check, never a pass
                return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN, description=str(exc))
        return rescan_result(recorded, gate, ids_at_release(context.instance, str(recorded.get("release_id", ""))))

    return _check
