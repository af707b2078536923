"""Backup throughput and memory: `pg_dump -Fc` of a PostgreSQL database streamed through the
backup adapters (to S3 on the moto server, and to a local directory) against a bare `pg_dump` to a
file, in the same run, at two database sizes.

Each measurement runs in a fresh Python process so its peak RSS (ru_maxrss) is its own: the
streaming process (pipe reader, sha256, multipart upload); pg_dump's own memory is the same in
every mode and is not counted (a child's ru_maxrss starts from its parent's at fork). The bare run
uses the adapter's own pg_dump flags (-Fc -Z1 --no-owner --no-acl --no-sync) so the comparison is
the streaming path alone. One discarded warm-up dump, then rounds of bare / local / s3 in an order
that rotates each round, so load drift and cache effects hit all three alike; the ratio reported is
per round (bare seconds / streamed seconds), then the median.

Run: .venv/bin/python -m bench.backup_throughput [--rows 1000000 4000000] [--rounds 3]
     [--out bench/results/backup_throughput.json]
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


MODES = ("bare", "local", "s3")


def _worker(mode: str, url: str, dest: str, bucket: str) -> dict:
    """One dump in this process; prints what it measured."""
    from deploy_pipelines.adapters.postgres import DUMP_ARGS, PG_BIN, PostgresDatabase, _env_for
    from deploy_pipelines.adapters.records import BackupRecord
    from deploy_pipelines.backups import stream_backup

    record = BackupRecord(uri="", key="", sha256="", size=0, created_at="2026-11-26T00:00:00+00:00")
    key = f"bench/{mode}-{time.time_ns()}.dump"
    if mode == "s3":
        from dagster_aws.s3 import S3Resource

        from deploy_pipelines.adapters.s3_backup_storage import S3BackupStorage

        storage = S3BackupStorage(s3=S3Resource(), bucket=bucket)
        storage._client()          # botocore's model loading is not part of the dump
    elif mode == "local":
        from deploy_pipelines.adapters.backup_storage import LocalBackupStorage

        storage = LocalBackupStorage(root=dest)
    started = time.monotonic()
    if mode == "bare":
        env, safe_url = _env_for(url)
        out = Path(dest) / "bare.dump"
        subprocess.run([str(PG_BIN / "pg_dump"), *DUMP_ARGS, "-f", str(out), "--dbname", safe_url], env=env, check=True)
        size = out.stat().st_size
    else:
        size = stream_backup(PostgresDatabase(url=url), storage, key, record).size
    seconds = time.monotonic() - started
    return {"mode": mode, "seconds": seconds, "bytes": size,
            "python_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _fill(postgres, name: str, rows: int) -> str:
    """A database of `rows` rows, ~150 bytes each (LOCAL_STACK.md's 1M rows = 148 MB)."""
    import psycopg2

    url = postgres.create_database(name)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS items")
        cur.execute("""CREATE TABLE items (id bigserial PRIMARY KEY, sku text, name text, payload text,
                       price numeric(12,2), created_at timestamptz)""")
        cur.execute(f"""INSERT INTO items (sku, name, payload, price, created_at)
                        SELECT 'SKU-' || g, 'item number ' || g, md5(g::text) || md5((g * 7)::text),
                               (g % 10000) / 100.0, now() - (g || ' seconds')::interval
                        FROM generate_series(1, {rows}) g""")
        cur.execute("SELECT pg_size_pretty(pg_total_relation_size('items'))")
        return url, cur.fetchone()[0]


def _measure(mode: str, url: str, dest: Path, bucket: str, env: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.backup_throughput", "--worker", mode, "--url", url,
                           "--dest", str(dest), "--bucket", bucket], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} worker failed: {proc.stderr[-2000:]}")
    for child in dest.iterdir():                # free the disk for the next measurement
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="")
    ap.add_argument("--worker", default="")
    ap.add_argument("--url", default="")
    ap.add_argument("--dest", default="")
    ap.add_argument("--bucket", default="")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.url, args.dest, args.bucket)))
        return 0

    import boto3

    from deploy_pipelines.stack.moto import MotoServer
    from deploy_pipelines.stack.postgres import PostgresServer

    tmp = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    postgres = PostgresServer.start(tmp / "pg")
    moto = MotoServer.start(tmp / "moto")
    env = {**os.environ, **moto.env(), "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    env.pop("AWS_PROFILE", None)
    results = {"rounds": args.rounds, "sizes": []}
    try:
        s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
        s3.create_bucket(Bucket="bench")
        for rows in args.rows:
            url, table_size = _fill(postgres, f"bench_{rows}", rows)
            dest = tmp / "out"
            dest.mkdir(exist_ok=True)
            runs = []
            _measure("bare", url, dest, "bench", env)        # warm-up, discarded: table pages into the cache
            for r in range(args.rounds):
                # The order rotates each round: whichever runs first after an S3 round meets moto still
                # spooling the last object and a page cache it thinned out.
                order = MODES[r % 3:] + MODES[:r % 3]
                measured = {m: _measure(m, url, dest, "bench", env) for m in order}
                row = {m: measured[m] for m in MODES}
                for obj in s3.list_objects_v2(Bucket="bench").get("Contents", []):
                    s3.delete_object(Bucket="bench", Key=obj["Key"])        # moto keeps objects in memory/disk
                runs.append(row)
                print(f"{rows:>9,} rows round {r + 1}: " + "  ".join(
                    f"{m} {v['seconds']:.2f}s ({v['python_rss_mb']:.0f} MB peak RSS)"
                    for m, v in row.items()), flush=True)
            summary = {"rows": rows, "table_size": table_size, "dump_mb": runs[0]["bare"]["bytes"] / 1e6, "runs": runs}
            for m in ("local", "s3"):
                summary[f"{m}_vs_bare"] = statistics.median(r["bare"]["seconds"] / r[m]["seconds"] for r in runs)
                summary[f"{m}_peak_rss_mb"] = max(r[m]["python_rss_mb"] for r in runs)
            summary["bare_seconds_median"] = statistics.median(r["bare"]["seconds"] for r in runs)
            results["sizes"].append(summary)
            print(f"{rows:>9,} rows ({table_size}, dump {summary['dump_mb']:.0f} MB): throughput vs bare pg_dump "
                  f"local {summary['local_vs_bare']:.2f}x, s3 {summary['s3_vs_bare']:.2f}x; peak RSS of the "
                  f"streaming process local {summary['local_peak_rss_mb']:.0f} MB, s3 {summary['s3_peak_rss_mb']:.0f} MB",
                  flush=True)
            postgres.drop_database(f"bench_{rows}")
    finally:
        moto.stop()
        postgres.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
