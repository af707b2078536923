"""The gate: a finding at or above fail_on blocks the release unless an unexpired allow entry
names it (by id or alias; for the migration lint, by rule and file) and says why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date

from pydantic import BaseModel, Field

from deploy_pipelines.scanning.findings import SEVERITIES, Finding, at_least


class AllowEntry(BaseModel):
    id: str
    reason: str = Field(min_length=3)
    until: date | None = None
    file: str | None = None

    def matches(self, f: Finding) -> bool:
        if self.id != f.id and self.id not in f.aliases:
            return False
        return self.file is None or f.target.split(":")[0].endswith(self.file)


@dataclass
class GateResult:
    ok: bool
    fail_on: str
    findings: list[Finding]
    blocking: list[Finding]
    allowed: list[Finding]
    expired: list[AllowEntry]
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.counts.items() if n) or "no findings"
        head = (f"{len(self.blocking)} finding(s) at or above {self.fail_on} block the release: "
                + "; ".join(f"{f.id} ({f.severity}, {f.target})" for f in self.blocking[:5])
                if self.blocking else f"passed (fail_on {self.fail_on})")
        return f"{head} [{counts}; {len(self.allowed)} allowed]"

    def as_markdown(self) -> str:
        lines = [f"**Scan gate: {'passed' if self.ok else 'FAILED'}** (fail_on `{self.fail_on}`)", "",
                 "| severity | count |", "|---|---|"]
        lines += [f"| {s} | {n} |" for s, n in self.counts.items()]
        if self.blocking:
            lines += ["", "Blocking:", ""] + [f"- `{f.id}` {f.severity} in `{f.target}`: {f.advice or f.title}"
                                              for f in self.blocking[:50]]
        if self.expired:
            lines += ["", "Expired allow entries (no longer allowing):", ""] + [
                f"- `{a.id}` until {a.until}: {a.reason}" for a in self.expired]
        return "\n".join(lines)


def evaluate(findings: list[Finding], fail_on: str, allow: list[AllowEntry], today: date) -> GateResult:
    live = [a for a in allow if a.until is None or a.until >= today]
    expired = [a for a in allow if a.until is not None and a.until < today]
    notes = [f"allow entry {a.id} expired on {a.until} ({a.reason}): it no longer allows" for a in expired]
    blocking, allowed, judged = [], [], []
    for f in findings:
        entry = None if f.allowed_by else next((a for a in live if a.matches(f)), None)
        if f.allowed_by:
            allowed.append(f)
        elif entry is not None:
            f = f.allowed(entry.reason)
            allowed.append(f)
        elif at_least(f.severity, fail_on):
            blocking.append(f)
        judged.append(f)
    counts = Counter(f.severity for f in judged)
    return GateResult(ok=not blocking, fail_on=fail_on, findings=judged, blocking=blocking, allowed=allowed,
                      expired=expired, counts={s: counts.get(s, 0) for s in SEVERITIES if counts.get(s)},
                      notes=notes)
