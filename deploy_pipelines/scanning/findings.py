"""Findings from every scanner, in one shape, with one severity order."""

from __future__ import annotations

from dataclasses import dataclass, replace

SEVERITIES = ("critical", "high", "medium", "low", "info", "unknown")
RANK = {s: i for i, s in enumerate(reversed(SEVERITIES))}   # unknown 0 ... critical 5


def normalise(severity: str | None) -> str:
    s = (severity or "").strip().lower()
    return {"moderate": "medium", "negligible": "low", "informational": "info", "note": "low",
            "warning": "medium", "error": "high", "none": "info"}.get(s, s if s in RANK else "unknown")


def at_least(severity: str, threshold: str) -> bool:
    if threshold == "none":
        return False
    return RANK[normalise(severity)] >= RANK[normalise(threshold)]


def cvss_severity(score: float) -> str:
    """CVSS v3 bands, as GitHub's security-severity uses them."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    if score > 0:
        return "low"
    return "info"


@dataclass(frozen=True)
class Finding:
    id: str                      # CVE-..., GHSA-..., B602, G104, MIG001
    severity: str                # critical | high | medium | low | info | unknown
    tool: str
    target: str = ""             # package, or file:line
    installed: str = ""
    fixed_in: str = ""
    title: str = ""
    advice: str = ""
    aliases: tuple[str, ...] = ()
    allowed_by: str = ""         # the reason of the allow entry that let it pass

    def allowed(self, reason: str) -> "Finding":
        return replace(self, allowed_by=reason)
