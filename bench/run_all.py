"""`make bench`: every benchmark, one after another (never in parallel: they share 2 cores).
Results land in bench/results/*.json; BENCHMARKS.md quotes them with these commands."""

import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BENCHES = [
    ("bench.sensor_tick", ["--services", "200", "--tags", "1000"]),
    ("bench.tag_latency", ["--rounds", "20"]),
    ("bench.progressive", ["--rounds", "3"]),
    ("bench.backup_throughput", ["--rows", "1000000", "4000000", "--rounds", "3"]),
    ("bench.catalog_bounds", ["--rounds", "5"]),
    ("bench.traffic_switch", ["--rounds", "10"]),
    ("bench.orchestration_overhead", ["--runs", "20"]),
    ("bench.k8s_rollout", ["--rounds", "3"]),
]


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    failed = 0
    for module, args in BENCHES:
        out = RESULTS / f"{module.split('.')[-1]}.json"
        print(f"== {module} {' '.join(args)}", flush=True)
        failed |= subprocess.run([sys.executable, "-m", module, *args, "--out", str(out)]).returncode
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
