"""Hostile catalogs through the one validation entry point: an alias bomb ("billion laughs"), a
recursive alias, a 10 MB file and a large but legitimate catalog (200 services). Each is loaded
(or rejected) `--rounds` times; the result is the worst wall time and what happened.

    python -m bench.catalog_bounds --rounds 5 --out bench/results/catalog_bounds.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from deploy_pipelines.catalog import CatalogError, load_catalog
from deploy_pipelines_tests.reliability.catalog_corpus import BASE, WEB


def alias_bomb(levels: int = 9, width: int = 10) -> str:
    lines = ["x-a: &a [" + ",".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"x-{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * width) + "]")
    return "\n".join(lines) + "\n" + BASE          # 10^9 values if expanded


def ten_megabytes() -> str:
    return BASE + "x-pad: |\n" + ("  " + "a" * 98 + "\n") * 100_000


def many_services(n: int = 200) -> str:
    extra = "".join(WEB.replace("  web:", f"  web{i}:").replace("8090", str(9000 + i)) for i in range(n))
    return BASE.replace("notify:\n", extra + "notify:\n")


CASES = {"alias_bomb_1e9": alias_bomb, "recursive_alias": lambda: "x-l: &l [*l]\n" + BASE,
         "file_10MB": ten_megabytes, "valid_200_services": many_services}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Warm up once: the first load imports dagster's cron parser (~1-3 s), a one-off per process.
        (Path(tmp) / "base.yaml").write_text(BASE)
        load_catalog(Path(tmp) / "base.yaml")
        for name, make in CASES.items():
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(make())
            worst, outcome = 0.0, ""
            for _ in range(args.rounds):
                started = time.perf_counter()
                try:
                    catalog = load_catalog(path)
                    outcome = f"loaded ({len(catalog.services)} services)"
                except CatalogError as exc:
                    outcome = "rejected: " + exc.problems[0][:100]
                worst = max(worst, time.perf_counter() - started)
            results[name] = {"bytes": path.stat().st_size, "worst_seconds": round(worst, 3), "outcome": outcome}
            print(f"{name:<20} {path.stat().st_size:>11,} B  worst {worst:6.3f} s  {outcome}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
