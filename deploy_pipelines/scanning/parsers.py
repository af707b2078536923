"""Scanner output formats -> findings: SARIF 2.1 (bandit, gosec, semgrep, trivy --format sarif),
Trivy JSON, pip-audit JSON (both shapes), npm audit JSON (v2), gosec JSON. Fields that some
versions omit are optional; an output of the wrong shape raises ValueError."""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from deploy_pipelines.scanning.findings import Finding, cvss_severity, normalise


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at line {exc.lineno})") from None


def parse_sarif(text: str, default_severity: str | None = None) -> list[Finding]:
    doc = _load(text)
    if not isinstance(doc, dict) or "runs" not in doc:
        raise ValueError("not SARIF: no 'runs'")
    out = []
    for run in doc["runs"]:
        driver = run.get("tool", {}).get("driver", {})
        tool = driver.get("name", "sarif").lower()
        rules = {r.get("id"): r for r in driver.get("rules", []) or []}
        for res in run.get("results", []) or []:
            rule = rules.get(res.get("ruleId")) or {}
            if not rule and "ruleIndex" in res and driver.get("rules"):
                rule = driver["rules"][res["ruleIndex"]]
            props = {**(rule.get("properties") or {}), **(res.get("properties") or {})}
            severity = None
            if "security-severity" in props:
                try:
                    severity = cvss_severity(float(props["security-severity"]))
                except (TypeError, ValueError):
                    severity = None
            if severity is None:
                for tag in props.get("tags", []) or []:
                    if normalise(tag) in ("critical", "high", "medium", "low"):
                        severity = normalise(tag)
                        break
            if severity is None and props.get("issue_severity"):       # bandit
                severity = normalise(props["issue_severity"])
            if severity is None:
                level = res.get("level") or (rule.get("defaultConfiguration") or {}).get("level") or "warning"
                severity = default_severity or {"error": "high", "warning": "medium", "note": "low",
                                                "none": "info"}.get(level, "unknown")
            loc = ((res.get("locations") or [{}])[0].get("physicalLocation") or {})
            path = (loc.get("artifactLocation") or {}).get("uri", "")
            line = (loc.get("region") or {}).get("startLine")
            msg = (res.get("message") or {}).get("text", "")
            help_text = ((rule.get("help") or {}).get("text") or (rule.get("fullDescription") or {}).get("text") or "")
            out.append(Finding(id=res.get("ruleId") or rule.get("id") or "?", severity=severity, tool=tool,
                               target=f"{path}:{line}" if line else path, title=msg.split("\n")[0][:200],
                               advice=help_text.split("\n")[0][:300]))
    return out


def parse_trivy_json(text: str, default_severity: str | None = None) -> list[Finding]:
    doc = _load(text)
    if not isinstance(doc, dict) or "Results" not in doc and "SchemaVersion" not in doc:
        raise ValueError("not a Trivy JSON report: no 'Results'")
    out = []
    for result in doc.get("Results") or []:
        for v in result.get("Vulnerabilities") or []:
            out.append(Finding(id=v["VulnerabilityID"], severity=normalise(v.get("Severity")), tool="trivy",
                               target=v.get("PkgName", ""), installed=v.get("InstalledVersion", ""),
                               fixed_in=v.get("FixedVersion", ""), title=v.get("Title", "")[:200],
                               advice=(f"upgrade {v.get('PkgName')} to {v['FixedVersion']}" if v.get("FixedVersion")
                                       else "no fix released")))
        for m in result.get("Misconfigurations") or []:
            out.append(Finding(id=m.get("ID", "?"), severity=normalise(m.get("Severity")), tool="trivy",
                               target=result.get("Target", ""), title=m.get("Title", "")[:200],
                               advice=m.get("Resolution", "")[:300]))
    return out


def parse_pip_audit_json(text: str, default_severity: str | None = None) -> list[Finding]:
    """pip-audit reports no severity: every finding gets default_severity (high unless configured)."""
    doc = _load(text)
    deps = doc if isinstance(doc, list) else (doc.get("dependencies") if isinstance(doc, dict) else None)
    if deps is None:
        raise ValueError("not a pip-audit JSON report: expected a list or {'dependencies': [...]}")
    out = []
    for dep in deps:
        for v in dep.get("vulns") or []:
            fixes = v.get("fix_versions") or []
            out.append(Finding(id=v["id"], severity=default_severity or "high", tool="pip-audit",
                               target=dep["name"], installed=dep.get("version", ""), fixed_in=", ".join(fixes),
                               title=(v.get("description") or "")[:200], aliases=tuple(v.get("aliases") or ()),
                               advice=f"upgrade {dep['name']} to {fixes[0]}" if fixes else "no fix released"))
    return out


def parse_npm_audit_json(text: str, default_severity: str | None = None) -> list[Finding]:
    doc = _load(text)
    if not isinstance(doc, dict) or "vulnerabilities" not in doc:
        raise ValueError("not an npm audit v2 report: no 'vulnerabilities'")
    out = []
    for name, v in doc["vulnerabilities"].items():
        advisories = [x for x in v.get("via", []) if isinstance(x, dict)]
        fix = v.get("fixAvailable")
        fixed = (f"{fix.get('name')}@{fix.get('version')}" if isinstance(fix, dict) else
                 ("npm audit fix" if fix else "no fix available"))
        if not advisories:   # only vulnerable through another package: reported under that one
            continue
        for a in advisories:
            url = a.get("url", "")
            ghsa = re.search(r"GHSA-[\w-]+", url)
            out.append(Finding(id=ghsa.group(0) if ghsa else str(a.get("source", name)),
                               severity=normalise(a.get("severity") or v.get("severity")), tool="npm-audit",
                               target=name, installed=v.get("range", ""), fixed_in=fixed,
                               title=a.get("title", "")[:200], advice=url))
    return out


def parse_gosec_json(text: str, default_severity: str | None = None) -> list[Finding]:
    doc = _load(text)
    if not isinstance(doc, dict) or "Issues" not in doc:
        raise ValueError("not a gosec JSON report: no 'Issues'")
    out = []
    for i in doc.get("Issues") or []:
        cwe = (i.get("cwe") or {}).get("id", "")
        out.append(Finding(id=i.get("rule_id", "?"), severity=normalise(i.get("severity")), tool="gosec",
                           target=f"{i.get('file', '')}:{i.get('line', '')}", title=i.get("details", "")[:200],
                           advice=f"CWE-{cwe}" if cwe else ""))
    return out


PARSERS: dict[str, Callable[..., list[Finding]]] = {
    "sarif": parse_sarif,
    "trivy-json": parse_trivy_json,
    "pip-audit-json": parse_pip_audit_json,
    "npm-audit-json": parse_npm_audit_json,
    "gosec-json": parse_gosec_json,
}
