"""A release run in a real child process (`dagster job execute` against the world's instance),
and its run worker killed by PID with SIGKILL as soon as a chosen step has started: what a node
lost or an OOM kill does to a run. The run is then marked failed as Dagster's run monitoring
marks a run whose worker died, so it can be re-executed from failure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from dagster import DagsterEventType, DagsterInstance, RunsFilter

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def _new_run(instance: DagsterInstance, job: str, known: set[str]):
    return next((r for r in instance.get_runs(filters=RunsFilter(job_name=job)) if r.run_id not in known), None)


def kill_when_step_starts(instance: DagsterInstance, home: Path, job: str, run_config: dict, step: str,
                          timeout: float = 300) -> str:
    """Launch `job` in a child process, SIGKILL it once `step` has started; returns the run id."""
    known = {r.run_id for r in instance.get_runs(filters=RunsFilter(job_name=job))}
    config = home / f"{job}-{step}.yaml"
    config.write_text(yaml.safe_dump(run_config))
    log = open(home / f"{job}-{step}.worker.log", "wb")
    proc = subprocess.Popen([DAGSTER, "job", "execute", "-m", "deploy_pipelines.definitions", "-a", "defs",
                             "-j", job, "-c", str(config)], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO_ROOT)})
    deadline = time.monotonic() + timeout
    run = None
    try:
        while time.monotonic() < deadline:
            run = run or _new_run(instance, job, known)
            if run is not None and any(r.dagster_event.step_key == step for r in instance.all_logs(
                    run.run_id, of_type=DagsterEventType.STEP_START)):
                os.kill(proc.pid, signal.SIGKILL)
                break
            if proc.poll() is not None:
                raise AssertionError(f"the worker ended (exit {proc.returncode}) before step {step} started: "
                                     + (home / f"{job}-{step}.worker.log").read_text()[-2000:])
            time.sleep(0.05)
        else:
            raise AssertionError(f"step {step} did not start within {timeout:.0f}s")
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    # What run monitoring does when a run's worker has died: the run fails, so it can be re-executed.
    instance.report_run_failed(instance.get_run_by_id(run.run_id), message=f"run worker SIGKILLed during {step}")
    return run.run_id
