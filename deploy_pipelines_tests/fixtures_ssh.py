"""A loopback sshd standing in for a remote Docker host: keys made here, a test-only ssh config and
known_hosts under a temp HOME (docker-py's paramiko transport reads ~/.ssh/config and known_hosts),
and the far side's `docker system dial-stdio` pointed at the stack's Podman API service. Stopped
by PID."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy_pipelines.stack.process import Managed, free_port, wait_for_port


def start_sshd(root: Path, podman_env: dict[str, str]) -> tuple[Managed, int, Path]:
    """sshd on 127.0.0.1:<free port>; returns (process, port, home with .ssh/config + known_hosts)."""
    if not shutil.which("docker"):
        raise RuntimeError("no `docker` CLI on PATH: the far side of ssh:// runs `docker system dial-stdio`")
    root.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    port = free_port()
    setenv = " ".join(f"{k}={v}" for k, v in podman_env.items())
    (root / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {root / 'host_key'}
AuthorizedKeysFile {root / 'authorized_keys'}
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
PidFile {root / 'sshd.pid.unused'}
SetEnv {setenv}
""")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    proc = Managed("sshd", root)
    proc.spawn([shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f", str(root / "sshd_config")])
    wait_for_port(port, 15, "sshd", proc.log_file)
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(f"Host 127.0.0.1\n  IdentityFile {root / 'client_key'}\n")
    host_pub = (root / "host_key.pub").read_text().split()
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    return proc, port, home


@pytest.fixture(scope="session")
def ssh_docker_host(local_stack, tmp_path_factory):
    """ssh://root@127.0.0.1:<port> reaching the stack's Podman service; HOME points at the test's ssh
    config while the session lasts (never the user's own)."""
    _stack, env = local_stack
    sock = env["DEPLOY_DOCKER_HOST"]
    podman_env = {"DOCKER_HOST": sock, "CONTAINER_HOST": sock,
                  **{k: v for k, v in env.items() if k.startswith("CONTAINERS_")}}
    proc, port, home = start_sshd(tmp_path_factory.mktemp("sshd"), podman_env)
    saved = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    try:
        yield f"ssh://root@127.0.0.1:{port}"
    finally:
        if saved is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = saved
        proc.stop()
