"""Cost of the tag sensors' ticks over many services and tags.

200 services, each its own bare git repository with 1,000 release tags (packed refs, as a
long-lived repository has). For every service the real `tags_<service>` sensor of the code
location is ticked with build_sensor_context: first the baseline tick (no cursor), then steady
ticks with nothing new, then ticks after 1 and after 50 new tags per service, and finally the same
steady tick at 2,000 tags per repository to show what grows with the total.

Run: .venv/bin/python -m bench.sensor_tick [--services 200 --tags 1000]
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


def make_repo(path: Path, tags: int) -> None:
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    work = path.parent / "seed-work"
    subprocess.run(["git", "clone", "-q", str(path), str(work)], check=True, capture_output=True)
    (work / "f").write_text("x\n")
    subprocess.run([*GIT, "-C", str(work), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(work), "commit", "-qm", "c"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD:main"], check=True)
    head = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    add_tags(path, head, [f"v{1 + i // 1000}.{(i // 10) % 100}.{i % 10}" for i in range(tags)])
    shutil.rmtree(work)


def add_tags(repo: Path, commit: str, names: list[str]) -> None:
    stdin = "".join(f"create refs/tags/{n} {commit}\n" for n in names)
    subprocess.run(["git", "-C", str(repo), "update-ref", "--stdin"], input=stdin, text=True, check=True)
    subprocess.run(["git", "-C", str(repo), "pack-refs", "--all"], check=True)


def head_of(repo: Path) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "main"], capture_output=True, text=True,
                          check=True).stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--tags", type=int, default=1000)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    from dagster import build_sensor_context, instance_for_test

    tmp = Path(tempfile.mkdtemp(prefix="bench-sensor-"))
    try:
        seed = tmp / "seed.git"
        make_repo(seed, args.tags)
        repos = []
        for i in range(args.services):
            r = tmp / f"svc{i:03d}.git"
            shutil.copytree(seed, r)
            repos.append(r)
        docker = {"host": "unix:///nonexistent"}
        doc = {"project": "bench", "environments": {"prod": {"docker": docker, "registry": "127.0.0.1:5000"}},
               "services": {f"svc{i:03d}": {"repo": str(r), "branch": None, "image": {"repository": f"b/s{i}"},
                                            "targets": {"prod": {"port": 20000 + i}}}
                            for i, r in enumerate(repos)}}
        catalog = tmp / "deploy.yaml"
        catalog.write_text(yaml.safe_dump(doc))
        from deploy_pipelines.definitions import build_definitions

        t0 = time.perf_counter()
        defs = build_definitions(catalog)
        sensors = [s for s in defs.sensor_defs if s.name.startswith("tags_")]
        load_s = time.perf_counter() - t0
        results: dict = {"services": args.services, "tags_per_service": args.tags, "catalog_load_s": round(load_s, 2)}
        with instance_for_test() as instance:
            cursors: dict[str, str | None] = {s.name: None for s in sensors}

            from concurrent.futures import ThreadPoolExecutor

            def one(s):
                t1 = time.perf_counter()
                data = s.evaluate_tick(build_sensor_context(instance=instance, cursor=cursors[s.name]))
                return s.name, data, time.perf_counter() - t1

            def tick_all(label: str, workers: int = 1) -> None:
                """workers=1: one after another; 4: as the daemon runs them (sensors.use_threads,
                num_workers 4 in the dagster.yaml the project writes)."""
                t = time.perf_counter()
                if workers == 1:
                    done = [one(s) for s in sensors]
                else:
                    with ThreadPoolExecutor(workers) as pool:
                        done = list(pool.map(one, sensors))
                total = time.perf_counter() - t
                per = [d for _, _, d in done]
                requests = 0
                for name, data, _ in done:
                    cursors[name] = data.cursor or cursors[name]
                    requests += len(data.run_requests or [])
                label = f"{label} ({workers} thread{'s' if workers > 1 else ''})"
                results[label] = {"all_services_s": round(total, 3), "per_tick_ms_median": round(statistics.median(per) * 1e3, 2),
                                  "per_tick_ms_max": round(max(per) * 1e3, 2), "run_requests": requests}
                print(f"{label:40s} {total:6.2f}s for {len(sensors)} ticks; median {statistics.median(per) * 1e3:6.2f} ms, "
                      f"max {max(per) * 1e3:6.2f} ms; {requests} run request(s)", flush=True)

            import logging

            logging.getLogger("dagster").setLevel(logging.WARNING)   # the ticks' narration is not the cost
            tick_all("baseline (no cursor)")
            tick_all("steady, 0 new tags")
            tick_all("steady, 0 new tags", workers=4)
            for r in repos:
                add_tags(r, head_of(r), ["v9.0.0"])
            tick_all("1 new tag per service")
            for r in repos:
                add_tags(r, head_of(r), ["v9.0.1"])
            tick_all("1 new tag per service", workers=4)
            for r in repos:
                add_tags(r, head_of(r), [f"v9.1.{i}" for i in range(50)])
            tick_all("50 new tags per service")
            for r in repos:
                add_tags(r, head_of(r), [f"v3.{i // 10}.{i % 10}" for i in range(args.tags)])
            tick_all(f"{args.tags} more (all new)")
            tick_all(f"steady at {2 * args.tags + 52} tags")
            tick_all(f"steady at {2 * args.tags + 52} tags", workers=4)
        text = json.dumps(results, indent=2)
        print(text)
        if args.out:
            Path(args.out).write_text(text)
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
