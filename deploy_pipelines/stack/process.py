"""Starting and stopping the local stack's servers: free ports, PID files, readiness waits.

Every server the stack or a test fixture starts is recorded by PID (in a pid file under its own
state folder) and stopped by that PID only -- never by name -- so two stacks side by side never
touch each other's processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import httpx


class StackError(RuntimeError):
    """A local-stack component failed to start or stop; the message names it and its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_for(check: Callable[[], bool], timeout: float, what: str, log: Path | None = None,
             interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - a server that is not up yet raises all sorts
            pass
        time.sleep(interval)
    tail = ""
    if log is not None and log.exists():
        tail = "\n--- last lines of %s ---\n%s" % (log, "\n".join(log.read_text(errors="replace").splitlines()[-20:]))
    raise StackError(f"{what} was not ready after {timeout:.0f}s{tail}")


def wait_for_port(port: int, timeout: float, what: str, log: Path | None = None) -> None:
    wait_for(lambda: port_open(port), timeout, f"{what} (127.0.0.1:{port})", log)


def wait_for_http(url: str, timeout: float, what: str, log: Path | None = None) -> None:
    wait_for(lambda: httpx.get(url, timeout=1.0).status_code < 500, timeout, f"{what} ({url})", log)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def stop_pid(pid: int, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Stop exactly this process: the signal first, SIGKILL if it outlives the timeout."""
    if not pid_alive(pid):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_for(lambda: not pid_alive(pid), 5, f"pid {pid} to exit after SIGKILL")


def group_alive(pgid: int) -> bool:
    """Is any live process still in this process group?"""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop_group(pgid: int, timeout: float = 20.0) -> None:
    """Stop a process group we created (start_new_session=True: its id is the leader's pid):
    the leader and every child it started, e.g. dagster's code servers and run workers."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.waitpid(pgid, os.WNOHANG)        # reap the leader if it is our child
            except ChildProcessError:
                pass
            if not group_alive(pgid):
                return
            time.sleep(0.1)


@dataclass
class Managed:
    """One server process owned by a stack or a fixture: its pid file, log and port."""

    name: str
    state_dir: Path
    port: int | None = None

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def running(self) -> bool:
        pid = self.pid
        return pid is not None and pid_alive(pid)

    def spawn(self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None,
              user: str | None = None) -> int:
        """Start argv in its own session, stdout/stderr to the log, and record its PID."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if user:
            argv = ["runuser", "-u", user, "--", *argv]
        log = open(self.log_file, "ab")
        proc = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
        )
        log.close()
        # runuser forks the real server as its child; record the child when there is one so
        # that stop() signals the server itself.
        pid = proc.pid
        if user:
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                children = _children(proc.pid)
                if children:
                    pid = children[0]
                    break
                time.sleep(0.02)
        self.pid_file.write_text(f"{pid}\n")
        return pid

    def adopt(self, pid: int) -> None:
        """Record a PID the server wrote itself (pg_ctl, nginx daemonise)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{pid}\n")

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        pid = self.pid
        if pid is not None:
            stop_pid(pid, timeout, sig)
        self.pid_file.unlink(missing_ok=True)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def run(argv: Sequence[str], what: str, env: dict[str, str] | None = None, timeout: float = 120,
        cwd: Path | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run a command to completion; on failure raise with its output (never echo env values)."""
    proc = subprocess.run(list(argv), capture_output=True, env={**os.environ, **(env or {})},
                          timeout=timeout, cwd=cwd, input=input)
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).decode(errors="replace").strip()[-2000:]
        raise StackError(f"{what} failed (exit {proc.returncode}): {out}")
    return proc
