"""Keeping the terminal for edgeft's own output: third-party noise goes to a log file.

Converters and runtimes write from C++ (LiteRT's MLIR stage log), Python warnings (TracerWarning, pytree
deprecations), loggers (ONNX Runtime's pre-processing advice) and plain prints (torchao's "Failed to load").
Redirecting file descriptors 1 and 2 catches all of them, worker processes included; edgeft writes its progress to
duplicates of the original descriptors.
"""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def third_party_to(log_file: Path):
    """Send everything written to stdout/stderr to `log_file`; yields a text stream on the original stderr."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    streams = sys.stdout, sys.stderr
    terminal = os.fdopen(os.dup(saved[2]), "w", buffering=1)
    with log_file.open("a", buffering=1) as log:
        try:
            for fd in (1, 2):
                os.dup2(log.fileno(), fd)
            sys.stdout = sys.stderr = log  # Python-level writes too, where sys.stderr is not fd 2 (a test runner)
            yield terminal
        finally:
            sys.stdout, sys.stderr = streams
            for stream in streams:
                stream.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            terminal.close()


def is_terminal(stream) -> bool:
    """Whether `stream` is an interactive terminal (not nohup, a pipe or CI)."""
    return hasattr(stream, "isatty") and stream.isatty() and os.environ.get("CI", "").lower() not in ("1", "true")


def plain_warnings() -> None:
    """Show edgeft's own warnings (data problems, a failed self-check) as `warning: ...` lines, without the source
    line Python prints under them; other packages' warnings keep the default format."""
    package = str(Path(__file__).parent)
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not str(filename).startswith(package):
            return default(message, category, filename, lineno, file, line)
        print(f"warning: {message}", file=file or sys.stderr, flush=True)

    warnings.showwarning = show
