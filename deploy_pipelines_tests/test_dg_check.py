"""`dg check defs` (dagster-dg-cli) over this project: the code location loads and validates with
the demo catalog. Not covered: what the definitions contain (test_definitions.py, test_history.py)
and invalid catalogs (test_definitions.py: they build nothing, so `dg` fails the same way)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow      # each call starts a code server: ~10-30 s on a busy 2-core machine
REPO_ROOT = Path(__file__).resolve().parents[1]


def dg_check_defs(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    dg = Path(sys.executable).with_name("dg")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return subprocess.run([str(dg), "check", "defs"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO_ROOT),
                               "DAGSTER_DISABLE_TELEMETRY": "1", **env})


def test_dg_check_defs_passes_on_the_demo_catalog(tmp_path):
    done = dg_check_defs(tmp_path, DEPLOY_CATALOG=str(REPO_ROOT / "examples" / "demo" / "deploy.yaml"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "All definitions loaded successfully" in done.stdout + done.stderr
