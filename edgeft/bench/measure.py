"""Measure a bundle with the light runtime's timing loop, in a fresh process on the host or on a device over SSH.

Both paths run the same `python -m edgeft.runtime.bench BUNDLE --json -`, so host and device numbers come from the
same code and the peak RSS is that of a process holding one model. The remote path uses the system `ssh` and
`scp`, so ~/.ssh/config, agents and jump hosts work as they do for the user.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import edgeft
from edgeft.errors import EdgeftError

BENCH_MODULE = "edgeft.runtime.bench"
# The pip extra that brings each format's runtime (see pyproject.toml).
RUNTIME_EXTRA = {"onnx": "onnx", "openvino": "openvino", "tflite": "tflite-runtime"}
# Seconds ssh/scp wait for a connection: an unreachable device fails fast instead of after the TCP default (~2 min).
CONNECT_TIMEOUT_S = 10
_SSH_DEFAULTS = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}"]


@dataclass
class Remote:
    """A device reachable over SSH.

    Attributes:
        url: `ssh://user@host[:port]` (user and port optional; ~/.ssh/config applies).
        python: the device's Python that has (or gets) the edgeft runtime.
        options: extra options for both ssh and scp, e.g. `["-F", "ssh_config"]` or `["-i", "key"]`.
        install: a wheel (from `edgeft package`) to install on the device before measuring.
    """

    url: str
    python: str = "python3"
    options: list[str] = field(default_factory=list)
    install: Path | None = None

    def __post_init__(self):
        parsed = urlparse(self.url)
        if parsed.scheme != "ssh" or not parsed.hostname:
            raise EdgeftError(f"--remote: expected ssh://[user@]host[:port] (got {self.url!r})")
        self.destination = f"{parsed.username}@{parsed.hostname}" if parsed.username else parsed.hostname
        self.port = parsed.port

    def ssh(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        port = ["-p", str(self.port)] if self.port else []
        return _run(["ssh", *_SSH_DEFAULTS, *port, *self.options, self.destination, command], check)

    def copy(self, local: Path, remote_dir: str) -> None:
        port = ["-P", str(self.port)] if self.port else []
        _run(["scp", "-q", "-r", *_SSH_DEFAULTS, *port, *self.options, str(local),
              f"{self.destination}:{remote_dir}/"], check=True)


def bench_args(runs: int, warmup: int, batch: int, seq_len: int | None, threads: int | None,
               texts_file: Path | None = None, seconds: float = 0.0) -> list[str]:
    """Command-line options of the runtime's bench for these settings."""
    args = ["--json", "-", "--runs", str(runs), "--warmup", str(warmup), "--batch", str(batch)]
    args += ["--seconds", str(seconds)] if seconds else []
    args += ["--seq-len", str(seq_len)] if seq_len else []
    args += ["--texts", str(texts_file)] if texts_file else []
    return args + (["--threads", str(threads)] if threads else [])


def measure_host(bundle: Path, args: list[str], python: str | None = None) -> dict:
    """Run the timing loop in a fresh Python process on this machine (by default the same interpreter and edgeft;
    `python` may be another venv's interpreter, which then imports this edgeft's light runtime from source)."""
    env = dict(os.environ)
    # The child imports this very edgeft, wherever the parent found it (a source checkout included).
    package_root = str(Path(edgeft.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    result = subprocess.run([python or sys.executable, "-m", BENCH_MODULE, str(bundle), *args], capture_output=True,
                            text=True, env=env, stdin=subprocess.DEVNULL)
    return _report(result, "host")


@contextlib.contextmanager
def remote_session(remote: Remote, bundles: list[Path], texts_file: Path | None, bundle_format: str):
    """Copy bundles (and the texts file) once to a temporary folder on the device; yields `measure(bundle, args)`
    that runs one fresh timing process there; the folder is removed at the end."""
    workdir = remote.ssh("mktemp -d /tmp/edgeft-bench.XXXXXX").stdout.strip()
    try:
        for index, bundle in enumerate(bundles):
            remote.ssh(f"mkdir -p {workdir}/{index}")
            remote.copy(bundle, f"{workdir}/{index}")
        if texts_file:
            remote.copy(texts_file, workdir)
        if remote.install:
            _install(remote, workdir, bundle_format)
        where = {bundle: f"{workdir}/{index}/{bundle.name}" for index, bundle in enumerate(bundles)}

        def measure(bundle: Path, args: list[str]) -> dict:
            if "--texts" in args:  # the texts file travels beside the bundles
                at = args.index("--texts") + 1
                args = [*args[:at], f"{workdir}/{Path(args[at]).name}", *args[at + 1:]]
            result = remote.ssh(shlex.join([remote.python, "-m", BENCH_MODULE, where[bundle], *args]), check=False)
            if "No module named" in result.stderr:
                extra = RUNTIME_EXTRA.get(bundle_format, "onnx")
                raise EdgeftError(
                    f"{remote.url}: the device lacks the edgeft runtime ({_last_line(result.stderr)}); install it "
                    f"there with: {remote.python} -m pip install \"edgeft[{extra}]\" (or pass --install WHEEL with "
                    "the wheel from `edgeft package`)", exit_code=1)
            return _report(result, remote.url)

        yield measure
    finally:
        remote.ssh(f"rm -rf {shlex.quote(workdir)}", check=False)


def _install(remote: Remote, workdir: str, bundle_format: str) -> None:
    wheel = Path(remote.install)
    if not wheel.is_file() or wheel.suffix != ".whl":
        raise EdgeftError(f"--install: {wheel} is not a wheel file")
    remote.copy(wheel, workdir)
    target = f"{workdir}/{wheel.name}[{RUNTIME_EXTRA.get(bundle_format, 'onnx')}]"
    remote.ssh(shlex.join([remote.python, "-m", "pip", "install", "--quiet", target]))


def _run(command: list[str], check: bool) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise EdgeftError(f"--remote needs the OpenSSH client ({command[0]} not found on PATH)") from None
    if result.returncode == 255 and _unreachable(result.stderr):
        raise EdgeftError(f"--remote: cannot reach the device over SSH within {CONNECT_TIMEOUT_S} s: "
                          f"{_last_line(result.stderr)}")
    if check and result.returncode != 0:
        raise EdgeftError(f"{shlex.join(command[:1] + command[-2:])} failed (exit {result.returncode}): "
                          f"{_last_line(result.stderr)}", exit_code=1)
    return result


def _unreachable(stderr: str) -> bool:
    """ssh's own connection failures (exit 255), as opposed to the remote command failing."""
    words = ("timed out", "could not resolve", "connection refused", "no route to host", "network is unreachable",
             "name or service not known", "connection closed", "permission denied")
    return any(word in stderr.lower() for word in words)


def _report(result: subprocess.CompletedProcess, where: str) -> dict:
    if result.returncode != 0:
        lines = [line.removeprefix("error: ") for line in result.stderr.strip().splitlines() if line.strip()]
        raise EdgeftError([f"bench on {where} failed (exit {result.returncode}):", *lines[-8:]], exit_code=1)
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise EdgeftError(f"bench on {where} printed no JSON report: {result.stdout[-300:]!r}", exit_code=1) from None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
