"""The scan gate as the scan op sees it: run the service's scanners over the tree at the tag and
lint the migrations new in this release, then judge the findings against fail_on and allow."""


from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from deploy_pipelines.catalog.models import Service
from deploy_pipelines.scanning.findings import Finding
from deploy_pipelines.scanning.gate import AllowEntry, evaluate
from deploy_pipelines.scanning.migration_lint import lint
from deploy_pipelines.scanning.runner import ScanError, ScannerSpec, run_scanner

SCHEMA = TableSchema(columns=[TableColumn("id"), TableColumn("severity"), TableColumn("tool"),
                              TableColumn("target"), TableColumn("fixed_in_or_advice"), TableColumn("status")])


@dataclass
class GateOutcome:
    ok: bool
    summary: str
    findings: list[Finding] = field(default_factory=list)
    blocking: list[Finding] = field(default_factory=list)
    new_migrations: list[str] = field(default_factory=list)
    markdown: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    def metadata(self) -> dict:
        rows = [TableRecord({"id": f.id, "severity": f.severity, "tool": f.tool, "target": f.target or "",
                             "fixed_in_or_advice": (f.fixed_in or f.advice or "")[:200],
                             "status": ("allowed: " + f.allowed_by) if f.allowed_by else
                             ("BLOCKING" if f in self.blocking else "below fail_on")})
                for f in self.findings[:500]]
        return {
            "findings": MetadataValue.table(rows, schema=SCHEMA),
            "counts_by_severity": MetadataValue.json(self.counts),
            "gate": MetadataValue.md(self.markdown or self.summary),
            "new_migrations": MetadataValue.json(self.new_migrations),
        }


def migration_dialect(service: Service) -> str | None:
    if service.database is None:
        return None
    return "postgres" if service.database.engine == "postgres" else "mysql"


def run_gate(service: Service, tree: Path, applied: list[str], today: date, log: Callable[[str], None],
             skip_scanners: bool = False) -> GateOutcome:
    findings: list[Finding] = []
    errors: list[str] = []
    context_dir = tree / service.image.context
    if skip_scanners:
        log("scanners skipped by request (skip_scan): recorded in this run")
    for spec in service.scan.scanners if not skip_scanners else []:
        scanner = ScannerSpec(name=spec.name, command=spec.command, format=spec.format,
                              ok_exit_codes=spec.ok_exit_codes, default_severity=spec.default_severity)
        try:
            got = run_scanner(scanner, cwd=context_dir, env=None)
        except ScanError as exc:
            errors.append(f"scanner {spec.name}: {exc}")
            continue
        log(f"scanner {spec.name}: {len(got)} finding(s)")
        findings.extend(got)

    new_migrations: list[str] = []
    dialect = migration_dialect(service)
    mig = service.database.migrate if service.database else None
    if dialect and mig is not None and mig.dir is not None:
        from deploy_pipelines.adapters.migrations import load_migrations

        mig_dir = tree / mig.dir
        if mig_dir.is_dir():
            files = [m for m in load_migrations(mig_dir) if m.name not in set(applied)]
            new_migrations = [m.name for m in files]
            if service.scan.migrations.enabled and files:
                lint_allow = [a for a in service.scan.allow if a.file]
                got = lint([(f"{mig.dir}/{m.name}.up.sql" if (mig_dir / f"{m.name}.up.sql").exists()
                             else f"{mig.dir}/{m.name}.sql", m.up_sql) for m in files], dialect,
                           [AllowEntry(**a.model_dump()) for a in lint_allow])
                log(f"migration lint ({dialect}) over {len(files)} new migration(s): {len(got)} finding(s)")
                findings.extend(got)

    allow = [AllowEntry(**a.model_dump()) for a in service.scan.allow if not a.file]
    result = evaluate(findings, service.scan.fail_on, allow, today)
    for line in result.notes:
        log(line)
    ok = result.ok and not errors
    summary = result.summary
    if errors:
        summary = "; ".join(errors) + ("; " + summary if summary else "")
    return GateOutcome(ok=ok, summary=summary, findings=result.findings, blocking=list(result.blocking),
                       new_migrations=new_migrations, markdown=result.as_markdown(),
                       counts=dict(result.counts))
