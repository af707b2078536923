"""The sample service the demo releases: a small HTTP API over PostgreSQL.

Endpoints: /health (JSON, 503 when the database is down), /ready, /metrics (Prometheus),
/api/items. Every response carries X-App-Version. Listens on $BIND:$PORT (default 0.0.0.0:8080: it runs in a container); SIGTERM finishes
in-flight requests before exiting (so a rolling release drops nothing).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import psycopg2.pool
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

import release

VERSION = os.environ.get("APP_VERSION", release.VERSION)
# An image may set FAULT_RATE (ENV) to fail a share of API requests: what a bad build looks like.
FAULT_RATE = float(os.environ.get("FAULT_RATE", release.FAULT_RATE))
REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "path", "status"])
LATENCY = Histogram("http_request_duration_seconds", "HTTP request latency", ["path"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
_counter = itertools.count()
_pool: psycopg2.pool.ThreadedConnectionPool | None = None
_pool_lock = threading.Lock()
STOPPING = threading.Event()
_idle: set = set()             # handlers waiting for the next request on a keep-alive connection
_idle_lock = threading.Lock()


def pool() -> psycopg2.pool.ThreadedConnectionPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = psycopg2.pool.ThreadedConnectionPool(1, 8, os.environ["DATABASE_URL"], connect_timeout=3)
        return _pool


def query(sql: str, args=()):
    p = pool()
    conn = p.getconn()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            rows = cur.fetchall() if cur.description else []
        conn.rollback()
        return rows
    except psycopg2.Error:
        p.putconn(conn, close=True)
        conn = None
        raise
    finally:
        if conn is not None:
            p.putconn(conn)


def items() -> list[dict]:
    cols = [r[0] for r in query("SELECT column_name FROM information_schema.columns "
                                "WHERE table_name = 'items' ORDER BY ordinal_position")]
    wanted = [c for c in ("id", "name", "sku") if c in cols]
    rows = query(f"SELECT {', '.join(wanted)} FROM items ORDER BY id LIMIT 50")
    return [dict(zip(wanted, r)) for r in rows]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sample-service"
    timeout = 60                    # idle keep-alive connections end after a minute

    def log_message(self, *args):  # quiet: metrics tell the story
        pass

    def _send(self, status: int, body: dict | bytes, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-App-Version", VERSION)
        if STOPPING.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
        path = self.path.split("?")[0]
        if path != "/metrics":
            REQUESTS.labels(self.command, path if path in ROUTES else "other", str(status)).inc()

    def handle_one_request(self):
        with _idle_lock:
            _idle.add(self)
        try:
            super().handle_one_request()
        finally:
            with _idle_lock:
                _idle.discard(self)

    def do_GET(self):  # noqa: N802
        with _idle_lock:
            _idle.discard(self)
        started = time.monotonic()
        path = self.path.split("?")[0]
        route = ROUTES.get(path)
        try:
            if route is None:
                self._send(404, {"error": "not found"})
            else:
                route(self)
        finally:
            LATENCY.labels(path if route else "other").observe(time.monotonic() - started)

    def health(self):
        try:
            query("SELECT 1")
            db = "ok"
        except Exception:  # noqa: BLE001
            db = "error"
        body = {"status": "healthy" if db == "ok" else "unhealthy",
                "timestamp": datetime.now(timezone.utc).isoformat(), "database": db, "version": VERSION}
        self._send(200 if db == "ok" else 503, body)

    def ready(self):
        self._send(200, {"ready": True, "version": VERSION})

    def metrics(self):
        self._send(200, generate_latest(), CONTENT_TYPE_LATEST)

    def api_items(self):
        # A faulty release (release.FAULT_RATE) fails a fixed share of API requests.
        if FAULT_RATE and next(_counter) % 10 < FAULT_RATE * 10:
            self._send(500, {"error": "internal error", "version": VERSION})
            return
        try:
            self._send(200, {"version": VERSION, "items": items(), **release.EXTRA})
        except psycopg2.Error as exc:
            self._send(503, {"error": f"database: {type(exc).__name__}"})


ROUTES = {"/health": Handler.health, "/ready": Handler.ready, "/metrics": Handler.metrics,
          "/api/items": Handler.api_items}


class Server(ThreadingHTTPServer):
    daemon_threads = False          # shutdown joins in-flight request threads
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 256


def main() -> None:
    port = int(os.environ.get("PORT", "8080"))
    server = Server((os.environ.get("BIND", "0.0.0.0"), port), Handler)

    def stop(*_):
        # Stop accepting, let in-flight requests finish (answered with Connection: close), and
        # end idle keep-alive connections so the process exits at once.
        STOPPING.set()
        threading.Thread(target=server.shutdown, daemon=True).start()
        with _idle_lock:
            for handler in list(_idle):
                try:
                    handler.connection.shutdown(socket.SHUT_RD)
                except OSError:
                    pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"sample-service {VERSION} listening on {port}", flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()


if __name__ == "__main__":
    main()
