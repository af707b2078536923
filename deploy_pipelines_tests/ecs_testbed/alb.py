"""The Application Load Balancer of the test bed: every listener of every load balancer in moto's
elbv2 backend is an nginx server on 127.0.0.1:<listener port> (the local stack's nginx, one conf
file per test bed), forwarding to the healthy targets the scheduler registered, split across
target groups by the listener's `ForwardConfig` weights exactly as an ALB splits them.

Like a real ALB it applies a weight change within moments: here `sync` rewrites the config and
waits for nginx to serve the new generation before the API call that changed it answers, so a
test's next request already follows the new weights. A listener with no healthy target answers
503 (the ALB's own answer)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx


class AlbProxy:
    def __init__(self, nginx_prefix: Path, bed_id: str, listeners, targets):
        """listeners(): [(port, [(target_group_arn, weight)])]; targets(tg_arn): ['127.0.0.1:port']"""
        self.prefix, self.bed_id = Path(nginx_prefix), bed_id
        self._listeners, self._targets = listeners, targets
        self._written: dict[int, list[str]] = {}
        self._lock = threading.RLock()
        self.generation = 0

    @property
    def conf(self) -> Path:
        return self.prefix / "conf.d" / f"ecs-testbed-{self.bed_id}.conf"

    def servers(self, groups: list[tuple[str, int]]) -> list[str]:
        """weight% over n targets of a group: each gets weight x (product of the other groups'
        sizes), so the shares per target group are exact whatever the task counts."""
        live = [(self._targets(arn), w) for arn, w in groups if w > 0]
        live = [(t, w) for t, w in live if t]
        out = []
        for i, (members, weight) in enumerate(live):
            others = 1
            for j, (m, _) in enumerate(live):
                if j != i:
                    others *= len(m)
            out += [f"{m} weight={weight * others}" for m in members]
        return sorted(out)

    def sync(self) -> None:
        with self._lock:
            wanted = {port: self.servers(groups) for port, groups in self._listeners()}
            if wanted == self._written:
                return
            self.generation += 1
            lines = []
            for port, servers in sorted(wanted.items()):
                name = f"ecs_{self.bed_id}_{port}"
                if servers:
                    lines += [f"upstream {name} {{"] + [f"    server {s} max_fails=0;" for s in servers] + ["}"]
                lines += ["server {", f"    listen 127.0.0.1:{port} reuseport;",
                          f'    location = /__testbed_generation {{ return 200 "{self.generation}"; }}']
                if servers:
                    lines += ["    location / {", f"        proxy_pass http://{name};",
                              "        proxy_http_version 1.1;", '        proxy_set_header Connection "";',
                              # A deregistered target is drained before its task stops; a refused
                              # connection is still retried elsewhere, as an ALB does.
                              "        proxy_next_upstream error timeout non_idempotent;",
                              "        proxy_connect_timeout 2s;", "    }"]
                else:
                    lines += ["    location / { return 503 \"no healthy target\\n\"; }"]
                lines += ["}"]
            tmp = self.conf.with_suffix(".tmp")
            tmp.write_text("\n".join(lines) + "\n")
            tmp.replace(self.conf)
            self._reload(sorted(wanted))
            self._written = wanted

    def _reload(self, ports: list[int]) -> None:
        check = subprocess.run(["nginx", "-t", "-q", "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf")],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t: {check.stderr.strip()[-500:]}")
        os.kill(int((self.prefix / "nginx.pid").read_text().split()[0]), signal.SIGHUP)
        want = str(self.generation)
        for port in ports:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/__testbed_generation", timeout=1,
                                 headers={"Connection": "close"}).text == want:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)

    def stop(self) -> None:
        with self._lock:
            if self.conf.exists():
                self.conf.unlink()
                self._written = {}
                self._reload([])
