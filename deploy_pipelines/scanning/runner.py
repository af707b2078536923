"""Run one scanner as a command and parse what it prints. A scanner that is missing, exits with
an unexpected code, times out or prints something unparseable fails the gate: never a silent pass."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from deploy_pipelines.scanning.findings import Finding
from deploy_pipelines.scanning.parsers import PARSERS


class ScanError(RuntimeError):
    pass


class ScannerSpec(BaseModel):
    name: str
    command: list[str] | str
    format: Literal["sarif", "trivy-json", "pip-audit-json", "npm-audit-json", "gosec-json"]
    ok_exit_codes: list[int] = [0, 1]       # most scanners exit 1 when they find something
    default_severity: str | None = None
    timeout_seconds: int = 600

    def argv(self) -> list[str]:
        return shlex.split(self.command) if isinstance(self.command, str) else list(self.command)


def _resolve(binary: str) -> str | None:
    """The scanner on PATH, or beside this interpreter (the project's venv)."""
    import sys

    found = shutil.which(binary)
    if found:
        return found
    beside = Path(sys.executable).parent / binary
    return str(beside) if beside.exists() else None


def run_scanner(spec: ScannerSpec, cwd: Path, env: dict[str, str] | None = None) -> list[Finding]:
    argv = spec.argv()
    if not argv:
        raise ScanError(f"scanner {spec.name}: empty command")
    binary = _resolve(argv[0])
    if binary is None:
        raise ScanError(f"scanner {spec.name}: {argv[0]!r} is not installed (not on PATH): install it or "
                        "remove it from scan.scanners")
    try:
        proc = subprocess.run([binary, *argv[1:]], cwd=cwd, capture_output=True, text=True,
                              timeout=spec.timeout_seconds, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        raise ScanError(f"scanner {spec.name}: timed out after {spec.timeout_seconds}s") from None
    if proc.returncode not in spec.ok_exit_codes:
        raise ScanError(f"scanner {spec.name}: exited {proc.returncode} (ok: {spec.ok_exit_codes}): "
                        f"{proc.stderr.strip()[-500:]}")
    try:
        return PARSERS[spec.format](proc.stdout, spec.default_severity)
    except (ValueError, KeyError, TypeError) as exc:
        head = proc.stdout.strip()[:120].replace("\n", " ")
        raise ScanError(f"scanner {spec.name}: output is not {spec.format}: {exc} (output began: {head!r})") from None
