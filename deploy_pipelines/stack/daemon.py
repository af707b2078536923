"""The Dagster daemon (sensors, schedules, the run queue) over this code location, as a process the
caller owns: its own DAGSTER_HOME, started in its own session and stopped by that session's
process group id (the daemon, its code server and the run workers it launched; nothing else).

`make ui` runs `dagster dev`, which starts the same daemon beside the webserver."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from deploy_pipelines.stack.process import stop_group

REPO_ROOT = Path(__file__).resolve().parents[2]


def write_instance_yaml(home: Path) -> Path:
    """The project's dagster.yaml (one run per deploy/target, a quick run queue, threaded sensors)."""
    home.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml"))


class DagsterDaemon:
    def __init__(self, home: Path, env: dict[str, str], log: Path | None = None):
        self.home = Path(home)
        self.env = env
        self.log = log or self.home / "daemon.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "DagsterDaemon":
        write_instance_yaml(self.home)
        dagster_daemon = Path(sys.executable).with_name("dagster-daemon")
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(dagster_daemon), "run", "-w", str(REPO_ROOT / "workspace.yaml")],
            cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env, "DAGSTER_HOME": str(self.home)}, start_new_session=True)
        out.close()
        return self

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None:
            return
        stop_group(self.proc.pid, timeout)      # start_new_session: the group is the daemon's pid
        self.proc.wait(timeout=5)
        self.proc = None


def wait_for_run(instance, predicate, timeout: float, what: str, poll: float = 0.2):
    """Poll the instance until predicate(instance) returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate(instance)
        if got:
            return got
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
