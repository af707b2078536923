"""What a catalog's size costs: 10, 50 and 200 services x 3 environments (dev, staging, production
with manual approval), every service a copy of the demo's `app` (database, backups, monthly patch,
verify rules; one YAML anchor for the shared parts, as a team would write it).

Measured per size, each in a fresh process so nothing is shared between sizes:
- import: `import deploy_pipelines.definitions` with DEPLOY_CATALOG set (what a run worker and a
  code server pay first), the process's peak RSS, and then what a code server pays on top to
  list every job for the UI (every job built, the repository snapshot serialised);
- worker: a release run of one service executed by `dagster api execute_run` (the entry point
  the run launcher's subprocess runs): from spawning it to the first op's STEP_START in the event
  log. The run is created beforehand in a SQLite instance; its scan op then fails on a git
  repository that does not exist, which is after STEP_START and not measured;
- sensors: one steady tick of every sensor of the code location (tag and branch sensors listing a
  real local bare repository each, promotion sensors reading run status changes), as the daemon
  runs them (4 threads) and one after another;
- tags: `git push` of a tag to run STARTED with a real dagster-daemon over the whole catalog
  (bench.tag_latency's method: each round waits for its run to finish before the next push).

Every phase runs in a fresh interpreter that imports deploy_pipelines from this tree, or, with
`--baseline REV`, also from `git archive REV` in the same run (so before/after are compared
inside one run, under the same load). Beside wall time the import and worker phases record CPU
seconds (user + system), which a shared machine's load hardly moves.

Run: .venv/bin/python -m bench.scale [--sizes 10,50,200] [--rounds 5] [--phases import,worker,sensors,tags]
     [--baseline REV] [--no-snapshot] [--out bench/results/scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = REPO_ROOT / "examples" / "demo" / "deploy.yaml"
ENVIRONMENTS = ("dev", "staging", "production")
GIT = ["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid"]
HOT = "svc000"          # the service whose releases are measured; its own repository


def generate_catalog(path: Path, services: int, poll_interval: str = "5s", scanners: list | None = None,
                     hot: dict | None = None) -> Path:
    """A catalog of `services` copies of the demo's `app` in dev, staging and production.
    `hot` overrides fields of the first service (svc000), e.g. its repo, port or database."""
    demo = yaml.safe_load(DEMO.read_text())
    env = demo["environments"]["demo"]
    app = demo["services"]["app"]
    # One object per shared part: the dumper writes it once as an anchor and then aliases.
    verify = app["verify"]
    image = app["image"]
    scan = {**app["scan"], **({"scanners": scanners} if scanners is not None else {})}
    backup = app["database"]["backup"]
    migrate = app["database"]["migrate"]
    strategy = app["targets"]["demo"]["strategy"]
    doc: dict = {
        "project": "scale",
        "timezone": demo.get("timezone", "UTC"),
        "environments": {"dev": dict(env), "staging": dict(env),
                         "production": {**env, "requires": "staging", "approval": "manual"}},
        "services": {},
        "patch": {"schedule": "first-friday 03:00"},
        "triggers": {"enabled": True, "poll_interval": poll_interval},
    }
    for i in range(services):
        name = f"svc{i:03d}"
        svc = {
            "repo": {"env": "SCALE_REPO"},
            "image": image,
            "scan": scan,
            "database": {"engine": "postgres", "url": {"env": "SCALE_DATABASE_URL"}, "backup": backup,
                         "migrate": migrate},
            "targets": {e: {"platform": "docker", "replicas": 2, "port": 20000 + 3 * i + k, "strategy": strategy}
                        for k, e in enumerate(ENVIRONMENTS)},
            "verify": verify,
        }
        if i == 0 and hot:
            svc.update(hot)
        doc["services"][name] = svc
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def dummy_env(catalog: Path) -> dict[str, str]:
    """A value for every {env: NAME} the catalog names (resolving a job resolves its EnvVars)."""
    from deploy_pipelines.catalog import load_catalog
    from deploy_pipelines.catalog.models import env_names

    return {n: "1" if n.endswith("_PORT") else f"/nonexistent/{n.lower()}"
            for n in env_names(load_catalog(catalog))}


def make_repo(path: Path, tags: int = 20) -> Path:
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    work = path.with_name(path.stem + "-work")
    subprocess.run(["git", "clone", "-q", str(path), str(work)], check=True, capture_output=True)
    (work / "VERSION").write_text("0\n")
    subprocess.run([*GIT, "-C", str(work), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(work), "commit", "-qm", "seed"], check=True)
    for n in range(tags):
        subprocess.run([*GIT, "-C", str(work), "tag", f"v0.{n}.0"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD:main", "--tags"], check=True)
    return work


def location(repo_def_or_defs):
    """The RepositoryDefinition behind `defs`, whichever form definitions.py exports."""
    return repo_def_or_defs.get_repository_def() if hasattr(repo_def_or_defs, "get_repository_def") \
        else repo_def_or_defs


# ---------------------------------------------------------------- phases (each a fresh process)

def phase_import(catalog: Path, snapshot: bool = True) -> dict:
    import resource

    t0, c0 = time.perf_counter(), time.process_time()
    import dagster  # noqa: F401

    t1, c1 = time.perf_counter(), time.process_time()
    import deploy_pipelines.definitions as definitions

    t2, c2 = time.perf_counter(), time.process_time()
    rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    repo = location(definitions.defs)
    job_names = repo.get_job_names() if hasattr(repo, "get_job_names") else [j.name for j in repo.get_all_jobs()]
    if not snapshot:        # --no-snapshot: what a run worker pays, without the code server's build of everything
        return {"jobs": len(job_names), "import_dagster_s": round(t1 - t0, 2),
                "import_definitions_s": round(t2 - t0, 2), "import_dagster_cpu_s": round(c1 - c0, 2),
                "import_definitions_cpu_s": round(c2 - c0, 2), "rss_after_import_mb": round(rss_import)}
    counts = {"jobs": len(job_names), "sensors": len(repo.sensor_defs), "schedules": len(repo.schedule_defs)}
    t3, c3 = time.perf_counter(), time.process_time()
    from dagster._core.remote_representation.external_data import RepositorySnap

    repo.load_all_definitions()
    RepositorySnap.from_def(repo)
    t4, c4 = time.perf_counter(), time.process_time()
    return {**counts, "import_dagster_s": round(t1 - t0, 2), "import_definitions_s": round(t2 - t0, 2),
            # CPU seconds: what the work costs whatever else the machine is doing
            "import_dagster_cpu_s": round(c1 - c0, 2), "import_definitions_cpu_s": round(c2 - c0, 2),
            "code_server_snapshot_cpu_s": round(c4 - c3, 2),
            "rss_after_import_mb": round(rss_import), "code_server_snapshot_s": round(t4 - t3, 2),
            "rss_after_snapshot_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def phase_worker(catalog: Path, rounds: int) -> dict:
    from dagster import DagsterEventType, DagsterInstance
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._grpc.types import ExecuteRunArgs
    from dagster_shared.serdes import serialize_value

    from deploy_pipelines.stack.daemon import write_instance_yaml

    home = Path(tempfile.mkdtemp(prefix="bench-scale-home-"))
    write_instance_yaml(home)
    instance = DagsterInstance.from_config(str(home))
    recon = ReconstructableRepository.for_module("deploy_pipelines.definitions", "defs",
                                                 working_directory=os.getcwd()) \
        .get_reconstructable_job(f"release_{HOT}_dev")
    job_def = recon.get_definition()
    step_start, run_start, whole, cpu = [], [], [], []
    for n in range(rounds):
        run = instance.create_run_for_job(job_def, run_config={"ops": {"scan": {"config": {"version": f"v9.{n}.0"}}}},
                                          job_code_origin=recon.get_python_origin())
        args = ExecuteRunArgs(job_origin=recon.get_python_origin(), run_id=run.run_id, instance_ref=instance.get_ref())
        t0 = time.time()
        worker = subprocess.Popen([str(Path(sys.executable).with_name("dagster")), "api", "execute_run",
                                   serialize_value(args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, _, usage = os.wait4(worker.pid, 0)
        worker.returncode = 0
        whole.append(time.time() - t0)
        cpu.append(usage.ru_utime + usage.ru_stime)
        events = {}
        for record in instance.all_logs(run.run_id, of_type={DagsterEventType.RUN_START, DagsterEventType.STEP_START}):
            events.setdefault(record.dagster_event.event_type, record.timestamp)
        if DagsterEventType.STEP_START not in events:
            raise RuntimeError(f"run {run.run_id}: no STEP_START (status {instance.get_run_by_id(run.run_id).status})")
        run_start.append(events[DagsterEventType.RUN_START] - t0)
        step_start.append(events[DagsterEventType.STEP_START] - t0)
    instance.dispose()
    shutil.rmtree(home, ignore_errors=True)
    return {"worker_to_step_start_s": round(statistics.median(step_start), 2),
            "worker_to_run_start_s": round(statistics.median(run_start), 2),
            "worker_process_s": round(statistics.median(whole), 2),
            "worker_process_cpu_s": round(statistics.median(cpu), 2), "rounds": rounds,
            "all_step_start_s": [round(x, 2) for x in step_start]}


def phase_sensors(catalog: Path) -> dict:
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from dagster import build_sensor_context, instance_for_test

    import deploy_pipelines.definitions as definitions

    logging.getLogger("dagster").setLevel(logging.WARNING)
    repo = location(definitions.defs)
    sensors = list(repo.sensor_defs)
    out: dict = {"sensors": len(sensors)}
    with instance_for_test() as instance:
        cursors: dict[str, str | None] = {s.name: None for s in sensors}

        def one(s):
            t = time.perf_counter()
            data = s.evaluate_tick(build_sensor_context(instance=instance, cursor=cursors[s.name],
                                                        repository_def=repo))
            return s.name, data, time.perf_counter() - t

        def tick_all(workers: int, label: str) -> None:
            t, c = time.perf_counter(), time.process_time()
            with ThreadPoolExecutor(workers) as pool:
                done = list(pool.map(one, sensors))
            for name, data, _ in done:
                cursors[name] = data.cursor or cursors[name]
            out[f"{label}_s"] = round(time.perf_counter() - t, 2)
            # CPU seconds of every thread (plus the git processes' wait, not counted): load-independent
            out[f"{label}_cpu_s"] = round(time.process_time() - c, 2)

        tick_all(4, "baseline_tick_4_threads")
        tick_all(4, "steady_tick_4_threads")
        tick_all(1, "steady_tick_1_thread")
    return out


def phase_tags(catalog: Path, rounds: int, hot_work: Path, tag_base: int) -> dict:
    from dagster import DagsterInstance, RunsFilter

    from deploy_pipelines.stack.daemon import DagsterDaemon, wait_for_run, write_instance_yaml

    home = Path(tempfile.mkdtemp(prefix="bench-scale-daemon-"))
    # Create the SQLite storages before the daemon and its code server start: two processes
    # creating them at once leave two alembic heads and the code location fails to load.
    write_instance_yaml(home)
    instance = DagsterInstance.from_config(str(home))
    t_start = time.time()
    daemon = DagsterDaemon(home, {"DEPLOY_CATALOG": str(catalog)}).start()      # the rest from os.environ
    latencies = []
    try:

        def baselined(i):
            return any(s.name == f"tags_{HOT}" and s.instigator_data is not None and s.instigator_data.cursor
                       for s in i.all_instigator_state())

        wait_for_run(instance, baselined, 600, "the tag sensor's baseline tick", poll=0.5)
        first_tick = time.time() - t_start
        for n in range(rounds):
            tag = f"v{tag_base}.0.{n}"
            (hot_work / "VERSION").write_text(tag)
            subprocess.run([*GIT, "-C", str(hot_work), "commit", "-qam", tag], check=True)
            subprocess.run([*GIT, "-C", str(hot_work), "tag", tag], check=True)
            pushed = time.time()
            # The tag only: main stays put, so the branch sensor starts nothing beside it.
            subprocess.run(["git", "-C", str(hot_work), "push", "-q", "origin", tag], check=True)

            def started(i, tag=tag):
                for r in i.get_run_records(RunsFilter(tags={"deploy/version": tag})):
                    if r.start_time:
                        return r
                return None

            record = wait_for_run(instance, started, 300, f"the run of {tag} to start", poll=0.05)
            latencies.append(record.start_time - pushed)
            wait_for_run(instance, lambda i, rid=record.dagster_run.run_id: i.get_run_by_id(rid).is_finished, 300,
                         "the run to finish", poll=0.2)
            print(f"  {tag}: push -> STARTED {latencies[-1]:.2f}s", file=sys.stderr, flush=True)
        instance.dispose()
    finally:
        daemon.stop()
        shutil.rmtree(home, ignore_errors=True)
    ordered = sorted(latencies)
    p95 = ordered[max(0, int(round(0.95 * len(ordered))) - 1)]
    return {"tag_to_started_median_s": round(statistics.median(latencies), 2), "tag_to_started_p95_s": round(p95, 2),
            "tag_to_started_all_s": [round(x, 2) for x in latencies],
            "daemon_start_to_first_tag_tick_s": round(first_tick, 1)}


# ---------------------------------------------------------------- driver

def run_phase(root: Path, phase: str, catalog: Path, rounds: int, env: dict[str, str], extra: list[str]) -> dict:
    """One phase in a fresh interpreter that imports deploy_pipelines from `root` (this tree or the
    baseline's), with `root` as its working directory as a code location's process has."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--phase", phase, "--catalog", str(catalog),
                           "--rounds", str(rounds), *extra], cwd=root, capture_output=True, text=True,
                          env={**os.environ, **env, "PYTHONPATH": str(root)})
    if proc.returncode:
        sys.stderr.write(proc.stderr[-3000:])
        raise RuntimeError(f"phase {phase} in {root} failed with exit code {proc.returncode}")
    sys.stderr.write(proc.stderr if phase == "tags" else "")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if phase == "import":
        result["import_process_s"] = round(time.perf_counter() - t, 2)
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,50,200")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--phases", default="import,worker,sensors,tags")
    ap.add_argument("--baseline", default="", help="a git revision measured beside this tree, in the same run")
    ap.add_argument("--out", default="")
    ap.add_argument("--no-snapshot", action="store_true",
                    help="import phase: skip the code server's build of every job, sensor and schedule")
    ap.add_argument("--phase", help=argparse.SUPPRESS)      # internal: run one phase in this process
    ap.add_argument("--catalog", help=argparse.SUPPRESS)
    ap.add_argument("--hot-work", help=argparse.SUPPRESS)
    ap.add_argument("--tag-base", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.phase:
        catalog = Path(args.catalog)
        result = {"import": lambda: phase_import(catalog, not args.no_snapshot),
                  "worker": lambda: phase_worker(catalog, args.rounds),
                  "sensors": lambda: phase_sensors(catalog),
                  "tags": lambda: phase_tags(catalog, args.rounds, Path(args.hot_work), args.tag_base)}[args.phase]()
        print(json.dumps(result))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    roots = {"this tree": REPO_ROOT}
    results: dict = {"baseline": args.baseline or None, "rounds": args.rounds, "sizes": {}}
    try:
        if args.baseline:
            base = tmp / "baseline-tree"
            base.mkdir()
            archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", args.baseline], capture_output=True,
                                     check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
            roots = {f"baseline {args.baseline}": base, **roots}
        repo = tmp / "shared.git"
        make_repo(repo)
        hot_repo = tmp / "hot.git"
        hot_work = make_repo(hot_repo)
        stop = [{"name": "stop", "command": ["sh", "-c", "exit 3"], "format": "sarif"}]
        tag_base = 1
        for size in [int(s) for s in args.sizes.split(",")]:
            catalog = generate_catalog(tmp / f"{size}" / "deploy.yaml", size, poll_interval="1s", scanners=stop,
                                       hot={"repo": {"env": "SCALE_HOT_REPO"}})
            env = {**dummy_env(catalog), "SCALE_REPO": str(repo), "SCALE_HOT_REPO": str(hot_repo),
                   "DEPLOY_CATALOG": str(catalog)}
            results["sizes"][size] = {}
            for label, root in roots.items():
                row: dict = {"catalog_bytes": catalog.stat().st_size}
                print(f"{size} services x 3 environments, {label}:", file=sys.stderr, flush=True)
                for phase in args.phases.split(","):
                    extra = ["--hot-work", str(hot_work), "--tag-base", str(tag_base)] if phase == "tags" else []
                    extra += ["--no-snapshot"] if phase == "import" and args.no_snapshot else []
                    tag_base += 1
                    row.update(run_phase(root, phase, catalog, args.rounds, env, extra))
                    print(f"  {phase}: {json.dumps(row)}", file=sys.stderr, flush=True)
                results["sizes"][size][label] = row
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
