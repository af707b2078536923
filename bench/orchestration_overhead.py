"""Orchestration overhead of a release run (issue 8, point 6): what Dagster and the release ops
cost when every adapter answers at once.

Three jobs, executed in this process (execute_in_process, in-process executor) on the same
ephemeral instance, interleaved, N runs each after a warm-up:
- release: the real release job (jobs.build_release_job: scan, build, backup, migrate, deploy,
  verify, promote, with their checks, logs, metadata and the deploy/<env>/<service> asset event)
  for a catalog service with a PostgreSQL database, migrations, rolling strategy and a health
  check, its adapters replaced by bench/instant_adapters.py (git, builder, database, backup
  storage, platform, metrics, notifier; the catalog-reading `target` resource stays real);
- bare: 7 trivial ops chained, nothing else (the goal: release <= 1.2x bare);
- same_shape: 7 trivial ops wired like the release job (16 inputs), to split the excess into
  what the graph's data flow costs and what the ops' own work (checks, logs, metadata) costs.
Each release run releases a newer version (v1.0.0, v1.0.1, ...), as a real target sees them.
Reported: the wall time and the CPU time of this process for each execute_in_process call, the
ratios of medians (goal <= 1.2x), how many event-log entries each run writes, and
per op the median time between its STEP_START and STEP_SUCCESS events (where any excess goes).

Run (from the repository root):
    .venv/bin/python -m bench.orchestration_overhead [--runs 20] [--out bench/results/orchestration_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

CATALOG = {
    "project": "bench",
    "environments": {"bench": {"docker": {"host": "unix:///nonexistent.sock"}, "registry": "127.0.0.1:9",
                               "backup_root": "file:///nonexistent"}},
    "services": {"app": {
        "repo": "/nonexistent.git",
        "image": {"repository": "bench/app", "file": "Containerfile"},
        "scan": {"fail_on": "high", "scanners": []},
        "database": {"engine": "postgres", "url": {"env": "BENCH_INSTANT_DB"},
                     "backup": {"schedule": "0 2 * * *", "keep_days": 30, "keep_last": 7},
                     "migrate": {"dir": "migrations", "on_failure": "restore"}},
        "targets": {"bench": {"platform": "docker", "replicas": 2, "port": 18080,
                              "strategy": {"rolling": {"max_surge": 1, "max_unavailable": 0}}}},
        "verify": {"health": {"path": "/health", "timeout": "30s", "interval": "1s"}},
    }},
    "triggers": {"enabled": False},
}


def bare_job():
    from dagster import in_process_executor, job, op

    @op
    def one():
        return 1

    @op
    def two(x):
        return x + 1

    @op
    def three(x):
        return x + 1

    @op
    def four(x):
        return x + 1

    @op
    def five(x):
        return x + 1

    @op
    def six(x):
        return x + 1

    @op
    def seven(x):
        return x + 1

    @job(name="bare_seven_ops", executor_def=in_process_executor)
    def bare_seven_ops():
        seven(six(five(four(three(two(one()))))))

    return bare_seven_ops


def same_shape_job():
    """7 trivial ops wired exactly like the release job (16 inputs: promote takes 6): what the
    graph's data flow alone costs, without the ops' own checks, logs and metadata."""
    from dagster import in_process_executor, job, op

    @op
    def scan():
        return "release"

    @op
    def build(release):
        return "image"

    @op
    def backup(release, image):
        return "dump"

    @op
    def migrate(release, dump):
        return []

    @op
    def deploy(release, image, migrations):
        return "deployed"

    @op
    def verify(release, deployed):
        return "ok"

    @op
    def promote(release, image, deployed, checks, dump, migrations):
        return {}

    @job(name="same_shape_seven_ops", executor_def=in_process_executor)
    def same_shape_seven_ops():
        release = scan()
        image = build(release)
        dump = backup(release, image)
        applied = migrate(release, dump)
        deployed = deploy(release, image, applied)
        promote(release, image, deployed, verify(release, deployed), dump, applied)

    return same_shape_seven_ops


def step_times(instance, run_id: str) -> dict[str, float]:
    """Seconds from STEP_START to STEP_SUCCESS of each op of a run."""
    from dagster import DagsterEventType

    start, end = {}, {}
    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is None or not ev.step_key:
            continue
        if ev.event_type == DagsterEventType.STEP_START:
            start[ev.step_key] = entry.timestamp
        elif ev.event_type == DagsterEventType.STEP_SUCCESS:
            end[ev.step_key] = entry.timestamp
    return {k: end[k] - start[k] for k in start if k in end}


def event_counts(instance, run_id: str) -> dict[str, int]:
    """How many event-log entries a run wrote, by Dagster event type (plain log lines as LOG)."""
    counts: dict[str, int] = defaultdict(int)
    for entry in instance.all_logs(run_id):
        counts[entry.dagster_event.event_type_value if entry.dagster_event else "LOG"] += 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def summary(values: list[float]) -> dict:
    values = sorted(values)
    return {"n": len(values), "median_s": round(statistics.median(values), 4), "min_s": round(values[0], 4),
            "max_s": round(values[-1], 4)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--instance", choices=["ephemeral", "sqlite"], default="ephemeral",
                    help="ephemeral: in-memory storage; sqlite: the embedded default's storage in a temp folder")
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    import os

    from dagster import DagsterInstance, RunsFilter

    from bench.instant_adapters import instant_resources
    from deploy_pipelines.catalog import load_catalog
    from deploy_pipelines.jobs import build_release_job
    from deploy_pipelines.steps.common import TARGET_TAG, target_key

    os.environ.setdefault("BENCH_INSTANT_DB", "postgresql://bench@127.0.0.1:9/none")
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        path = Path(tmp) / "deploy.yaml"
        path.write_text(yaml.safe_dump(CATALOG, sort_keys=False))
        release = build_release_job(load_catalog(str(path)), str(path), "app", "bench")
        bare, shape = bare_job(), same_shape_job()
        resources = instant_resources()
        instance = (DagsterInstance.ephemeral() if args.instance == "ephemeral"
                    else DagsterInstance.local_temp(tmp))
        kinds = ("release", "bare", "same_shape")
        times: dict[str, list[float]] = {k: [] for k in kinds}
        cpu: dict[str, list[float]] = {k: [] for k in kinds}
        steps: dict[str, dict[str, list[float]]] = {k: defaultdict(list) for k in kinds}
        last_run: dict[str, str] = {}
        n = 0

        def run(kind: str, record: bool) -> None:
            nonlocal n
            t, c = time.perf_counter(), time.process_time()
            if kind == "release":
                n += 1
                result = release.execute_in_process(
                    run_config={"ops": {"scan": {"config": {"version": f"v1.0.{n}"}}}}, instance=instance,
                    resources=resources)
            else:
                result = (bare if kind == "bare" else shape).execute_in_process(instance=instance)
            elapsed, cpu_s = time.perf_counter() - t, time.process_time() - c
            assert result.success, f"{kind} run {result.run_id} failed"
            last_run[kind] = result.run_id
            if record:
                times[kind].append(elapsed)
                cpu[kind].append(cpu_s)
                for key, s in step_times(instance, result.run_id).items():
                    steps[kind][key].append(s)

        for _ in range(args.warmup):
            for kind in kinds:
                run(kind, False)
        for i in range(args.runs):
            # Rotate the order, so no job always runs right after the same other one.
            for kind in kinds[i % 3:] + kinds[:i % 3]:
                run(kind, True)
            print(f"{i + 1}/{args.runs}: " + " ".join(f"{k} {times[k][-1]:.3f}s" for k in kinds), flush=True)

        events = {kind: event_counts(instance, run_id) for kind, run_id in last_run.items()}
        # Six of the seven release ops check exclusivity: one run-records query each, on this
        # instance as it is now (all the bench's runs in it).
        t = time.perf_counter()
        for _ in range(20):
            instance.get_run_records(RunsFilter(tags={TARGET_TAG: target_key("app", "bench")}), limit=200)
        run_records_query_s = (time.perf_counter() - t) / 20
        instance.dispose()

    release_s, bare_s, shape_s = summary(times["release"]), summary(times["bare"]), summary(times["same_shape"])
    results = {
        "runs": args.runs, "warmup": args.warmup,
        "instance": "DagsterInstance.ephemeral()" if args.instance == "ephemeral" else "SQLite (local_temp)",
        "events_per_run": {kind: sum(c.values()) for kind, c in events.items()},
        "events_by_type": events,
        "exclusivity_query_s": round(run_records_query_s, 4),
        "release": release_s, "bare": bare_s, "same_shape": shape_s,
        "ratio_of_medians": round(release_s["median_s"] / bare_s["median_s"], 3),
        "same_shape_over_bare": round(shape_s["median_s"] / bare_s["median_s"], 3),
        # CPU seconds of this process per run: far less disturbed by other processes on a loaded
        # machine than wall time (waiting for a core does not count).
        "cpu": {k: summary(v) for k, v in cpu.items()},
        "cpu_ratio_of_medians": round(statistics.median(cpu["release"]) / statistics.median(cpu["bare"]), 3),
        "cpu_same_shape_over_bare": round(statistics.median(cpu["same_shape"]) / statistics.median(cpu["bare"]), 3),
        "release_over_same_shape": round(release_s["median_s"] / shape_s["median_s"], 3),
        "median_step_s": {kind: {k: round(statistics.median(v), 4) for k, v in per.items()}
                          for kind, per in steps.items()},
        "raw_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "raw_cpu_s": {k: [round(x, 4) for x in v] for k, v in cpu.items()},
    }
    results["goal_at_most_1_2x"] = results["ratio_of_medians"] <= 1.2
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
