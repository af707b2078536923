"""Progressive delivery on the real local stack, measured from the users' side.

1. Faulty canary: the sample service's v1.2.0 (30% HTTP 500) released as a canary over v1.1.0,
   under loopback load. Measured: from the first request v1.2.0 answered with a 500 to the last
   request any v1.2.0 instance answered (after it, 100% of traffic is on stable).
2. Blue-green switch: v1.1.0 over v1.0.0. Measured: the switch itself (from "switching" in the
   run's log to the confirmed nginx reload), failed requests, and the worst request latency in a
   2 s window around the switch compared with the median latency of the whole run (a ratio from
   the same run, so machine noise cancels).
3. Rollback to the warm blue: rollback_<svc> right after that promotion. Same measurements.

Each scenario runs `--rounds` times (fresh targets each round). Run:
    .venv/bin/python -m bench.progressive [--rounds 3] [--out bench/results/progressive.json]
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


def catalog_for(tmp: Path, ports: dict[str, int]) -> Path:
    demo = yaml.safe_load((REPO_ROOT / "examples" / "demo" / "deploy.yaml").read_text())
    services = {}
    for name, port in ports.items():
        source = "shop" if name.startswith("can") else "web"
        svc = json.loads(json.dumps(demo["services"][source]))
        svc["database"]["url"] = {"env": f"BENCH_DB_{name.upper()}"}
        svc["targets"] = {"bench": {**svc["targets"]["demo"], "port": port}}
        services[name] = svc
    doc = {"project": "bench", "environments": {"bench": demo["environments"]["demo"]}, "services": services,
           "triggers": {"enabled": False}}
    path = tmp / "deploy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def logs(instance, run_id: str) -> list[tuple[float, str]]:
    return [(r.timestamp, r.user_message or "") for r in instance.all_logs(run_id)]


def first(entries, prefix: str) -> float:
    return next(t for t, m in entries if m.startswith(prefix))


def window_stats(load, t0: float, t1: float, median_latency: float) -> dict:
    s = [x for x in load.samples if t0 - 1 <= x.t <= t1 + 1]
    worst = max((x.latency for x in s), default=0.0)
    return {"requests_in_window": len(s), "failed": sum(1 for x in s if x.status is None),
            "worst_latency_ms": round(worst * 1e3, 1),
            "worst_over_median": round(worst / median_latency, 1) if median_latency else None}


def transition(load, old: str, new: str, after: float, before: float) -> float:
    """Seconds during which users got answers from both versions: from the first answer by `new`
    to the end of the last request `old` answered after that (0 when the cut is clean), within
    [after, before)."""
    window = [x for x in load.samples if after <= x.t < before]
    first_new = min((x.t for x in window if x.version == new), default=None)
    if first_new is None:
        return float("nan")
    last_old = max((x.t + x.latency for x in window if x.version == old and x.t >= first_new - 5),
                   default=first_new)
    return max(0.0, last_old - first_new)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    from dagster import execute_job, instance_for_test
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from deploy_pipelines.demo_repo import create_demo_repo
    from deploy_pipelines.loadgen import LoadGenerator
    from deploy_pipelines.stack.local import LocalStack
    from deploy_pipelines.stack.postgres import PostgresServer
    from deploy_pipelines.stack.process import free_port

    # SIGTERM (a CI timeout, kill PID) unwinds through `finally`: the stack stops by PID.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="bench-progressive-"))
    stack = LocalStack(tmp / "stack")
    env = stack.up(log=lambda *_: None)
    results: dict = {"rounds": args.rounds, "canary_abort": [], "blue_green_switch": [], "warm_rollback": []}
    try:
        repo = tmp / "sample.git"
        create_demo_repo(repo, REPO_ROOT / "examples" / "sample-service")
        pg = PostgresServer.start(stack.root / "postgres")
        ports = {}
        for i in range(args.rounds):
            ports[f"can{i}"] = free_port()
            ports[f"bg{i}"] = free_port()
        for name in ports:
            pg.create_database(f"bench_{name}")
            os.environ[f"BENCH_DB_{name.upper()}"] = pg.url(f"bench_{name}")
        catalog = catalog_for(tmp, ports)
        os.environ.update({**env, "DEMO_REPO": str(repo), "DEPLOY_CATALOG": str(catalog)})
        recon = ReconstructableRepository.for_module("deploy_pipelines.definitions", "defs",
                                                     working_directory=str(REPO_ROOT))
        (tmp / "home").mkdir()
        with instance_for_test(temp_dir=str(tmp / "home")) as instance:
            def run(job, config):
                return execute_job(recon.get_reconstructable_job(job), instance=instance, run_config=config,
                                   raise_on_error=False)

            def release(svc, version):
                return run(f"release_{svc}_bench", {"ops": {"scan": {"config": {"version": version}}}})

            for i in range(args.rounds):
                # ---- faulty canary
                svc, port = f"can{i}", ports[f"can{i}"]
                url = f"http://127.0.0.1:{port}/api/items"
                warm = LoadGenerator(url, concurrency=2).start()
                assert release(svc, "v1.0.0").success
                assert release(svc, "v1.1.0").success
                warm.stop()
                load = LoadGenerator(url, concurrency=4).start()
                bad = release(svc, "v1.2.0")
                time.sleep(2)
                load.stop()
                assert not bad.success
                bad_samples = [s for s in load.samples if s.version == "v1.2.0"]
                first_500 = min(s.t for s in bad_samples if s.status == 500)
                last_bad = max(s.t + s.latency for s in bad_samples)
                entries = logs(instance, bad.run_id)
                results["canary_abort"].append({
                    "first_bad_request_to_all_stable_s": round(last_bad - first_500, 2),
                    "canary_weight_to_abort_s": round(first(entries, "aborted") - first(entries, "traffic: 25%"), 2),
                    "requests": len(load.samples), "answered_by_canary": len(bad_samples),
                    "http_500_seen_by_users": sum(1 for s in bad_samples if s.status == 500),
                    "failed_requests": sum(1 for s in load.samples if s.status is None)})
                print("canary abort", results["canary_abort"][-1], flush=True)

                # ---- blue-green switch, then rollback to the warm blue
                svc, port = f"bg{i}", ports[f"bg{i}"]
                url = f"http://127.0.0.1:{port}/api/items"
                warm = LoadGenerator(url, concurrency=2).start()
                assert release(svc, "v1.0.0").success
                warm.stop()
                load = LoadGenerator(url, concurrency=4).start()
                good = release(svc, "v1.1.0")
                assert good.success
                time.sleep(1)
                rolled = run(f"rollback_{svc}_bench", {"ops": {"rollback": {"config": {"reason": "bench"}}}})
                assert rolled.success
                time.sleep(1)
                load.stop()
                median = statistics.median(s.latency for s in load.samples)
                e = logs(instance, good.run_id)
                t0, t1 = first(e, "green verified directly"), first(e, "traffic: 100%")
                rollback_t0 = first(logs(instance, rolled.run_id), "v1.0.0 is warm")
                results["blue_green_switch"].append({"switch_s": round(t1 - t0, 3),
                                                     "both_versions_answering_s": round(
                                                         transition(load, "v1.0.0", "v1.1.0", t0 - 1, rollback_t0), 3),
                                                     "median_latency_ms": round(median * 1e3, 1),
                                                     **window_stats(load, t0, t1, median)})
                r = logs(instance, rolled.run_id)
                t0 = first(r, "v1.0.0 is warm")
                t1 = first([(t, m) for t, m in r if t >= t0], "traffic: 100%")
                results["warm_rollback"].append({"switch_s": round(t1 - t0, 3),
                                                 "both_versions_answering_s": round(
                                                     transition(load, "v1.1.0", "v1.0.0", t0 - 1, float("inf")), 3),
                                                 "rollback_run_s": round(r[-1][0] - r[0][0], 2),
                                                 "served_after": sorted({s.version for s in load.samples
                                                                         if s.t > r[-1][0]}),
                                                 **window_stats(load, t0, t1, median)})
                print("blue-green", results["blue_green_switch"][-1], "rollback", results["warm_rollback"][-1],
                      flush=True)
    finally:
        stack.down(log=lambda *_: None)
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {
        "canary_first_bad_to_all_stable_s_max": max(x["first_bad_request_to_all_stable_s"] for x in results["canary_abort"]),
        "blue_green_switch_s_max": max(x["switch_s"] for x in results["blue_green_switch"]),
        "warm_rollback_switch_s_max": max(x["switch_s"] for x in results["warm_rollback"]),
        "failed_requests_total": sum(x["failed"] for x in results["blue_green_switch"] + results["warm_rollback"])
        + sum(x["failed_requests"] for x in results["canary_abort"]),
    }
    results["summary"] = summary
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
