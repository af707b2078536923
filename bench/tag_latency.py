"""Time from `git push --tags` to the release run STARTED, with a real dagster-daemon.

A temp DAGSTER_HOME with the project's dagster.yaml (run queue with the deploy/target limit,
dequeue every second, threaded sensors), a catalog whose tag sensor polls every `poll_interval`
(1 s here, the catalog's setting), a local bare repository. Each round pushes one new tag and waits
for its run to start (the run's RUN_START event: the run worker process is executing), then for it
to finish before the next push, so no round queues behind another. The release itself stops at
its scan gate at once (the scanner is `exit 3`): what is measured is the trigger path, not a build.

Run: .venv/bin/python -m bench.tag_latency [--rounds 20] [--out bench/results/tag_latency.json]
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

GIT = ["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--poll", default="1s")
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    from dagster import DagsterInstance, RunsFilter

    from deploy_pipelines.stack.daemon import DagsterDaemon, wait_for_run

    tmp = Path(tempfile.mkdtemp(prefix="bench-taglat-"))
    bare, work = tmp / "svc.git", tmp / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)

    def push_tag(tag: str) -> float:
        (work / "VERSION").write_text(tag)
        subprocess.run([*GIT, "-C", str(work), "add", "-A"], check=True)
        subprocess.run([*GIT, "-C", str(work), "commit", "-qm", tag], check=True)
        subprocess.run([*GIT, "-C", str(work), "tag", tag], check=True)
        t = time.time()
        subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD:main", "--tags"], check=True)
        return t

    push_tag("v0.0.1")
    docker = {"host": "unix:///nonexistent"}
    doc = {"project": "lat", "environments": {"prod": {"docker": docker, "registry": "127.0.0.1:5000"}},
           "services": {"svc": {"repo": str(bare), "branch": None, "image": {"repository": "lat/svc"},
                                "scan": {"scanners": [{"name": "stop", "command": ["sh", "-c", "exit 3"],
                                                       "format": "sarif"}]},
                                "targets": {"prod": {"port": 29999}}}},
           "triggers": {"enabled": True, "poll_interval": args.poll}}
    catalog = tmp / "deploy.yaml"
    catalog.write_text(yaml.safe_dump(doc))
    home = tmp / "home"
    daemon = DagsterDaemon(home, {"DEPLOY_CATALOG": str(catalog)}).start()
    latencies = []
    try:
        instance = DagsterInstance.from_config(str(home))

        def cursor(i):
            for s in i.all_instigator_state():
                if s.name == "tags_svc" and s.instigator_data is not None and s.instigator_data.cursor:
                    return True
            return None

        wait_for_run(instance, cursor, 120, "the tag sensor's baseline tick", poll=0.5)
        for n in range(args.rounds):
            tag = f"v1.0.{n}"
            pushed = push_tag(tag)

            def started(i, tag=tag):
                for r in i.get_run_records(RunsFilter(tags={"deploy/version": tag})):
                    if r.start_time:
                        return r
                return None

            record = wait_for_run(instance, started, 120, f"the run of {tag} to start", poll=0.05)
            latencies.append(record.start_time - pushed)
            wait_for_run(instance, lambda i, rid=record.dagster_run.run_id: i.get_run_by_id(rid).is_finished, 120,
                         "the run to finish", poll=0.2)
            print(f"{tag}: push -> STARTED {latencies[-1]:.2f}s", flush=True)
    finally:
        daemon.stop()
    ordered = sorted(latencies)
    p95 = ordered[max(0, int(round(0.95 * len(ordered))) - 1)]
    result = {"rounds": len(latencies), "poll_interval": args.poll,
              "median_s": round(statistics.median(latencies), 2), "p95_s": round(p95, 2),
              "max_s": round(max(latencies), 2), "min_s": round(min(latencies), 2),
              "all_s": [round(x, 2) for x in latencies]}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
