"""`edgeft bench --remote` for real: an OpenSSH server on 127.0.0.1 with a throwaway host key and client key.

The "device" is this machine: the bundle goes through scp into a temporary folder and the runtime's bench runs
there through ssh with this interpreter (a wrapper script points it at this checkout). Skips where `sshd` is
absent (a user's laptop); `.ci/run` installs Debian's openssh-server.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bench_support import make_tiny_bundle

import edgeft
from edgeft.bench import Remote, bench
from edgeft.errors import EdgeftError

SSHD = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/bin/sshd") if Path(p).exists()), None)
pytestmark = pytest.mark.skipif(not (SSHD and shutil.which("ssh") and shutil.which("scp")),
                                reason="needs OpenSSH (sshd, ssh, scp): apt-get install -y openssh-server")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def _wrapper(path: Path, line: str) -> str:
    path.write_text(f"#!/bin/sh\n{line}\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    """A running sshd on a free port and an ssh config (host alias `edgeft-device`) that reaches it."""
    folder = tmp_path_factory.mktemp("sshd")
    folder.chmod(0o700)
    host_public = _keygen(folder / "host_key")
    (folder / "authorized_keys").write_text(_keygen(folder / "client_key") + "\n")
    port = _free_port()
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\nPidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        "Subsystem sftp internal-sftp\n")  # scp speaks SFTP since OpenSSH 9
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_public}\n")
    (folder / "ssh_config").write_text(
        f"Host edgeft-device\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n"
        f"  IdentityFile {folder / 'client_key'}\n  IdentitiesOnly yes\n  UserKnownHostsFile {folder / 'known_hosts'}\n"
        "  StrictHostKeyChecking yes\n  LogLevel ERROR\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory, made by the service unit
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and server.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    if server.poll() is not None:
        pytest.skip(f"sshd did not start: {server.stderr.read().decode()[-300:]}")
    yield folder
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"))


def test_round_trip_through_ssh(loopback, bundle):
    # setup: the device's python is this interpreter with this checkout on its path
    root = Path(edgeft.__file__).resolve().parent.parent
    python = _wrapper(loopback / "device-python", f'PYTHONPATH={root} exec {sys.executable} "$@"')
    remote = Remote("ssh://edgeft-device", python=python, options=["-F", str(loopback / "ssh_config")])
    # execute
    report = bench(bundle, "host", runs=10, warmup=2, threads=1, remote=remote, rounds=2, seconds=0.2)
    # assert
    assert report["source"].startswith("measured:ssh://edgeft-device (")
    assert 0 < report["p50_ms"] <= report["p90_ms"] <= report["p99_ms"]
    # each of the 2 rounds times at least 10 calls and at least 0.2 s
    assert report["self_check"] == "passed" and report["rounds"] == 2 and report["runs"] >= 20
    assert report["model_bytes"] == (bundle / "model.onnx").stat().st_size
    leftovers = subprocess.run(["ssh", "-F", str(loopback / "ssh_config"), "edgeft-device",
                                "ls -d /tmp/edgeft-bench.* 2>/dev/null | wc -l"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "0"  # the temporary bundle folder was removed


def test_device_without_runtime_gets_the_install_line(loopback, bundle):
    # setup: a python without site-packages stands for a device without edgeft
    python = _wrapper(loopback / "bare-python", f'exec {sys.executable} -S "$@"')
    remote = Remote("ssh://edgeft-device", python=python, options=["-F", str(loopback / "ssh_config")])
    # execute / assert
    with pytest.raises(EdgeftError, match=r'pip install "edgeft\[onnx\]"'):
        bench(bundle, "host", runs=2, remote=remote)


def test_unreachable_device_is_a_clear_error(loopback, bundle):
    remote = Remote(f"ssh://nobody@127.0.0.1:{_free_port()}", options=["-o", "ConnectTimeout=5"])
    with pytest.raises(EdgeftError, match="ssh"):
        bench(bundle, "host", runs=2, remote=remote)
